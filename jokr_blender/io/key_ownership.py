"""Whose key is it: the engine's or the artist's? And how re-importing merges the two.

The add-on keys the engine's keypoints with keyframe type GENERATED and remembers the values it wrote
(the *engine record*: the first frame and one value per frame). A key belongs to the engine only while
it is GENERATED, sits on a frame of the record and still holds the recorded value. Everything else is
the artist's: a key of another type, a key on another frame, and a GENERATED key whose value changed.
Blender keeps a key's type when a key is inserted over it (pressing I on a frame the engine keyed leaves
it GENERATED with the new value), so the value check is what finds those edits.

Re-importing keeps every artist key and puts the engine's new keys on the frames the artist left alone.
Works on plain sequences and numpy arrays; no bpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-5  # in camera-view units, where the frame is about one unit high: far below a pixel
SAME_FRAME = 0.5  # an artist key within half a frame of an engine frame takes that frame


@dataclass(frozen=True)
class EngineRecord:
    """The values the engine's keys were given: values[i] on frame first + i."""

    first: int
    values: np.ndarray

    def value_on(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(recorded value, whether the frame is an integer frame of the record) for each frame."""
        frames = np.asarray(frames, dtype=np.float64)
        rounded = np.rint(frames)
        index = (rounded - self.first).astype(np.int64)
        inside = (np.abs(frames - rounded) < 1e-3) & (index >= 0) & (index < len(self.values))
        recorded = np.where(inside, self.values[np.clip(index, 0, max(len(self.values) - 1, 0))], np.nan)
        return recorded, inside


def artist_keys(frames, values, is_generated, record: EngineRecord | None) -> np.ndarray:
    """A boolean per key: True for the artist's keys (see the module's docstring)."""
    frames = np.asarray(frames, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    is_generated = np.asarray(is_generated, dtype=bool)
    if record is None or len(record.values) == 0:
        return ~is_generated
    recorded, inside = record.value_on(frames)
    unchanged = inside & (np.abs(values - np.nan_to_num(recorded)) <= TOLERANCE)
    return ~(is_generated & unchanged)


def merge_order(artist_frames, engine_frames) -> tuple[np.ndarray, np.ndarray]:
    """How the keys of a re-imported curve are laid out: (source, index) per key, sorted by frame, where
    source 0 is the artist's key `index` and 1 the engine's frame `index`. Engine frames within half a
    frame of an artist key are left out: the artist's key stays the only key there."""
    artist_frames = np.asarray(artist_frames, dtype=np.float64)
    engine_frames = np.asarray(engine_frames, dtype=np.float64)
    if len(artist_frames):
        distance = np.abs(engine_frames[:, None] - artist_frames[None, :]).min(axis=1)
        free = np.flatnonzero(distance >= SAME_FRAME)
    else:
        free = np.arange(len(engine_frames))
    frames = np.concatenate([artist_frames, engine_frames[free]])
    source = np.concatenate([np.zeros(len(artist_frames), np.int64), np.ones(len(free), np.int64)])
    index = np.concatenate([np.arange(len(artist_frames)), free])
    order = np.argsort(frames, kind="stable")
    return source[order], index[order]
