"""The event stream (schema jokr.events/1, docs/FORMATS.md): JSON lines on stdout, appended to the
job's events.jsonl, and a progress bar on stderr when a person is watching."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

SCHEMA = "jokr.events/1"
EVENTS = ("started", "progress", "preview", "checkpoint", "done", "error")


def json_safe(value):
    """JSON has no NaN/Infinity: they become null, so every reader can parse what is written."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class Emitter:
    def __init__(self, job_dir: Path | None = None, stream=None, terminal=None):
        self.stream = stream or sys.stdout
        self.terminal = terminal if terminal is not None else sys.stderr
        self.log_path = Path(job_dir) / "events.jsonl" if job_dir else None
        self.show_bar = hasattr(self.terminal, "isatty") and self.terminal.isatty()

    def emit(self, event: str, **fields) -> dict:
        assert event in EVENTS, event
        record = json_safe({"schema": SCHEMA, "event": event, "time": time.time(), **fields})
        line = json.dumps(record)
        self.stream.write(line + "\n")
        self.stream.flush()
        if self.log_path is not None and self.log_path.parent.is_dir():
            with open(self.log_path, "a") as log:
                log.write(line + "\n")
        if self.show_bar:
            self._draw(record)
        return record

    def _draw(self, record: dict) -> None:
        if record["event"] == "progress":
            done, total = record["iteration"], max(record["of"], 1)
            filled = int(30 * done / total)
            losses = " ".join(f"{k}={v:.3g}" for k, v in record["losses"].items() if v is not None)
            eta = record.get("eta_s") or 0
            self.terminal.write(
                f"\rstep {record['step']} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
                f"{record['its_per_s']:.1f} it/s ETA {eta / 60:.1f} min {losses}\x1b[K")
        elif record["event"] in ("done", "error", "checkpoint"):
            detail = record.get("message") or record.get("status") or record.get("path", "")
            self.terminal.write(f"\n{record['event']}: {detail}\n")
        self.terminal.flush()
