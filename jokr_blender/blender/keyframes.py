"""A keypoint empty's X/Y keys: the engine's keys (type GENERATED) and the artist's (everything else).

io/key_ownership.py tells them apart; this module reads and writes Blender's F-curves in bulk
(`foreach_get`/`foreach_set`, never one key at a time). Each empty keeps the values the engine's keys
were given (its engine record: `jokr_engine_first` and `jokr_engine_x`/`_y`).
"""

from __future__ import annotations

import numpy as np

from ..io.key_ownership import EngineRecord, artist_keys, merge_order
from . import compat

GENERATED = compat.KEYFRAME_TYPES["GENERATED"]
KEYFRAME = compat.KEYFRAME_TYPES["KEYFRAME"]
RECORD_FIRST = "jokr_engine_first"
RECORD_VALUES = ("jokr_engine_x", "jokr_engine_y")
# Per-key attributes kept when an artist's key is rewritten: (name, values per key, numpy type).
ATTRIBUTES = (("co", 2, np.float32), ("type", 1, np.int32), ("interpolation", 1, np.int32),
              ("easing", 1, np.int32), ("handle_left_type", 1, np.int32), ("handle_right_type", 1, np.int32),
              ("handle_left", 2, np.float32), ("handle_right", 2, np.float32))


def read_keys(fcurve) -> dict[str, np.ndarray]:
    points = fcurve.keyframe_points
    keys = {}
    for name, width, dtype in ATTRIBUTES:
        values = np.empty(len(points) * width, dtype=dtype)
        points.foreach_get(name, values)
        keys[name] = values.reshape(-1, width) if width > 1 else values
    return keys


def engine_record(obj, axis: int) -> EngineRecord | None:
    if RECORD_FIRST not in obj or RECORD_VALUES[axis] not in obj:
        return None
    return EngineRecord(int(obj[RECORD_FIRST]), np.asarray(obj[RECORD_VALUES[axis]].to_list(), dtype=np.float64))


def artist_mask(obj, axis: int, fcurve, keys: dict | None = None) -> np.ndarray:
    keys = keys if keys is not None else read_keys(fcurve)
    return artist_keys(keys["co"][:, 0], keys["co"][:, 1], keys["type"] == GENERATED, engine_record(obj, axis))


def artist_frames(obj) -> set[float]:
    """The frames on which the artist keyed X or Y of the empty."""
    frames: set[float] = set()
    for axis, fcurve in enumerate(compat.location_fcurves(obj)):
        if fcurve is not None and len(fcurve.keyframe_points):
            keys = read_keys(fcurve)
            frames.update(keys["co"][artist_mask(obj, axis, fcurve, keys), 0].tolist())
    return frames


def mark_artist_keys(obj) -> None:
    """Give the artist's keys that still look generated (Blender keeps a key's type when a key is inserted
    over it) the ordinary type KEYFRAME, so the Dope Sheet tells them apart from the engine's."""
    for axis, fcurve in enumerate(compat.location_fcurves(obj)):
        if fcurve is None or not len(fcurve.keyframe_points):
            continue
        keys = read_keys(fcurve)
        relabel = artist_mask(obj, axis, fcurve, keys) & (keys["type"] == GENERATED)
        if relabel.any():
            keys["type"][relabel] = KEYFRAME
            fcurve.keyframe_points.foreach_set("type", keys["type"])


def write_engine_keys(obj, first: int, values_xy: tuple[np.ndarray, np.ndarray], keep_artist: bool) -> int:
    """Key the engine's values on frames first, first + 1, … (type GENERATED), replacing the engine's
    previous keys. With `keep_artist`, the artist's keys stay (as ordinary keys) and the engine's new keys
    go only on the frames the artist left alone. Returns the number of frames with an artist key kept."""
    kept: set[float] = set()
    fcurves = compat.location_fcurves(obj, create=True)
    for axis, fcurve in enumerate(fcurves):
        engine_values = np.asarray(values_xy[axis], dtype=np.float64)
        engine_frames = np.arange(first, first + len(engine_values), dtype=np.float64)
        old = read_keys(fcurve)
        mine = artist_mask(obj, axis, fcurve, old) if keep_artist else np.zeros(len(old["type"]), bool)
        artist = {name: values[mine] for name, values in old.items()}
        artist["type"] = np.where(artist["type"] == GENERATED, KEYFRAME, artist["type"])  # now visibly theirs
        kept.update(artist["co"][:, 0].tolist())
        source, index = merge_order(artist["co"][:, 0], engine_frames)
        points = fcurve.keyframe_points
        points.clear()
        points.add(len(source))
        merged = read_keys(fcurve)  # the defaults of new keys, for the engine's keys
        from_artist, from_engine = source == 0, source == 1
        for name, values in merged.items():
            if name in artist:
                values[from_artist] = artist[name][index[from_artist]]
        engine_index = index[from_engine]
        co = merged["co"]
        co[from_engine, 0] = engine_frames[engine_index]
        co[from_engine, 1] = engine_values[engine_index]
        for handle in ("handle_left", "handle_right"):  # recomputed by update() for automatic handles
            merged[handle][from_engine] = co[from_engine]
        merged["type"][from_engine] = GENERATED
        for name, values in merged.items():
            points.foreach_set(name, values.ravel())
        fcurve.update()
        obj[RECORD_VALUES[axis]] = engine_values.tolist()
    obj[RECORD_FIRST] = int(first)
    return len(kept)
