"""Suspect frames of a mask sequence: where an automatic matte most likely went wrong.

A frame is suspect when its mask is empty or nearly, covers nearly the whole picture, touches all four
sides of the frame (the background was taken for the animal), or jumps: its area differs from the median
of its neighbours' (up to NEIGHBOURS frames either side) by more than AREA_JUMP times, or its centroid
lies farther than CENTROID_JUMP animal sizes (the square root of the neighbours' median area) from their
median centroid. Comparing with the neighbours' median flags the bad frame alone, not the good frame
after it. On the true masks of the eight sample clips (../shared/data) the largest area ratio is 1.16 and
the largest centroid shift 0.07 animal sizes, so the limits leave room for real motion.

The report (`mask_check.json`, docs/FORMATS.md) lists the suspect frames with their reasons and every
frame's area and centroid."""

from __future__ import annotations

import numpy as np

EMPTY_FRACTION = 0.001  # of the frame's pixels
FULL_FRACTION = 0.95
AREA_JUMP = 1.35
CENTROID_JUMP = 0.25
NEIGHBOURS = 2
REPORT_FORMAT = "jokr.mask_check"
REPORT_VERSION = 1


def _centroid(mask: np.ndarray) -> tuple[float, float] | None:
    ys, xs = np.nonzero(mask)
    return (float(xs.mean()), float(ys.mean())) if len(xs) else None


def _touches_all_sides(mask: np.ndarray) -> bool:
    return bool(mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any())


def check_masks(masks: np.ndarray, names: list[str]) -> dict:
    """masks: (N, H, W) bool; names: each frame's name. → the report (JSON-able)."""
    count, height, width = masks.shape
    area = masks.reshape(count, -1).mean(axis=1)
    centroids = [_centroid(mask) for mask in masks]
    present = area >= EMPTY_FRACTION
    suspect = []
    for i in range(count):
        reasons = []
        if not present[i]:
            reasons.append("empty")
        if area[i] > FULL_FRACTION:
            reasons.append("full")
        if _touches_all_sides(masks[i]):
            reasons.append("touches_all_sides")
        neighbours = [j for j in range(i - NEIGHBOURS, i + NEIGHBOURS + 1) if 0 <= j < count and j != i and present[j]]
        if present[i] and neighbours:
            typical = float(np.median(area[neighbours]))
            if max(area[i] / typical, typical / area[i]) > AREA_JUMP:
                reasons.append("area_jump")
            centre = np.median([centroids[j] for j in neighbours], axis=0)
            size = np.sqrt(typical * height * width)
            if np.hypot(*(np.array(centroids[i]) - centre)) > CENTROID_JUMP * size:
                reasons.append("centroid_jump")
        if reasons:
            suspect.append({"index": i, "frame": names[i], "reasons": reasons})
    return {
        "format": REPORT_FORMAT, "version": REPORT_VERSION, "frames": count,
        "limits": {"empty_fraction": EMPTY_FRACTION, "full_fraction": FULL_FRACTION, "area_jump": AREA_JUMP,
                   "centroid_jump": CENTROID_JUMP, "neighbours": NEIGHBOURS},
        "suspect": suspect,
        "area": [round(float(a), 5) for a in area],
        "centroid": [None if c is None else [round((c[0] + 0.5) / width, 4), round((c[1] + 0.5) / height, 4)]
                     for c in centroids],
    }
