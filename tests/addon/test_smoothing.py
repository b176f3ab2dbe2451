"""Smooth Keypoints (issue 14, point 4) with the real engine's `smooth` (torch-free, under a second): the
engine's keys are smoothed, the artist's keys and markers never move and stay the artist's, and the jitter
before and after is reported. Training and keypoints come from the fake engine."""

import json
import os
import re

import bpy
import numpy as np
import pytest

from .helpers import ADDON, ENGINE_PYTHON, REPO, set_up_scene
from .test_keypoint_edits import empty, job_file, keys
from .test_tracks import move_marker, movie_clip

NOISE = 0.01  # of the frame, frame to frame: a few pixels of jitter


def add_noise_and_reimport(scene):
    """The engine's keypoints with frame-to-frame noise, imported (no artist keys yet: all the engine's)."""
    path = job_file(scene, "keypoints.json")
    with open(path) as stream:
        data = json.load(stream)
    rng = np.random.default_rng(7)
    for clip in data["clips"].values():
        points = np.array(clip["keypoints"])
        clip["keypoints"] = (points + rng.normal(0.0, NOISE, points.shape)).tolist()
    with open(path, "w") as stream:
        json.dump(data, stream)
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}


def use_real_engine():
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.engine_python, prefs.engine_path = ENGINE_PYTHON, str(REPO)


def second_difference(values):
    values = np.asarray(values)
    return np.abs(values[2:] - 2 * values[1:-1] + values[:-2]).mean()


def reported_jitter(text, label):
    match = re.search(rf"clip {label}: jitter ([\d.]+) → ([\d.]+) px", text)
    assert match, text
    return float(match.group(1)), float(match.group(2))


@pytest.fixture
def noisy_empties(addon, tiny_clips):
    if not os.path.isfile(ENGINE_PYTHON):
        pytest.skip("no engine interpreter")
    scene = set_up_scene(bpy, tiny_clips, frame_start_a=1, frame_start_b=30)
    bpy.ops.jokr.train(wait=True)
    bpy.ops.jokr.import_keypoints(wait=True)
    add_noise_and_reimport(scene)
    use_real_engine()
    return scene


def test_smoothing_moves_only_the_engines_keys(noisy_empties):
    from jokr_blender.blender import keyframes

    scene = noisy_empties
    edited = empty("A", 0)
    edited.location.x += 0.05
    edited.keyframe_insert("location", index=0, frame=5)  # the artist's key, on X only
    artist_key = [(f, v) for f, v, _kind in keys(edited) if f == 5]
    other = empty("A", 1)
    before = [v for _f, v, _kind in keys(other)]

    assert bpy.ops.jokr.smooth_keypoints() == {'FINISHED'}

    # The artist's key did not move and is still theirs; everything else is the engine's, smoothed.
    assert [(f, v) for f, v, _kind in keys(edited) if f == 5] == artist_key
    assert [kind for f, _v, kind in keys(edited) if f == 5] != ['GENERATED']
    assert keyframes.artist_frames(edited) == {5.0}
    assert keyframes.artist_frames(other) == set()
    after = [v for _f, v, _kind in keys(other)]
    assert {kind for _f, _v, kind in keys(other)} == {'GENERATED'}
    assert second_difference(after) < second_difference(before) / 3

    # What the engine got: exactly that key locked.
    with open(job_file(scene, "keypoints.smooth_in.json")) as stream:
        locked = json.load(stream)["clips"]["A"]["locked"]
    assert [(i, k) for i, frame in enumerate(locked) for k, on in enumerate(frame) if on] == [(4, 0)]

    # The panel says what changed, with the jitter measured by the engine.
    text = scene.jokr.task_text
    before_px, after_px = reported_jitter(text, "A")
    assert after_px < before_px / 3 and "1 key you set kept" in text
    reported_jitter(text, "B")

    # Re-importing keeps the artist's key (smoothing did not turn the engine's keys into "edits").
    assert bpy.ops.jokr.import_keypoints() == {'FINISHED'}
    assert keyframes.artist_frames(other) == set() and keyframes.artist_frames(edited) == {5.0}


def test_smoothing_one_clip_leaves_the_other(noisy_empties):
    untouched = [v for _f, v, _kind in keys(empty("B", 2))]
    assert bpy.ops.jokr.smooth_keypoints(clips='A', strength=10.0) == {'FINISHED'}
    assert [v for _f, v, _kind in keys(empty("B", 2))] == untouched
    assert "clip B" not in noisy_empties.jokr.task_text


def test_smoothing_tracks_keeps_the_markers_the_artist_moved(addon, tiny_clips):
    from jokr_blender.blender import tracks

    if not os.path.isfile(ENGINE_PYTHON):
        pytest.skip("no engine interpreter")
    scene = set_up_scene(bpy, tiny_clips, frame_start_a=1, frame_start_b=30)
    scene.jokr.keypoint_source = 'TRACKS'
    bpy.ops.jokr.train(wait=True)
    bpy.ops.jokr.import_keypoints(wait=True)
    add_noise_and_reimport(scene)
    use_real_engine()
    moved = move_marker("A", 1, 4, 0.1, -0.05)
    track = movie_clip("A").tracking.tracks[2]
    before = [tuple(track.markers.find_frame(f, exact=True).co) for f in range(1, 13)]

    assert bpy.ops.jokr.smooth_keypoints() == {'FINISHED'}

    assert tuple(movie_clip("A").tracking.tracks[1].markers.find_frame(4, exact=True).co) == moved
    assert tracks.count_artist_markers("job") == 1
    after = [tuple(track.markers.find_frame(f, exact=True).co) for f in range(1, 13)]
    assert second_difference(np.array(after)[:, 0]) < second_difference(np.array(before)[:, 0]) / 3
    before_px, after_px = reported_jitter(scene.jokr.task_text, "A")
    assert after_px < before_px / 3


@pytest.mark.usefixtures("addon")
def test_smoothing_needs_imported_keypoints(tiny_clips):
    scene = set_up_scene(bpy, tiny_clips)
    bpy.ops.jokr.train(wait=True)
    with pytest.raises(RuntimeError, match="Import the keypoints first"):
        bpy.ops.jokr.smooth_keypoints()
    assert "Import the keypoints first" in scene.jokr.task_text and scene.jokr.task_failed
