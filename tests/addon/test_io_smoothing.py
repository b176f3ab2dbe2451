"""Smooth Keypoints without bpy: the `locked` grid from the artist's key frames, and `jokr-engine smooth` run
for real (torch-free): its jitter report, locked keys kept bit-identical, and its errors passed on."""

import json
import os

import numpy as np
import pytest

from .helpers import ENGINE_PYTHON, REPO

pytestmark = pytest.mark.skipif(not os.path.isfile(ENGINE_PYTHON), reason="no engine interpreter")


def test_locked_grid_from_scene_frames(jio):
    grid = jio.smoothing.locked_grid(4, 3, {0: [10.0, 12.4], 2: [13.0, 9.0, 30.0]}, first_frame=10)
    assert grid == [[True, False, False], [False, False, False], [True, False, False], [False, False, True]]


def keypoint_record(frames=20, keypoints=2, seed=3):
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None]
    points = 0.5 + 0.2 * np.sin(t / 6.0 + np.arange(keypoints)[None, :, None])
    points = points + rng.normal(0, 0.01, (frames, keypoints, 2))
    return {"format": "jokr.keypoints", "version": 1, "num_keypoints": keypoints, "coordinates": "frame",
            "affine": [[1, 0, 0], [0, 1, 0]],
            "clips": {"A": {"source": "/x", "start": 0, "frame_count": frames, "frame_size": [200, 100],
                            "pad": 0.2, "model_size": 64, "crop_boxes": [[0, 0, 200, 100]] * frames,
                            "keypoints": points.tolist()}}}


def engine_env(jio):
    return jio.process.engine_environment(str(REPO))


def test_real_smooth_reports_jitter_and_keeps_locked_keys(jio, tmp_path):
    record = keypoint_record()
    record["clips"]["A"]["locked"] = jio.smoothing.locked_grid(20, 2, {1: [7]}, 0)
    source = tmp_path / "in.json"
    source.write_text(json.dumps(record))
    outputs = jio.smoothing.run_smooth(ENGINE_PYTHON, engine_env(jio), str(source), str(tmp_path / "out.json"),
                                       ("A",), 4.0, str(tmp_path))
    [clip] = jio.smoothing.jitter_report(outputs)
    assert clip.locked == 1 and clip.after_px < clip.before_px / 3
    assert clip.describe().startswith(f"clip A: jitter {clip.before_px:.2f} → {clip.after_px:.2f} px, 1 key")
    smoothed = json.loads((tmp_path / "out.json").read_text())["clips"]["A"]["keypoints"]
    assert smoothed[7][1] == record["clips"]["A"]["keypoints"][7][1]  # the artist's key, bit-identical
    assert smoothed[8][1] != record["clips"]["A"]["keypoints"][8][1]


def test_engine_errors_are_passed_on(jio, tmp_path):
    record = keypoint_record()
    record["clips"]["A"]["locked"] = [[True]]  # wrong shape
    source = tmp_path / "in.json"
    source.write_text(json.dumps(record))
    with pytest.raises(jio.smoothing.SmoothError, match="locked"):
        jio.smoothing.run_smooth(ENGINE_PYTHON, engine_env(jio), str(source), str(tmp_path / "out.json"), (),
                                 4.0, str(tmp_path))
    with pytest.raises(jio.smoothing.SmoothError, match="Engine Python not found"):
        jio.smoothing.run_smooth(str(tmp_path / "nope"), {}, str(source), str(tmp_path / "o.json"), (), 4.0,
                                 str(tmp_path))
