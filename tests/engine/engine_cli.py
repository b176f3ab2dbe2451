"""Run the engine's command line as a user would, and read its event stream."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_engine(*args, check: bool = True, env: dict | None = None) -> tuple[int, list[dict], str]:
    """→ (exit code, events, stderr). With check, a non-zero exit fails with the engine's own words."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "jokr_engine", *map(str, args)], capture_output=True, text=True,
                          env=environment, cwd=REPO, timeout=600)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if check and proc.returncode != 0:
        raise AssertionError(f"engine exited {proc.returncode}: {events[-1:]}\n{proc.stderr[-2000:]}")
    return proc.returncode, events, proc.stderr


def last_error(events: list[dict]) -> dict:
    errors = [e for e in events if e["event"] == "error"]
    assert errors, f"no error event in {events}"
    return errors[-1]
