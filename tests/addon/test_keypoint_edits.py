"""Keypoint empties as tracking data: engine keys marked GENERATED, the artist's keys kept on re-import,
names the artist may change, deleted empties meaning "the engine's keypoint", Reset that asks, motion
paths, and empties that the camera sees."""

import json
import os

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view

from .helpers import set_up_scene
from .test_panels import draw_all


@pytest.fixture
def imported(addon, tiny_clips):
    """Clip A: 12 frames from frame 1; clip B: 10 frames from frame 30; keypoints imported as empties."""
    scene = set_up_scene(bpy, tiny_clips, frame_start_a=1, frame_start_b=30)
    bpy.ops.jokr.train(wait=True)
    bpy.ops.jokr.import_keypoints(wait=True)
    return scene


def empty(label, index):
    return next(o for o in bpy.data.objects if o.get("jokr_clip") == label and o.get("jokr_index") == index
                and o.get("jokr_role") == "keypoint")


def keys(obj, axis=0):
    from jokr_blender.blender import compat

    return [(p.co[0], p.co[1], p.type) for p in compat.location_fcurves(obj)[axis].keyframe_points]


def job_file(scene, name):
    return os.path.join(bpy.path.abspath(scene.jokr.job_dir), name)


def shift_engine_keypoints(scene, dx):
    """As if the engine had been trained further: every keypoint of the file moves by dx."""
    path = job_file(scene, "keypoints.json")
    with open(path) as stream:
        data = json.load(stream)
    for clip in data["clips"].values():
        clip["keypoints"] = [[[x + dx, y] for x, y in frame] for frame in clip["keypoints"]]
    with open(path, "w") as stream:
        json.dump(data, stream)


def test_engine_keys_are_generated_and_the_artists_survive_reimport(imported, capsys):
    obj = empty("A", 1)
    assert {kind for _f, _v, kind in keys(obj)} == {'GENERATED'} and len(keys(obj)) == 12
    engine_x = {f: v for f, v, _k in keys(obj)}
    # The artist presses I on frame 5 (an engine key: Blender keeps its type) and adds an extreme on 7.5.
    obj.location.x = engine_x[5] + 0.3
    obj.keyframe_insert("location", index=0, frame=5)
    obj.location.x = engine_x[8] - 0.2
    obj.keyframe_insert("location", index=0, frame=7.5, keytype='EXTREME')
    shift_engine_keypoints(imported, 0.05)  # the engine's keypoints changed since
    capsys.readouterr()
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}
    assert "kept 2 keys you set on JOKR.job.A.kp01" in capsys.readouterr().out
    after = keys(obj)
    artist = [(f, v, kind) for f, v, kind in after if kind != 'GENERATED']
    assert artist == [(5.0, pytest.approx(engine_x[5] + 0.3), 'KEYFRAME'),  # now shown as the artist's
                      (7.5, pytest.approx(engine_x[8] - 0.2), 'EXTREME')]
    frame_width = 32 / 16  # ortho_scale of the 32×16 clip: the frame is 2 units wide
    for frame, value, kind in after:
        if kind == 'GENERATED':  # every other frame: the engine's new keypoint
            assert value == pytest.approx(engine_x[frame] + 0.05 * frame_width, abs=1e-5)
    assert sorted(f for f, _v, _k in after) == [*range(1, 8), 7.5, *range(8, 13)]
    untouched = empty("A", 2)
    assert {kind for _f, _v, kind in keys(untouched)} == {'GENERATED'}
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}  # again: the same keys, nothing lost
    assert keys(obj) == after


def test_renamed_rig_is_still_the_rig(imported):
    scene = imported
    objects_before = len(bpy.data.objects)
    camera = next(o for o in bpy.data.objects if o.get("jokr_role") == "camera" and o.get("jokr_clip") == "A")
    camera.name = "cat cam"
    obj = empty("A", 0)
    obj.name = "left ear"
    obj.users_collection[0].name = "cat keypoints"
    scene.frame_set(4)
    obj.location.x += 0.25
    obj.keyframe_insert("location", index=0, frame=4)
    assert [kind for f, _v, kind in keys(obj) if f == 4] == ['GENERATED']  # Blender kept the type it keyed over
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}
    assert [kind for f, _v, kind in keys(obj) if f == 4] == ['KEYFRAME']  # Import shows it as the artist's
    assert len(bpy.data.objects) == objects_before  # found by their properties: nothing new
    assert obj.name == "left ear" and camera.name == "cat cam" and obj.users_collection[0].name == "cat keypoints"
    assert bpy.ops.jokr.render_strip(wait=True) == {'FINISHED'}
    with open(job_file(scene, "keypoints.edited.json")) as edited, open(job_file(scene, "keypoints.json")) as engine:
        edited_x = json.load(edited)["clips"]["A"]["keypoints"][3][0][0]
        engine_x = json.load(engine)["clips"]["A"]["keypoints"][3][0][0]
    assert edited_x == pytest.approx(engine_x + 0.25 / 2, abs=1e-5)  # the frame is 2 units wide


def test_a_deleted_empty_means_the_engines_keypoint(imported, capsys):
    scene = imported
    obj = empty("A", 2)
    for child in obj.children:
        bpy.data.objects.remove(child)
    bpy.data.objects.remove(obj)
    labels = [kw["text"] for name, _a, kw in draw_all(bpy.context) if name == "label"]
    assert "Keypoint 2 without empty: the engine's used" in labels
    capsys.readouterr()
    assert bpy.ops.jokr.render_strip(wait=True) == {'FINISHED'}
    assert "Clip A's keypoint 2 has no empty: the engine's are used" in capsys.readouterr().out
    with open(job_file(scene, "keypoints.edited.json")) as edited, open(job_file(scene, "keypoints.json")) as engine:
        edited_points = np.array(json.load(edited)["clips"]["A"]["keypoints"])
        engine_points = np.array(json.load(engine)["clips"]["A"]["keypoints"])
    assert np.allclose(edited_points[:, 2], engine_points[:, 2], atol=1e-9)
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}  # Import brings it back
    assert len(keys(empty("A", 2))) == 12
    labels = [kw["text"] for name, _a, kw in draw_all(bpy.context) if name == "label"]
    assert not any("without empty" in text for text in labels)


def test_a_duplicated_empty_is_named(imported):
    original = empty("B", 3)
    copy = original.copy()
    original.users_collection[0].objects.link(copy)
    with pytest.raises(RuntimeError, match=f"{original.name} and {copy.name} are both keypoint 3 of clip B"):
        bpy.ops.jokr.render_strip(direction='BA')


class Button:
    """Reset's invoke as the button calls it, with a window manager that records the confirmation asked
    (bpy without a UI cannot show the popup)."""

    def __init__(self, scene):
        self.asked, self.executed = [], False
        self.reset = True
        self.context = type("Context", (), {"scene": scene, "sequencer_scene": scene, "window_manager": self})()

    def invoke_confirm(self, operator, event, **kwargs):
        self.asked.append(kwargs)
        return {'RUNNING_MODAL'}

    def execute(self, context):
        self.executed = True
        return {'FINISHED'}

    def press(self):
        from jokr_blender.blender.operators import JOKR_OT_import_keypoints

        return JOKR_OT_import_keypoints.invoke(self, self.context, None)


def test_reset_asks_before_it_drops_the_artists_keys(imported):
    from jokr_blender.blender import keypoints

    assert keypoints.count_artist_keys("job") == (0, [])
    button = Button(imported)
    assert button.press() == {'FINISHED'} and button.executed and not button.asked  # nothing to lose: no question
    obj = empty("B", 1)
    imported.frame_set(31)
    obj.location.y += 0.1
    obj.keyframe_insert("location", frame=31)  # X, Y and Z: Z is not a keypoint's, only X/Y count
    obj.keyframe_insert("location", index=0, frame=33, keytype='BREAKDOWN')
    assert keypoints.count_artist_keys("job") == (2, [obj.name])
    button = Button(imported)
    assert button.press() == {'RUNNING_MODAL'} and not button.executed
    assert button.asked[0]["message"] == "Discard the 2 keys you set and use the engine's keypoints everywhere?"
    assert bpy.ops.jokr.import_keypoints(reset=True) == {'FINISHED'}  # a script (or the artist's OK) resets
    assert keypoints.count_artist_keys("job") == (0, [])
    assert {kind for _f, _v, kind in keys(obj)} == {'GENERATED'}


def test_motion_paths_show_each_keypoints_track(imported):
    bpy.ops.jokr.keypoint_paths(action='SHOW')
    scene = imported
    for label, first, count in (("A", 1, 12), ("B", 30, 10)):
        obj = empty(label, 1)
        path = obj.motion_path
        assert path is not None and len(path.points) == count
        for offset in (0, count - 1):
            scene.frame_set(first + offset)
            assert tuple(path.points[offset].co) == pytest.approx(tuple(obj.matrix_world.translation), abs=1e-5)
    bpy.ops.jokr.keypoint_paths(action='CLEAR')
    assert empty("A", 1).motion_path is None


def test_the_camera_sees_the_keypoints_and_the_artists_edit(imported):
    scene = imported
    obj = empty("A", 3)
    scene.frame_set(6)
    obj.location.y += 0.1
    obj.keyframe_insert("location", frame=6)  # what the artist does with I: Z is keyed too
    assert bpy.ops.jokr.render_strip(wait=True) == {'FINISHED'}
    assert [kind for f, _v, kind in keys(obj, 1) if f == 6] == ['KEYFRAME']  # Render shows it as the artist's
    for label in ("A", "B"):
        camera = next(o for o in bpy.data.objects if o.get("jokr_role") == "camera" and o.get("jokr_clip") == label)
        for index in range(4):
            view = world_to_camera_view(scene, camera, empty(label, index).matrix_world.translation)
            assert camera.data.clip_start < view.z < camera.data.clip_end  # in front, not inside clip start
            assert 0.0 <= view.x <= 1.0 and 0.0 <= view.y <= 1.0


def test_camera_backgrounds_are_relative_to_the_saved_blend(addon, tiny_clips, tmp_path):
    bpy.context.preferences.addons["jokr_blender"].preferences.job_root = ""
    set_up_scene(bpy, tiny_clips)
    (tmp_path / "project").mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "project" / "shot.blend"))
    bpy.ops.jokr.train(wait=True)
    bpy.ops.jokr.import_keypoints(wait=True)
    cameras = [o for o in bpy.data.objects if o.get("jokr_role") == "camera"]
    assert len(cameras) == 2
    for camera in cameras:
        image = camera.data.background_images[0].image
        assert image.filepath.startswith("//")
        assert os.path.isfile(bpy.path.abspath(image.filepath))
