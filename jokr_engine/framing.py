"""Crop boxes, model images, and the maps between frame and model coordinates.

The conventions are those of docs/FORMATS.md "Coordinates". Per axis (x shown):

    padded box   X0 = x0 − pad·w,  PW = (1 + 2·pad)·w           (frame pixels)
    model pixel  px = (u + 1) / 2 · (S − 1) + 0.5                (continuous, 0..S; u in [−1, 1])
    frame pixel  xf = X0 + px / S · PW                           (continuous, 0..W)
    frame coord  x  = xf / W

Continuous positions count from the outer edge of the first pixel, so pixel i covers [i, i+1] and
has its centre at i + 0.5. OpenCV puts pixel i's centre at i; `_resample` does that conversion, so
the image warps and the coordinate maps use one and the same affine.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import JokrError

CROP_MODES = ("auto", "on", "off")
CROP_MARGIN = 1.1  # the box is this much larger than the largest mask extent over the clip
CENTRE_SIGMA = 3.0  # frames; temporal smoothing of the box centre
AUTO_CROP_BELOW = 0.25  # "auto" crops when the animal covers less than this fraction of the frame on average


# ---------------------------------------------------------------------------------------------------
# Crop boxes


def _mask_bounds(masks: np.ndarray) -> np.ndarray:
    """(N, 4) [left, top, right, bottom] pixel edges of each frame's mask; NaN rows for empty masks."""
    bounds = np.full((len(masks), 4), np.nan)
    for i, mask in enumerate(masks):
        columns = np.flatnonzero(mask.any(axis=0))
        rows = np.flatnonzero(mask.any(axis=1))
        if columns.size:
            bounds[i] = (columns[0], rows[0], columns[-1] + 1, rows[-1] + 1)
    return bounds


def _smooth_centres(centres: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted smoothing over time of (N, 2) centres, NaN on frames with an empty mask.

    At each frame with a mask, a straight line is fitted to the centres nearby (Gaussian weights over
    the frames with a mask). Inside the clip this is plain Gaussian smoothing; at the clip's ends and
    next to empty frames, where the window is one-sided, the line keeps up with an animal that walks
    steadily, where a plain average would lag behind it. Empty frames take the nearest frame's centre.
    """
    known = np.flatnonzero(~np.isnan(centres[:, 0]))
    radius = int(np.ceil(3 * sigma))
    smoothed = np.empty((len(known), 2))
    for j, frame in enumerate(known):
        first, last = np.searchsorted(known, frame - radius), np.searchsorted(known, frame + radius, "right")
        window = known[first:last]
        offsets = (window - frame).astype(np.float64)
        weights = np.exp(-0.5 * (offsets / sigma) ** 2)
        weights /= weights.sum()
        mean_offset = weights @ offsets
        mean = weights @ centres[window]
        variance = weights @ (offsets - mean_offset) ** 2
        slope = 0.0  # a single frame in the window has no slope: the line is flat
        if variance > 1e-9:
            slope = weights @ ((offsets - mean_offset)[:, None] * centres[window]) / variance
        smoothed[j] = mean - slope * mean_offset  # the line's value at this frame (offset 0)
    # nearest frame with a mask; the earlier one on ties
    index = np.arange(len(centres))
    after = np.clip(np.searchsorted(known, index), 0, len(known) - 1)
    before = np.clip(after - 1, 0, len(known) - 1)
    nearest = np.where(index - known[before] <= known[after] - index, before, after)
    return smoothed[nearest]


def crop_boxes(masks: np.ndarray, mode: str = "auto") -> np.ndarray:
    """(N, 4) float64 crop boxes [x0, y0, w, h] in frame pixels for masks (N, H, W).

    "off": the whole frame. "on": one box size for the whole clip (the largest mask extent × 1.1 per
    axis) centred on the temporally smoothed mask centre; it may reach outside the frame.
    "auto": "on" when the mask covers less than a quarter of the frame on average, else "off".
    """
    if mode not in CROP_MODES:
        raise JokrError(
            f"unknown crop mode '{mode}'", f"use one of: {', '.join(CROP_MODES)}", code="bad_input"
        )
    count, height, width = masks.shape
    if mode == "auto":
        mode = "on" if np.count_nonzero(masks) / masks.size < AUTO_CROP_BELOW else "off"
    if mode == "off":
        return np.tile(np.array([0.0, 0.0, width, height]), (count, 1))

    bounds = _mask_bounds(masks)
    if np.isnan(bounds).all():
        raise JokrError(
            "cannot crop around the animal: the mask is empty on every frame",
            "check the clip's masks, or use --crop off",
            code="bad_input",
        )
    size = np.nanmax(bounds[:, 2:] - bounds[:, :2], axis=0) * CROP_MARGIN
    centres = _smooth_centres((bounds[:, :2] + bounds[:, 2:]) / 2, CENTRE_SIGMA)
    return np.concatenate([centres - size / 2, np.tile(size, (count, 1))], axis=1)


# ---------------------------------------------------------------------------------------------------
# Coordinate maps


def _padded(boxes: np.ndarray, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """Origin (X0, Y0) and extent (PW, PH) of the padded boxes, each (..., 2)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    origin = boxes[..., :2] - pad * boxes[..., 2:]
    extent = (1 + 2 * pad) * boxes[..., 2:]
    return origin, extent


def _per_point(array: np.ndarray, points: np.ndarray) -> np.ndarray:
    # (N, 2) box data broadcast against (N, K, 2) points
    return array[:, None, :] if points.ndim == 3 and array.ndim == 2 else array


def model_to_frame(
    uv: np.ndarray, boxes: np.ndarray, frame_size: tuple[int, int], size: int, pad: float = 0.2
) -> np.ndarray:
    """Model coordinates u, v in [-1, 1] ((N, K, 2) or (N, 2)) → frame coordinates 0..1, same shape.
    boxes (N, 4) crop boxes, frame_size (W, H), size the model image side S."""
    uv = np.asarray(uv, dtype=np.float64)
    origin, extent = (_per_point(a, uv) for a in _padded(boxes, pad))
    model_px = (uv + 1) / 2 * (size - 1) + 0.5
    return (origin + model_px / size * extent) / np.asarray(frame_size, dtype=np.float64)


def frame_to_model(
    xy: np.ndarray, boxes: np.ndarray, frame_size: tuple[int, int], size: int, pad: float = 0.2
) -> np.ndarray:
    """Frame coordinates 0..1 → model coordinates u, v; the exact inverse of model_to_frame."""
    xy = np.asarray(xy, dtype=np.float64)
    origin, extent = (_per_point(a, xy) for a in _padded(boxes, pad))
    model_px = (xy * np.asarray(frame_size, dtype=np.float64) - origin) / extent * size
    return (model_px - 0.5) / (size - 1) * 2 - 1


# ---------------------------------------------------------------------------------------------------
# Resampling


def _resample(
    image: np.ndarray, scale: np.ndarray, offset: np.ndarray, out_size: tuple[int, int]
) -> np.ndarray:
    """Resample image to out_size (W, H) so that output position c (continuous, per axis x, y) shows
    the input at scale·c + offset; zero outside the input."""
    height, width = image.shape[:2]
    scale = np.asarray(scale, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    # Bilinear sampling aliases when shrinking: average the input down first (exact area filter),
    # then the warp is close to 1:1. The affine is rescaled by the exact size ratio.
    reduced = np.maximum(1, np.round(np.array([width, height]) / np.maximum(scale, 1.0))).astype(int)
    if (reduced != (width, height)).any():
        image = cv2.resize(image, (int(reduced[0]), int(reduced[1])), interpolation=cv2.INTER_AREA)
        ratio = reduced / np.array([width, height])
        scale, offset = scale * ratio, offset * ratio
    # OpenCV index i sits at continuous position i + 0.5 in both images.
    matrix = np.array(
        [
            [scale[0], 0.0, offset[0] + 0.5 * scale[0] - 0.5],
            [0.0, scale[1], offset[1] + 0.5 * scale[1] - 0.5],
        ]
    )
    return cv2.warpAffine(
        image,
        matrix,
        out_size,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def model_frames(
    frames: np.ndarray, masks: np.ndarray, boxes: np.ndarray, size: int, pad: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """The padded box of each frame squashed to S×S: images uint8 (N, 3, S, S) RGB and masks uint8
    (N, 1, S, S) 0/255; black / 0 outside the frame. The mask is not applied to the image."""
    count = len(frames)
    images = np.empty((count, 3, size, size), dtype=np.uint8)
    model_masks = np.empty((count, 1, size, size), dtype=np.uint8)
    origins, extents = _padded(boxes, pad)
    for i in range(count):
        scale = extents[i] / size  # frame pixels per model pixel
        images[i] = _resample(frames[i], scale, origins[i], (size, size)).transpose(2, 0, 1)
        model_masks[i, 0] = np.where(_resample(masks[i], scale, origins[i], (size, size)) >= 128, 255, 0)
    return images, model_masks


def look_boxes(boxes: np.ndarray, look_aspect: float) -> np.ndarray:
    """The driver's crop boxes (N, 4) reshaped to the look clip's aspect (width / height of its boxes):
    same centre, same area. A model picture squashes its own clip's box to a square, so a render in the
    look's model space must be unsquashed with the look's aspect, not the driver's, or a wide animal comes
    out flattened when a tall clip drives it."""
    boxes = np.asarray(boxes, dtype=np.float64)
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    area = boxes[:, 2] * boxes[:, 3]
    size = np.stack([np.sqrt(area * look_aspect), np.sqrt(area / look_aspect)], axis=1)
    return np.concatenate([centre - size / 2, size], axis=1)


def box_aspect(boxes: np.ndarray) -> float:
    """Width / height of a clip's crop boxes (one size per clip in every crop mode; the median for safety)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return float(np.median(boxes[:, 2] / boxes[:, 3]))


def paste_back(
    rgba: np.ndarray, box: np.ndarray, frame_size: tuple[int, int], pad: float = 0.2
) -> np.ndarray:
    """A model-space RGBA picture (S, S, 4) uint8 placed into the full frame (H, W, 4) uint8 at its
    padded box; transparent outside it. Model pixels land where model_to_frame puts them."""
    size = rgba.shape[0]
    origin, extent = _padded(box, pad)
    scale = size / extent  # model pixels per frame pixel
    # Resample premultiplied colour, so transparent (black) pixels do not darken the silhouette's edge.
    picture = rgba.astype(np.float32)
    picture[:, :, :3] *= picture[:, :, 3:] / 255
    placed = _resample(picture, scale, -origin * scale, (int(frame_size[0]), int(frame_size[1])))
    alpha = placed[:, :, 3:]
    placed[:, :, :3] = np.where(alpha > 0, placed[:, :, :3] * 255 / np.maximum(alpha, 1e-6), 0)
    return np.clip(np.round(placed), 0, 255).astype(np.uint8)
