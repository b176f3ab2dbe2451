"""The engine's `masking` and `mask_check` events as the add-on reads them, the panel's mirrors of them, and
the mask PNGs the add-on writes for a Mask strip. No bpy: the real engine's emitter and suspect-frame check
write the events."""

from __future__ import annotations

import json
import sys
import zlib

import numpy as np
import pytest

from .helpers import REPO

sys.path.insert(0, str(REPO))
from jokr_engine.events import Emitter  # noqa: E402  (numpy only: no torch)
from jokr_engine.mask_checks import check_masks  # noqa: E402


def doctored_masks(count=8, height=24, width=32):
    """A square walking right; frame 3 empty, frame 5 twice as tall: both must be flagged."""
    masks = np.zeros((count, height, width), dtype=bool)
    for i in range(count):
        masks[i, 8:14, 4 + i:10 + i] = True
    masks[3] = False
    masks[5, 4:18, 4 + 5:10 + 5] = True
    return masks


def emit_like_the_engine(job, masks, names, command="train", clip="A"):
    """What jokr_engine/auto_masks.py emits while it mattes a clip, then its check, into job/events.jsonl."""
    emitter = Emitter(job, stream=open("/dev/null", "w"), terminal=None, command=command)
    progress = {"clip": clip, "model": "u2netp", "of": len(names), "cached": 2, "device": "CPUExecutionProvider"}
    emitter.emit("masking", done=2, s_per_frame=None, eta_s=None, **progress)
    emitter.emit("masking", done=5, s_per_frame=0.25, eta_s=0.75, **progress)
    yield
    report = check_masks(masks, names)
    emitter.emit("mask_check", clip=clip, frames=len(names), suspect=report["suspect"],
                 report=str(job / "mask_check.json"))


def test_masking_and_mask_check_events_are_understood(jio, tmp_path):
    masks, names = doctored_masks(), [f"frame{i:03d}" for i in range(8)]
    steps = emit_like_the_engine(tmp_path, masks, names)
    next(steps)
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    events = [jio.protocol.parse_event_line(text) for text in lines]  # raises ProtocolError if not understood
    assert [event.name for event in events] == ["masking", "masking"]

    state = jio.job_state.JobState()
    state.mark_starting("train")
    for event in events:
        state.apply(event)
    mirrors = jio.masks.masking_mirrors(state)
    assert mirrors["masking_text"] == "Masks A (u2netp): 5/8, 2 cached, 0:01 left"
    assert mirrors["masking_progress"] == pytest.approx(5 / 8)
    assert state.state == "starting"  # masks come before training starts

    next(steps, None)
    state = jio.job_state.recover(str(tmp_path))
    assert state.masking is None  # the check closes the progress
    check = state.mask_checks["A"]
    flagged = {frame.index: frame.reasons for frame in check.suspect}
    assert "empty" in flagged[3] and "area_jump" in flagged[5]
    assert 0 not in flagged and 1 not in flagged
    rows = jio.masks.suspect_rows(state)
    assert ("A", 3, "frame003", "empty") in rows
    assert any(row[:3] == ("A", 5, "frame005") and "size jumps" in row[3] for row in rows)
    assert jio.masks.masking_mirrors(state)["mask_check_text"] == f"Masks A: {len(rows)} of 8 frames suspect"


def test_a_new_masking_run_drops_the_clips_old_check(jio, tmp_path):
    masks, names = doctored_masks(), [f"{i:05d}" for i in range(8)]
    for _ in emit_like_the_engine(tmp_path, masks, names):
        pass
    state = jio.job_state.recover(str(tmp_path))
    assert "A" in state.mask_checks
    state.apply(jio.protocol.make_event("masking", 1.0, command="train", clip="A", model="isnet", done=0, of=8))
    assert "A" not in state.mask_checks
    assert jio.masks.masking_mirrors(state)["masking_text"].startswith("Masks A (ISNet): 0/8")
    state.apply(jio.protocol.make_event("started", 2.0, command="train", plan=[]))
    assert state.masking is None and state.state == "training"


@pytest.mark.parametrize("suspect", [
    [{"index": "3", "frame": "x", "reasons": []}],
    [{"index": 3, "frame": "x", "reasons": "empty"}],
    "none",
])
def test_a_malformed_mask_check_is_refused(jio, suspect):
    record = {"schema": "jokr.events/1", "event": "mask_check", "time": 1.0, "clip": "A", "suspect": suspect}
    with pytest.raises(jio.protocol.ProtocolError, match="suspect"):
        jio.protocol.validate_event(record)


def test_mask_sources_on_the_command_line(jio):
    protocol = jio.protocol
    assert [protocol.mask_auto(m) for m in protocol.MATTING_MODELS] == ["auto", "auto:isnet", "auto:both"]
    with pytest.raises(ValueError):
        protocol.mask_auto("sam")
    argv = protocol.smooth_command("py", "/k.json", "/o.json", ("A",), 2.5)
    assert argv == ["py", "-m", "jokr_engine", "smooth", "--keypoints", "/k.json", "--out", "/o.json",
                    "--clip", "A", "--strength", "2.5"]


def decode_grey_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour = data[24], data[25]
    assert (depth, colour) == (8, 0)
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8:start - 4], "big")
    rows = np.frombuffer(zlib.decompress(data[start:start + length]), np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()
    return rows[:, 1:]


def test_mask_png_is_0_and_255_and_written_whole(jio, tmp_path):
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:3, 2:6] = True
    path = tmp_path / "00003.png"
    jio.atomic.write_atomic(str(path), jio.masks.encode_grey_png(mask))
    pixels = decode_grey_png(path.read_bytes())
    assert set(np.unique(pixels)) == {0, 255}
    assert np.array_equal(pixels == 255, mask)
    assert [p.name for p in tmp_path.iterdir()] == ["00003.png"]  # no temporary file left


def test_mask_png_is_read_by_the_engine(jio, tmp_path):
    cv2 = pytest.importorskip("cv2")
    mask = doctored_masks()[5]
    (tmp_path / "m.png").write_bytes(jio.masks.encode_grey_png(mask))
    read = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED)
    assert read.shape == mask.shape and np.array_equal(read > 127, mask)
    json.dumps(read.tolist())  # plain 8-bit values
