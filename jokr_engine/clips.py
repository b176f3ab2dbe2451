"""Loading clips: frames and animal masks from a video, an image folder or a frames/ + masks/ folder.

Every user mistake is reported as a JokrError(code="bad_input") naming the file, frame or option.
Only the requested frame range is decoded, so long clips stay cheap.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import JokrError
from .matting import CHOICES as MATTING_MODELS

# OpenCV decodes EXR only when this is set; it is read at the first EXR decode, so after the import is fine.
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".exr")

MASK_SPEC_HELP = ("a mask folder, a matte video, 'alpha', 'auto' (or 'auto:isnet', 'auto:both'), 'luma:T' or "
                  "'key:RRGGBB:T' (T in 0..1)")

# The masks of `auto`: (RGB frames (N, H, W, 3), each frame's name, matting model) → bool (N, H, W).
AutoMasks = Callable[[np.ndarray, list[str], str], np.ndarray]


@dataclass
class ClipSpec:
    path: str
    start: int = 0
    count: int | None = None  # None = all frames from start
    mask: str | None = None  # None = the clip's masks/ folder; see MASK_SPEC_HELP for the others


@dataclass
class Clip:
    name: str  # folder or file stem
    source: str  # absolute path
    start: int
    frames: np.ndarray  # uint8 (N, H, W, 3) RGB
    masks: np.ndarray  # uint8 (N, H, W), 0 or 255
    fps: float | None  # from the video; None for image folders


def _bad(message: str, hint: str) -> JokrError:
    return JokrError(message, hint, code="bad_input")


# ---------------------------------------------------------------------------------------------------
# Sources: a video file or a sorted list of image files, each with a total frame count.


@dataclass
class _Source:
    path: Path  # the video, or the folder holding the images
    files: list[Path] | None  # image files in natural order; None for a video
    total: int
    fps: float | None = None

    @property
    def is_video(self) -> bool:
        return self.files is None


def _natural_key(path: Path) -> list:
    # "frame2.png" before "frame10.png"
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _image_files(folder: Path) -> list[Path]:
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(files, key=_natural_key)


def _open_video(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise _bad(
            f"cannot read video {path}",
            "check that the file is a complete video; re-export it as H.264 .mp4 or as an image sequence",
        )
    return capture


def _video_source(path: Path) -> _Source:
    capture = _open_video(path)
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        if total <= 0:
            # Some containers do not store a frame count: count by demuxing (no decoding).
            total = 0
            while capture.grab():
                total += 1
    finally:
        capture.release()
    return _Source(path, None, total, fps if fps and fps > 0 else None)


def _folder_source(folder: Path) -> _Source:
    files = _image_files(folder)
    return _Source(folder, files, len(files))


def _source(path: Path, what: str) -> _Source:
    """A video file or an image folder; `what` says which option the path came from, for messages."""
    if not path.exists():
        raise _bad(f"{what} not found: {path}", "check the path (relative paths start at the working folder)")
    if path.is_dir():
        return _folder_source(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return _video_source(path)
    raise _bad(
        f"{what} {path} is neither a folder of images nor a video",
        f"use a video ({' '.join(VIDEO_EXTENSIONS)}) or a folder of images ({' '.join(IMAGE_EXTENSIONS)})",
    )


# ---------------------------------------------------------------------------------------------------
# Decoding


def _read_image(path: Path) -> np.ndarray:
    # imdecode of the bytes instead of imread: imread fails on non-ASCII paths on Windows.
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise _bad(f"cannot read image {path}: {error.strerror}", "check the file's permissions") from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise _bad(f"cannot read image {path}", "the file is damaged or not an image; re-export it")
    return image


def _unit_float(image: np.ndarray) -> np.ndarray:
    """Any integer or float image as float32 in 0..1."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    # EXR holds linear light; the model was trained on ordinary (sRGB) pictures.
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _split_image(image: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """An image as OpenCV reads it (gray, gray+alpha, BGR, BGRA; any depth) → RGB uint8, alpha 0..1 | None."""
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    alpha = _unit_float(image[:, :, -1]) if channels in (2, 4) else None
    color = image[:, :, :3] if channels >= 3 else image[:, :, :1]
    if color.dtype != np.uint8:
        unit = _unit_float(color)
        if path.suffix.lower() == ".exr":
            unit = _linear_to_srgb(unit)
        color = np.round(unit * 255).astype(np.uint8)
    if color.shape[2] == 1:
        return np.repeat(color, 3, axis=2), alpha
    return cv2.cvtColor(np.ascontiguousarray(color), cv2.COLOR_BGR2RGB), alpha


def _video_frames(source: _Source, start: int, count: int, what: str) -> Iterator[tuple[str, np.ndarray]]:
    """(name, BGR uint8 image) for frames start .. start+count-1 of a video."""
    capture = _open_video(source.path)
    try:
        # grab() skips without decoding; seeking with CAP_PROP_POS_FRAMES is not frame-exact in all codecs.
        for index in range(start + count):
            if index < start:
                ok, image = capture.grab(), None
            else:
                ok, image = capture.read()
            if not ok:
                raise _bad(
                    f"{what} {source.path} ended after {index} frames; frames {start}..{start + count - 1}"
                    " were asked for",
                    "choose a range inside the video (start and count)",
                )
            if image is not None:
                yield f"frame {index} of {source.path}", image
    finally:
        capture.release()


def _decoded(source: _Source, start: int, count: int, what: str) -> Iterator[tuple[str, np.ndarray]]:
    """(name, image as OpenCV decodes it) for frames start .. start+count-1, one at a time to spare memory."""
    if source.is_video:
        yield from _video_frames(source, start, count, what)
        return
    for path in source.files[start : start + count]:
        yield str(path), _read_image(path)


# ---------------------------------------------------------------------------------------------------
# Range


def _check_range(source: _Source, start: int, count: int | None) -> int:
    """The number of frames to read, after checking the range against the clip's length."""
    if source.total == 0:
        raise _bad(
            f"clip {source.path} has no frames",
            f"a clip folder must hold images ({' '.join(IMAGE_EXTENSIONS)}) or frames/ and masks/",
        )
    if start < 0:
        raise _bad(f"start frame {start} of clip {source.path} is negative", "use a start of 0 or more")
    if count is not None and count < 1:
        raise _bad(f"frame count {count} of clip {source.path} selects no frames", "use a count of 1 or more")
    if start >= source.total:
        raise _bad(
            f"start frame {start} is past the end of clip {source.path}, which has {source.total} frames",
            f"use a start between 0 and {source.total - 1}",
        )
    if count is None:
        return source.total - start
    if start + count > source.total:
        raise _bad(
            f"frames {start}..{start + count - 1} run past the end of clip {source.path}, "
            f"which has {source.total} frames",
            f"use a count of at most {source.total - start} for start {start}",
        )
    return count


# ---------------------------------------------------------------------------------------------------
# Masks


@dataclass
class _MaskRule:
    kind: str  # "alpha", "auto", "luma" or "key"
    threshold: float = 0.5
    key: tuple[int, int, int] = (0, 0, 0)
    model: str = "u2netp"  # the matting model of "auto"


def _parse_threshold(text: str, mask: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also false for nan
        raise _bad(
            f"bad mask option '{mask}': threshold '{text}' is not a number in 0..1", f"use {MASK_SPEC_HELP}"
        )
    return value


def _parse_mask_rule(mask: str) -> _MaskRule | None:
    """'alpha', 'auto[:MODEL]', 'luma:T' or 'key:RRGGBB:T' as a rule; None when it is none of these (a path)."""
    if mask == "alpha":
        return _MaskRule("alpha")
    kind, _, rest = mask.partition(":")
    if kind == "auto":
        model = rest or "u2netp"
        if model not in MATTING_MODELS:
            raise _bad(f"bad mask option '{mask}': unknown matting model '{model}'",
                       f"use 'auto' (u2netp), {', '.join(f'auto:{m}' for m in MATTING_MODELS[1:])}")
        return _MaskRule("auto", model=model)
    if kind == "luma":
        return _MaskRule("luma", _parse_threshold(rest, mask))
    if kind == "key":
        color, _, threshold = rest.partition(":")
        if not re.fullmatch(r"[0-9a-fA-F]{6}", color):
            raise _bad(
                f"bad mask option '{mask}': key colour '{color}' is not RRGGBB hex", f"use {MASK_SPEC_HELP}"
            )
        key = (int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16))
        return _MaskRule("key", _parse_threshold(threshold, mask), key)
    return None


def _rule_mask(rule: _MaskRule, frames: np.ndarray) -> np.ndarray:
    """A luma or key rule applied to RGB frames → boolean (N, H, W)."""
    if rule.kind == "luma":
        gray = np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames])
        return gray > rule.threshold * 255
    key = np.array(rule.key, dtype=np.float32)
    keep = np.empty(frames.shape[:3], dtype=bool)
    for i, frame in enumerate(frames):  # per frame: a float copy of the whole clip would be large
        distance = np.linalg.norm(frame.astype(np.float32) - key, axis=2) / (255 * np.sqrt(3))
        keep[i] = distance > rule.threshold
    return keep


def _read_mask_source(
    source: _Source, start: int, count: int, frame_size: tuple[int, int], clip_total: int
) -> np.ndarray:
    """Masks start .. start+count-1 of a mask folder or matte video → boolean (N, H, W)."""
    if source.total != clip_total:
        raise _bad(
            f"mask source {source.path} has {source.total} frames but the clip has {clip_total}",
            "give one mask per frame of the whole clip (the frame range applies to both)",
        )
    width, height = frame_size
    masks = np.empty((count, height, width), dtype=bool)
    for i, (name, image) in enumerate(_decoded(source, start, count, "matte video")):
        if image.shape[:2] != (height, width):
            raise _bad(
                f"mask {name} is {image.shape[1]}x{image.shape[0]} but the frame is {width}x{height}",
                "masks must have the same size as the frames",
            )
        first = image if image.ndim == 2 else image[:, :, 0]  # gray, or the first channel
        masks[i] = _unit_float(first) > 0.5
    return masks


def _resolve_masks(spec: ClipSpec, source: _Source, layout_masks: Path | None) -> _MaskRule | _Source:
    """The mask option as a rule (alpha, luma, key) or a mask source (folder or matte video)."""
    if spec.mask is None:
        if layout_masks is None:
            raise _bad(
                f"clip {source.path} has no masks/ folder and no mask option was given",
                f"give the mask source: {MASK_SPEC_HELP}",
            )
        return _source(layout_masks, "mask folder")
    rule = _parse_mask_rule(spec.mask)
    if rule is not None:
        if rule.kind == "alpha" and source.is_video:
            raise _bad(
                f"mask 'alpha' needs images with an alpha channel, but clip {source.path} is a video",
                "export the clip as RGBA PNGs, or give a matte video or mask folder",
            )
        return rule
    mask_path = Path(spec.mask).expanduser().resolve()
    if not mask_path.exists():
        raise _bad(f"mask option '{spec.mask}' is not an existing folder or video", f"use {MASK_SPEC_HELP}")
    return _source(mask_path, "mask source")


def _frame_names(source: _Source, start: int, count: int) -> list[str]:
    """Each frame's name: the image file's stem, or the frame number (00012) in a video."""
    if source.is_video:
        return [f"{index:05d}" for index in range(start, start + count)]
    return [path.stem for path in source.files[start : start + count]]


def _check_not_trivial(masks: np.ndarray, source: str) -> None:
    if not masks.any():
        raise _bad(
            f"the mask of clip {source} is empty on every frame",
            "check the mask source (for luma/key masks try another threshold)",
        )
    if masks.all():
        raise _bad(
            f"the mask of clip {source} covers the whole picture on every frame",
            "check the mask source (for luma/key masks try another threshold; maybe the mask is inverted)",
        )


# ---------------------------------------------------------------------------------------------------


def load_clip(spec: ClipSpec, auto_masks: AutoMasks | None = None) -> Clip:
    """Frames and masks of spec's range. Raises JokrError(code="bad_input") for any bad input.
    `auto_masks` makes the masks of the mask option `auto` (auto_masks.AutoMasker)."""
    path = Path(spec.path).expanduser().resolve()
    layout_masks = None
    if path.is_dir() and (path / "frames").is_dir():
        name = path.name
        layout_masks = path / "masks" if (path / "masks").is_dir() else None
        source = _source(path / "frames", "frames folder")
    else:
        name = path.stem if path.is_file() else path.name
        source = _source(path, "clip")

    count = _check_range(source, spec.start, spec.count)
    mask_rule = _resolve_masks(spec, source, layout_masks)

    use_alpha = isinstance(mask_rule, _MaskRule) and mask_rule.kind == "alpha"
    frames = None
    alphas = []
    for i, (image_name, image) in enumerate(_decoded(source, spec.start, count, "video")):
        if frames is None:
            height, width = image.shape[:2]
            frames = np.empty((count, height, width, 3), dtype=np.uint8)
        if image.shape[:2] != (height, width):
            raise _bad(
                f"{image_name} is {image.shape[1]}x{image.shape[0]} but the first frame is {width}x{height}",
                "all frames of a clip must have the same size; re-export the sequence",
            )
        if source.is_video:
            frames[i] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            continue
        frames[i], alpha = _split_image(image, Path(image_name))
        if use_alpha:
            if alpha is None:
                raise _bad(
                    f"mask 'alpha': image {image_name} has no alpha channel",
                    "export RGBA images (e.g. PNG with transparency), or give another mask source",
                )
            alphas.append(alpha > 0.5)

    if use_alpha:
        masks = np.stack(alphas)
    elif isinstance(mask_rule, _MaskRule) and mask_rule.kind == "auto":
        if auto_masks is None:
            raise _bad(f"mask '{spec.mask}' of clip {path} needs the matting model, which this command does not run",
                       "make the masks with `jokr-engine masks` and give their folder as the mask source")
        masks = auto_masks(frames, _frame_names(source, spec.start, count), mask_rule.model)
    elif isinstance(mask_rule, _MaskRule):
        masks = _rule_mask(mask_rule, frames)
    else:
        masks = _read_mask_source(mask_rule, spec.start, count, (width, height), source.total)
    _check_not_trivial(masks, str(path))

    return Clip(
        name=name,
        source=str(path),
        start=spec.start,
        frames=frames,
        masks=masks.astype(np.uint8) * 255,
        fps=source.fps,
    )
