"""Fixtures for the add-on tests, in real bpy (the 4.2 LTS and 5.0 venvs alike).

Blender's user folder goes to a temporary folder *before* bpy is imported, so the tests never read or
write the developer's own preferences or extensions. The add-on is enabled from the working tree
through addon_utils, as Blender enables an add-on, so its preferences exist as in a real session.
The bpy-free `io` package is loaded on its own (helpers.io_package), without importing bpy at all.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="jokr-blender-user-")  # before `import bpy`
atexit.register(shutil.rmtree, os.environ["BLENDER_USER_RESOURCES"], ignore_errors=True)
# The platform's user data folder (unsaved files' jobs), on Linux: never the developer's own.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="jokr-user-data-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], ignore_errors=True)

import pytest  # noqa: E402

from .helpers import ADDON, disable_addon, enable_addon, io_package, write_fake_python, write_png_sequence  # noqa: E402


@pytest.fixture(scope="session")
def jio():
    return io_package()


@pytest.fixture
def bpy_module():
    """bpy with factory settings and an empty file."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy


@pytest.fixture
def addon(bpy_module, tmp_path):
    """The add-on enabled from the working tree, driving the fake engine; jobs under tmp_path/jobs."""
    module = enable_addon()
    prefs = bpy_module.context.preferences.addons[ADDON].preferences
    prefs.engine_python = write_fake_python(tmp_path)
    prefs.job_root = str(tmp_path / "jobs")
    yield module
    disable_addon()


@pytest.fixture
def tiny_clips(tmp_path):
    """Two tiny clips in the sample layout (frames/ + masks/): 'cat' with 12 frames, 'fox' with 10."""
    clips = {}
    for name, count in (("cat", 12), ("fox", 10)):
        write_png_sequence(tmp_path / "clips" / name / "frames", count)
        write_png_sequence(tmp_path / "clips" / name / "masks", count)
        clips[name] = tmp_path / "clips" / name
    return clips
