"""Mask source `auto`: the matting model (matting.py) on every frame of a clip, cached in a folder.

The folder (docs/FORMATS.md, "Automatic masks") holds one 0/255 PNG per frame, named like the clip's
frame, `masks.json` (the model, and a digest of every frame whose PNG is there) and `mask_check.json`
(mask_checks.py). A frame whose PNG is there and whose pixels still have the recorded digest is read
back instead of matted again: a run stopped half-way (CANCEL file, crash) continues where it was, and
footage changed in place is matted again. `train` caches into `<job>/auto_masks/<A|B>/`; the `masks`
command writes into its `--out` folder the same way."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_write_bytes, atomic_write_json
from .errors import JokrError
from .events import Emitter
from .mask_checks import check_masks
from .matting import THRESHOLD, Matting, encode_png, models_of

INDEX = "masks.json"
CHECK = "mask_check.json"
INDEX_FORMAT = "jokr.auto_masks"
INDEX_VERSION = 1
EVENT_INTERVAL_S = 0.5  # at most two `masking` events a second, however fast the model runs


class MattingCancelled(Exception):
    """The CANCEL file appeared while frames were being matted; the masks written so far stay cached."""


def frame_digest(frame: np.ndarray) -> str:
    return hashlib.blake2b(frame.tobytes() + str(frame.shape).encode(), digest_size=16).hexdigest()


def _read_png(path: Path, size: tuple[int, int]) -> np.ndarray | None:
    """A cached mask as bool (H, W), or None when it is missing, unreadable or of another size."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    return image > 127 if image is not None and image.shape == size else None


class AutoMasker:
    """Called by clips.load_clip as `masker(frames, names, model)` → bool (N, H, W).

    `owned`: the folder is the engine's own (a job's cache), so a cache of another model is deleted; a
    user's `--out` folder is never emptied: one that holds anything but masks of this model is refused."""

    def __init__(self, folder: Path, emitter: Emitter, clip: str, cancel_file: Path | None = None,
                 owned: bool = True, weights: Path | None = None):
        self.folder = Path(folder)
        self.emitter = emitter
        self.clip = clip
        self.cancel_file = cancel_file
        self.owned = owned
        self.weights = weights

    def _cached_digests(self, key: dict) -> dict[str, str]:
        """frame name → digest of the frames cached for this model; prepares the folder."""
        try:
            index = json.loads((self.folder / INDEX).read_text())
        except (OSError, json.JSONDecodeError):
            index = {}
        if index.get("format") == INDEX_FORMAT and index.get("version") == INDEX_VERSION and index.get("key") == key:
            return dict(index.get("frames", {}))
        if self.folder.is_dir() and any(self.folder.iterdir()):
            if not self.owned:
                raise JokrError(f"{self.folder} already holds files that are not {key['model']} masks written by "
                                "`jokr-engine masks`", "choose an empty or new --out folder")
            shutil.rmtree(self.folder)  # a job's cache of another model or an older format
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_index(key, {})  # the folder is claimed at once, so a run stopped early can continue
        return {}

    def _write_index(self, key: dict, digests: dict[str, str]) -> None:
        atomic_write_json(self.folder / INDEX, {"format": INDEX_FORMAT, "version": INDEX_VERSION, "key": key,
                                                "frames": digests})

    def __call__(self, frames: np.ndarray, names: list[str], model: str) -> np.ndarray:
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise JokrError(f"clip {self.clip} has several frames named {duplicates[0]!r} (different extensions)",
                            "keep one image per frame name in the folder")
        key = {"model": model, "sha256": {m.name: m.sha256 for m in models_of(model)}, "threshold": THRESHOLD}
        cached = self._cached_digests(key)
        height, width = frames.shape[1:3]
        masks = np.zeros(frames.shape[:3], dtype=bool)
        digests = [frame_digest(frame) for frame in frames]
        todo = []
        for i, name in enumerate(names):
            mask = _read_png(self.folder / f"{name}.png", (height, width)) if cached.get(name) == digests[i] else None
            if mask is None:
                todo.append(i)
            else:
                masks[i] = mask
        reused = len(frames) - len(todo)
        matting = Matting(model, self.weights) if todo else None
        progress = {"clip": self.clip, "model": model, "of": len(frames), "cached": reused,
                    "device": matting.provider if matting else None}
        self.emitter.emit("masking", done=reused, s_per_frame=None, eta_s=0.0 if not todo else None, **progress)
        start = last_event = time.monotonic()
        for count, i in enumerate(todo, start=1):
            if self.cancel_file is not None and self.cancel_file.exists():
                self._write_index(key, cached)
                raise MattingCancelled
            masks[i] = matting.mask(frames[i])
            atomic_write_bytes(self.folder / f"{names[i]}.png", encode_png(masks[i]))
            cached[names[i]] = digests[i]
            now = time.monotonic()
            if now - last_event >= EVENT_INTERVAL_S or count == len(todo):
                self._write_index(key, cached)
                per_frame = (now - start) / count
                self.emitter.emit("masking", done=reused + count, s_per_frame=per_frame,
                                  eta_s=per_frame * (len(todo) - count), **progress)
                last_event = now
        report = check_masks(masks, names)
        atomic_write_json(self.folder / CHECK, report)
        self.emitter.emit("mask_check", clip=self.clip, frames=len(frames), suspect=report["suspect"],
                          report=str(self.folder / CHECK))
        return masks
