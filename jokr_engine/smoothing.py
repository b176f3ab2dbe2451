"""Keypoint smoothing: take the frame-to-frame jitter out of keypoint tracks, never moving a key the
artist set (the keypoint file's `locked` frames, docs/FORMATS.md).

The filter is a Whittaker smoother (penalised least squares, Eilers 2003) with the locked keys as exact
constraints: each track y minimises  Σ_free (y_t − x_t)² + strength · Σ_t (y_{t+1} − 2 y_t + y_{t−1})²
with y = x on locked frames. Chosen over the two usual candidates because
- like Savitzky–Golay it is zero-phase (no lag; One-Euro is causal, made for live input, and lags) and
  leaves constant and straight-line motion exactly as it is, and it needs no special case at the clip's ends;
- with either of the others a locked key could only be put back after filtering, leaving a kink on the
  frames next to it; here it is a constraint, and the smooth track bends into the artist's key.
It is one linear solve per keypoint. `strength` sets the cut-off: a motion repeating every
P frames keeps the fraction 1 / (1 + strength · (2 sin(π / P))⁴) of its amplitude.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_write_json
from .errors import JokrError
from .keypoint_file import VALID_RANGE, clip_keypoints, load_keypoint_record

STRENGTH = 4.0  # half amplitude at a period of ~9 frames; 2-frame noise keeps 1.5 %, a 20-frame motion 96 %
DECIMALS = 6  # as the engine writes keypoint files (≈ 0.005 px on a 1000 px frame)


def jitter(keypoints: np.ndarray) -> float | None:
    """Mean length of the second difference ‖k[t+1] − 2 k[t] + k[t−1]‖ over frames and keypoints, in
    the coordinates given: 0 for constant or straight-line motion, large for shaking. None under 3 frames."""
    if len(keypoints) < 3:
        return None
    second = keypoints[2:] - 2 * keypoints[1:-1] + keypoints[:-2]
    return float(np.linalg.norm(second, axis=-1).mean())


def _second_difference_normal(n: int) -> np.ndarray:
    """DᵀD for the (n−2)×n second-difference matrix D. Dense: a clip is hundreds of frames (2000 frames
    take about a second), and numpy has no banded solver."""
    d = np.zeros((n - 2, n))
    rows = np.arange(n - 2)
    d[rows, rows], d[rows, rows + 1], d[rows, rows + 2] = 1.0, -2.0, 1.0
    return d.T @ d


def smooth_tracks(keypoints: np.ndarray, locked: np.ndarray, strength: float = STRENGTH) -> np.ndarray:
    """Keypoint tracks (N, K, 2) smoothed; entries where `locked` (N, K) is true are returned unchanged."""
    n, count = keypoints.shape[:2]
    result = keypoints.copy()
    if n < 3 or strength == 0:
        return result
    penalty = strength * _second_difference_normal(n)
    # Keypoints with the same locked frames share one system: one solve for all their columns.
    patterns: dict[bytes, list[int]] = {}
    for k in range(count):
        patterns.setdefault(locked[:, k].tobytes(), []).append(k)
    for members in patterns.values():
        fixed = locked[:, members[0]]
        free = ~fixed
        if not free.any():
            continue
        # Minimise over the free frames only: (I + λ DᵀD)_FF y_F = x_F − (λ DᵀD)_FL x_L.
        tracks = keypoints[:, members].reshape(n, -1)
        system = np.eye(int(free.sum())) + penalty[np.ix_(free, free)]
        right = tracks[free] - penalty[np.ix_(free, fixed)] @ tracks[fixed]
        solved = tracks.copy()
        solved[free] = np.linalg.solve(system, right)
        result[:, members] = solved.reshape(n, len(members), 2)
    return result


def locked_mask(data: dict, path: Path, clip: str, shape: tuple[int, int]) -> np.ndarray:
    """The clip's `locked` field as bool (frames, K); all false when the field is absent."""
    value = data["clips"][clip].get("locked")
    if value is None:
        return np.zeros(shape, dtype=bool)
    frames, count = shape
    hint = f"`locked` is optional; when given it is {frames} lists of {count} true/false, like `keypoints`"
    if not isinstance(value, list) or len(value) != frames:
        raise JokrError(f"keypoint file {path}: clip {clip}: locked must have {frames} frames, got "
                        f"{len(value) if isinstance(value, list) else type(value).__name__}", hint,
                        code="bad_keypoints")
    for frame, row in enumerate(value):
        if not isinstance(row, list) or len(row) != count or not all(isinstance(v, bool) for v in row):
            raise JokrError(f"keypoint file {path}: clip {clip} frame {frame}: locked must be {count} true/false",
                            hint, code="bad_keypoints")
    return np.array(value, dtype=bool)


def smooth_keypoint_file(path: Path, out: Path, clips: list[str] | None = None,
                         strength: float = STRENGTH) -> dict:
    """Smooth the named clips (default all) of a keypoint file into `out`; every other field, the locked
    keys and the clips not named are copied as they are. Returns the `done` outputs (jitter per clip)."""
    path, out = Path(path), Path(out)
    if not np.isfinite(strength) or strength < 0:
        raise JokrError(f"smooth: --strength {strength} must be a number ≥ 0", f"e.g. --strength {STRENGTH:g}")
    data = load_keypoint_record(path)
    names = list(data["clips"]) if clips is None else list(dict.fromkeys(clips))  # a clip named twice: once
    report = {}
    for clip in names:
        keypoints = clip_keypoints(data, path, clip)
        locked = locked_mask(data, path, clip, keypoints.shape[:2])
        # Kept inside the file's allowed range: a track at its edge may overshoot a little.
        smoothed = np.clip(np.round(smooth_tracks(keypoints, locked, strength), DECIMALS), *VALID_RANGE)
        original = data["clips"][clip]["keypoints"]
        # Locked keys are copied from the file as read, so they stay bit-identical.
        data["clips"][clip]["keypoints"] = [
            [original[t][k] if locked[t, k] else [float(smoothed[t, k, 0]), float(smoothed[t, k, 1])]
             for k in range(keypoints.shape[1])] for t in range(len(keypoints))]
        report[clip] = _clip_report(data["clips"][clip], keypoints, smoothed, locked)
    atomic_write_json(out, data)
    return {"keypoints": str(out), "strength": strength, "clips": report}


def _clip_report(entry: dict, before: np.ndarray, after: np.ndarray, locked: np.ndarray) -> dict:
    size = entry.get("frame_size")
    to_px = np.asarray(size, dtype=np.float64) if isinstance(size, list) and len(size) == 2 else None
    report = {"frames": len(before), "locked": int(locked.sum()),
              "jitter_before": jitter(before), "jitter_after": jitter(after)}
    if to_px is not None:  # frame_size is required by the format; pixels are what an artist sees
        report |= {"jitter_px_before": jitter(before * to_px), "jitter_px_after": jitter(after * to_px),
                   "max_move_px": float(np.linalg.norm((after - before) * to_px, axis=-1).max())}
    return report
