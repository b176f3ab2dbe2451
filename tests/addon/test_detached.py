"""Training outlives Blender, against the fake engine: a .blend reopened while its engine trains follows that
run read-only (it started elsewhere: the command line, another Blender, this Blender before a crash); it
never starts a second engine on the job, and its Cancel asks first. And the panel's messages stay true:
a failed Render or an undone Import never leaves the previous outcome on show."""

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import bpy
import pytest

from .helpers import FAKE_ENGINE, pump, set_up_scene

JOB = "JOKR.job"


def start_engine_elsewhere(job, clips, iterations=400):
    """The fake engine started as the command line (or another Blender) would: not by this Blender."""
    env = {**os.environ, "JOKR_FAKE_ITERATIONS": str(iterations), "JOKR_FAKE_SLEEP": "0.02"}
    return subprocess.Popen([sys.executable, str(FAKE_ENGINE), "train", "--job", str(job), "--a",
                             str(clips["cat"] / "frames"), "--b", str(clips["fox"] / "frames"), "--preset", "tiny"],
                            env=env, stdout=subprocess.DEVNULL, start_new_session=True)


def wait_until(condition, timeout=30.0):
    from jokr_blender.blender import session, timers

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        session.manager.pump(timeout=0.05)
        timers.poll_jobs()


class ConfirmRecorder:
    """context.window_manager for invoke(): records the question instead of showing it."""

    def __init__(self):
        self.asked = []

    def invoke_confirm(self, operator, event, **question):
        self.asked.append(question)
        return {'RUNNING_MODAL'}


@pytest.mark.usefixtures("addon")
def test_reopened_file_follows_a_run_started_elsewhere_and_never_starts_another(tiny_clips, tmp_path):
    from jokr_blender.blender import operators, session

    job = tmp_path / "jobs" / "job"
    scene = set_up_scene(bpy, tiny_clips)
    scene.jokr.job_dir = str(job)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    engine = start_engine_elsewhere(job, tiny_clips)
    try:
        while not (job / "events.jsonl").exists() or "progress" not in (job / "events.jsonl").read_text():
            assert engine.poll() is None
        bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "shot.blend"))  # load_post: follow it
        settings = bpy.context.scene.jokr
        assert settings.state == 'training' and settings.iteration >= 1
        assert settings.followed_engine.startswith(f"process {engine.pid} on ")
        run = session.manager.run(str(job))
        assert run is not None and not run.owned
        # Read-only: nothing here starts a second engine on the job.
        assert not bpy.ops.jokr.train.poll() and not bpy.ops.jokr.resume.poll()
        with pytest.raises(RuntimeError, match="An engine this Blender did not start is training this job"):
            bpy.ops.jokr.train()
        assert not bpy.ops.jokr.import_keypoints.poll() and not bpy.ops.jokr.render_strip.poll()
        seen = settings.iteration
        wait_until(lambda: settings.iteration > seen)  # its progress shows, from events.jsonl
        # The panel's Cancel asks before stopping someone else's run …
        recorder = ConfirmRecorder()
        context = SimpleNamespace(scene=bpy.context.scene, sequencer_scene=None, window_manager=recorder)
        answer = operators.JOKR_OT_cancel.invoke(SimpleNamespace(execute=lambda _c: {'FINISHED'}), context, None)
        assert answer == {'RUNNING_MODAL'} and len(recorder.asked) == 1
        assert str(engine.pid) in recorder.asked[0]["message"] and not (job / "CANCEL").exists()
        # … and once confirmed, it stops it with a checkpoint.
        assert bpy.ops.jokr.cancel() == {'FINISHED'}
        pump(30)
        assert engine.wait(timeout=10) == 0
        assert settings.state == 'cancelled' and settings.can_resume and settings.followed_engine == ""
    finally:
        if engine.poll() is None:
            engine.kill()


@pytest.mark.usefixtures("addon")
def test_own_run_is_cancelled_without_a_question(tiny_clips, monkeypatch):
    from jokr_blender.blender import operators

    monkeypatch.setenv("JOKR_FAKE_ITERATIONS", "400")
    scene = set_up_scene(bpy, tiny_clips)
    bpy.ops.jokr.train()
    recorder = ConfirmRecorder()
    executed = []
    context = SimpleNamespace(scene=scene, sequencer_scene=None, window_manager=recorder)
    operators.JOKR_OT_cancel.invoke(SimpleNamespace(execute=executed.append), context, None)
    assert recorder.asked == [] and executed == [context]
    bpy.ops.jokr.cancel()
    pump()
    assert scene.jokr.state == 'cancelled'


@pytest.mark.usefixtures("addon")
def test_a_failed_render_replaces_the_updated_strip_message(tiny_clips):
    scene = set_up_scene(bpy, tiny_clips)
    bpy.ops.jokr.train(wait=True)
    bpy.ops.jokr.import_keypoints(wait=True)
    assert bpy.ops.jokr.render_strip(wait=True) == {'FINISHED'}
    assert "updated" in scene.jokr.task_text and not scene.jokr.task_failed
    empty = bpy.data.objects[f"{JOB}.A.kp01"]
    empty.location.x += 50.0  # far off the frame: Render refuses before the engine runs
    empty.keyframe_insert("location", index=0, frame=5)
    with pytest.raises(RuntimeError, match="too far outside the frame"):
        bpy.ops.jokr.render_strip()
    assert scene.jokr.task_failed and "updated" not in scene.jokr.task_text
    assert scene.jokr.task_text.startswith("Render failed: ") and "too far outside" in scene.jokr.task_text


@pytest.mark.usefixtures("addon")
def test_undoing_an_import_drops_its_message(tiny_clips):
    scene = set_up_scene(bpy, tiny_clips)
    bpy.ops.jokr.train(wait=True)
    bpy.ops.ed.undo_push(message="before import")
    bpy.ops.jokr.import_keypoints(wait=True)  # runs the engine's `keypoints`, then builds the rig
    bpy.ops.ed.undo_push(message="after import")
    assert "keyed" in scene.jokr.task_text
    bpy.ops.ed.undo()
    scene = bpy.context.scene
    assert bpy.data.objects.get(f"{JOB}.A.kp00") is None and "keyed" not in scene.jokr.task_text
    # Importing again without the engine (keypoints.json is up to date) says what it did, in place of the
    # last engine run's outcome.
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}
    assert "keyed" in scene.jokr.task_text and bpy.data.objects.get(f"{JOB}.A.kp00")
