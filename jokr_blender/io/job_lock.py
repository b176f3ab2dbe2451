"""The engine's job lock as the add-on sees it: `<job>/engine.lock` (docs/FORMATS.md, "Job lock").

The engine takes the lock when `train` starts and renews its heartbeat every few seconds until its last
event is written (jokr_engine/job_lock.py). The add-on only reads it, by the same rules: a lock is live
while its heartbeat is younger than STALE_S and, when it was taken on this host, its process exists.
A live lock means an engine is training the job, whoever started it: the add-on follows that run
instead of starting another one."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

LOCK_FILE = "engine.lock"
STALE_S = 60.0


def process_exists(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate it there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def read_lock(job_dir: str) -> dict | None:
    """The lock record, or None when there is none. A lock being created (unreadable for an instant)
    reads as {"pid": None, "heartbeat": <its mtime>}: live while it is young."""
    path = os.path.join(job_dir, LOCK_FILE)
    try:
        with open(path, "rb") as stream:
            data = stream.read()
        mtime = os.path.getmtime(path)
    except OSError:  # none (or no folder to hold one)
        return None
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("heartbeat"), (int, float)):
        return {"pid": None, "host": None, "heartbeat": mtime}
    return record


def is_live(record: dict | None, now: float | None = None) -> bool:
    if record is None:
        return False
    now = time.time() if now is None else now
    if now - float(record.get("heartbeat") or 0.0) > STALE_S:
        return False
    if on_this_host(record):
        return process_exists(record["pid"])
    return True


def live_lock(job_dir: str) -> dict | None:
    """The lock of the engine training this job now, or None."""
    record = read_lock(job_dir)
    return record if is_live(record) else None


def on_this_host(record: dict) -> bool:
    return record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int)


def describe(record: dict) -> str:
    """'process 123 on host, since 14:05' for messages and the panel."""
    started = record.get("started")
    since = time.strftime(", since %H:%M", time.localtime(started)) if isinstance(started, (int, float)) else ""
    return f"process {record.get('pid')} on {record.get('host')}{since}"


def signal_holder(record: dict, job_dir: str, sig: int) -> bool:
    """Send `sig` to the lock's engine, if it runs on this host and still holds this job's lock (a pid
    is never signalled once its lock is gone: the number may belong to another process by then)."""
    if sys.platform == "win32" or not on_this_host(record):
        return False
    current = read_lock(job_dir)
    if current is None or (current.get("pid"), current.get("started")) != (record["pid"], record.get("started")):
        return False
    try:
        os.kill(record["pid"], sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


TERMINATE = signal.SIGTERM
KILL = getattr(signal, "SIGKILL", signal.SIGTERM)
