"""Train / Cancel / Resume / Check Engine / Open Log through the real operators, against the fake engine,
and the bad inputs: each gives a clear message and leaves the file as it was."""

import json
import os
import subprocess

import bpy
import pytest

from .helpers import ADDON, ENGINE_PYTHON, pump, set_up_scene, write_fake_python


def prefs():
    return bpy.context.preferences.addons[ADDON].preferences


def job_spec(scene):
    with open(os.path.join(scene.jokr.job_dir, "job.json")) as stream:
        return json.load(stream)["clips"]


@pytest.mark.usefixtures("addon")
def test_train_runs_in_the_background_and_the_timer_applies_it(tiny_clips, tmp_path):
    scene = set_up_scene(bpy, tiny_clips)
    scene.jokr.num_keypoints = 8
    # A job that failed at start-up (job.json, no checkpoint) does not block a new training under its name.
    os.makedirs(tmp_path / "jobs" / "job")
    (tmp_path / "jobs" / "job" / "job.json").write_text("{}")
    assert bpy.ops.jokr.train() == {'FINISHED'}
    settings = scene.jokr
    assert settings.job_dir == str(tmp_path / "jobs" / "job")
    assert settings.state == 'starting'  # the operator returned while the engine runs
    assert scene.view_settings.view_transform == 'Standard'
    pump()
    assert settings.state == 'finished' and settings.progress == pytest.approx(1.0)
    assert (settings.step, settings.iteration, settings.iterations) == (2, 5, 5)
    assert settings.device_name == "Fake CPU" and settings.preview_path.endswith("latest.png")
    assert settings.error_message == "" and not settings.can_resume
    clips = job_spec(scene)
    assert clips["A"] == {"path": str(tiny_clips["cat"] / "frames"), "start": 0, "count": 12,
                          "mask": str(tiny_clips["cat"] / "masks")}
    assert clips["B"]["count"] == 10
    with open(os.path.join(settings.job_dir, "job.json")) as stream:
        argv = json.load(stream)["argv"]
    assert "num_keypoints=8" in argv and not any(a.startswith("perceptual=") for a in argv)  # the preset's loss
    with pytest.raises(RuntimeError, match="already holds a trained job"):
        bpy.ops.jokr.train()

    # The perceptual loss the error hints name can be chosen in the panel.
    settings.job_name, settings.perceptual = "with_ssim", 'ssim'
    assert bpy.ops.jokr.train() == {'FINISHED'}
    pump()
    with open(os.path.join(settings.job_dir, "job.json")) as stream:
        assert "perceptual=ssim" in json.load(stream)["argv"]


@pytest.mark.usefixtures("addon")
def test_strip_ranges_and_mask_sources_reach_the_engine(tiny_clips):
    scene = set_up_scene(bpy, tiny_clips, first_a=2, count_a=8, frame_start_a=20)
    strip_a = scene.sequence_editor.sequences_all["cat"] if hasattr(scene.sequence_editor, "sequences_all") \
        else scene.sequence_editor.strips_all["cat"]
    strip_a.frame_offset_start = 1  # trimmed: the strip now shows folder images 3 … 9
    strip_a.frame_offset_end = 1
    scene.jokr.clip_a.mask_source = 'LUMA'
    scene.jokr.clip_a.luma_threshold = 0.25
    scene.jokr.clip_b.mask_source = 'KEY'
    scene.jokr.clip_b.key_color = (0.0, 1.0, 0.0)
    assert bpy.ops.jokr.train() == {'FINISHED'}
    pump()
    clips = job_spec(scene)
    assert (clips["A"]["start"], clips["A"]["count"], clips["A"]["mask"]) == (3, 6, "luma:0.25")
    assert clips["B"]["mask"] == "key:00FF00:0.3"


@pytest.mark.usefixtures("addon")
def test_image_strip_with_missing_frames_is_reported_by_name(tiny_clips):
    scene = set_up_scene(bpy, tiny_clips)
    os.unlink(tiny_clips["cat"] / "frames" / "00003.png")
    os.unlink(tiny_clips["cat"] / "frames" / "00007.png")
    with pytest.raises(RuntimeError, match=r"missing 2 of its 12 frames .*00003\.png, 00007\.png"):
        bpy.ops.jokr.train()
    assert scene.jokr.job_dir == "" and scene.jokr.state == 'idle'


@pytest.mark.usefixtures("addon")
def test_no_mask_beside_and_wrong_strips(tiny_clips, tmp_path):
    scene = set_up_scene(bpy, tiny_clips)
    os.rename(tiny_clips["fox"] / "masks", tmp_path / "elsewhere")
    with pytest.raises(RuntimeError, match="No 'masks' folder next to .* for clip B"):
        bpy.ops.jokr.train()
    scene.jokr.clip_b.mask_source = 'FOLDER'
    scene.jokr.clip_b.mask_folder = str(tmp_path / "elsewhere")
    scene.jokr.clip_b.strip = "cat"
    with pytest.raises(RuntimeError, match="same strip"):
        bpy.ops.jokr.train()
    scene.jokr.clip_b.strip = "gone"
    with pytest.raises(RuntimeError, match="Strip 'gone' \\(clip B\\) is not in the sequencer"):
        bpy.ops.jokr.train()


@pytest.mark.usefixtures("addon")
def test_unsaved_file_puts_the_job_in_the_user_data_folder_and_saving_keeps_it_there(tiny_clips, tmp_path,
                                                                                     capsys):
    prefs().job_root = ""  # the default: //jokr/
    scene = set_up_scene(bpy, tiny_clips)
    assert not bpy.data.filepath
    assert bpy.ops.jokr.train() == {'FINISHED'}
    job = os.path.join(os.environ["XDG_DATA_HOME"], "jokr", "jobs", "job")  # conftest's user data folder
    assert scene.jokr.job_dir == job
    assert "not saved yet" in capsys.readouterr().out
    pump()
    assert scene.jokr.state == 'finished'
    # Saving neither strands the job (it keeps its folder) nor copies it next to the .blend.
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "shot.blend"))
    assert bpy.context.scene.jokr.job_dir == job and bpy.context.scene.jokr.state == 'finished'
    assert not (tmp_path / "jokr").exists()

    bpy.ops.wm.read_homefile(use_empty=True)
    prefs().unsaved_job_root = str(tmp_path / "my jobs")  # the preference
    scene = set_up_scene(bpy, tiny_clips)
    assert bpy.ops.jokr.train(wait=True) == {'FINISHED'}
    assert scene.jokr.job_dir == str(tmp_path / "my jobs" / "job")


@pytest.mark.usefixtures("addon")
def test_save_as_elsewhere_never_strands_a_job_kept_relative(tiny_clips, tmp_path):
    prefs().job_root = ""
    set_up_scene(bpy, tiny_clips)
    (tmp_path / "project").mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "project" / "shot.blend"))
    assert bpy.ops.jokr.train(wait=True) == {'FINISHED'}
    settings = bpy.context.scene.jokr
    job = str(tmp_path / "project" / "jokr" / "job")
    assert settings.job_dir == "//jokr/job"
    (tmp_path / "elsewhere").mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "elsewhere" / "shot.blend"), copy=True)
    assert settings.job_dir == "//jokr/job"  # a copy was saved: the open file did not move
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "elsewhere" / "moved.blend"))
    assert settings.job_dir == job  # outside the new file's folder: absolute
    for blend in ("shot.blend", "moved.blend"):
        bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "elsewhere" / blend))
        reopened = bpy.context.scene.jokr
        assert bpy.path.abspath(reopened.job_dir) == job and reopened.state == 'finished', blend
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "project" / "back.blend"))
    assert bpy.context.scene.jokr.job_dir == "//jokr/job"  # inside again: relative again


@pytest.mark.usefixtures("addon")
def test_saved_file_puts_the_job_next_to_it(tiny_clips, tmp_path):
    prefs().job_root = ""  # the default: //jokr/
    set_up_scene(bpy, tiny_clips)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    assert bpy.ops.jokr.train() == {'FINISHED'}
    pump()
    assert bpy.context.scene.jokr.job_dir == "//jokr/job"  # relative: the project can move as a whole
    assert bpy.path.abspath(bpy.context.scene.jokr.job_dir) == str(tmp_path / "jokr" / "job")


@pytest.mark.usefixtures("addon")
def test_wrong_engine_path(tiny_clips, tmp_path):
    set_up_scene(bpy, tiny_clips)
    prefs().engine_python = str(tmp_path / "no" / "python")
    with pytest.raises(RuntimeError, match="Engine Python not found"):
        bpy.ops.jokr.train()
    with pytest.raises(RuntimeError, match="Engine Python not found"):
        bpy.ops.jokr.check_engine(wait=True)
    prefs().engine_python = ""
    with pytest.raises(RuntimeError, match="Set the engine's Python"):
        bpy.ops.jokr.train()


@pytest.mark.usefixtures("addon")
def test_check_engine_shows_version_and_device(tmp_path):
    assert bpy.ops.jokr.check_engine(wait=True) == {'FINISHED'}
    assert prefs().engine_status == "JOKR engine 0.0-fake on Fake CPU"
    prefs().engine_python = "  "
    assert not bpy.ops.jokr.check_engine.poll()  # greyed out, with a message saying what to set


@pytest.mark.usefixtures("addon")
def test_check_engine_answers_without_blocking_blender():
    """From the UI the operator returns at once; the timer shows the answer when the engine gave it."""
    import time

    from jokr_blender.blender import timers

    assert bpy.ops.jokr.check_engine() == {'FINISHED'}
    assert prefs().engine_status == "Checking the engine…"
    assert bpy.app.timers.is_registered(timers.apply_engine_checks)
    deadline = time.monotonic() + 60
    while timers.apply_engine_checks() is not None:  # bpy has no event loop: run the timer as Blender would
        assert time.monotonic() < deadline, "the engine check never finished"
        time.sleep(0.05)
    assert prefs().engine_status == "JOKR engine 0.0-fake on Fake CPU"


@pytest.mark.usefixtures("addon")
def test_engine_without_its_packages(tiny_clips, tmp_path):
    prefs().engine_python = write_fake_python(tmp_path, "missing-torch")
    with pytest.raises(RuntimeError, match="No module named 'torch'"):
        bpy.ops.jokr.check_engine(wait=True)
    assert "No module named 'torch'" in prefs().engine_status
    scene = set_up_scene(bpy, tiny_clips)
    assert bpy.ops.jokr.train() == {'FINISHED'}  # the process starts; it fails on its own
    pump()
    assert scene.jokr.state == 'failed'
    assert "No module named 'torch'" in scene.jokr.error_message and scene.jokr.error_hint


@pytest.mark.usefixtures("addon")
def test_engine_crash_mid_run_fails_with_log_and_survives_reopening(tiny_clips, tmp_path, capsys):
    prefs().engine_python = write_fake_python(tmp_path, "crash")
    scene = set_up_scene(bpy, tiny_clips)
    bpy.ops.jokr.train()
    pump()
    assert scene.jokr.state == 'failed' and "CUDA went away" in scene.jokr.error_message
    assert bpy.ops.jokr.open_log() == {'FINISHED'}
    assert "engine.log" in capsys.readouterr().out
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "crashed.blend"))
    scene.jokr.state = 'idle'  # stale mirrors: the reload must replace them from events.jsonl
    bpy.ops.wm.save_mainfile()
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "crashed.blend"))
    reopened = bpy.context.scene.jokr
    assert reopened.state == 'failed' and "CUDA went away" in reopened.error_message


@pytest.mark.usefixtures("addon")
def test_cancel_then_resume(tiny_clips, monkeypatch, tmp_path):
    monkeypatch.setenv("JOKR_FAKE_ITERATIONS", "40")
    monkeypatch.setenv("JOKR_FAKE_SLEEP", "0.1")
    scene = set_up_scene(bpy, tiny_clips)
    assert not bpy.ops.jokr.cancel.poll()
    bpy.ops.jokr.train()
    from jokr_blender.blender import session, timers

    while scene.jokr.iteration < 2:
        session.manager.pump(timeout=0.05)
        timers.poll_jobs()
    assert scene.jokr.state == 'training' and not bpy.ops.jokr.train.poll()
    assert bpy.ops.jokr.cancel() == {'FINISHED'}
    assert scene.jokr.state == 'cancelling'
    pump()
    assert scene.jokr.state == 'cancelled' and scene.jokr.can_resume
    stopped_at = scene.jokr.iteration
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "cancelled.blend"))
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "cancelled.blend"))
    scene = bpy.context.scene
    assert scene.jokr.state == 'cancelled' and scene.jokr.can_resume  # reopened: still resumable
    monkeypatch.setenv("JOKR_FAKE_SLEEP", "0")
    assert bpy.ops.jokr.resume(wait=True) == {'FINISHED'}
    assert scene.jokr.state == 'finished' and scene.jokr.iteration == 40 and stopped_at < 40


@pytest.mark.usefixtures("addon")
def test_strip_deleted_while_training(tiny_clips, monkeypatch):
    monkeypatch.setenv("JOKR_FAKE_SLEEP", "0.05")
    scene = set_up_scene(bpy, tiny_clips)
    bpy.ops.jokr.train()
    from jokr_blender.blender import compat

    editor = scene.sequence_editor
    getattr(editor, compat.STRIPS).remove(compat.find_strip(scene, "cat"))
    pump()
    assert scene.jokr.state == 'finished' and scene.jokr.job_dir  # the job is kept
    for operator in (bpy.ops.jokr.import_keypoints, bpy.ops.jokr.render_strip):
        with pytest.raises(RuntimeError, match="Strip 'cat' \\(clip A\\) is not in the sequencer any more"):
            operator()


def write_movie(path, fps, frames=15):
    """A small .mp4 written by the engine's own OpenCV (Blender's Python has none)."""
    code = ("import cv2, numpy as np, sys\n"
            "codec = cv2.VideoWriter_fourcc(*'mp4v')\n"
            "w = cv2.VideoWriter(sys.argv[1], codec, float(sys.argv[2]), (32, 16))\n"
            "for i in range(int(sys.argv[3])):\n"
            "    f = np.zeros((16, 32, 3), np.uint8); f[4:10, i:i + 6] = 255; w.write(f)\n"
            "w.release()\n")
    result = subprocess.run([ENGINE_PYTHON, "-c", code, str(path), str(fps), str(frames)],
                            capture_output=True)
    if result.returncode != 0 or not path.exists():
        pytest.skip("no OpenCV at hand to write a test movie")
    return path


@pytest.mark.usefixtures("addon")
def test_movie_strips_and_different_fps(tiny_clips, tmp_path, capsys):
    from jokr_blender.blender import compat, strips

    movie = write_movie(tmp_path / "cat30.mp4", 30)
    matte = write_movie(tmp_path / "cat30_matte.mp4", 30)
    scene = set_up_scene(bpy, tiny_clips)  # the image strips run at the scene's 24 fps
    editor = scene.sequence_editor
    add_movie = getattr(editor, compat.STRIPS).new_movie
    strip = add_movie(name="cat30", filepath=str(movie), channel=3, frame_start=1)
    add_movie(name="matte", filepath=str(matte), channel=4, frame_start=1)
    strip.frame_offset_start = 2
    scene.jokr.clip_a.strip = "cat30"
    scene.jokr.clip_a.mask_source = 'ALPHA'
    with pytest.raises(RuntimeError, match="Mask 'Alpha' of clip A needs an image sequence"):
        bpy.ops.jokr.train()
    scene.jokr.clip_a.mask_source = 'MATTE_STRIP'
    scene.jokr.clip_a.matte_strip = "matte"
    assert bpy.ops.jokr.train() == {'FINISHED'}
    assert "Clip A runs at 30 fps and clip B at 24 fps" in capsys.readouterr().out
    pump()
    clip_a = job_spec(scene)["A"]
    assert clip_a == {"path": str(movie), "start": 2, "count": 13, "mask": str(matte)}
    footage = strips.footage(strip)
    assert (footage.source, footage.frame_start, footage.frame_offset, footage.frame_duration) == \
        ('MOVIE', 3, 2, 13)


@pytest.mark.usefixtures("addon")
def test_job_folder_that_cannot_be_written(tiny_clips, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the job root should be")
    prefs().job_root = str(blocker)
    scene = set_up_scene(bpy, tiny_clips)
    with pytest.raises(RuntimeError, match="Cannot write the job folder"):
        bpy.ops.jokr.train()
    assert scene.jokr.job_dir == "" and scene.jokr.state == 'idle'


@pytest.mark.usefixtures("addon")
def test_undo_while_training_keeps_the_running_job(tiny_clips, monkeypatch):
    """Undoing past Train restores the scene from before it, but the engine still runs: the panel must
    still show that job, so Cancel reaches it."""
    from jokr_blender.blender import session, timers

    monkeypatch.setenv("JOKR_FAKE_ITERATIONS", "40")
    monkeypatch.setenv("JOKR_FAKE_SLEEP", "0.1")
    set_up_scene(bpy, tiny_clips)
    bpy.ops.ed.undo_push(message="strips set up")
    assert bpy.ops.jokr.train() == {'FINISHED'}
    bpy.context.scene.frame_current = 9
    bpy.ops.ed.undo_push(message="artist edit")
    bpy.ops.ed.undo()  # back to "strips set up": from Python, Train pushes no step of its own
    scene = bpy.context.scene
    assert scene.jokr.job_dir, "the running job was lost by undo"
    timers.poll_jobs()
    assert scene.jokr.state in ('starting', 'training') and bpy.ops.jokr.cancel.poll()
    assert bpy.ops.jokr.cancel() == {'FINISHED'}
    pump()
    assert scene.jokr.state == 'cancelled' and not session.manager.is_running()
