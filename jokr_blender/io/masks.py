"""Masks as the panel shows them and as the add-on writes them: the engine's automatic masks (`masking`
and `mask_check` events, docs/FORMATS.md, "Automatic masks") and the mattes rendered from a sequencer
Mask strip (one 8-bit grey PNG per frame of the whole clip, 0 background, 255 animal). No bpy.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from .job_state import JobState

AUTO_MASKS = "auto_masks"  # <job>/auto_masks/<A|B>/: the engine's cache of a clip's automatic masks
STRIP_MASKS = "strip_masks"  # <job>/strip_masks/<A|B>/: a Mask strip rendered for the engine
REASONS = {"empty": "empty", "full": "covers the frame", "touches_all_sides": "touches every side",
           "area_jump": "size jumps", "centroid_jump": "position jumps"}
MODEL_NAMES = {"u2netp": "u2netp", "isnet": "ISNet", "both": "u2netp + ISNet"}


def auto_mask_folder(job_dir: str, label: str) -> str:
    return os.path.join(job_dir, AUTO_MASKS, label)


def strip_mask_folder(job_dir: str, label: str) -> str:
    return os.path.join(job_dir, STRIP_MASKS, label)


def describe_reasons(reasons) -> str:
    return ", ".join(REASONS.get(reason, reason.replace("_", " ")) for reason in reasons)


def _format_eta(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}:{seconds:02d}"


def masking_mirrors(state: JobState) -> dict:
    """The panel's mirrors of the masks: the progress while they are made, and what their check found."""
    progress = state.masking
    text, fraction = "", 0.0
    if progress is not None:
        text = f"Masks {progress.clip} ({MODEL_NAMES.get(progress.model, progress.model)}): " \
               f"{progress.done}/{progress.of}"
        if progress.cached:
            text += f", {progress.cached} cached"
        if progress.eta_s:
            text += f", {_format_eta(progress.eta_s)} left"
        fraction = progress.done / progress.of if progress.of else 0.0
    checks = [state.mask_checks[clip] for clip in sorted(state.mask_checks)]
    check_text = "  ".join(
        f"Masks {check.clip}: " + (f"{len(check.suspect)} of {check.frames} frames suspect" if check.suspect
                                   else f"all {check.frames} frames look right")
        for check in checks)
    return {"masking_text": text, "masking_progress": min(max(fraction, 0.0), 1.0), "mask_check_text": check_text}


def suspect_rows(state: JobState) -> list[tuple[str, int, str, str]]:
    """(clip, index, frame, reasons) of every suspect frame, clip A's first."""
    return [(clip, frame.index, frame.frame, describe_reasons(frame.reasons))
            for clip in sorted(state.mask_checks) for frame in state.mask_checks[clip].suspect]


def encode_grey_png(mask) -> bytes:
    """A boolean mask (rows top first) as an 8-bit grey PNG: 0 outside, 255 inside."""
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    rows = np.zeros((height, width + 1), dtype=np.uint8)  # a filter byte (0: none) before every row
    rows[:, 1:] = mask * np.uint8(255)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + chunk(b"IEND", b""))


def mask_file_name(index: int) -> str:
    """The engine reads a mask folder in natural name order: frame i of the whole clip is file i."""
    return f"{index:05d}.png"
