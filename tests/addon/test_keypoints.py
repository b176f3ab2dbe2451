"""Import Keypoints: the camera rigs and the keypoint empties, checked against Blender's own camera
projection; importing twice, keeping the artist's edits, resetting, undo; bulk keyframe speed."""

import json
import os
import time

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view

from .helpers import pump, set_up_scene, write_png_sequence

JOB = "JOKR.job"


@pytest.fixture
def trained(addon, tiny_clips):
    """A scene whose fake job is trained (clip A: 12 frames from frame 1, clip B: 10 frames from frame 30)."""
    scene = set_up_scene(bpy, tiny_clips, frame_start_a=1, frame_start_b=30)
    bpy.ops.jokr.train()
    pump()
    assert scene.jokr.state == 'finished'
    return scene


def engine_keypoints(scene):
    with open(os.path.join(scene.jokr.job_dir, "keypoints.json")) as stream:
        return json.load(stream)


def empties(label):
    return sorted(o.name for o in bpy.data.objects if o.name.startswith(f"{JOB}.{label}.kp") and o.type == 'EMPTY')


def seen_in_camera(scene, obj, camera, frame):
    """Where Blender's own projection puts the empty in the camera view, as frame coordinates."""
    scene.frame_set(frame)
    view = world_to_camera_view(scene, camera, obj.matrix_world.translation)
    return view.x, 1.0 - view.y  # camera view: origin bottom-left, y up; frame: top-left, y down


def test_import_builds_rigs_over_the_footage(trained):
    scene = trained
    scene.render.resolution_x, scene.render.resolution_y = 320, 160  # the clips' shape (32×16)
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}  # keypoints.json is missing: the engine runs
    assert not bpy.data.objects.get(f"{JOB}.A.camera")
    pump()
    assert "4 keypoint empties keyed" not in scene.jokr.task_text  # 8 = 4 per clip
    assert "8 keypoint empties keyed" in scene.jokr.task_text
    data = engine_keypoints(scene)
    assert empties("A") == [f"{JOB}.A.kp{i:02d}" for i in range(4)] and len(empties("B")) == 4
    for label, first_frame, count in (("A", 1, 12), ("B", 30, 10)):
        camera = bpy.data.objects[f"{JOB}.{label}.camera"]
        assert camera.data.type == 'ORTHO' and camera.data.show_background_images
        background = camera.data.background_images[0]
        assert background.frame_method == 'STRETCH' and background.image.source == 'SEQUENCE'
        user = background.image_user
        assert (user.frame_start, user.frame_duration) == (first_frame, count)
        assert background.image_user.frame_offset == -1  # file 00000.png shows on the strip's first frame
        for index in range(4):
            obj = bpy.data.objects[f"{JOB}.{label}.kp{index:02d}"]
            assert obj.parent == camera and obj.type == 'EMPTY'
            assert tuple(obj.lock_location) == (False, False, True)
            assert obj.users_collection[0].name == f"{JOB}.{label}"
            other = bpy.data.objects[f"{JOB}.{'B' if label == 'A' else 'A'}.kp{index:02d}"]
            marker, other_marker = (bpy.data.objects[o.name + ".dot"] for o in (obj, other))
            assert marker.parent == obj and marker.hide_select and marker.type == 'MESH'
            colour = tuple(marker.active_material.diffuse_color)
            assert colour == tuple(other_marker.active_material.diffuse_color)  # same keypoint, same colour
            assert key_count(obj) == [count, count]
            for frame in (first_frame, first_frame + count // 2, first_frame + count - 1):
                expected = data["clips"][label]["keypoints"][frame - first_frame][index]
                assert seen_in_camera(scene, obj, camera, frame) == pytest.approx(expected, abs=1e-5)
    colours = {tuple(bpy.data.objects[f"{JOB}.A.kp{i:02d}.dot"].active_material.diffuse_color) for i in range(4)}
    assert len(colours) == 4
    assert scene.camera.name == f"{JOB}.A.camera"


def test_map_holds_for_another_render_shape(trained):
    trained.render.resolution_x, trained.render.resolution_y = 1920, 1080
    assert bpy.ops.jokr.import_keypoints(wait=True) == {'FINISHED'}
    camera = bpy.data.objects[f"{JOB}.B.camera"]
    obj = bpy.data.objects[f"{JOB}.B.kp02"]
    expected = engine_keypoints(trained)["clips"]["B"]["keypoints"][3][2]
    assert seen_in_camera(trained, obj, camera, 33) == pytest.approx(expected, abs=1e-5)


def key_count(obj):
    from jokr_blender.blender import compat

    return [len(fc.keyframe_points) for fc in compat.location_fcurves(obj)]


def test_importing_twice_updates_in_place_and_keeps_edits(trained):
    bpy.ops.jokr.import_keypoints(wait=True)
    objects_before = len(bpy.data.objects)
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}  # the file is current: no engine run
    assert len(bpy.data.objects) == objects_before and len(bpy.data.collections) == 3
    edited = bpy.data.objects[f"{JOB}.A.kp01"]
    assert key_count(edited) == [12, 12]
    edited.location.x += 0.3
    edited.keyframe_insert("location", index=0, frame=5)
    edited_x = _evaluate(edited, 5)
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}
    assert _evaluate(edited, 5) == pytest.approx(edited_x)  # kept
    assert bpy.ops.jokr.import_keypoints(reset=True) == {'FINISHED'}
    assert _evaluate(edited, 5) != pytest.approx(edited_x)  # replaced on request
    assert len(bpy.data.objects) == objects_before


def _evaluate(obj, frame):
    from jokr_blender.blender import compat

    return compat.location_fcurves(obj)[0].evaluate(frame)


def test_reimport_reports_kept_edits(trained, capsys):
    bpy.ops.jokr.import_keypoints(wait=True)
    obj = bpy.data.objects[f"{JOB}.B.kp03"]
    obj.location.y -= 0.2
    obj.keyframe_insert("location", index=1, frame=31)
    bpy.ops.jokr.import_keypoints()
    out = capsys.readouterr().out
    assert "kept 1 key you set on JOKR.job.B.kp03 (Reset to Engine Keypoints replaces them)" in out


def test_undo_resyncs_the_panel_with_the_job(addon, tiny_clips):
    scene = set_up_scene(bpy, tiny_clips)
    bpy.ops.jokr.train()
    bpy.ops.ed.undo_push(message="while training")  # this step's mirrors say "starting"
    pump()
    bpy.context.scene.frame_current = 7
    bpy.ops.ed.undo_push(message="later")
    bpy.ops.ed.undo()
    scene = bpy.context.scene
    assert scene.frame_current != 7 and scene.jokr.state == 'finished'


def test_undo_after_import(trained):
    bpy.ops.ed.undo_push(message="before import")
    bpy.ops.jokr.import_keypoints(wait=True)
    bpy.ops.ed.undo_push(message="after import")
    assert bpy.data.objects.get(f"{JOB}.A.kp00")
    bpy.ops.ed.undo()
    scene = bpy.context.scene
    assert bpy.data.objects.get(f"{JOB}.A.kp00") is None
    assert scene.jokr.state == 'finished' and scene.jokr.job_dir
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}  # and it builds again
    assert bpy.data.objects.get(f"{JOB}.A.kp00")


def test_import_before_training_and_stale_keypoints(addon, tiny_clips, capsys):
    scene = set_up_scene(bpy, tiny_clips)
    assert not bpy.ops.jokr.import_keypoints.poll()  # no job yet
    scene.jokr.job_dir = str(tiny_clips["cat"])  # a folder, but no trained model in it
    with pytest.raises(RuntimeError, match="no trained model yet"):
        bpy.ops.jokr.import_keypoints()
    scene.jokr.job_dir = ""
    bpy.ops.jokr.train(wait=True)
    bpy.ops.jokr.import_keypoints(wait=True)
    checkpoint = os.path.join(scene.jokr.job_dir, "checkpoints", "latest.json")
    later = os.path.getmtime(checkpoint) + 10
    os.utime(checkpoint, (later, later))  # training went on since the keypoints were written
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}
    assert "Extracting keypoints" in capsys.readouterr().out
    pump()


def test_bulk_keyframes_14_keypoints_1000_frames(addon, tmp_path):
    """Not a timing assertion: prints the figure (see docs/ADDON.md)."""
    from jokr_blender.blender import compat, keypoints
    from jokr_blender.io.keypoint_file import KeypointFile

    from .helpers import new_image_strip

    frames, count = write_png_sequence(tmp_path / "long", 1000, 8, 4), 1000
    scene = compat.sequencer_scene(bpy.context)
    for name, channel in (("long_a", 1), ("long_b", 2)):
        new_image_strip(scene, name, frames, channel=channel)
    scene.jokr.clip_a.strip, scene.jokr.clip_b.strip = "long_a", "long_b"
    rng = np.random.default_rng(1)

    def clip():
        return {"source": str(frames), "start": 0, "frame_count": count, "frame_size": [8, 4],
                "keypoints": rng.uniform(0, 1, (count, 14, 2)).tolist()}

    data = KeypointFile({"format": "jokr.keypoints", "version": 1, "num_keypoints": 14, "affine": [],
                         "clips": {"A": clip(), "B": clip()}})
    started = time.perf_counter()
    result = keypoints.import_rig(scene, scene, scene.jokr, "bench", data, reset=False)
    seconds = time.perf_counter() - started
    print(f"\nbulk keyframes: 2 clips × 14 keypoints × 1000 frames × (x, y) in {seconds:.3f} s")
    assert result.written == 28
    assert key_count(bpy.data.objects["JOKR.bench.A.kp13"]) == [1000, 1000]


def test_undo_of_an_edit_after_a_background_import_keeps_the_rig(trained):
    """The rig is built by the timer when the engine is done, outside the Import operator: it needs an
    undo step of its own, or undoing the artist's first edit would delete every empty."""
    bpy.ops.ed.undo_push(message="before import")
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}  # keypoints.json is missing: the engine runs
    pump()
    empty = bpy.data.objects[f"{JOB}.A.kp00"]
    x_before = empty.location.x
    empty.location.x += 0.2
    bpy.ops.ed.undo_push(message="artist moves an empty")
    bpy.ops.ed.undo()
    empty = bpy.data.objects.get(f"{JOB}.A.kp00")
    assert empty is not None, "undoing the edit took the whole rig away"
    assert empty.location.x == pytest.approx(x_before)


def test_rig_names_are_unique_for_long_job_names_and_fit_blender(addon):
    from jokr_blender.blender.keypoints import camera_name, empty_name, rig_prefix

    stem = "cat_walk_onto_the_fox_with_the_long_name_of_the_shot_"
    take1, take2 = stem + "take1", stem + "take2"
    assert rig_prefix(take1) != rig_prefix(take2)
    assert rig_prefix("cat_fox") == "JOKR.cat_fox"  # short names are kept as they are
    for name in (take1, take2, "чёрная_кошка_и_лиса_в_высокой_траве_дубль_2"):
        for full in (camera_name(name, "A"), empty_name(name, "B", 99)):
            assert len(full.encode()) <= 63  # Blender would cut a longer name, and two rigs could meet again
            obj = bpy.data.objects.new(full, None)
            assert obj.name == full
            bpy.data.objects.remove(obj)
