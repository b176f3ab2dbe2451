"""Render Strip / Render Current Frame against the fake engine, which draws keypoint 0 of the driving clip
as a white square: edits of that empty must show in exactly the frames that were edited."""

import filecmp
import os
import shutil

import bpy
import pytest

from .helpers import pump, set_up_scene

JOB = "JOKR.job"


@pytest.fixture
def imported(addon, tiny_clips):
    scene = set_up_scene(bpy, tiny_clips, frame_start_a=11, frame_start_b=1)
    bpy.ops.jokr.train(wait=True)
    bpy.ops.jokr.import_keypoints(wait=True)
    return scene


def result_strips(scene):
    from jokr_blender.blender import compat

    return [s for s in compat.all_strips(scene) if s.get("jokr_job")]


def nudge(label, index, frames, dx):
    obj = bpy.data.objects[f"{JOB}.{label}.kp{index:02d}"]
    from jokr_blender.blender import compat

    fcurve = compat.location_fcurves(obj)[0]
    for frame in frames:
        obj.location.x = fcurve.evaluate(frame) + dx
        obj.keyframe_insert("location", index=0, frame=frame)


def test_render_strip_adds_an_aligned_strip_and_updates_it(imported, tmp_path):
    from jokr_blender.blender import compat

    scene = imported
    assert bpy.ops.jokr.render_strip() == {'FINISHED'}
    pump()
    [strip] = result_strips(scene)
    assert scene.jokr.result_strip == strip.name and "updated" in scene.jokr.task_text
    assert strip.type == 'IMAGE' and strip.blend_type == 'ALPHA_OVER' and strip.channel == 2  # right above A
    assert (strip.frame_final_start, strip.frame_final_duration) == (11, 12)  # frame for frame over clip A
    assert [e.filename for e in strip.elements] == [f"{i:05d}.png" for i in range(12)]
    folder = bpy.path.abspath(strip.directory)
    shutil.copytree(folder, tmp_path / "before")

    strip.name = "renamed by the artist"
    nudge("A", 0, (14, 15, 16), 0.4)  # clip A frames 3, 4, 5
    assert bpy.ops.jokr.render_strip(wait=True) == {'FINISHED'}
    assert [s for s in compat.all_strips(scene) if s.type == 'IMAGE' and s.get("jokr_job")] == [strip]
    assert scene.jokr.result_strip == "renamed by the artist"  # updated, not added
    changed = [i for i in range(12) if not filecmp.cmp(tmp_path / "before" / f"{i:05d}.png",
                                                       os.path.join(folder, f"{i:05d}.png"), shallow=False)]
    assert changed == [3, 4, 5]


def test_render_current_frame(imported, tmp_path):
    scene = imported
    bpy.ops.jokr.render_strip(wait=True)
    [strip] = result_strips(scene)
    folder = bpy.path.abspath(strip.directory)
    shutil.copytree(folder, tmp_path / "before")
    nudge("A", 0, (19,), -0.3)
    scene.frame_set(19)
    assert bpy.ops.jokr.render_frame(wait=True) == {'FINISHED'}
    assert result_strips(scene) == [strip] and strip.frame_final_duration == 12
    changed = [i for i in range(12) if not filecmp.cmp(tmp_path / "before" / f"{i:05d}.png",
                                                       os.path.join(folder, f"{i:05d}.png"), shallow=False)]
    assert changed == [8]
    scene.frame_set(40)
    with pytest.raises(RuntimeError, match="Frame 40 is outside the keyed frames of clip A"):
        bpy.ops.jokr.render_frame()


def test_first_render_of_one_frame_shows_that_frame(imported):
    scene = imported
    scene.frame_set(15)
    bpy.ops.jokr.render_frame(wait=True)
    [strip] = result_strips(scene)
    assert (strip.frame_final_start, strip.frame_final_duration) == (15, 1)
    bpy.ops.jokr.render_strip(wait=True)
    assert result_strips(scene) == [strip]
    assert (strip.frame_final_start, strip.frame_final_duration) == (11, 12)


def test_result_follows_a_moved_clip(imported, capsys):
    from jokr_blender.blender import compat

    scene = imported
    bpy.ops.jokr.render_strip(wait=True)
    compat.find_strip(scene, "cat").frame_start = 51
    bpy.ops.jokr.render_strip(wait=True)
    [strip] = result_strips(scene)
    assert strip.frame_final_start == 51
    assert "moved since the keypoints were imported" in capsys.readouterr().out


def test_render_needs_the_empties(addon, tiny_clips):
    set_up_scene(bpy, tiny_clips)
    bpy.ops.jokr.train(wait=True)
    with pytest.raises(RuntimeError, match="Import the keypoints first"):
        bpy.ops.jokr.render_strip()
    scene = bpy.context.scene
    scene.jokr.keypoint_source = 'TRACKS'
    bpy.ops.jokr.import_keypoints(wait=True)
    scene.jokr.keypoint_source = 'EMPTIES'  # the tracks are there, the empties are not
    with pytest.raises(RuntimeError, match="rendering BA reads clip B's keypoint empties"):
        bpy.ops.jokr.render_strip(direction='BA')


def test_keypoint_dragged_out_of_the_frame_is_named(imported):
    nudge("A", 1, (17,), 50.0)
    with pytest.raises(RuntimeError, match="JOKR.job.A.kp01 is too far outside the frame at frame 17"):
        bpy.ops.jokr.render_strip()
    assert not result_strips(imported)


def test_moved_project_keeps_one_result_strip(addon, tiny_clips, tmp_path):
    """The job sits beside the .blend (//jokr/job): after the whole project moved, rendering again must
    update its strip, not add a second one, and the strip must read the moved frames."""
    from jokr_blender.blender import compat

    bpy.context.preferences.addons["jokr_blender"].preferences.job_root = ""  # the default: beside the .blend
    project = tmp_path / "project"
    project.mkdir()
    scene = set_up_scene(bpy, tiny_clips, frame_start_a=11)
    bpy.ops.wm.save_as_mainfile(filepath=str(project / "shot.blend"))
    scene = compat.sequencer_scene(bpy.context)
    assert scene.jokr.clip_a.strip == "cat"
    bpy.ops.jokr.train(wait=True)
    bpy.ops.jokr.import_keypoints(wait=True)
    assert bpy.ops.jokr.render_strip(wait=True) == {'FINISHED'}
    bpy.ops.wm.save_mainfile()
    moved = tmp_path / "moved"  # same depth: the clips, outside the project, stay reachable
    shutil.move(project, moved)
    bpy.ops.wm.open_mainfile(filepath=str(moved / "shot.blend"))
    scene = compat.sequencer_scene(bpy.context)
    assert bpy.ops.jokr.render_strip(wait=True) == {'FINISHED'}
    [strip] = result_strips(scene)
    assert os.path.normpath(bpy.path.abspath(strip.directory)).startswith(str(moved))


def test_resolution_changed_after_import_keeps_the_keypoints(imported):
    """Artists change the output size: the keys must keep meaning the same footage positions."""
    import json

    import numpy as np

    from jokr_blender.blender import render

    scene = imported
    assert not render.views_changed(JOB[len("JOKR."):], scene)
    scene.render.resolution_x, scene.render.resolution_y = 320, 160  # was 1920×1080 at import
    assert render.views_changed(JOB[len("JOKR."):], scene) == ["A", "B"]  # Render warns
    assert bpy.ops.jokr.render_strip(wait=True) == {'FINISHED'}
    job_dir = bpy.path.abspath(scene.jokr.job_dir)
    with open(os.path.join(job_dir, "keypoints.json")) as engine, \
            open(os.path.join(job_dir, "keypoints.edited.json")) as edited:
        engine_data, edited_data = json.load(engine), json.load(edited)
    for label in ("A", "B"):
        assert np.allclose(edited_data["clips"][label]["keypoints"], engine_data["clips"][label]["keypoints"],
                           atol=1e-5)
