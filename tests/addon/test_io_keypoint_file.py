"""The keypoint file (jokr.keypoints v1): round trip, atomic write, the engine's checks."""

import json
import os

import pytest


def sample_record(frames=3, keypoints=2):
    def clip(offset):
        points = [[[0.1 * k + offset, 0.5 + 0.01 * f] for k in range(keypoints)] for f in range(frames)]
        return {"source": "/clips/cat", "start": 5, "frame_count": frames, "frame_size": [608, 320],
                "pad": 0.2, "model_size": 256, "crop_boxes": [[0, 0, 608, 320]] * frames, "keypoints": points,
                "future": {"kept": True}}

    return {"format": "jokr.keypoints", "version": 1, "num_keypoints": keypoints,
            "coordinates": "frame: x right, y down", "affine": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            "clips": {"A": clip(0.1), "B": clip(0.2)}, "engine_version": "0.1.0"}


def test_round_trip_keeps_everything(jio, tmp_path):
    kpf = jio.keypoint_file
    path = tmp_path / "keypoints.json"
    path.write_text(json.dumps(sample_record()))
    loaded = kpf.load(str(path))
    assert loaded.num_keypoints == 2 and loaded.labels == ["A", "B"] and loaded.frame_count("A") == 3
    edited = loaded.with_keypoints({"A": [[[0.3, 0.4], [1.2, -0.2]]] * 3})
    out = tmp_path / "edited.json"
    kpf.save(str(out), edited)
    again = json.loads(out.read_text())
    expected = sample_record()
    expected["clips"]["A"]["keypoints"] = [[[0.3, 0.4], [1.2, -0.2]]] * 3
    assert again == expected
    assert loaded.keypoints("A") == sample_record()["clips"]["A"]["keypoints"]  # the original is untouched
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_save_is_atomic(jio, tmp_path, monkeypatch):
    kpf = jio.keypoint_file
    path = tmp_path / "keypoints.json"
    kpf.save(str(path), kpf.KeypointFile(sample_record()))
    before = path.read_text()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        kpf.save(str(path), kpf.KeypointFile(sample_record(frames=4)))
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keypoints.json"]


@pytest.mark.parametrize("change, message, where", [
    (lambda r: r.update(format="other"), "not a jokr.keypoints version 1", (None, None, None)),
    (lambda r: r.update(version=2), "not a jokr.keypoints version 1", (None, None, None)),
    (lambda r: r.update(clips={}), "no clips", (None, None, None)),
    (lambda r: r["clips"]["B"].update(frame_count=4), "4 frames", ("B", None, None)),
    (lambda r: r["clips"]["A"]["keypoints"][1].pop(), "frame 1: expected 2 keypoints", ("A", 1, None)),
    (lambda r: r["clips"]["A"]["keypoints"][2][1].__setitem__(0, 1.7), "frame 2 keypoint 1: x = 1.7",
     ("A", 2, 1)),
    (lambda r: r["clips"]["B"]["keypoints"][0][0].__setitem__(1, float("nan")), "y = nan is not finite",
     ("B", 0, 0)),
    (lambda r: r["clips"]["A"].pop("frame_size"), "'frame_size' is missing", ("A", None, None)),
])
def test_bad_files_name_the_clip_frame_and_keypoint(jio, change, message, where):
    record = sample_record()
    change(record)
    with pytest.raises(jio.keypoint_file.KeypointFileError, match=message) as raised:
        jio.keypoint_file.KeypointFile(record)
    assert (raised.value.clip, raised.value.frame, raised.value.keypoint) == where


def test_missing_and_broken_files(jio, tmp_path):
    with pytest.raises(jio.keypoint_file.KeypointFileError, match="does not exist"):
        jio.keypoint_file.load(str(tmp_path / "nope.json"))
    (tmp_path / "torn.json").write_text('{"format": "jokr.keypoints", "vers')
    with pytest.raises(jio.keypoint_file.KeypointFileError, match="not valid JSON"):
        jio.keypoint_file.load(str(tmp_path / "torn.json"))
