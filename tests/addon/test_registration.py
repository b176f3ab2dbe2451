"""Enabling and disabling the add-on, twice, leaves nothing behind."""

import bpy
import pytest

from .helpers import ADDON, disable_addon, enable_addon

OPERATORS = ("train", "cancel", "resume", "open_log", "import_keypoints", "render_strip", "render_frame",
             "check_engine")


def leftovers():
    from jokr_blender.blender import panels, session, timers

    found = []
    if hasattr(bpy.types.Scene, "jokr"):
        found.append("Scene.jokr")
    found += [name for name in ("JOKR_PT_main", "JOKR_PG_job", "JOKR_AddonPreferences")
              if hasattr(bpy.types, name)]
    found += [f"jokr.{name}" for name in OPERATORS if hasattr(bpy.types, f"JOKR_OT_{name}")]
    if bpy.app.timers.is_registered(timers.poll_jobs):
        found.append("timer")
    found += [f"{name} handler" for name, handler in timers.HANDLERS
              if handler in getattr(bpy.app.handlers, name)]
    if session.manager.is_running():
        found.append("engine process")
    if panels._previews is not None:
        found.append("preview collection")
    return found


@pytest.mark.usefixtures("bpy_module")
def test_register_unregister_twice_leaves_nothing(tiny_clips, tmp_path, monkeypatch):
    from .helpers import set_up_scene, write_fake_python

    monkeypatch.setenv("JOKR_FAKE_ITERATIONS", "100000")  # still training when the add-on is disabled
    for round_ in range(2):
        enable_addon()
        assert ADDON in bpy.context.preferences.addons
        assert all(hasattr(bpy.ops.jokr, name) for name in OPERATORS)
        assert bpy.types.JOKR_OT_train.bl_idname == "jokr.train"
        # Leave a training running and the timer registered: unregister must stop both.
        prefs = bpy.context.preferences.addons[ADDON].preferences
        prefs.engine_python = write_fake_python(tmp_path)
        prefs.job_root = str(tmp_path / f"jobs{round_}")
        set_up_scene(bpy, tiny_clips)
        assert bpy.ops.jokr.train() == {'FINISHED'}
        from jokr_blender.blender import session, timers
        assert session.manager.is_running() and bpy.app.timers.is_registered(timers.poll_jobs)
        disable_addon()
        assert leftovers() == []
        bpy.ops.wm.read_factory_settings(use_empty=True)
