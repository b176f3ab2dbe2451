"""The job manager: runs engine commands as subprocesses without ever blocking the caller.

Design (docs/ADDON.md, "Job manager"):
- Each run is a child process in its own session (its own process group), so cancelling it can take
  down everything it spawned and a Ctrl+C in Blender's terminal does not reach it.
- A reader thread per run turns stdout lines into events on a queue. Lines that are not events
  (a library printing to stdout) go to engine.log instead of failing the job. stderr goes straight
  into <job>/engine.log.
- `poll()` runs on the caller's thread (Blender's main thread, from a timer): it applies queued events
  to the job's JobState, escalates pending cancels and closes runs whose process ended. Nothing
  touches shared state from the reader thread except the queue.
- `pump()`/`wait()` block, polling, for scripts and tests (bpy as a module has no event loop).
- `cancel()` creates <job>/CANCEL (the engine checkpoints and stops), sends SIGTERM after half the
  grace period and kills the whole process group when the grace period is over.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import job_state
from .protocol import Event, ProtocolError, parse_event_line, parse_version_output, version_command

POLL_SLEEP_S = 0.05
# A process that exited while something it spawned still holds stdout open: kill the group after this.
ORPHAN_PIPE_S = 2.0
LOG_TAIL_BYTES = 8192
_WINDOWS = sys.platform == "win32"


class EngineStartError(RuntimeError):
    """The engine process could not be started at all (missing interpreter, busy job …)."""


def engine_environment(engine_path: str = "", base: dict | None = None) -> dict:
    """The environment for the engine: the caller's, without Blender's Python settings, with the
    optional engine source folder first on PYTHONPATH and unbuffered output so events arrive live."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONHOME", None)
    if engine_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (engine_path, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def last_log_line(path: str) -> str:
    """The last non-empty line of a log: for a crashed Python, the exception (e.g. a missing module)."""
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            stream.seek(max(stream.tell() - LOG_TAIL_BYTES, 0))
            lines = stream.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


@dataclass
class EngineInfo:
    version: str
    device: str


def check_engine(python: str, env: dict, timeout_s: float = 120.0) -> EngineInfo:
    """Run `--version --json`. Raises EngineStartError with the engine's own error line on failure."""
    try:
        # A neutral working folder, as runs have theirs (the job's): `-m` must not find a package in
        # Blender's current folder that the engine will not find when it runs for real.
        result = subprocess.run(version_command(python), capture_output=True, text=True, env=env,
                                timeout=timeout_s, stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    except FileNotFoundError:
        raise EngineStartError(f"Engine Python not found: {python}") from None
    except PermissionError:
        raise EngineStartError(f"Engine Python is not executable: {python}") from None
    except subprocess.TimeoutExpired:
        raise EngineStartError(f"The engine did not answer within {timeout_s:.0f} s") from None
    try:
        info = parse_version_output(result.stdout)
    except ProtocolError:
        info = {}
    if result.returncode != 0 or not info:
        lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
        message = info.get("error") or (lines[-1] if lines else f"exit code {result.returncode}")
        raise EngineStartError(f"The engine does not work: {message}")
    device = info.get("device_name") or info.get("device") or "unknown device"
    return EngineInfo(str(info.get("engine", "?")), str(device))


@dataclass
class Run:
    """One engine process working on a job."""

    job_dir: str
    command: str
    process: subprocess.Popen
    on_finished: Callable[[Run], None] | None = None
    events: queue.Queue = field(default_factory=queue.Queue)
    reader: threading.Thread | None = None
    cancel_at: float | None = None  # monotonic time cancel() was called
    grace_s: float = 0.0
    terminated: bool = False
    exited_at: float | None = None  # monotonic time the process was first seen ended
    returncode: int | None = None
    # Outcome, set when the run is closed:
    status: str = "running"  # finished / failed / cancelled
    outputs: dict = field(default_factory=dict)
    error: job_state.ErrorInfo | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.job_dir, job_state.LOG_FILE)


def _read_stdout(run: Run) -> None:
    """Reader thread: stdout lines → ("event", Event) or ("noise", line, why); then ("eof",)."""
    for raw in run.process.stdout:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line.strip():
            continue
        try:
            run.events.put(("event", parse_event_line(line)))
        except ProtocolError as error:
            run.events.put(("noise", line, str(error)))
    run.events.put(("eof",))


class JobManager:
    """Owns the engine processes and the state of every job it has seen (keyed by job folder)."""

    def __init__(self):
        self._runs: dict[str, Run] = {}
        self._states: dict[str, job_state.JobState] = {}
        self._eof: set[str] = set()

    @staticmethod
    def key(job_dir: str) -> str:
        return os.path.normcase(os.path.abspath(job_dir))

    # ---- state

    def state(self, job_dir: str) -> job_state.JobState:
        """The job's state: live while a run is open, else recovered once from events.jsonl."""
        key = self.key(job_dir)
        if key not in self._states:
            self._states[key] = job_state.recover(key)
        return self._states[key]

    def known_jobs(self) -> list[tuple[str, job_state.JobState]]:
        return list(self._states.items())

    def forget(self, job_dir: str) -> None:
        """Drop the cached state of a job without a run, so the next state() re-reads the folder."""
        key = self.key(job_dir)
        if key not in self._runs:
            self._states.pop(key, None)

    def run(self, job_dir: str) -> Run | None:
        return self._runs.get(self.key(job_dir))

    def is_running(self, job_dir: str | None = None) -> bool:
        return bool(self._runs) if job_dir is None else self.key(job_dir) in self._runs

    # ---- starting and stopping

    def start(self, job_dir: str, argv: list[str], command: str, env: dict | None = None,
              on_finished: Callable[[Run], None] | None = None) -> Run:
        """Start `argv` for a job. `on_finished(run)` is called from poll() once the run has closed."""
        key = self.key(job_dir)
        if key in self._runs:
            raise EngineStartError(f"The engine is already running {self._runs[key].command} for this job")
        try:
            os.makedirs(key, exist_ok=True)
            log = open(os.path.join(key, job_state.LOG_FILE), "ab")  # closed by the `with log` below
        except OSError as error:
            raise EngineStartError(f"Cannot write the job folder {key}: {error.strerror}") from None
        if command == "train":  # a stale CANCEL would stop the new run at once
            try:
                os.unlink(os.path.join(key, job_state.CANCEL_FILE))
            except FileNotFoundError:
                pass
        state = self.state(key)
        with log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            isolation = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if _WINDOWS
                         else {"start_new_session": True})
            try:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                           env=env, cwd=key, **isolation)
            except FileNotFoundError:
                raise EngineStartError(f"Engine Python not found: {argv[0]}") from None
            except PermissionError:
                raise EngineStartError(f"Engine Python is not executable: {argv[0]}") from None
        run = Run(key, command, process, on_finished)
        run.reader = threading.Thread(target=_read_stdout, args=(run,), name=f"jokr-reader-{command}",
                                      daemon=True)
        run.reader.start()
        self._runs[key] = run
        self._eof.discard(key)
        state.mark_starting(command)
        return run

    def cancel(self, job_dir: str, grace_s: float = 20.0) -> bool:
        """Ask the run to stop: CANCEL file now, SIGTERM at grace/2, kill the group at grace.
        Returns False when no run is open for the job."""
        run = self.run(job_dir)
        if run is None:
            return False
        if run.cancel_at is None:
            run.cancel_at, run.grace_s = time.monotonic(), grace_s
            with open(os.path.join(run.job_dir, job_state.CANCEL_FILE), "w") as flag:
                flag.write("cancel requested by the Blender add-on\n")
            self.state(run.job_dir).mark_cancelling()
        self._escalate(run)
        return True

    def stop_all(self, grace_s: float = 5.0) -> None:
        """Stop every run (add-on disabled, Blender quitting): cancel, wait up to `grace_s`, kill.
        Completion callbacks are dropped: the add-on that registered them is going away."""
        for run in list(self._runs.values()):
            run.on_finished = None
            self.cancel(run.job_dir, grace_s)
        self.pump(timeout=grace_s + 2.0)
        for run in list(self._runs.values()):  # still there: kill, and close it without waiting further
            self._kill_group(run)
            try:
                run.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            self._close(run)

    # ---- progress

    def poll(self) -> list[tuple[str, Event]]:
        """Apply everything that arrived; close runs that ended. Returns the applied (job, event)s."""
        applied = []
        for key, run in list(self._runs.items()):
            state = self.state(key)
            while True:
                try:
                    item = run.events.get_nowait()
                except queue.Empty:
                    break
                if item[0] == "event":
                    self._note_outcome(run, item[1])
                    state.apply(item[1])
                    applied.append((key, item[1]))
                elif item[0] == "noise":
                    self._log(run, f"[stdout, not an event: {item[2]}] {item[1]}")
                else:
                    self._eof.add(key)
            if run.cancel_at is not None:
                self._escalate(run)
            if run.process.poll() is not None:
                run.exited_at = run.exited_at or time.monotonic()
                if key in self._eof:
                    self._close(run)
                elif time.monotonic() - run.exited_at > ORPHAN_PIPE_S:
                    self._kill_group(run)
        return applied

    def pump(self, timeout: float | None = None, job_dir: str | None = None) -> bool:
        """Poll until no run is open (or the job's run closed). Returns False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.poll()
            if not self.is_running(job_dir):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SLEEP_S)

    def wait(self, job_dir: str, timeout: float | None = None) -> Run | None:
        """Block until the job's current run closed; returns that run (None if there was none)."""
        run = self.run(job_dir)
        if run is not None:
            self.pump(timeout, job_dir)
        return run

    # ---- internals

    def _note_outcome(self, run: Run, event: Event) -> None:
        if event.name == "done":
            run.status = "finished" if event.get("status") == "finished" else "cancelled"
            run.outputs = dict(event.get("outputs") or {})
        elif event.name == "error":
            run.status = "failed"
            run.error = job_state.ErrorInfo(event.get("message"), event.get("hint") or "",
                                            event.get("code") or "internal")
        else:
            return
        job_state.persist_outcome(run.job_dir, event, run.command)

    def _escalate(self, run: Run) -> None:
        if run.process.poll() is not None:
            return
        waited = time.monotonic() - run.cancel_at
        if waited >= run.grace_s:
            self._kill_group(run)
        elif waited >= run.grace_s / 2 and not run.terminated:
            run.terminated = True
            # To the engine alone: it checkpoints and stops; its own children are its business.
            run.process.terminate()

    def _kill_group(self, run: Run) -> None:
        try:
            if _WINDOWS:
                run.process.kill()
            else:
                os.killpg(run.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _log(self, run: Run, text: str) -> None:
        with open(run.log_path, "a", encoding="utf-8") as log:
            log.write(text.rstrip("\n") + "\n")

    def _close(self, run: Run) -> None:
        """The process ended (normally) and stdout is drained: settle the outcome, clean up, call back."""
        run.returncode = run.process.poll()
        if not _WINDOWS:  # leftovers the engine spawned in its group (data loader workers …)
            try:
                os.killpg(run.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not run.reader.is_alive():
            run.process.stdout.close()
        state = self.state(run.job_dir)
        closing = state.outcome_for_exit(run.returncode, run.cancel_at is not None,
                                         last_log_line(run.log_path), time.time())
        if closing is not None:
            self._note_outcome(run, closing)
            state.apply(closing)
        if run.status == "running":  # only when the state was closed by other means
            run.status = "cancelled" if run.cancel_at is not None else "failed"
        del self._runs[run.job_dir]
        self._eof.discard(run.job_dir)
        if run.on_finished is not None:
            run.on_finished(run)
