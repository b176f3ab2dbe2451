"""The keypoint file (format `jokr.keypoints`, version 1, docs/FORMATS.md): read, check, write.

The add-on reads the file the engine wrote, replaces the keypoints the artist edited and writes it
back for `render --keypoints`. Every field it does not touch (crop boxes, affine, unknown fields) is
kept as it was, so the file round-trips. The checks are the engine's, so an edit the engine would
refuse is reported before the engine starts, naming the clip, frame and keypoint.
"""

from __future__ import annotations

import copy
import json
import math
import os

from .atomic import write_atomic

FORMAT = "jokr.keypoints"
VERSION = 1
COORDINATES = "frame: x right, y down, (0,0) top-left corner, (1,1) bottom-right corner"
VALID_RANGE = (-0.5, 1.5)


class KeypointFileError(ValueError):
    """A missing, malformed or out-of-range keypoint file; says where when it is about one value."""

    def __init__(self, message: str, clip: str | None = None, frame: int | None = None,
                 keypoint: int | None = None):
        super().__init__(message)
        self.clip, self.frame, self.keypoint = clip, frame, keypoint


class KeypointFile:
    """A checked keypoint file. `record` is the whole JSON object; accessors read from it."""

    def __init__(self, record: dict):
        validate(record)
        self.record = record

    @property
    def num_keypoints(self) -> int:
        return self.record["num_keypoints"]

    @property
    def labels(self) -> list[str]:
        return list(self.record["clips"])

    def clip(self, label: str) -> dict:
        return self.record["clips"][label]

    def frame_count(self, label: str) -> int:
        return self.clip(label)["frame_count"]

    def keypoints(self, label: str) -> list:
        """frame_count × num_keypoints × [x, y] in frame coordinates."""
        return self.clip(label)["keypoints"]

    def with_keypoints(self, replacements: dict[str, list]) -> KeypointFile:
        """A copy whose clips in `replacements` (label → frames × K × [x, y]) have new keypoints."""
        record = copy.deepcopy(self.record)
        for label, keypoints in replacements.items():
            record["clips"][label]["keypoints"] = [[[float(x), float(y)] for x, y in frame]
                                                   for frame in keypoints]
        return KeypointFile(record)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shape_error(label: str, what: str) -> KeypointFileError:
    return KeypointFileError(f"clip {label}: {what}", clip=label)


def _validate_clip(label: str, clip, num_keypoints: int) -> None:
    if not isinstance(clip, dict):
        raise _shape_error(label, "must be an object")
    for key in ("source", "start", "frame_count", "frame_size", "keypoints"):
        if key not in clip:
            raise _shape_error(label, f"field {key!r} is missing")
    frame_count = clip["frame_count"]
    if not isinstance(frame_count, int) or frame_count < 1:
        raise _shape_error(label, f"frame_count must be a positive integer, got {frame_count!r}")
    size = clip["frame_size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise _shape_error(label, f"frame_size must be [width, height], got {size!r}")
    keypoints = clip["keypoints"]
    if not isinstance(keypoints, list) or len(keypoints) != frame_count:
        found = len(keypoints) if isinstance(keypoints, list) else type(keypoints).__name__
        raise _shape_error(label, f"keypoints must have frame_count = {frame_count} frames, got {found}")
    boxes = clip.get("crop_boxes")
    if boxes is not None and (not isinstance(boxes, list) or len(boxes) != frame_count):
        raise _shape_error(label, f"crop_boxes must have {frame_count} boxes")
    low, high = VALID_RANGE
    for frame, points in enumerate(keypoints):
        if not isinstance(points, list) or len(points) != num_keypoints:
            raise KeypointFileError(f"clip {label} frame {frame}: expected {num_keypoints} keypoints",
                                    clip=label, frame=frame)
        for index, point in enumerate(points):
            if not (isinstance(point, list) and len(point) == 2 and all(_is_number(v) for v in point)):
                raise KeypointFileError(f"clip {label} frame {frame} keypoint {index}: must be [x, y]",
                                        clip=label, frame=frame, keypoint=index)
            for axis, value in zip("xy", point):
                if not math.isfinite(value) or not low <= value <= high:
                    problem = "is not finite" if not math.isfinite(value) else f"is outside {low}…{high}"
                    raise KeypointFileError(
                        f"clip {label} frame {frame} keypoint {index}: {axis} = {value} {problem}",
                        clip=label, frame=frame, keypoint=index)


def validate(record) -> None:
    """Raise KeypointFileError for anything the engine's `render --keypoints` would refuse."""
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != VERSION:
        raise KeypointFileError(f"not a {FORMAT} version {VERSION} file")
    num_keypoints = record.get("num_keypoints")
    if not isinstance(num_keypoints, int) or num_keypoints < 1:
        raise KeypointFileError(f"num_keypoints must be a positive integer, got {num_keypoints!r}")
    clips = record.get("clips")
    if not isinstance(clips, dict) or not clips:
        raise KeypointFileError("the file has no clips")
    for label, clip in clips.items():
        _validate_clip(label, clip, num_keypoints)


def load(path: str) -> KeypointFile:
    try:
        with open(path, encoding="utf-8") as stream:
            record = json.load(stream)
    except FileNotFoundError:
        raise KeypointFileError(f"keypoint file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise KeypointFileError(f"keypoint file {path} is not valid JSON ({error})") from None
    return KeypointFile(record)


def save(path: str, keypoint_file: KeypointFile) -> None:
    """Write atomically: a temporary file in the same folder, then os.replace, so a reader (or a
    crash) never sees half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, json.dumps(keypoint_file.record).encode("utf-8"))
