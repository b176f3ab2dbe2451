"""The event stream (schema jokr.events/1, docs/FORMATS.md): JSON lines appended to the job's
events.jsonl (what the add-on reads), the same lines on stdout, and a progress bar on stderr when a
person is watching. A closed stdout means nobody is listening any more (the Blender that started the
engine quit or was killed): the engine goes on, and so does the file."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

SCHEMA = "jokr.events/1"
EVENTS = ("started", "progress", "preview", "checkpoint", "done", "error", "masking", "mask_check")


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
    def __init__(self, job_dir: Path | None = None, stream=None, terminal=None, command: str | None = None):
        self.stream = stream or sys.stdout
        self.terminal = terminal if terminal is not None else sys.stderr
        self.log_path = Path(job_dir) / "events.jsonl" if job_dir else None
        self.show_bar = hasattr(self.terminal, "isatty") and self.terminal.isatty()
        self.command = command  # stamped on every event, so interleaved commands in one file stay apart
        self.job_lock = None  # the job's lock (job_lock.JobLock) while this command holds it

    def emit(self, event: str, **fields) -> dict:
        assert event in EVENTS, event
        stamp = {"command": self.command} if self.command else {}
        record = json_safe({"schema": SCHEMA, "event": event, "time": time.time(), **stamp, **fields})
        line = json.dumps(record)
        if self.log_path is not None and self.log_path.parent.is_dir() and not self.lock_lost():
            with open(self.log_path, "a") as log:  # one write per line: readers never see half of one
                log.write(line + "\n")
        if self.stream is not None:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError, OSError):  # ValueError: the stream was closed
                self._stop_writing_stdout()
        if self.show_bar:
            self._draw(record)
        return record

    def lock_lost(self) -> bool:
        """The job was taken over by another engine: its log and its files are not ours any more."""
        return self.job_lock is not None and self.job_lock.lost.is_set()

    def _stop_writing_stdout(self) -> None:
        """Nobody reads stdout any more: stop writing it, and point the process's stdout at the null device,
        so that Python's final flush at exit does not fail either."""
        if self.stream is sys.stdout:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass
        self.stream = None

    def _draw(self, record: dict) -> None:
        if record["event"] == "progress":
            done, total = record["iteration"], max(record["of"], 1)
            filled = int(30 * done / total)
            losses = " ".join(f"{k}={v:.3g}" for k, v in record["losses"].items() if v is not None)
            eta = record.get("eta_s") or 0
            self.terminal.write(
                f"\rstep {record['step']} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
                f"{record['its_per_s']:.1f} it/s ETA {eta / 60:.1f} min {losses}\x1b[K")
        elif record["event"] == "masking":
            done, total = record["done"], max(record["of"], 1)
            filled = int(30 * done / total)
            self.terminal.write(f"\rmasks {record['clip']} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
                                f"ETA {(record.get('eta_s') or 0) / 60:.1f} min\x1b[K")
        elif record["event"] == "mask_check":
            self.terminal.write(f"\nmasks {record['clip']}: {len(record['suspect'])} suspect frames "
                                f"({record['report']})\n")
        elif record["event"] in ("done", "error", "checkpoint"):
            detail = record.get("message") or record.get("status") or record.get("path", "")
            self.terminal.write(f"\n{record['event']}: {detail}\n")
        self.terminal.flush()
