"""Evaluation report: a labelled contact sheet of frames and the eval.json / eval.md pair."""

import colorsys
import datetime
import json
import math
import os
import re
from pathlib import Path

import cv2
import numpy as np

from . import __version__
from .checkpoint import atomic_write_bytes
from .errors import JokrError

REPORT_FORMAT = "jokr.eval"
REPORT_VERSION = 1

METRIC_DEFINITIONS = {
    "l1": "mean absolute difference of [0,1] images (0 = identical)",
    "psnr": "mean over frames of 10·log10(1/MSE) on [0,1] images, dB, capped at 100 (higher is better)",
    "silhouette_iou": "mean over frames of IoU of masks thresholded at 0.5 (both empty = 1)",
    "nearest_silhouette_iou": "mean over generated frames of the best IoU with any real silhouette (shape realism)",
    "keypoint_jitter": "mean distance a keypoint moves between adjacent frames, image side = 1 "
    "(paper: 0.0023 with temporal loss, 0.0055 without)",
    "keypoint_cycle_error": "mean distance between driving keypoints and keypoints re-extracted from the render, "
    "image side = 1",
    "keypoint_spread": "mean pairwise distance between a frame's keypoints, image side = 1 (near 0 = collapse)",
    "keypoint_mask_hit_rate": "fraction of keypoints inside the animal's mask (1 = all on the animal)",
    "lpips_alex": "mean over frames of LPIPS-Alex v0.1 (real weights) between the reconstruction and the masked "
    "input (0 = identical; lower is better)",
}
"""One-line definition per metric family; docs/QUALITY.md has the full ones."""

_BACKGROUND = (32, 32, 32)
_TEXT = (235, 235, 235)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LABEL_SCALE = 0.5
_CAPTION_SCALE = 0.35
_MARGIN = 6


def keypoint_colors(k: int) -> np.ndarray:
    """K distinct RGB colours, uint8 (K, 3): evenly spaced hues at full saturation and value."""
    return np.array(
        [[round(c * 255) for c in colorsys.hsv_to_rgb(i / max(k, 1), 1.0, 1.0)] for i in range(k)],
        dtype=np.uint8,
    ).reshape(k, 3)


def _draw_keypoints(frame: np.ndarray, kp: np.ndarray, colors: np.ndarray) -> None:
    """Draws (K, 2) model-coordinate keypoints onto an RGB frame in place (align_corners=True)."""
    h, w = frame.shape[:2]
    radius = max(2, round(min(h, w) / 64))
    for k, (u, v) in enumerate(kp):
        if not (math.isfinite(u) and math.isfinite(v)):
            continue
        centre = (round((u + 1) / 2 * (w - 1)), round((v + 1) / 2 * (h - 1)))
        # A dark ring keeps a dot readable on a background of the same hue; the centre stays the pure colour.
        cv2.circle(frame, centre, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(frame, centre, radius, tuple(int(c) for c in colors[k]), -1, cv2.LINE_8)


def _text_size(text: str, scale: float) -> tuple[int, int]:
    (w, h), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    return w, h + baseline


def contact_sheet(
    rows: list[tuple[str, np.ndarray]], keypoints: dict[str, np.ndarray] | None, columns: int
) -> np.ndarray:
    """A labelled grid of frames, RGB uint8 (H, W, 3).

    Each row is ``(label, frames)`` with ``frames`` uint8 (F, h, w, 3); the row shows ``columns`` frames
    picked evenly from first to last (all of them when F <= columns), each captioned with its frame
    index, and the label in a column on the left. Rows whose label is a key of ``keypoints`` get that
    (F, K, 2) model-coordinate track drawn as dots, one colour per keypoint index (``keypoint_colors``).
    """
    if not rows:
        raise ValueError("contact_sheet: no rows")
    if columns < 1:
        raise ValueError(f"contact_sheet: columns must be >= 1, got {columns}")
    keypoints = keypoints or {}
    for label, frames in rows:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0 or frames.dtype != np.uint8:
            raise ValueError(f"contact_sheet: row {label!r} must be uint8 (F, h, w, 3), got {frames.dtype} "
                             f"{frames.shape}")
        if label in keypoints:
            kp = keypoints[label]
            if kp.ndim != 3 or kp.shape[0] != frames.shape[0] or kp.shape[2] != 2:
                raise ValueError(f"contact_sheet: keypoints of {label!r} must be ({frames.shape[0]}, K, 2), "
                                 f"got {kp.shape}")

    label_w = max(_text_size(label, _LABEL_SCALE)[0] for label, _ in rows) + 2 * _MARGIN
    caption_h = _text_size("0", _CAPTION_SCALE)[1] + _MARGIN
    cell_w = max(frames.shape[2] for _, frames in rows) + _MARGIN
    sheet_w = label_w + columns * cell_w + _MARGIN
    row_hs = [caption_h + frames.shape[1] + _MARGIN for _, frames in rows]
    sheet = np.empty((sum(row_hs) + _MARGIN, sheet_w, 3), np.uint8)
    sheet[:] = _BACKGROUND

    top = _MARGIN
    for (label, frames), row_h in zip(rows, row_hs):
        count = frames.shape[0]
        picks = np.unique(np.linspace(0, count - 1, min(columns, count)).round().astype(int))
        h, w = frames.shape[1:3]
        _, label_h = _text_size(label, _LABEL_SCALE)
        cv2.putText(sheet, label, (_MARGIN, top + caption_h + h // 2 + label_h // 2), _FONT, _LABEL_SCALE,
                    _TEXT, 1, cv2.LINE_AA)
        kp = keypoints.get(label)
        colors = keypoint_colors(kp.shape[1]) if kp is not None else None
        for col, index in enumerate(picks):
            left = label_w + col * cell_w
            cv2.putText(sheet, str(index), (left, top + caption_h - _MARGIN), _FONT, _CAPTION_SCALE, _TEXT, 1,
                        cv2.LINE_AA)
            frame = frames[index]
            if kp is not None:
                frame = frame.copy()  # draw on a copy: the caller's frames stay untouched
                _draw_keypoints(frame, kp[index].astype(np.float64), colors)
            sheet[top + caption_h:top + caption_h + h, left:left + w] = frame
        top += row_h
    return sheet


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Writes an RGB uint8 image as PNG, atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise JokrError(f"could not encode {path.name} as PNG", "report this as a bug", "internal")
    atomic_write_bytes(path, data.tobytes())
    return path


def definition_for(name: str) -> str:
    """The one-line definition of a metric name such as ``keypoint_jitter_A`` or ``AB/psnr``.

    The longest known metric name that appears in ``name`` as a whole word (bounded by the ends, ``_``,
    ``/``, ``.`` or ``-``) wins, so ``nearest_silhouette_iou_AB`` is not taken for ``silhouette_iou``.
    Unknown names give "".
    """
    found = [m for m in METRIC_DEFINITIONS if re.search(rf"(?<![A-Za-z0-9]){re.escape(m)}(?![A-Za-z0-9])", name)]
    return METRIC_DEFINITIONS[max(found, key=len)] if found else ""


def _metric_value(name: str, value) -> float | None:
    """A metric as a JSON number; NaN and infinities (not valid JSON) become None."""
    if value is None:
        return None
    if isinstance(value, bool) or not hasattr(value, "__float__"):
        raise TypeError(f"metric {name!r} must be a number or None, got {type(value).__name__}")
    value = float(value)
    return value if math.isfinite(value) else None


def _md_cell(value) -> str:
    if not isinstance(value, str):
        value = json.dumps(value, default=str)
    return value.replace("|", "\\|").replace("\n", " ")


def write_report(out_dir: str | os.PathLike, metrics: dict, conditions: dict) -> tuple[Path, Path]:
    """Writes ``eval.json`` and ``eval.md`` into ``out_dir`` and returns their paths.

    ``metrics`` maps a metric name to a number (or None when it could not be computed); names are the
    metric functions' names, optionally qualified (``keypoint_jitter_A``, ``AB/psnr``). ``conditions``
    describes the run: job, clips, preset, iterations, device, …; ``date`` (UTC, ISO 8601) and
    ``engine_version`` are filled in when absent. eval.json is
    ``{"format": "jokr.eval", "version": 1, "conditions": …, "metrics": …, "definitions": …}`` with
    non-finite values written as null (n/a in the Markdown).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    values = {name: _metric_value(name, value) for name, value in metrics.items()}
    conditions = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "engine_version": __version__,
        **conditions,
    }
    definitions = {name: definition_for(name) for name in values}
    doc = {"format": REPORT_FORMAT, "version": REPORT_VERSION, "conditions": conditions, "metrics": values,
           "definitions": definitions}
    json_path = out_dir / "eval.json"
    atomic_write_bytes(json_path, (json.dumps(doc, indent=2, default=str, allow_nan=False) + "\n").encode())

    lines = ["# JOKR evaluation", "", "## Metrics", "", "| metric | value | definition |", "|---|---|---|"]
    for name, value in values.items():
        shown = "n/a" if value is None else f"{value:.4g}"
        lines.append(f"| `{_md_cell(name)}` | {shown} | {_md_cell(definitions[name])} |")
    lines += ["", "## Conditions", "", "| | |", "|---|---|"]
    lines += [f"| {_md_cell(key)} | {_md_cell(value)} |" for key, value in conditions.items()]
    lines += ["", "Definitions in full: docs/QUALITY.md.", ""]
    md_path = out_dir / "eval.md"
    atomic_write_bytes(md_path, "\n".join(lines).encode())
    return json_path, md_path
