"""The add-on against the REAL engine (`--preset tiny`, shortened), as a subprocess, on the demo clips.

One job is trained for the whole session (train → cancel → resume → finished, all through the job
manager) and saved with its .blend; the other tests reopen that file. Skipped only when the engine's
interpreter or the sample clips are missing.
"""

import filecmp
import json
import os
import shutil
import time
from pathlib import Path

import bpy
import numpy as np
import pytest

from .helpers import (
    ADDON,
    ENGINE_PYTHON,
    REPO,
    clip_folder,
    disable_addon,
    enable_addon,
    new_image_strip,
    pump,
)

pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not os.path.isfile(ENGINE_PYTHON),
                       reason=f"engine interpreter {ENGINE_PYTHON} not found (set JOKR_TEST_ENGINE_PYTHON)"),
    pytest.mark.skipif(clip_folder("cat") is None or clip_folder("fox") is None,
                       reason="sample clips cat and fox not found (demo/data or /work/shared/data)"),
]

FRAMES = 16
FIRST_B = 4  # clip B starts at image 4 of its folder: tests the strip range → --b-start mapping
SCHEDULE = {"step1_iterations": 40, "step2_iterations": 16}  # the tiny preset, shortened
JOB = "JOKR.job"


def use_real_engine():
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.engine_python = ENGINE_PYTHON
    prefs.engine_path = str(REPO)  # the engine is not pip-installed in the venv: run it from the tree
    prefs.device = 'cpu'
    return prefs


@pytest.fixture(scope="session")
def trained_job(tmp_path_factory):
    """Train once through the add-on: start, cancel during step 1, resume to the end. Saves a .blend."""
    folder = tmp_path_factory.mktemp("engine")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_addon()
    try:
        prefs = use_real_engine()
        prefs.job_root = str(folder / "jobs")
        from jokr_blender.blender import compat, session, timers

        scene = compat.sequencer_scene(bpy.context)
        scene.render.resolution_x, scene.render.resolution_y = 304, 160
        cat, fox = clip_folder("cat"), clip_folder("fox")
        strip_a = new_image_strip(scene, "cat", cat / "frames", 0, FRAMES, channel=1, frame_start=1)
        strip_b = new_image_strip(scene, "fox", fox / "frames", FIRST_B, FRAMES, channel=2, frame_start=101)
        settings = scene.jokr
        settings.clip_a.strip, settings.clip_b.strip, settings.job_name = strip_a.name, strip_b.name, "job"
        settings.preset = 'tiny'
        settings.step1_iterations, settings.step2_iterations = SCHEDULE.values()
        started = time.monotonic()
        assert bpy.ops.jokr.train() == {'FINISHED'}
        while settings.iteration < 5 and session.manager.is_running():
            session.manager.pump(timeout=0.2)
            timers.poll_jobs()
        observed = {"state_while_training": settings.state, "iteration_at_cancel": settings.iteration}
        assert bpy.ops.jokr.cancel() == {'FINISHED'}
        pump(300)
        observed |= {"state_after_cancel": settings.state, "can_resume": settings.can_resume,
                     "step_after_cancel": settings.step}
        assert bpy.ops.jokr.resume(wait=True) == {'FINISHED'}
        observed["seconds"] = time.monotonic() - started
        print(f"\nreal engine: tiny preset {SCHEDULE} with cancel + resume in {observed['seconds']:.0f} s")
        blend = folder / "trained.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        return {"blend": blend, "job_dir": Path(bpy.path.abspath(settings.job_dir)), "observed": observed,
                "final_state": settings.state}
    finally:
        disable_addon()


@pytest.fixture
def reopened(addon, trained_job):
    """The trained .blend, opened again, with the real engine configured."""
    use_real_engine()
    bpy.ops.wm.open_mainfile(filepath=str(trained_job["blend"]))
    return bpy.context.scene


def events(job_dir):
    with open(job_dir / "events.jsonl") as stream:
        return [json.loads(line) for line in stream]


def test_train_cancel_resume(trained_job):
    observed = trained_job["observed"]
    assert observed["state_while_training"] == "training"
    assert observed["state_after_cancel"] == "cancelled" and observed["can_resume"]
    assert trained_job["final_state"] == "finished"
    history = events(trained_job["job_dir"])
    checkpoints = [e for e in history if e["event"] == "checkpoint"]
    assert any(e["reason"] == "cancel" for e in checkpoints)
    resumed = [e["resumed_from"] for e in history if e["event"] == "started" and e["command"] == "train"]
    assert resumed[0] is None and resumed[1] is not None
    with open(trained_job["job_dir"] / "job.json") as stream:
        job = json.dumps(json.load(stream))
    assert str(clip_folder("fox") / "masks") in job  # the mask folder beside the frames reached the engine


def test_reopened_file_shows_the_jobs_last_state(reopened, trained_job):
    settings = reopened.jokr
    assert settings.state == 'finished' and settings.progress == pytest.approx(1.0)
    assert settings.step == 2 and settings.iteration == settings.iterations == SCHEDULE["step2_iterations"]
    assert os.path.isfile(settings.preview_path) and not settings.can_resume


def import_keypoints(scene):
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}
    pump(120)
    assert not scene.jokr.task_failed, scene.jokr.task_text
    with open(os.path.join(bpy.path.abspath(scene.jokr.job_dir), "keypoints.json")) as stream:
        return json.load(stream)


def test_import_keypoints_from_the_engine(reopened):
    from bpy_extras.object_utils import world_to_camera_view

    data = import_keypoints(reopened)
    count = data["num_keypoints"]
    assert data["clips"]["A"]["frame_count"] == data["clips"]["B"]["frame_count"] == FRAMES
    assert data["clips"]["B"]["start"] == FIRST_B
    for label, first_frame in (("A", 1), ("B", 101)):
        camera = bpy.data.objects[f"{JOB}.{label}.camera"]
        for index in range(count):
            obj = bpy.data.objects[f"{JOB}.{label}.kp{index:02d}"]
            for frame in (first_frame, first_frame + FRAMES - 1):
                reopened.frame_set(frame)
                view = world_to_camera_view(reopened, camera, obj.matrix_world.translation)
                expected = data["clips"][label]["keypoints"][frame - first_frame][index]
                assert (view.x, 1 - view.y) == pytest.approx(expected, abs=1e-5)
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}  # twice: updated in place
    assert len([o for o in bpy.data.objects if o.name.startswith(JOB)]) == 2 * (2 * count + 1)  # + markers


def read_rgba(path):
    image = bpy.data.images.load(str(path))
    try:
        pixels = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        return pixels.reshape(image.size[1], image.size[0], 4)[::-1]  # top row first
    finally:
        bpy.data.images.remove(image)


def test_edit_keypoint_and_render(reopened, tmp_path):
    from jokr_blender.blender import compat, render

    scene = reopened
    data = import_keypoints(scene)
    assert bpy.ops.jokr.render_strip(wait=True) == {'FINISHED'}
    [strip] = [s for s in compat.all_strips(scene) if s.get("jokr_job")]
    strip_a = compat.find_strip(scene, "cat")
    assert (strip.frame_final_start, strip.frame_final_duration) == (strip_a.frame_final_start, FRAMES)
    assert strip.channel == strip_a.channel + 1  # right above clip A (clip B plays later)
    assert strip.blend_type == 'ALPHA_OVER'
    folder = Path(render.render_folder(bpy.path.abspath(scene.jokr.job_dir)))
    shutil.copytree(folder, tmp_path / "before")

    # Move keypoint 0 of clip A by a fifth of the frame's width on clip frames 6, 7 and 8.
    obj = bpy.data.objects[f"{JOB}.A.kp00"]
    fcurve = compat.location_fcurves(obj)[0]
    camera = bpy.data.objects[f"{JOB}.A.camera"]
    shift = 0.2 * camera.data.ortho_scale
    edited = (6, 7, 8)
    for index in edited:
        obj.location.x = fcurve.evaluate(1 + index) + shift
        obj.keyframe_insert("location", index=0, frame=1 + index)
    assert bpy.ops.jokr.render_strip(wait=True) == {'FINISHED'}
    assert [s.name for s in compat.all_strips(scene) if s.get("jokr_job")] == [strip.name]
    changed = [i for i in range(FRAMES) if not filecmp.cmp(tmp_path / "before" / f"{i:05d}.png",
                                                           folder / f"{i:05d}.png", shallow=False)]
    assert changed == list(edited)

    # The change sits where the keypoint moved: most of it within a quarter frame of its path.
    for index in edited:
        before = read_rgba(tmp_path / "before" / f"{index:05d}.png")
        after = read_rgba(folder / f"{index:05d}.png")
        difference = np.abs(after - before).sum(axis=2)
        height, width = difference.shape
        x, y = data["clips"]["A"]["keypoints"][index][0]
        x0, x1 = (x - 0.25) * width, (x + 0.2 + 0.25) * width
        y0, y1 = (y - 0.25) * height, (y + 0.25) * height
        rows, columns = np.mgrid[0:height, 0:width]
        near = (columns >= x0) & (columns <= x1) & (rows >= y0) & (rows <= y1)
        assert difference[near].sum() > 0.5 * difference.sum(), f"frame {index}: the change is elsewhere"

    # Render Current Frame re-renders only the frame under the playhead.
    shutil.rmtree(tmp_path / "before")
    shutil.copytree(folder, tmp_path / "before")
    obj.location.x = fcurve.evaluate(1 + 12) - shift
    obj.keyframe_insert("location", index=0, frame=1 + 12)
    scene.frame_set(1 + 12)
    assert bpy.ops.jokr.render_frame(wait=True) == {'FINISHED'}
    changed = [i for i in range(FRAMES) if not filecmp.cmp(tmp_path / "before" / f"{i:05d}.png",
                                                           folder / f"{i:05d}.png", shallow=False)]
    assert changed == [12]
    assert strip.frame_final_duration == FRAMES


@pytest.mark.usefixtures("addon")
def test_engine_without_torch_reports_its_own_error(tmp_path):
    prefs = use_real_engine()
    prefs.engine_python = str(REPO / ".venv-bpy42" / "bin" / "python")  # a Python without torch
    if not os.path.isfile(prefs.engine_python):
        pytest.skip("no torch-less Python at hand")
    with pytest.raises(RuntimeError, match="torch cannot be imported: No module named 'torch'"):
        bpy.ops.jokr.check_engine(wait=True)
    prefs.engine_path = ""  # and without the engine on its path
    with pytest.raises(RuntimeError, match="No module named jokr_engine"):
        bpy.ops.jokr.check_engine(wait=True)


@pytest.mark.usefixtures("addon")
def test_check_real_engine():
    prefs = use_real_engine()
    assert bpy.ops.jokr.check_engine(wait=True) == {'FINISHED'}
    assert prefs.engine_status.startswith("JOKR engine 0.") and " on " in prefs.engine_status


def test_engine_bad_input_is_shown_and_survives_reopening(addon, tmp_path):
    use_real_engine()
    bpy.context.preferences.addons[ADDON].preferences.job_root = str(tmp_path / "jobs")
    from jokr_blender.blender import compat

    scene = compat.sequencer_scene(bpy.context)
    new_image_strip(scene, "cat", clip_folder("cat") / "frames", 0, 8, channel=1)
    new_image_strip(scene, "fox", clip_folder("fox") / "frames", 0, 8, channel=2)
    settings = scene.jokr
    settings.clip_a.strip, settings.clip_b.strip, settings.preset = "cat", "fox", 'tiny'
    settings.clip_a.mask_source, settings.clip_a.luma_threshold = 'LUMA', 1.0  # nothing is that bright
    with pytest.raises(RuntimeError, match="empty on every frame"):
        bpy.ops.jokr.train(wait=True)
    assert settings.state == 'failed' and "empty on every frame" in settings.error_message
    assert settings.error_hint  # the engine's hint reaches the panel
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "bad.blend"))
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "bad.blend"))
    assert "empty on every frame" in bpy.context.scene.jokr.error_message
