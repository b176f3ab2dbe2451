"""Reading, writing and validating the keypoint file (jokr.keypoints version 1, docs/FORMATS.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .atomic import atomic_write_json
from .errors import JokrError

FORMAT, VERSION = "jokr.keypoints", 1
COORDINATES = "frame: x right, y down, (0,0) top-left corner, (1,1) bottom-right corner"
VALID_RANGE = (-0.5, 1.5)


def write_keypoint_file(path: Path, clips: dict[str, dict], affine: list[list[float]], num_keypoints: int) -> None:
    """clips: label → {source, start, frame_size, pad, model_size, crop_boxes (N,4), keypoints (N,K,2)}."""
    payload = {"format": FORMAT, "version": VERSION, "num_keypoints": num_keypoints, "coordinates": COORDINATES,
               "affine": affine, "clips": {}}
    for label, clip in clips.items():
        keypoints = np.asarray(clip["keypoints"], dtype=np.float64)
        payload["clips"][label] = {
            "source": clip["source"], "start": int(clip["start"]), "frame_count": int(len(keypoints)),
            "frame_size": [int(v) for v in clip["frame_size"]], "pad": float(clip["pad"]),
            "model_size": int(clip["model_size"]),
            "crop_boxes": np.round(np.asarray(clip["crop_boxes"], dtype=np.float64), 4).tolist(),
            "keypoints": np.round(keypoints, 6).tolist(),
        }
    atomic_write_json(Path(path), payload)


REEXPORT_HINT = "re-export it with `jokr-engine keypoints` and edit again"


def _fail(path: Path, message: str, hint: str = REEXPORT_HINT):
    raise JokrError(f"keypoint file {path}: {message}", hint, code="bad_keypoints")


def load_keypoint_record(path: Path) -> dict:
    """The whole file as JSON, once it is known to be a jokr.keypoints version 1 file."""
    path = Path(path)
    where = f"keypoint file {path}"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise JokrError(f"{where} does not exist", "pass the file written by `jokr-engine keypoints`",
                        code="bad_keypoints") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise JokrError(f"{where} is not valid JSON ({error})", "fix or re-export the file",
                        code="bad_keypoints") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        _fail(path, f"not a {FORMAT} version {VERSION} file")
    if not isinstance(data.get("num_keypoints"), int) or not isinstance(data.get("clips"), dict):
        _fail(path, "num_keypoints must be an integer and clips an object")
    return data


def clip_keypoints(data: dict, path: Path, clip: str) -> np.ndarray:
    """Clip `clip`'s keypoints (frames × K × 2) from a loaded file, checked: shape, frame_count, every
    value finite and in VALID_RANGE (the first bad one is named)."""
    num_keypoints, entry = data["num_keypoints"], data["clips"].get(clip)
    if not isinstance(entry, dict):
        _fail(path, f"has no clip {clip!r}")
    try:
        keypoints = np.asarray(entry["keypoints"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        _fail(path, f"clip {clip}: missing or malformed field ({error})")
    if keypoints.ndim != 3 or keypoints.shape[1:] != (num_keypoints, 2):
        _fail(path, f"clip {clip}: keypoints must be frames × {num_keypoints} × [x, y], got shape {keypoints.shape}")
    if entry.get("frame_count") != len(keypoints):
        _fail(path, f"clip {clip}: frame_count is {entry.get('frame_count')!r} but there are {len(keypoints)} "
                    "frames of keypoints")
    bad = ~np.isfinite(keypoints) | (keypoints < VALID_RANGE[0]) | (keypoints > VALID_RANGE[1])
    if bad.any():
        frame, point, axis = (int(v) for v in np.argwhere(bad)[0])
        value = keypoints[frame, point, axis]
        _fail(path, f"clip {clip} frame {frame} keypoint {point} {'xy'[axis]} = "
                    f"{value if math.isfinite(value) else value!s} "
                    f"is {'not finite' if not math.isfinite(value) else 'out of range'} "
                    f"(allowed {VALID_RANGE[0]}…{VALID_RANGE[1]})", "move that keypoint back near the frame")
    return keypoints


def read_keypoint_file(path: Path, clip: str, num_keypoints: int, frame_count: int) -> dict:
    """Load and check one clip of a keypoint file; returns its dict with numpy `keypoints`/`crop_boxes`."""
    path = Path(path)
    data = load_keypoint_record(path)
    if data["num_keypoints"] != num_keypoints:
        _fail(path, f"num_keypoints is {data['num_keypoints']!r} but the model was trained with {num_keypoints}",
              "use a keypoint file exported from this job")
    keypoints = clip_keypoints(data, path, clip)
    entry = data["clips"][clip]
    if len(keypoints) != frame_count:
        _fail(path, f"clip {clip}: {len(keypoints)} frames of keypoints but the clip has {frame_count}",
              "export keypoints for the whole trained frame range")
    try:
        boxes = np.asarray(entry["crop_boxes"], dtype=np.float64)
        width, height = (int(v) for v in entry["frame_size"])
        pad, model_size = float(entry["pad"]), int(entry["model_size"])
    except (KeyError, TypeError, ValueError) as error:
        _fail(path, f"clip {clip}: missing or malformed field ({error})")
    if boxes.shape != (frame_count, 4) or not np.isfinite(boxes).all() or (boxes[:, 2:] <= 0).any():
        _fail(path, f"clip {clip}: crop_boxes must be {frame_count} boxes [x0, y0, w, h] with w, h > 0")
    return {**entry, "keypoints": keypoints, "crop_boxes": boxes, "frame_size": (width, height), "pad": pad,
            "model_size": model_size, "affine": data.get("affine")}
