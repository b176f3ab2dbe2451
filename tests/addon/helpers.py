"""Helpers shared by the add-on tests. Nothing here imports bpy at module level."""

from __future__ import annotations

import importlib
import importlib.util
import os
import stat
import sys
from pathlib import Path

from .fake_engine import write_png

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent
ADDON = "jokr_blender"
ENGINE_PYTHON = os.environ.get("JOKR_TEST_ENGINE_PYTHON", str(REPO / ".venv" / "bin" / "python"))
FAKE_ENGINE = TESTS / "fake_engine.py"
DATA_ROOTS = (REPO / "demo" / "data", Path("/work/shared/data"))
USER_RESOURCES_ENV = "BLENDER_USER_RESOURCES"
IO_MODULES = ("atomic", "protocol", "job_state", "coords", "keypoint_file", "process", "key_ownership", "results",
              "job_lock", "masks", "smoothing")


def io_package():
    """jokr_blender/io imported as the stand-alone package `jokr_io`: no parent package, so no bpy."""
    if "jokr_io" not in sys.modules:
        folder = REPO / ADDON / "io"
        spec = importlib.util.spec_from_file_location("jokr_io", folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["jokr_io"] = package
        spec.loader.exec_module(package)
        for name in IO_MODULES:
            importlib.import_module(f"jokr_io.{name}")
    return sys.modules["jokr_io"]


def clip_folder(name: str) -> Path | None:
    """The frames/ + masks/ sample clip `name`, from the demo data or else the shared data."""
    for root in DATA_ROOTS:
        if (root / name / "frames").is_dir() and (root / name / "masks").is_dir():
            return root / name
    return None


def write_fake_python(folder: Path, mode: str | None = None) -> str:
    """An executable that acts as `<python> -m jokr_engine …` by running tests/addon/fake_engine.py."""
    path = folder / f"fake-python-{mode or 'default'}"
    set_mode = f"export JOKR_FAKE_MODE={mode}\n" if mode else ""
    path.write_text(f"#!/bin/sh\n{set_mode}exec '{sys.executable}' '{FAKE_ENGINE}' \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def enable_addon():
    import addon_utils

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    module = addon_utils.enable(ADDON, default_set=True, handle_error=None)
    assert module is not None, "the add-on did not enable"
    return module


def disable_addon():
    import addon_utils

    addon_utils.disable(ADDON, default_set=True, handle_error=None)


def write_png_sequence(folder: Path, count: int, width: int = 32, height: int = 16) -> Path:
    """A tiny clip: a white square moving over black, frame i's square starting at x = i."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = bytearray(b"\x00\x00\x00\xff" * (width * height))
        for y in range(4, 10):
            for x in range(index % (width - 6), index % (width - 6) + 6):
                pixels[(y * width + x) * 4:(y * width + x) * 4 + 4] = b"\xff\xff\xff\xff"
        write_png(str(folder / f"{index:05d}.png"), width, height, bytes(pixels))
    return folder


def new_image_strip(scene, name: str, folder: Path, first: int = 0, count: int | None = None,
                    channel: int = 1, frame_start: int = 1):
    """An image strip over the images folder[first:first + count] in natural order."""
    from jokr_blender.blender import compat, strips

    names = strips.folder_images(str(folder))[first:first + count if count else None]
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strip = getattr(editor, compat.STRIPS).new_image(name=name, filepath=str(folder / names[0]),
                                                     channel=channel, frame_start=frame_start)
    for file_name in names[1:]:
        strip.elements.append(file_name)
    return strip


def set_up_scene(bpy, clips: dict, frame_start_a: int = 1, frame_start_b: int = 1, first_a: int = 0,
                 count_a: int | None = None, first_b: int = 0, count_b: int | None = None):
    """The sequencer scene with strip 'cat' as clip A and 'fox' as clip B, job name 'job'."""
    from jokr_blender.blender import compat

    scene = compat.sequencer_scene(bpy.context)
    strip_a = new_image_strip(scene, "cat", clips["cat"] / "frames", first_a, count_a, 1, frame_start_a)
    strip_b = new_image_strip(scene, "fox", clips["fox"] / "frames", first_b, count_b, 2, frame_start_b)
    scene.jokr.clip_a.strip = strip_a.name
    scene.jokr.clip_b.strip = strip_b.name
    scene.jokr.job_name = "job"
    return scene


def pump(bpy_timeout: float = 60.0):
    """Let the engine runs finish and apply them as Blender's timer would (bpy has no event loop)."""
    from jokr_blender.blender import session, timers

    assert session.manager.pump(timeout=bpy_timeout), "the engine run did not finish in time"
    timers.poll_jobs()
