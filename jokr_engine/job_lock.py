"""One engine per job: the lock file `<job>/engine.lock` (docs/FORMATS.md, "Job lock").

`train` takes the lock before it writes anything into the job folder and holds it until its last event
is written; a thread renews the heartbeat every HEARTBEAT_S seconds. A lock is live while its heartbeat
is younger than STALE_S and, when it was taken on this host, its process still exists. A stale lock (its
engine was killed, or its machine went down) is taken over:

- the lock is created whole and exclusively (a hard link that fails when the lock exists), so of two
  engines starting at once only one gets it, and a reader never sees half a lock;
- a stale lock is first moved aside (of two rivals only one rename succeeds); if what was moved turns out
  not to be the stale lock that was judged (its owner renewed it meanwhile), it is put back, without
  overwriting a lock taken in between;
- an engine that stalled for longer than STALE_S (a suspended machine) may find at its next heartbeat
  that its lock now names another engine: it sets `lost` and stops without writing anything more.

The add-on reads the same file by the same rules, without importing the engine
(jokr_blender/io/job_lock.py)."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from .atomic import atomic_write_bytes, atomic_write_json
from .errors import JokrError

LOCK_FILE = "engine.lock"
LOCK_FORMAT = "jokr.lock"
LOCK_VERSION = 1
HEARTBEAT_S = 5.0
STALE_S = 60.0


def process_exists(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a zombie counts: its parent has not reaped it)."""
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


def read_lock(folder: Path) -> dict | None:
    """The lock record, or None when there is none. A lock being created (empty or unreadable for an
    instant) reads as {"pid": None, "heartbeat": <its mtime>}: live while it is young."""
    path = Path(folder) / LOCK_FILE
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("heartbeat"), (int, float)):
        return {"pid": None, "host": None, "heartbeat": mtime}
    return record


def is_live(record: dict, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    if now - float(record.get("heartbeat") or 0.0) > STALE_S:
        return False
    pid = record.get("pid")
    if record.get("host") == socket.gethostname() and isinstance(pid, int):
        return process_exists(pid)
    return True


def describe(record: dict) -> str:
    started = record.get("started")
    since = time.strftime(" since %Y-%m-%d %H:%M", time.localtime(started)) if started else ""
    return f"process {record.get('pid')} on {record.get('host')}{since}"


class JobLock:
    """`with JobLock(folder, "train") as lock:` holds the job; `lock.lost` is set if it was taken over."""

    def __init__(self, folder: Path, command: str):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.command = command
        self.lost = threading.Event()
        self._record: dict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(self, *_exc) -> None:
        self.release()

    def _owner(self, record: dict | None) -> tuple:
        return tuple((record or {}).get(k) for k in ("pid", "host", "started"))

    def acquire(self) -> None:
        """Take the lock (creating the job folder) or raise JokrError(code="job_busy")."""
        self.folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        self._record = {"format": LOCK_FORMAT, "version": LOCK_VERSION, "pid": os.getpid(),
                        "host": socket.gethostname(), "command": self.command, "started": now, "heartbeat": now}
        for _attempt in range(5):
            if self._create():
                self._thread = threading.Thread(target=self._beat, name="jokr-lock-heartbeat", daemon=True)
                self._thread.start()
                return
            try:
                seen = self.path.read_bytes()
            except FileNotFoundError:
                continue  # released meanwhile
            holder = read_lock(self.folder)
            if holder is not None and is_live(holder):
                raise JokrError(f"{self.folder} is already being trained by another engine ({describe(holder)})",
                                f"wait for it to finish, or stop it: create {self.folder / 'CANCEL'}",
                                code="job_busy")
            self._move_aside(seen)
        raise JokrError(f"could not take the lock {self.path}: other engines keep taking it",
                        "try again in a minute", code="job_busy")

    def _create(self) -> bool:
        """Create the lock, whole, unless one exists: a hard link of a finished file never shows half a
        lock; where the file system has no hard links, an exclusive create (briefly empty) instead."""
        data = (json.dumps(self._record) + "\n").encode()
        new = self.path.with_name(f".{LOCK_FILE}.new-{os.getpid()}")
        atomic_write_bytes(new, data)
        try:
            os.link(new, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:
            pass
        finally:
            new.unlink(missing_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        return True

    def _move_aside(self, seen: bytes) -> None:
        """Remove the stale lock whose bytes were `seen`, but never a lock renewed or taken since."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return  # a rival moved it first
        if aside.read_bytes() != seen:
            try:
                os.link(aside, self.path)  # put it back, unless a lock was taken in between
            except FileExistsError:
                pass
        aside.unlink()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if not self.renew():
                return

    def renew(self) -> bool:
        """Write a new heartbeat. False (and `lost` set) when the lock now belongs to another engine."""
        current = read_lock(self.folder)
        if current is None:  # moved aside by a rival that then put nothing back
            if self._create():
                return True
            current = read_lock(self.folder)
        if self._owner(current) != self._owner(self._record):
            self.lost.set()
            return False
        self._record["heartbeat"] = time.time()
        atomic_write_json(self.path, self._record)
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._record is not None and not self.lost.is_set() \
                and self._owner(read_lock(self.folder)) == self._owner(self._record):
            self.path.unlink(missing_ok=True)
        self._record = None
