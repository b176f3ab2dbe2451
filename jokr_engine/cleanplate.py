"""Clean plate: a clip's background without its animal, to composite a retargeted animal over.

For each frame the animal's region (its mask, dilated to take in the soft edge and motion blur) is
filled from other frames of the clip where that background is visible: each of those frames is
aligned to the target with a homography fitted to AKAZE feature matches on the unmasked background
(the identity when the matches did not move: a static camera), scaled to the target's exposure, and
every pixel takes the per-channel median of the nearest aligned frames that see it. What no frame sees
is inpainted (OpenCV, Telea).

A homography is exact for a camera that only pans, tilts or zooms, and for a flat background; with
parallax (a moving camera and near objects) the fill is a little blurred or shifted there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_write_bytes
from .errors import JokrError
from .events import Emitter

NEIGHBOURS = 24  # frames that may lend pixels to one frame …
SPACING = 4  # … this many frames apart, nearest first, on both sides (±48 frames ≈ 2 s)
# Each pixel takes the median of the nearest frames that see it, no more: farther frames fill more of the
# hole but align less well (parallax, changing light); on the hold-out of docs/QUALITY.md 3 did best.
NEAREST_SAMPLES = 3
INPAINT_RADIUS = 5  # px: cv2.inpaint's neighbourhood for what no frame sees
# AKAZE rather than ORB: on low-contrast, blurred ground (the DAVIS dog's grass) ORB found ~400 points and
# too few inliers to align most pairs; AKAZE found 3-10 times as many inliers for 5-10 times the time.
AKAZE_THRESHOLD = 0.0005  # detector response threshold (OpenCV's default 0.001 finds too few on grass)
MAX_FEATURES = 800  # the strongest, to bound matching time
RATIO = 0.8  # Lowe's ratio test on the two nearest descriptors
MIN_MATCHES = 20  # fewer background matches (or RANSAC inliers) than this: the pair is not used
RANSAC_PX = 2.0  # reprojection error (px) below which a match is an inlier
STATIC_PX = 0.5  # median match displacement (px) below which a pair counts as static: no warp
MAX_AREA_CHANGE = 2.0  # a homography that scales the frame's area beyond ×2 or ÷2 is a failed fit
# Cameras that pan re-expose as they go (the DAVIS bear brightens by ~10 levels over 40 frames), so each
# lent frame is scaled per channel to the target's brightness on the background both see around the hole.
EXPOSURE_MARGIN = 24  # px of background around the hole where the two frames are compared
MIN_EXPOSURE_PX = 200  # fewer common pixels: no correction
MAX_GAIN = 1.5  # a larger correction (or below 1/MAX_GAIN) is clamped: more likely a bad match than exposure


def auto_dilation(width: int, height: int) -> int:
    """Default mask dilation: 1 % of the frame's diagonal (10 px at 854×480), at least 2 px."""
    return max(2, round(0.01 * math.hypot(width, height)))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """A boolean mask grown by `radius` pixels (elliptic structuring element)."""
    mask = mask.astype(np.uint8)
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask, kernel)
    return mask > 0


def inpaint(frame: np.ndarray, hole: np.ndarray, radius: int = INPAINT_RADIUS) -> np.ndarray:
    """`frame` (RGB uint8) with the `hole` pixels painted in from their surroundings (Telea)."""
    if not hole.any():
        return frame.copy()
    return cv2.inpaint(frame, hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)


def neighbour_frames(target: int, count: int, neighbours: int = NEIGHBOURS, spacing: int = SPACING) -> list[int]:
    """Frames that may lend pixels to `target`: target ± spacing·k, nearest first, alternating sides;
    near the clip's ends the missing side is made up on the other, so every frame gets as many."""
    after = range(target + spacing, count, spacing)
    before = range(target - spacing, -1, -spacing)
    picked = [s for pair in zip_longest(after, before) for s in pair if s is not None]
    return picked[:neighbours]


@dataclass
class PlateStats:
    """How one frame's plate was made."""

    hole_px: int = 0  # pixels of the dilated mask
    filled_px: int = 0  # of which filled from other frames (the median) …
    inpainted_px: int = 0  # … and inpainted (seen in no other frame)
    inpainted: np.ndarray | None = None  # bool (H, W): where those are; None when nothing was inpainted
    alignments: dict[str, int] = field(default_factory=lambda: {"static": 0, "homography": 0, "failed": 0})


class Aligner:
    """Homographies between frames of one clip, from AKAZE matches on each frame's unmasked background.
    Features and pairs are computed once and cached (frame t uses t+4, and t+4 uses t)."""

    def __init__(self, frames: np.ndarray, background: np.ndarray):
        self.frames, self.background = frames, background  # RGB (N,H,W,3); bool (N,H,W): usable pixels
        self.detector = cv2.AKAZE_create(threshold=AKAZE_THRESHOLD)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self._features: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._pairs: dict[tuple[int, int], tuple[np.ndarray | None, str]] = {}

    def _frame_features(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if index not in self._features:
            gray = cv2.cvtColor(self.frames[index], cv2.COLOR_RGB2GRAY)
            keypoints, descriptors = self.detector.detectAndCompute(gray, self.background[index].astype(np.uint8))
            strongest = np.argsort([-k.response for k in keypoints])[:MAX_FEATURES]
            points = np.array([keypoints[i].pt for i in strongest], dtype=np.float32).reshape(-1, 2)
            descriptors = descriptors[strongest] if descriptors is not None else None
            self._features[index] = (points, descriptors)
        return self._features[index]

    def _fit(self, first: int, second: int) -> tuple[np.ndarray | None, str]:
        """(3×3 map from `first`'s pixels to `second`'s, kind): kind is static, homography or failed."""
        points_a, descriptors_a = self._frame_features(first)
        points_b, descriptors_b = self._frame_features(second)
        if descriptors_a is None or descriptors_b is None:
            return None, "failed"
        pairs = self.matcher.knnMatch(descriptors_a, descriptors_b, k=2)
        matches = [best for best, runner_up in (p for p in pairs if len(p) == 2)
                   if best.distance < RATIO * runner_up.distance]
        if len(matches) < MIN_MATCHES:
            return None, "failed"
        source = points_a[[m.queryIdx for m in matches]]
        target = points_b[[m.trainIdx for m in matches]]
        # Detect a static camera rather than assume it: most background matches did not move at all.
        if np.median(np.linalg.norm(target - source, axis=1)) < STATIC_PX:
            return np.eye(3), "static"
        matrix, inliers = cv2.findHomography(source, target, cv2.RANSAC, RANSAC_PX)
        if matrix is None or int(inliers.sum()) < MIN_MATCHES or not self._plausible(matrix):
            return None, "failed"
        return matrix, "homography"

    def _plausible(self, matrix: np.ndarray) -> bool:
        height, width = self.frames.shape[1:3]
        corners = np.array([[[0, 0]], [[width, 0]], [[width, height]], [[0, height]]], dtype=np.float32)
        mapped = cv2.perspectiveTransform(corners, matrix)
        area = cv2.contourArea(mapped) / (width * height)
        return cv2.isContourConvex(mapped) and 1 / MAX_AREA_CHANGE <= area <= MAX_AREA_CHANGE

    def matrix(self, source: int, target: int) -> tuple[np.ndarray | None, str]:
        """(3×3 map from `source`'s pixels to `target`'s or None, kind)."""
        key = (min(source, target), max(source, target))
        if key not in self._pairs:
            self._pairs[key] = self._fit(*key)
        matrix, kind = self._pairs[key]
        if matrix is None or source == key[0]:
            return matrix, kind
        return np.linalg.inv(matrix), kind


def exposure_gain(colour: np.ndarray, seen: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-channel gain that gives `colour` (P, 3) the mean of `target` (P, 3) where `seen` (P,)."""
    if seen.sum() < MIN_EXPOSURE_PX:
        return np.ones(3, dtype=np.float32)
    gain = target[seen].mean(axis=0) / np.maximum(colour[seen].mean(axis=0), 1.0)
    return np.clip(gain, 1 / MAX_GAIN, MAX_GAIN).astype(np.float32)


def check_clip(frames: np.ndarray, masks: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise JokrError(f"clean plate: frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}",
                        "pass RGB frames as load_clip returns them")
    if masks.shape != frames.shape[:3]:
        raise JokrError(f"clean plate: {masks.shape[0] if masks.ndim else 0} masks of shape {masks.shape[1:]} "
                        f"for {len(frames)} frames of {frames.shape[1:3]}", "give one mask per frame, same size")


def check_settings(dilation: int, neighbours: int, spacing: int) -> None:
    for name, value, least in (("--dilate", dilation, 0), ("--neighbours", neighbours, 0), ("--spacing", spacing, 1)):
        if value < least:
            raise JokrError(f"clean plate: {name} {value} is below {least}", f"use {name} {least} or more")


def clean_plates(frames: np.ndarray, masks: np.ndarray, targets: list[int] | None = None,
                 dilation: int | None = None, neighbours: int = NEIGHBOURS, spacing: int = SPACING,
                 inpaint_radius: int = INPAINT_RADIUS) -> Iterator[tuple[int, np.ndarray, PlateStats]]:
    """(frame index, plate RGB uint8, stats) for each target frame (default all), one at a time.

    frames: RGB uint8 (N, H, W, 3); masks: (N, H, W), non-zero on the animal."""
    check_clip(frames, masks)
    height, width = frames.shape[1:3]
    dilation = auto_dilation(width, height) if dilation is None else dilation
    check_settings(dilation, neighbours, spacing)
    holes = np.stack([dilate(m > 0, dilation) for m in masks])
    aligner = Aligner(frames, ~holes)
    for target in range(len(frames)) if targets is None else targets:
        plate, stats = fill_frame(frames, holes, target, aligner, neighbour_frames(target, len(frames), neighbours,
                                                                                    spacing), inpaint_radius)
        yield target, plate, stats


def fill_frame(frames: np.ndarray, holes: np.ndarray, target: int, aligner: Aligner, sources: list[int],
               inpaint_radius: int = INPAINT_RADIUS) -> tuple[np.ndarray, PlateStats]:
    """Frame `target` with its `holes` region filled from `sources` (median), the rest inpainted."""
    plate, hole = frames[target].copy(), holes[target]
    stats = PlateStats(hole_px=int(hole.sum()))
    if not stats.hole_px:
        return plate, stats
    # Only a box around the hole is warped (a translation to it after the source → target map); its
    # margin is background both frames see, to match their exposure.
    height, width = hole.shape
    x, y, w, h = cv2.boundingRect(hole.astype(np.uint8))
    x0, y0 = max(0, x - EXPOSURE_MARGIN), max(0, y - EXPOSURE_MARGIN)
    x1, y1 = min(width, x + w + EXPOSURE_MARGIN), min(height, y + h + EXPOSURE_MARGIN)
    to_box = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], dtype=np.float64)
    inside = hole[y0:y1, x0:x1]
    target_margin = frames[target, y0:y1, x0:x1][~inside].astype(np.float32)
    colours, usable = [], []
    for source in sources:
        matrix, kind = aligner.matrix(source, target)
        stats.alignments[kind] += 1
        if matrix is None:
            continue
        if kind == "static":  # no resampling: exact pixels, and faster
            colour = frames[source, y0:y1, x0:x1]
            seen = ~holes[source, y0:y1, x0:x1]
        else:
            box_matrix = to_box @ matrix
            colour = cv2.warpPerspective(frames[source], box_matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
            # Outside the source frame counts as unseen (border 0); holes are dilated, so the bilinear
            # taps next to an unseen pixel never reach the animal itself.
            seen = cv2.warpPerspective((~holes[source]).astype(np.uint8), box_matrix, (x1 - x0, y1 - y0),
                                       flags=cv2.INTER_NEAREST, borderValue=0) > 0
        colour = colour.astype(np.float32)
        colours.append(colour[inside] * exposure_gain(colour[~inside], seen[~inside], target_margin))
        usable.append(seen[inside])
    filled = np.zeros(int(inside.sum()), dtype=bool)
    if colours:
        usable = np.stack(usable)
        usable &= np.cumsum(usable, axis=0) <= NEAREST_SAMPLES
        samples = np.where(usable[..., None], np.stack(colours), np.nan)
        filled = usable.any(axis=0)
        median = np.nanmedian(samples[:, filled], axis=0)
        box = plate[y0:y1, x0:x1]
        values = box[inside]
        values[filled] = np.clip(np.round(median), 0, 255).astype(np.uint8)
        box[inside] = values
    stats.filled_px = int(filled.sum())
    stats.inpainted_px = stats.hole_px - stats.filled_px
    if stats.inpainted_px:
        stats.inpainted = np.zeros_like(hole)
        stats.inpainted[y0:y1, x0:x1][inside] = ~filled
        plate = inpaint(plate, stats.inpainted, inpaint_radius)
    return plate, stats


def write_clean_plate(frames: np.ndarray, masks: np.ndarray, out: Path, emitter: Emitter | None = None,
                      dilation: int | None = None, neighbours: int = NEIGHBOURS, spacing: int = SPACING) -> dict:
    """Write the plate of every frame as `out/00000.png …` (numbered from 0 at the clip's first frame,
    like `render`), each atomically, with a `progress` event per frame; returns the `done` outputs."""
    check_clip(frames, masks)
    height, width = frames.shape[1:3]
    dilation = auto_dilation(width, height) if dilation is None else dilation
    check_settings(dilation, neighbours, spacing)  # before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total, started = len(frames), time.monotonic()
    hole = filled = 0
    alignments = {"static": 0, "homography": 0, "failed": 0}
    for index, plate, stats in clean_plates(frames, masks, None, dilation, neighbours, spacing):
        ok, data = cv2.imencode(".png", cv2.cvtColor(plate, cv2.COLOR_RGB2BGR))
        if not ok:
            raise JokrError(f"could not encode clean plate frame {index} as PNG", "check free disk space",
                            code="internal")
        atomic_write_bytes(out / f"{index:05d}.png", data.tobytes())
        hole, filled = hole + stats.hole_px, filled + stats.filled_px
        for kind, n in stats.alignments.items():
            alignments[kind] += n
        if emitter is not None:
            done, elapsed = index + 1, time.monotonic() - started
            emitter.emit("progress", step=1, iteration=done, of=total, its_per_s=done / elapsed,
                         eta_s=(total - done) * elapsed / done)
    moving = alignments["homography"] > 0
    return {"folder": str(out), "frames": total, "first": str(out / "00000.png"),
            "camera": "moving" if moving else "static" if alignments["static"] else "unknown",
            "dilation_px": dilation, "filled_fraction": filled / hole if hole else 1.0,
            "inpainted_fraction": (hole - filled) / hole if hole else 0.0, "alignments": alignments}
