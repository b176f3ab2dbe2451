"""The engine's command line (docs/CLI.md) and event stream (schema jokr.events/1, docs/FORMATS.md).

Validation is strict about what the add-on relies on and lenient about the rest: a field the add-on
reads must be present with the documented type; documented fields it does not read are type-checked
only when present, and unknown fields are kept, so a newer engine that adds fields still works.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

SCHEMA = "jokr.events/1"
ENGINE_MODULE = "jokr_engine"

DONE_STATUSES = ("finished", "cancelled", "paused")
PRESETS = ("tiny", "demo", "fast", "paper")
DEVICES = ("auto", "cuda", "mps", "cpu")
LOOKS = ("A", "B")
MATTING_MODELS = ("u2netp", "isnet", "both")  # the mask source `auto[:MODEL]` (docs/CLI.md, "Clips")


class ProtocolError(ValueError):
    """A line on the engine's stdout that is not a valid jokr.events/1 event."""


# Kinds of values. The engine sends NaN/Infinity as null, so measurements may be null.
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _is_measure(value) -> bool:
    return value is None or _is_number(value)


def _is_losses(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and _is_measure(v) for k, v in value.items())


def _is_optional_str(value) -> bool:
    return value is None or isinstance(value, str)


def _is_suspects(value) -> bool:
    """`mask_check`'s suspect frames: [{index, frame, reasons}]."""
    return isinstance(value, list) and all(
        isinstance(item, dict) and _is_int(item.get("index")) and isinstance(item.get("frame"), str)
        and isinstance(item.get("reasons"), list) and all(isinstance(r, str) for r in item["reasons"])
        for item in value)


_KINDS = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "str?": (_is_optional_str, "a string or null"),
    "int": (_is_int, "an integer"),
    "number?": (_is_measure, "a number or null"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "dict?": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "losses": (_is_losses, "an object of numbers"),
    "suspects": (_is_suspects, "a list of {index, frame, reasons}"),
}

# event → {field: (kind, required)}
EVENT_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "started": {
        "command": ("str", True), "job": ("str?", False), "device": ("str?", False),
        "device_name": ("str?", False), "preset": ("str?", False), "plan": ("list", False),
        "resumed_from": ("dict?", False),
    },
    "progress": {
        "command": ("str", False), "step": ("int", True), "iteration": ("int", True), "of": ("int", True),
        "losses": ("losses", False), "its_per_s": ("number?", False), "eta_s": ("number?", False),
    },
    "preview": {"command": ("str", False), "step": ("int", False), "iteration": ("int", False),
                "path": ("str", True)},
    "checkpoint": {
        "command": ("str", False), "step": ("int", True), "iteration": ("int", True), "path": ("str", True),
        "reason": ("str", False),
    },
    "done": {"command": ("str", True), "status": ("str", True), "outputs": ("dict", False)},
    "error": {"command": ("str", False), "message": ("str", True), "hint": ("str", False),
              "code": ("str", False)},
    "masking": {
        "command": ("str", False), "clip": ("str", True), "model": ("str", False), "done": ("int", True),
        "of": ("int", True), "cached": ("int", False), "s_per_frame": ("number?", False),
        "eta_s": ("number?", False), "device": ("str?", False),
    },
    "mask_check": {"command": ("str", False), "clip": ("str", True), "frames": ("int", False),
                   "suspect": ("suspects", True), "report": ("str", False)},
}


@dataclass(frozen=True)
class Event:
    """One parsed event: its name, UNIX time and every field of the line (documented or not)."""

    name: str
    time: float
    data: dict = field(compare=False)

    def get(self, key, default=None):
        return self.data.get(key, default)


def validate_event(record) -> Event:
    """Check one decoded JSON value against the schema and return it as an Event."""
    if not isinstance(record, dict):
        raise ProtocolError(f"an event must be a JSON object, not {type(record).__name__}")
    schema = record.get("schema")
    if schema != SCHEMA:
        raise ProtocolError(f"unsupported event schema {schema!r} (this add-on reads {SCHEMA!r})")
    name = record.get("event")
    if name not in EVENT_FIELDS:
        raise ProtocolError(f"unknown event {name!r}")
    if not _is_number(record.get("time")):
        raise ProtocolError(f"{name} event: 'time' must be a number")
    for key, (kind, required) in EVENT_FIELDS[name].items():
        if key not in record:
            if required:
                raise ProtocolError(f"{name} event: field {key!r} is missing")
            continue
        check, description = _KINDS[kind]
        if not check(record[key]):
            raise ProtocolError(f"{name} event: field {key!r} must be {description}, got {record[key]!r}")
    if name == "done" and record["status"] not in DONE_STATUSES:
        raise ProtocolError(f"done event: unknown status {record['status']!r}")
    return Event(name, float(record["time"]), record)


def parse_event_line(line: str | bytes) -> Event:
    """Parse one stdout line. Raises ProtocolError for anything that is not a valid event."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    text = line.strip()
    if not text:
        raise ProtocolError("empty line")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProtocolError(f"not JSON ({error.msg}): {text[:80]}") from None
    return validate_event(record)


def make_event(name: str, time: float, **fields) -> Event:
    """An event built by the add-on itself (e.g. for an engine that died without reporting)."""
    return validate_event({"schema": SCHEMA, "event": name, "time": time, **fields})


# ---------------------------------------------------------------------------------------------------
# Command lines


@dataclass(frozen=True)
class ClipArgs:
    """One clip as the engine takes it: a video file or an image folder, a frame range and a mask source."""

    path: str
    start: int = 0
    count: int | None = None
    mask: str | None = None  # None: the engine's default (the clip's masks/ folder)


def mask_alpha() -> str:
    return "alpha"


def mask_luma(threshold: float) -> str:
    return f"luma:{_threshold(threshold)}"


def mask_key(rgb: tuple[float, float, float], threshold: float) -> str:
    """`key:RRGGBB:T` from a display-space colour in 0..1."""
    channels = "".join(f"{round(min(max(c, 0.0), 1.0) * 255):02X}" for c in rgb)
    return f"key:{channels}:{_threshold(threshold)}"


def mask_auto(model: str = "u2netp") -> str:
    """`auto` (u2netp, the default), `auto:isnet` or `auto:both`: the engine mattes every frame."""
    if model not in MATTING_MODELS:
        raise ValueError(f"unknown matting model {model!r}")
    return "auto" if model == MATTING_MODELS[0] else f"auto:{model}"


def _threshold(value: float) -> str:
    return format(min(max(float(value), 0.0), 1.0), ".4g")


def engine_command(python: str, *args: str) -> list[str]:
    return [python, "-m", ENGINE_MODULE, *args]


def version_command(python: str) -> list[str]:
    return engine_command(python, "--version", "--json")


def _clip_options(label: str, clip: ClipArgs) -> list[str]:
    low = label.lower()
    options = [f"--{low}", clip.path, f"--{low}-start", str(clip.start)]
    if clip.count is not None:
        options += [f"--{low}-count", str(clip.count)]
    if clip.mask is not None:
        options += [f"--{low}-mask", clip.mask]
    return options


def train_command(
    python: str, job_dir: str, clip_a: ClipArgs, clip_b: ClipArgs, preset: str, device: str = "auto",
    settings: dict[str, object] | None = None,
) -> list[str]:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}")
    args = ["train", *_clip_options("A", clip_a), *_clip_options("B", clip_b), "--job", job_dir,
            "--preset", preset, "--device", device]
    for key, value in (settings or {}).items():
        args += ["--set", f"{key}={value}"]
    return engine_command(python, *args)


def resume_command(python: str, job_dir: str, device: str = "auto") -> list[str]:
    return engine_command(python, "train", "--job", job_dir, "--resume", "--device", device)


def smooth_command(python: str, keypoints: str, out: str, clips: tuple[str, ...] = (),
                   strength: float | None = None) -> list[str]:
    """`smooth`: torch-free, well under a second (docs/CLI.md)."""
    args = ["smooth", "--keypoints", keypoints, "--out", out]
    for label in clips:
        args += ["--clip", label]
    if strength is not None:
        args += ["--strength", format(float(strength), ".6g")]
    return engine_command(python, *args)


def keypoints_command(python: str, job_dir: str, out: str | None = None, device: str = "auto") -> list[str]:
    args = ["keypoints", "--job", job_dir, "--device", device]
    if out is not None:
        args += ["--out", out]
    return engine_command(python, *args)


def render_command(
    python: str, job_dir: str, look: str, out_dir: str, keypoints: str | None = None,
    frames: tuple[int, int] | None = None, device: str = "auto",
) -> list[str]:
    """`frames` is (start, end) of the driving clip, end exclusive, as `--frames START:END`."""
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r}")
    args = ["render", "--job", job_dir, "--look", look, "--out", out_dir, "--device", device]
    if keypoints is not None:
        args += ["--keypoints", keypoints]
    if frames is not None:
        start, end = frames
        args += ["--frames", f"{start}:{end}"]
    return engine_command(python, *args)


def parse_version_output(stdout: str) -> dict:
    """The JSON object printed by `--version --json` (the last JSON line, ignoring any noise)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                info = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(info, dict):
                return info
    raise ProtocolError("the engine printed no version information")
