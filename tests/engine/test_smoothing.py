"""Keypoint smoothing: less jitter on noisy tracks, straight and still tracks unchanged, locked keys
bit-identical, every other field kept, and bad files refused with the place named."""

import json
from pathlib import Path

import numpy as np
import pytest

from jokr_engine.errors import JokrError
from jokr_engine.keypoint_file import read_keypoint_file, write_keypoint_file
from jokr_engine.smoothing import jitter, smooth_keypoint_file, smooth_tracks

from .engine_cli import last_error, run_engine

FRAMES, K = 48, 3
SIZE = (640, 360)


def clean_tracks() -> np.ndarray:
    """(FRAMES, K, 2): a walk cycle of 24 frames (1 s) on top of a drift across the frame."""
    t = np.arange(FRAMES)[:, None]
    phase = np.arange(K)[None, :] * 0.7
    x = 0.3 + 0.006 * t + 0.04 * np.sin(2 * np.pi * t / 24 + phase)
    y = 0.5 + 0.03 * np.cos(2 * np.pi * t / 24 + phase)
    return np.stack([x, y], axis=-1)


def noisy_tracks(seed: int = 0) -> np.ndarray:
    return clean_tracks() + np.random.default_rng(seed).normal(0, 0.004, (FRAMES, K, 2))


def write_file(path: Path, tracks: dict[str, np.ndarray], extra: dict | None = None) -> Path:
    entries = {label: {"source": f"/clips/{label}", "start": 0, "frame_size": SIZE, "pad": 0.2, "model_size": 256,
                       "crop_boxes": np.tile([0, 0, *SIZE], (len(points), 1)), "keypoints": points}
               for label, points in tracks.items()}
    write_keypoint_file(path, entries, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], K)
    if extra:
        data = json.loads(path.read_text())
        for label, fields in extra.items():
            data["clips"][label].update(fields)
        path.write_text(json.dumps(data))
    return path


def test_jitter_is_the_mean_second_difference():
    line = np.linspace(0, 1, 10)[:, None, None] * np.ones((1, 2, 2))
    assert jitter(line) == pytest.approx(0.0, abs=1e-15)
    zigzag = np.zeros((5, 1, 2))
    zigzag[1::2, 0, 0] = 1.0  # 0 1 0 1 0: every second difference has length 2
    assert jitter(zigzag) == pytest.approx(2.0)
    assert jitter(line[:2]) is None


def test_noisy_tracks_get_less_jitter_and_closer_to_the_truth():
    noisy = noisy_tracks()
    smoothed = smooth_tracks(noisy, np.zeros((FRAMES, K), dtype=bool))
    assert jitter(smoothed) < jitter(noisy) / 4
    error_before = np.linalg.norm(noisy - clean_tracks(), axis=-1).mean()
    error_after = np.linalg.norm(smoothed - clean_tracks(), axis=-1).mean()
    assert error_after < 0.75 * error_before  # the noise went, the 24-frame cycle stayed


def test_straight_and_still_tracks_are_unchanged():
    t = np.arange(FRAMES)[:, None]
    line = np.stack([0.1 + 0.01 * t + 0 * np.arange(K), 0.9 - 0.005 * t + 0 * np.arange(K)], axis=-1)
    still = np.full((FRAMES, K, 2), 0.37)
    for tracks in (line, still):
        smoothed = smooth_tracks(tracks, np.zeros((FRAMES, K), dtype=bool), strength=50)
        assert np.abs(smoothed - tracks).max() < 1e-9


def test_locked_keys_are_bit_identical_and_the_track_bends_into_them(tmp_path):
    locked = np.zeros((FRAMES, K), dtype=bool)
    locked[[0, 20, 47], 1] = True
    locked[5:9, 2] = True
    source = write_file(tmp_path / "in.json", {"A": noisy_tracks()}, {"A": {"locked": locked.tolist()}})
    data = json.loads(source.read_text())
    data["clips"]["A"]["keypoints"][20][1] = [0.61234567890123456, 0.41111111111111111]  # off the track, all digits
    source.write_text(json.dumps(data))
    original = data["clips"]["A"]["keypoints"]

    outputs = smooth_keypoint_file(source, tmp_path / "out.json")
    result = json.loads((tmp_path / "out.json").read_text())["clips"]["A"]
    for frame, point in np.argwhere(locked):
        assert result["keypoints"][frame][point] == original[frame][point]  # == on floats: bit-identical
    assert result["locked"] == locked.tolist()
    assert outputs["clips"]["A"]["locked"] == int(locked.sum())

    # Without the lock the key would be pulled back onto the track; with it the neighbours come to it.
    free = smooth_tracks(np.array(original), np.zeros((FRAMES, K), dtype=bool))
    smoothed = np.array(result["keypoints"])
    key = np.array(original[20][1])
    assert np.linalg.norm(free[20, 1] - key) > 0.01
    assert np.linalg.norm(smoothed[19, 1] - key) < 0.5 * np.linalg.norm(free[19, 1] - key)
    assert np.linalg.norm(smoothed[19, 1] - key) < np.linalg.norm(smoothed[18, 1] - key)  # no kink: it eases in


def test_the_file_round_trips_and_the_report_has_both_jitters(tmp_path):
    source = write_file(tmp_path / "in.json", {"A": noisy_tracks(1), "B": noisy_tracks(2)},
                        {"B": {"artist_note": "kept"}})
    before = json.loads(source.read_text())
    code, events, _ = run_engine("smooth", "--keypoints", source, "--out", tmp_path / "out.json", "--clip", "A",
                                 "--strength", 8)
    assert code == 0 and [e["event"] for e in events] == ["started", "done"]
    assert events[0]["command"] == "smooth"
    outputs = events[-1]["outputs"]
    assert outputs["keypoints"] == str(tmp_path / "out.json") and outputs["strength"] == 8
    report = outputs["clips"]["A"]
    assert set(outputs["clips"]) == {"A"} and report["frames"] == FRAMES and report["locked"] == 0
    assert report["jitter_after"] < report["jitter_before"] / 4
    assert report["jitter_px_before"] > report["jitter_before"] * min(SIZE)  # in pixels of the 640×360 frame
    assert 0 < report["max_move_px"] < 20

    after = json.loads((tmp_path / "out.json").read_text())
    assert after["clips"]["B"] == before["clips"]["B"]  # not asked for: untouched, unknown field kept
    assert {k: v for k, v in after["clips"]["A"].items() if k != "keypoints"} == \
        {k: v for k, v in before["clips"]["A"].items() if k != "keypoints"}
    assert after["affine"] == before["affine"] and after["num_keypoints"] == K
    # render reads it back
    assert read_keypoint_file(tmp_path / "out.json", "A", K, FRAMES)["keypoints"].shape == (FRAMES, K, 2)


def test_in_place_smoothing_replaces_the_file_whole(tmp_path):
    source = write_file(tmp_path / "kp.json", {"A": noisy_tracks()})
    smooth_keypoint_file(source, source)
    assert [p.name for p in tmp_path.iterdir()] == ["kp.json"]  # no temporary file left
    assert jitter(np.array(json.loads(source.read_text())["clips"]["A"]["keypoints"])) < \
        jitter(noisy_tracks()) / 4


@pytest.mark.parametrize(("edit", "words"), [
    (lambda d: d["clips"]["A"].update(locked=[[False] * K] * (FRAMES - 1)), "locked must have 48 frames"),
    (lambda d: d["clips"]["A"].update(locked=[[False] * K] * 10 + [[0, 1, 0]] + [[False] * K] * 37),
     "clip A frame 10: locked must be 3 true/false"),
    (lambda d: d["clips"]["A"]["keypoints"][7][2].__setitem__(0, 3.0), "frame 7 keypoint 2 x = 3.0 is out of range"),
    (lambda d: d.update(format="something.else"), "not a jokr.keypoints version 1 file"),
    (lambda d: d["clips"]["A"].update(frame_count=12), "frame_count is 12 but there are 48"),
])
def test_bad_files_are_refused_with_the_place_named(tmp_path, edit, words):
    source = write_file(tmp_path / "in.json", {"A": noisy_tracks()})
    data = json.loads(source.read_text())
    edit(data)
    source.write_text(json.dumps(data))
    with pytest.raises(JokrError, match="keypoint file") as caught:
        smooth_keypoint_file(source, tmp_path / "out.json")
    assert words in caught.value.message and caught.value.code == "bad_keypoints" and caught.value.hint
    assert not (tmp_path / "out.json").exists()


def test_cli_errors(tmp_path):
    source = write_file(tmp_path / "in.json", {"A": noisy_tracks()})
    code, events, _ = run_engine("smooth", "--keypoints", tmp_path / "missing.json", "--out", tmp_path / "o.json",
                                 check=False)
    assert code == 2 and "does not exist" in last_error(events)["message"]
    code, events, _ = run_engine("smooth", "--keypoints", source, "--out", tmp_path / "o.json", "--clip", "C",
                                 check=False)
    assert code == 2 and "has no clip 'C'" in last_error(events)["message"]
    code, events, _ = run_engine("smooth", "--keypoints", source, "--out", tmp_path / "o.json", "--strength", "-1",
                                 check=False)
    assert code == 2 and "--strength -1" in last_error(events)["message"]
    (tmp_path / "broken.json").write_text("{not json")
    code, events, _ = run_engine("smooth", "--keypoints", tmp_path / "broken.json", "--out", tmp_path / "o.json",
                                 check=False)
    assert code == 2 and "not valid JSON" in last_error(events)["message"]
    assert not (tmp_path / "o.json").exists()
