"""Smooth Keypoints without bpy: which keys are locked (the artist's), running `jokr-engine smooth` and
reading its answer, and the report line (docs/FORMATS.md, "Smoothing").

`smooth` imports no torch and takes well under a second, so it runs synchronously with a short timeout.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from .protocol import ProtocolError, parse_event_line, smooth_command

TIMEOUT_S = 60.0


class SmoothError(RuntimeError):
    """The engine could not smooth: its own message and hint, or why it did not answer."""


def locked_grid(frame_count: int, num_keypoints: int, artist_frames: dict[int, Iterable[float]],
                first_frame: int) -> list[list[bool]]:
    """The keypoint file's `locked` field: keypoint k on clip frame i is locked when the artist keyed it on
    scene frame first_frame + i (a key within half a frame counts for that frame)."""
    grid = [[False] * num_keypoints for _ in range(frame_count)]
    for index, frames in artist_frames.items():
        for frame in frames:
            clip_frame = round(frame - first_frame)
            if 0 <= clip_frame < frame_count and 0 <= index < num_keypoints:
                grid[clip_frame][index] = True
    return grid


def run_smooth(python: str, env: dict, keypoints: str, out: str, clips: tuple[str, ...], strength: float,
               cwd: str, timeout_s: float = TIMEOUT_S) -> dict:
    """Run `smooth` and return its `done` outputs; SmoothError with the engine's message otherwise."""
    try:
        result = subprocess.run(smooth_command(python, keypoints, out, clips, strength), capture_output=True,
                                text=True, env=env, cwd=cwd, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SmoothError(f"Engine Python not found: {python}") from None
    except OSError as error:  # e.g. not executable: the preference points at something that cannot run
        raise SmoothError(f"Engine Python {python} could not be started: {error.strerror or error}") from None
    except subprocess.TimeoutExpired:
        raise SmoothError(f"The engine did not smooth within {timeout_s:.0f} s") from None
    for line in result.stdout.splitlines():
        try:
            event = parse_event_line(line)
        except ProtocolError:
            continue
        if event.name == "error":
            hint = event.get("hint") or ""
            raise SmoothError(event.get("message") + (f" — {hint}" if hint else ""))
        if event.name == "done" and event.get("command") in (None, "smooth"):
            return dict(event.get("outputs") or {})
    lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
    raise SmoothError(f"The engine stopped (exit code {result.returncode}) without smoothing: "
                      f"{lines[-1] if lines else 'no message'}")


@dataclass
class ClipJitter:
    label: str
    before_px: float | None
    after_px: float | None
    locked: int

    def describe(self) -> str:
        if self.before_px is None or self.after_px is None:
            jitter = "too short to measure jitter"
        else:
            jitter = f"jitter {self.before_px:.2f} → {self.after_px:.2f} px"
        kept = f", {self.locked} key{'s' if self.locked != 1 else ''} you set kept" if self.locked else ""
        return f"clip {self.label}: {jitter}{kept}"


def jitter_report(outputs: dict) -> list[ClipJitter]:
    clips = outputs.get("clips") or {}
    return [ClipJitter(label, clips[label].get("jitter_px_before"), clips[label].get("jitter_px_after"),
                       int(clips[label].get("locked") or 0)) for label in sorted(clips)]
