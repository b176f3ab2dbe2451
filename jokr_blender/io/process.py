"""The job manager: runs engine commands as detached processes and follows every job through its events
file, without ever blocking the caller.

Design (docs/ADDON.md, "Job manager"):
- Each run is a process of its own: a new session on Linux and macOS, a detached process group without
  a console window on Windows; stdin and stdout are the null device and stderr goes to <job>/engine.log.
  Nothing ties it to Blender: a Blender that quits or is killed leaves it training.
- The engine appends every event to <job>/events.jsonl, the one source of truth (docs/FORMATS.md).
  `poll()` runs on the caller's thread (Blender's main thread, from a timer): it tails that file
  (job_state.EventTail), applies what arrived to the job's JobState, escalates pending cancels and closes
  runs that ended. No thread touches shared state.
- A run this manager did not start (another Blender's, the command line's, or this Blender's before it
  was restarted) is *followed*: when state() meets a job whose engine holds a live lock (<job>/engine.lock,
  io/job_lock.py), it replays the events file and tails it from there; the run ends when the lock goes.
  start() never starts a second engine on a job whose lock is live: it follows that run instead.
- `pump()`/`wait()` block, polling, for scripts and tests (bpy as a module has no event loop).
- `cancel()` creates <job>/CANCEL (the engine checkpoints and stops), sends SIGTERM after half the grace
  period and kills the engine when the grace period is over: with its whole process group when this
  manager started it; a followed engine only on this host, and only while it still holds the job's lock.
- `release_all(stop)` (Blender quits, the add-on is disabled): forget every run; with `stop`, first ask
  the engines this manager started to checkpoint and stop, without waiting for them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import job_lock, job_state
from .protocol import Event, ProtocolError, parse_version_output, version_command

POLL_SLEEP_S = 0.05
LOG_TAIL_BYTES = 8192
_WINDOWS = sys.platform == "win32"
# A process of its own, that outlives Blender: its own session (POSIX), or on Windows its own process
# group, detached from Blender's console, with no window of its own.
DETACHED = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS
                              | subprocess.CREATE_NO_WINDOW} if _WINDOWS else {"start_new_session": True})


class EngineStartError(RuntimeError):
    """The engine process could not be started at all (missing interpreter, busy job …)."""


def engine_environment(engine_path: str = "", base: dict | None = None) -> dict:
    """The environment for the engine: the caller's, without Blender's Python settings, with the
    optional engine source folder first on PYTHONPATH and unbuffered output so the log is live."""
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


def request_cancel(job_dir: str, who: str = "the Blender add-on") -> None:
    """<job>/CANCEL: the engine checkpoints and stops at its next iteration (docs/FORMATS.md)."""
    with open(os.path.join(job_dir, job_state.CANCEL_FILE), "w") as flag:
        flag.write(f"cancel requested by {who}\n")


@dataclass
class Run:
    """One engine process working on a job: started here (`process`), or followed (`holder`)."""

    job_dir: str
    command: str
    process: subprocess.Popen | None  # None: a run this manager follows but did not start
    tail: job_state.EventTail
    holder: dict | None = None  # a followed run's engine lock, as last read
    on_finished: Callable[[Run], None] | None = None
    cancel_at: float | None = None  # monotonic time cancel() was called
    grace_s: float = 0.0
    terminated: bool = False
    returncode: int | None = None
    # Outcome, set when the run is closed:
    status: str = "running"  # finished / failed / cancelled
    outputs: dict = field(default_factory=dict)
    error: job_state.ErrorInfo | None = None

    @property
    def owned(self) -> bool:
        """Started by this manager (so this Blender may stop it without asking)."""
        return self.process is not None

    @property
    def log_path(self) -> str:
        return os.path.join(self.job_dir, job_state.LOG_FILE)


class JobManager:
    """Owns the engine processes it started, follows the others, and keeps the state of every job it has
    seen (keyed by job folder)."""

    def __init__(self):
        self._runs: dict[str, Run] = {}
        self._states: dict[str, job_state.JobState] = {}

    @staticmethod
    def key(job_dir: str) -> str:
        return os.path.normcase(os.path.abspath(job_dir))

    # ---- state

    def state(self, job_dir: str) -> job_state.JobState:
        """The job's state: live while a run is open (followed from now on if another engine trains it),
        else recovered once from events.jsonl."""
        key = self.key(job_dir)
        if key not in self._states:
            holder = job_lock.live_lock(key)
            if holder is not None:
                self._follow(key, holder)
            else:
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
            running = self._runs[key]
            whose = "" if running.owned else f" ({job_lock.describe(running.holder)})"
            raise EngineStartError(f"The engine is already running {running.command} for this job{whose}")
        holder = job_lock.live_lock(key)
        if holder is not None:
            self._follow(key, holder)
            raise EngineStartError(f"Another engine is training this job ({job_lock.describe(holder)}): "
                                   "the panel follows it")
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
        tail = job_state.EventTail.at_end(key)
        with log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            try:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                           env=env, cwd=key, **DETACHED)
            except FileNotFoundError:
                raise EngineStartError(f"Engine Python not found: {argv[0]}") from None
            except PermissionError:
                raise EngineStartError(f"Engine Python is not executable: {argv[0]}") from None
        run = Run(key, command, process, tail, on_finished=on_finished)
        self._runs[key] = run
        state.mark_starting(command)
        state.mark_followed("")
        return run

    def cancel(self, job_dir: str, grace_s: float = 20.0) -> bool:
        """Ask the run to stop: CANCEL file now, SIGTERM at grace/2, kill at grace.
        Returns False when no run is open for the job."""
        run = self.run(job_dir)
        if run is None:
            return False
        if run.cancel_at is None:
            run.cancel_at, run.grace_s = time.monotonic(), grace_s
            request_cancel(run.job_dir)
            self.state(run.job_dir).mark_cancelling()
        self._escalate(run)
        return True

    def release_all(self, stop: bool = False) -> None:
        """Let go of every run (Blender quits, the add-on is disabled); completion callbacks are dropped.
        The engines train on, unless `stop`: then those this manager started are asked to checkpoint and
        stop (CANCEL and SIGTERM), and finish that on their own."""
        for run in self._runs.values():
            if stop and run.owned and run.process.poll() is None:
                try:
                    request_cancel(run.job_dir, "Blender quitting")
                except OSError:
                    pass
                run.process.terminate()
        self._runs.clear()
        self._states.clear()

    # ---- progress

    def poll(self) -> list[tuple[str, Event]]:
        """Apply everything that arrived; close runs that ended. Returns the applied (job, event)s."""
        applied: list[tuple[str, Event]] = []
        for key, run in list(self._runs.items()):
            state = self.state(key)
            self._drain(run, state, applied)
            if run.cancel_at is not None:
                self._escalate(run)
            if not self._alive(run):
                self._drain(run, state, applied)  # what it wrote before it went
                self._close(run, applied)
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

    def _follow(self, key: str, holder: dict, on_finished: Callable[[Run], None] | None = None) -> Run:
        """Follow the run of an engine this manager did not start: replay the job's events, tail the rest."""
        state = job_state.JobState()
        tail = job_state.EventTail(key)
        for event in tail.read()[0]:
            state.apply(event)
        command = holder.get("command") or "train"
        if not state.run_is_open():  # the engine holds the lock but has not announced its run yet
            state.mark_starting(command)
        state.mark_followed(job_lock.describe(holder))
        if key in self._states:  # a new state object: its version must still differ from the one observers saw
            state.version += self._states[key].version + 1
        self._states[key] = state
        run = Run(key, command, None, tail, holder=holder, on_finished=on_finished)
        self._runs[key] = run
        return run

    def _alive(self, run: Run) -> bool:
        if run.owned:
            return run.process.poll() is None
        holder = job_lock.live_lock(run.job_dir)
        if holder is not None:
            run.holder = holder
        return holder is not None

    def _drain(self, run: Run, state: job_state.JobState, applied: list) -> None:
        events, malformed = run.tail.read()
        for event in events:
            self._note_outcome(run, event)
            state.apply(event)
            applied.append((run.job_dir, event))
        if malformed and run.owned:
            self._log(run, "\n".join(f"[events.jsonl, not an event] {line}" for line in malformed))

    def _note_outcome(self, run: Run, event: Event) -> None:
        if event.get("command") not in (None, run.command):
            return  # another command's events in the same file (e.g. a render run from the command line)
        if event.name == "done":
            run.status = "finished" if event.get("status") == "finished" else "cancelled"
            run.outputs = dict(event.get("outputs") or {})
        elif event.name == "error":
            run.status = "failed"
            run.error = job_state.ErrorInfo(event.get("message"), event.get("hint") or "",
                                            event.get("code") or "internal")

    def _escalate(self, run: Run) -> None:
        if not self._alive(run):
            return
        waited = time.monotonic() - run.cancel_at
        if waited >= run.grace_s:
            self._kill(run)
        elif waited >= run.grace_s / 2 and not run.terminated:
            run.terminated = True
            # To the engine alone: it checkpoints and stops; its own children are its business.
            if run.owned:
                run.process.terminate()
            else:
                job_lock.signal_holder(run.holder, run.job_dir, job_lock.TERMINATE)

    def _kill(self, run: Run) -> None:
        if not run.owned:
            job_lock.signal_holder(run.holder, run.job_dir, job_lock.KILL)
            return
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

    def _close(self, run: Run, applied: list) -> None:
        """The engine is gone and its events are read: settle the outcome, clean up, call back."""
        state = self.state(run.job_dir)
        if run.owned:
            run.returncode = run.process.poll()
            if not _WINDOWS:  # leftovers the engine spawned in its session (data loader workers …)
                try:
                    os.killpg(run.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            holder = job_lock.live_lock(run.job_dir) if state.run_is_open() else None
            if holder is not None and holder.get("pid") != run.process.pid:
                # Another engine took the job's lock first (two Blenders pressed Train at once): this one
                # stopped without writing anything; follow the one that trains.
                del self._runs[run.job_dir]
                self._follow(run.job_dir, holder, run.on_finished)
                return
            why = last_log_line(run.log_path)
        else:
            why = "its process is gone (killed, or its computer stopped) and left no outcome"
        closing = state.outcome_for_exit(run.returncode, run.cancel_at is not None, why, time.time())
        if closing is not None:
            # Logged like any event, so every Blender following the job (and a reopened .blend) sees it.
            if job_state.append_event(run.job_dir, closing):
                self._drain(run, state, applied)
            if state.run_is_open():  # the folder is gone: nowhere to log it
                self._note_outcome(run, closing)
                state.apply(closing)
        if run.status == "running":  # only when the state was closed by other means
            run.status = "cancelled" if run.cancel_at is not None else "failed"
        state.mark_followed("")
        del self._runs[run.job_dir]
        if run.on_finished is not None:
            run.on_finished(run)
