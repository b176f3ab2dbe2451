"""The benchmark's report: report.md (one table per pair), scores.json and the picture groundtruth.png."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import cv2
import numpy as np

from .. import __version__
from ..checkpoint import atomic_write_bytes
from ..events import json_safe
from ..report import contact_sheet, write_png
from .pairs import DIRECTIONS, Pair, clip_plate
from .score import DEFINITIONS, METRICS, ROW_DEFINITIONS, ROWS

SCORES_FORMAT = "jokr.groundtruth.scores"
SCORES_VERSION = 1
_HEADINGS = {"iou": "IoU", "psnr": "PSNR dB", "lpips": "LPIPS", "pose_following": "pose-following",
             "phase_error": "phase error"}
_DIGITS = {"iou": 3, "psnr": 1, "lpips": 3, "pose_following": 2, "phase_error": 3}


def _cell(metric: str, value, lpips_available: bool) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "not available" if metric == "lpips" and not lpips_available else "n/a"
    return f"{value:.{_DIGITS[metric]}f}"


def pair_table(name: str, description: str, results: dict, lpips_available: bool) -> list[str]:
    """Markdown: a heading and one table, rows ceiling / output / copy / retrieve, columns metric × direction."""
    directions = [d for d in DIRECTIONS if d in results]
    header = ["row"] + [f"{d} {_HEADINGS[m]}" for d in directions for m in METRICS]
    lines = [f"## `{name}`", "", description, "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for row in ROWS:
        if not all(row in results[d] for d in directions):
            continue
        cells = [row] + [_cell(m, results[d][row][m], lpips_available) for d in directions for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def write_outputs(out_dir: Path, pairs: dict[str, dict], conditions: dict, lpips_description: str,
                  lpips_available: bool) -> tuple[Path, Path]:
    """`pairs`: {pair name: {"description": str, "results": {direction: {row: scores}}, "conditions": {…}}}.
    Writes report.md and scores.json into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    conditions = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  "engine_version": __version__, **conditions, "lpips": lpips_description}
    doc = {"format": SCORES_FORMAT, "version": SCORES_VERSION, "conditions": conditions,
           "definitions": {**DEFINITIONS, **{f"row {k}": v for k, v in ROW_DEFINITIONS.items()}},
           "pairs": {name: {"description": entry["description"], "conditions": entry.get("conditions", {}),
                            "scores": {d: {row: scores for row, scores in rows.items()}
                                       for d, rows in entry["results"].items()}}
                     for name, entry in pairs.items()}}
    json_path = out_dir / "scores.json"
    text = json.dumps(json_safe(doc), indent=1, allow_nan=False)
    atomic_write_bytes(json_path, (text + "\n").encode())

    lines = ["# JOKR ground-truth benchmark", "",
             "AB = clip A's motion with clip B's look (the truth is `truth_AB`), BA the reverse. Definitions in "
             "full: docs/QUALITY.md, \"Ground-truth benchmark\".", ""]
    for name, entry in pairs.items():
        lines += pair_table(name, entry["description"], entry["results"], lpips_available)
        for key, value in entry.get("conditions", {}).items():
            lines.append(f"- {key}: {value}")
        if entry.get("conditions"):
            lines.append("")
    if not lpips_available:
        lines += [f"LPIPS {lpips_description}.", ""]
    lines += ["## Rows", ""] + [f"- `{k}`: {v}" for k, v in ROW_DEFINITIONS.items()]
    lines += ["", "## Columns", ""] + [f"- {_HEADINGS[k]}: {v}" for k, v in DEFINITIONS.items()]
    lines += ["", "## Conditions", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in conditions.items()]
    md_path = out_dir / "report.md"
    atomic_write_bytes(md_path, ("\n".join(lines) + "\n").encode())
    return md_path, json_path


def _over_plate(rgba: np.ndarray, plate: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    picture = rgba[..., :3].astype(np.float32) * alpha + plate.astype(np.float32)[None] * (1 - alpha)
    return np.clip(np.round(picture), 0, 255).astype(np.uint8)


def _scaled(frames: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1:
        return frames
    height, width = frames.shape[1:3]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def picture_rows(pair: Pair, rows: dict[str, dict[str, np.ndarray]], baseline: str = "retrieve",
                 scale: float = 1.0) -> list[tuple[str, np.ndarray]]:
    """Contact-sheet rows per direction: the driver, the truth, the output and a baseline (RGBA rows are
    shown over the driver's background plate)."""
    out = []
    for direction, stacks in rows.items():
        driver, _ = DIRECTIONS[direction]
        plate = clip_plate(pair.spec.clip(driver))
        prefix = f"{pair.name} {direction}"
        out.append((f"{prefix} driver ({driver})", _scaled(pair.frames[driver], scale)))
        out.append((f"{prefix} truth", _scaled(pair.frames[f"truth_{direction}"], scale)))
        for name in ("output", baseline):
            if name in stacks:
                out.append((f"{prefix} {name}", _scaled(_over_plate(stacks[name], plate), scale)))
    return out


def write_picture(path: Path, rows: list[tuple[str, np.ndarray]], columns: int = 6) -> Path:
    return write_png(path, contact_sheet(rows, None, columns=columns))
