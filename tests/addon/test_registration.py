"""Enabling and disabling the add-on, twice, leaves nothing behind."""

import json
import os
import signal
import subprocess
import sys
import time

import bpy
import pytest

from .helpers import ADDON, REPO, USER_RESOURCES_ENV, disable_addon, enable_addon

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
    if bpy.app.timers.is_registered(timers.apply_engine_checks) or timers._engine_checks:
        found.append("engine check")
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
    for round_, on_quit in enumerate(('STOP', 'KEEP')):
        enable_addon()
        assert ADDON in bpy.context.preferences.addons
        assert all(hasattr(bpy.ops.jokr, name) for name in OPERATORS)
        assert bpy.types.JOKR_OT_train.bl_idname == "jokr.train"
        # Leave a training running and the timer registered: unregister lets go of both.
        prefs = bpy.context.preferences.addons[ADDON].preferences
        prefs.engine_python = write_fake_python(tmp_path)
        prefs.job_root = str(tmp_path / f"jobs{round_}")
        prefs.on_quit = on_quit
        set_up_scene(bpy, tiny_clips)
        assert bpy.ops.jokr.train() == {'FINISHED'}
        from jokr_blender.blender import session, timers
        assert session.manager.is_running() and bpy.app.timers.is_registered(timers.poll_jobs)
        engine = session.manager.run(str(tmp_path / f"jobs{round_}" / "job")).process
        assert bpy.ops.jokr.check_engine() == {'FINISHED'}  # and an engine check still waiting for its answer
        assert bpy.app.timers.is_registered(timers.apply_engine_checks)
        disable_addon()
        assert leftovers() == []
        if on_quit == 'STOP':  # asked to checkpoint and stop: it does so on its own
            assert engine.wait(timeout=20) is not None
        else:  # the engine trains on without the add-on
            assert engine.poll() is None
            engine.kill()
            engine.wait(timeout=20)
        bpy.ops.wm.read_factory_settings(use_empty=True)


QUIT_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import bpy
from tests.addon.helpers import ADDON, enable_addon, set_up_scene, write_fake_python, write_png_sequence
tmp = Path(sys.argv[2])
bpy.ops.wm.read_factory_settings(use_empty=True)
enable_addon()
prefs = bpy.context.preferences.addons[ADDON].preferences
prefs.engine_python, prefs.job_root = write_fake_python(tmp), str(tmp / "jobs")
prefs.on_quit = sys.argv[3]
clips = {}
for name in ("cat", "fox"):
    for part in ("frames", "masks"):
        write_png_sequence(tmp / name / part, 10)
    clips[name] = tmp / name
scene = set_up_scene(bpy, clips)
assert bpy.ops.jokr.train() == {'FINISHED'}
from jokr_blender.blender import session
run = session.manager.run(bpy.path.abspath(scene.jokr.job_dir))
while not (Path(run.job_dir) / "events.jsonl").exists():
    time.sleep(0.05)
print("ENGINE", run.process.pid, run.job_dir, flush=True)
# The script ends with the engine still training: Blender quits.
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "\nState:\tZ" not in status.read()  # a zombie has exited; only its parent can reap it
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
@pytest.mark.parametrize("on_quit", ["KEEP", "STOP"])
def test_quitting_blender_while_training_follows_the_preference(tmp_path, on_quit):
    script = tmp_path / "quit.py"
    script.write_text(QUIT_SCRIPT)
    env = {**os.environ, "JOKR_FAKE_ITERATIONS": "100000", "JOKR_FAKE_SLEEP": "0.05",
           USER_RESOURCES_ENV: str(tmp_path / "blender-user")}
    done = subprocess.run([sys.executable, str(script), str(REPO), str(tmp_path), on_quit], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("ENGINE ")]
    _, pid, job_dir = line.split(" ", 2)
    pid = int(pid)
    if on_quit == "KEEP":  # the default: Blender is gone, the engine trains on
        time.sleep(1.0)
        assert _alive(pid), "the engine stopped with Blender"
        os.kill(pid, signal.SIGKILL)
        return
    deadline = time.monotonic() + 30  # asked to checkpoint and stop, it does so on its own
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the engine did not stop"
    with open(os.path.join(job_dir, "events.jsonl")) as stream:
        events = [json.loads(line) for line in stream if line.strip()]
    assert any(e["event"] == "checkpoint" and e.get("reason") == "cancel" for e in events)
    assert events[-1]["event"] == "done" and events[-1]["status"] == "cancelled"
