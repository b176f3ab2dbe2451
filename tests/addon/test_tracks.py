"""Keypoints as Movie Clip tracks: one track per keypoint with a marker per frame, the artist's markers kept
on re-import, and Render reading the tracks back (a deleted track or a disabled marker: the engine's)."""

import json
import os

import bpy
import numpy as np
import pytest

from .helpers import set_up_scene
from .test_keypoint_edits import Button, job_file, shift_engine_keypoints
from .test_panels import draw_all


@pytest.fixture
def tracked(addon, tiny_clips):
    """Clip A: 12 frames from frame 1; clip B: 10 frames from frame 30; keypoints imported as tracks."""
    scene = set_up_scene(bpy, tiny_clips, frame_start_a=1, frame_start_b=30)
    scene.jokr.keypoint_source = 'TRACKS'
    bpy.ops.jokr.train(wait=True)
    assert bpy.ops.jokr.import_keypoints(wait=True) == {'FINISHED'}
    return scene


def engine_points(scene, label):
    with open(job_file(scene, "keypoints.json")) as stream:
        return np.array(json.load(stream)["clips"][label]["keypoints"])


def movie_clip(label):
    from jokr_blender.blender import tracks

    return tracks.find_clip("job", label)


def test_tracks_hold_the_engines_keypoints(tracked):
    from jokr_blender.blender import keypoints

    assert not any(o.get("jokr_role") == "keypoint" for o in bpy.data.objects)  # tracks instead of empties
    for label, first, count in (("A", 1, 12), ("B", 30, 10)):
        clip = movie_clip(label)
        assert clip.name == f"JOKR.job.{label}" and clip.frame_start == first and clip.size[:] == (32, 16)
        assert clip.frame_duration >= count
        points = engine_points(tracked, label)
        assert [t.name for t in clip.tracking.tracks] == ["kp00", "kp01", "kp02", "kp03"]
        for index, track in enumerate(clip.tracking.tracks):
            assert track.use_custom_color
            assert tuple(track.color) == pytest.approx(keypoints.keypoint_color(index)[:3])
            assert sorted(m.frame for m in track.markers) == list(range(1, count + 1))
            for marker in track.markers:
                x, y = points[marker.frame - 1, index]
                assert tuple(marker.co) == pytest.approx((x, 1.0 - y), abs=1e-6)  # y up in the clip
                assert not marker.is_keyed and not marker.mute


def move_marker(label, index, clip_frame, dx, dy):
    track = movie_clip(label).tracking.tracks[index]
    marker = track.markers.find_frame(clip_frame, exact=True)
    marker.co = (marker.co[0] + dx, marker.co[1] + dy)
    return tuple(marker.co)


def test_reimport_keeps_the_markers_the_artist_moved(tracked, capsys):
    moved = move_marker("A", 1, 4, 0.1, -0.05)
    shift_engine_keypoints(tracked, 0.02)
    capsys.readouterr()
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}
    assert "kept 1 marker you set on JOKR.job.A › kp01" in capsys.readouterr().out
    points = engine_points(tracked, "A")
    track = movie_clip("A").tracking.tracks["kp01"]
    for marker in track.markers:
        expected = moved if marker.frame == 4 else (points[marker.frame - 1, 1, 0], 1 - points[marker.frame - 1, 1, 1])
        assert tuple(marker.co) == pytest.approx(expected, abs=1e-6)
    from jokr_blender.blender import tracks

    assert tracks.count_artist_markers("job") == 1
    button = Button(tracked)
    assert button.press() == {'RUNNING_MODAL'}
    assert button.asked[0]["message"] == "Discard the 1 markers you set and use the engine's keypoints everywhere?"
    assert bpy.ops.jokr.import_keypoints(reset=True) == {'FINISHED'}
    assert tracks.count_artist_markers("job") == 0


def test_render_reads_the_tracks(tracked, capsys):
    scene = tracked
    move_marker("A", 0, 3, 0.125, 0.0)  # clip frame 3 = engine frame 2
    movie_clip("A").tracking.tracks["kp01"].markers.find_frame(5, exact=True).mute = True
    moved_away = move_marker("A", 1, 5, 0.3, 0.0)  # disabled: it does not count
    # A track's name says which keypoint it is (tracks hold no custom properties): renamed, or deleted in
    # the Clip editor (Python cannot delete a track), keypoint 3 has no track.
    movie_clip("A").tracking.tracks["kp03"].name = "tail"
    labels = [kw["text"] for name, _a, kw in draw_all(bpy.context) if name == "label"]
    assert "Keypoint 3 without track: the engine's used" in labels
    capsys.readouterr()
    assert bpy.ops.jokr.render_strip(wait=True) == {'FINISHED'}
    assert "Clip A's keypoint 3 has no track: the engine's are used" in capsys.readouterr().out
    with open(job_file(scene, "keypoints.edited.json")) as stream:
        edited = np.array(json.load(stream)["clips"]["A"]["keypoints"])
    engine = engine_points(scene, "A")
    expected = engine.copy()
    expected[2, 0, 0] += 0.125
    assert np.allclose(edited, expected, atol=1e-6)
    assert moved_away[0] != pytest.approx(edited[4, 1, 0])
    from jokr_blender.blender import compat

    result = next(s for s in compat.all_strips(scene) if s.get("jokr_job"))
    assert result.frame_final_start == 1 and result.frame_final_duration == 12


def test_render_current_frame_from_tracks(tracked):
    scene = tracked
    scene.frame_set(35)  # clip B's frame 5
    assert bpy.ops.jokr.render_frame(direction='BA', wait=True) == {'FINISHED'}
    folder = os.path.join(bpy.path.abspath(scene.jokr.job_dir), "render_lookA")
    assert os.listdir(folder) == ["00005.png"]


def test_movie_clip_paths_are_relative_to_the_saved_blend(addon, tiny_clips, tmp_path):
    bpy.context.preferences.addons["jokr_blender"].preferences.job_root = ""
    scene = set_up_scene(bpy, tiny_clips)
    scene.jokr.keypoint_source = 'TRACKS'
    (tmp_path / "project").mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "project" / "shot.blend"))
    bpy.ops.jokr.train(wait=True)
    bpy.ops.jokr.import_keypoints(wait=True)
    for label in ("A", "B"):
        clip = movie_clip(label)
        assert clip.filepath.startswith("//") and os.path.isfile(bpy.path.abspath(clip.filepath))
