"""What a job is doing, built from the engine's events, and recovered from the job's events.jsonl.

The training lifecycle is the job's `state`:

    idle → starting → training → finished
                  ↘      ↓  ↘ cancelling → cancelled
                   failed ←───────────────┘ (engine died)

Shorter commands (keypoints, render, eval) do not change it; they are tracked as the job's `task`,
so a failed render never makes a finished training look failed.

The engine appends every event of every command run on the job to <job>/events.jsonl, the one source
of the job's events: the add-on follows a run by tailing that file (EventTail), whoever started it.
When a run ends with an outcome the file does not hold (the engine died), the add-on appends it, so
that reopening the .blend shows the last state whatever happened.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .protocol import Event, ProtocolError, make_event, validate_event

STATES = ("idle", "starting", "training", "cancelling", "finished", "failed", "cancelled")
ACTIVE_STATES = ("starting", "training", "cancelling")

EVENTS_FILE = "events.jsonl"
LOG_FILE = "engine.log"
CANCEL_FILE = "CANCEL"
CHECKPOINT_FILE = os.path.join("checkpoints", "latest.json")

# done.status → state. `paused` (--until-iteration) stops resumably, like a cancel.
_DONE_STATES = {"finished": "finished", "cancelled": "cancelled", "paused": "cancelled"}


@dataclass
class ErrorInfo:
    message: str
    hint: str = ""
    code: str = "internal"


@dataclass
class Progress:
    step: int = 0
    iteration: int = 0
    of: int = 0
    losses: dict = field(default_factory=dict)
    its_per_s: float | None = None
    eta_s: float | None = None


@dataclass
class MaskingProgress:
    """Automatic masks being made (`masking`): before training starts, or by `masks`."""

    clip: str
    model: str = ""
    done: int = 0
    of: int = 0
    cached: int = 0
    eta_s: float | None = None


@dataclass
class SuspectFrame:
    index: int  # in the clip's frame range: the strip shows it on its first frame + index
    frame: str  # the frame's name
    reasons: tuple[str, ...]


@dataclass
class MaskCheck:
    """The latest `mask_check` of one clip's automatic masks."""

    clip: str
    frames: int
    suspect: list[SuspectFrame]
    report: str = ""


@dataclass
class TaskState:
    """The latest keypoints/render/eval run of a job."""

    command: str
    status: str = "running"
    progress: Progress | None = None
    outputs: dict = field(default_factory=dict)
    error: ErrorInfo | None = None
    note: str = ""  # what the add-on made of the outputs (e.g. "strip updated"), for the panel


@dataclass
class JobState:
    state: str = "idle"
    plan: list = field(default_factory=list)  # [{step, iterations}] from the last train `started`
    preset: str | None = None
    device: str | None = None
    progress: Progress | None = None
    preview_path: str | None = None
    checkpoint_path: str | None = None
    error: ErrorInfo | None = None
    task: TaskState | None = None
    masking: MaskingProgress | None = None  # while automatic masks are being made
    mask_checks: dict[str, MaskCheck] = field(default_factory=dict)  # clip → its masks' latest check
    command: str | None = None  # the command the next events belong to
    # Set while the add-on follows a run it did not start (another Blender, the command line, or this
    # Blender before a restart): who runs it, e.g. "process 123 on host, since 14:05".
    followed_engine: str = ""
    version: int = 0  # bumped on every change, so observers can tell cheaply

    # ---- events

    def apply(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.name}")
        handler(event)
        self.version += 1

    def _on_started(self, event: Event) -> None:
        self.command = event.get("command")
        if self.command != "masks":  # `train` starts once its masks are all made
            self.masking = None
        if self.command == "train":
            self.state = "training"
            self.error = None
            self.plan = list(event.get("plan") or [])
            self.preset = event.get("preset")
            self.device = event.get("device_name") or event.get("device")
        else:
            self.task = TaskState(self.command)

    def _on_progress(self, event: Event) -> None:
        progress = Progress(
            step=event.get("step"), iteration=event.get("iteration"), of=event.get("of"),
            losses=dict(event.get("losses") or {}), its_per_s=event.get("its_per_s"),
            eta_s=event.get("eta_s"),
        )
        # The engine stamps each event with its command: a render run from the command line while a
        # training goes on interleaves in the file without mixing up the two.
        if (event.get("command") or self.command) == "train":
            self.progress = progress
        elif self.task is not None:
            self.task.progress = progress

    def _on_masking(self, event: Event) -> None:
        clip = event.get("clip")
        if self.masking is None or self.masking.clip != clip:
            self.mask_checks.pop(clip, None)  # that clip's masks are being made anew: the old check is stale
        self.masking = MaskingProgress(clip, event.get("model") or "", event.get("done"), event.get("of"),
                                       event.get("cached") or 0, event.get("eta_s"))

    def _on_mask_check(self, event: Event) -> None:
        clip = event.get("clip")
        suspect = [SuspectFrame(item["index"], item["frame"], tuple(item["reasons"]))
                   for item in event.get("suspect")]
        self.mask_checks[clip] = MaskCheck(clip, event.get("frames") or 0, suspect, event.get("report") or "")
        if self.masking is not None and self.masking.clip == clip:
            self.masking = None

    def _on_preview(self, event: Event) -> None:
        self.preview_path = event.get("path")

    def _on_checkpoint(self, event: Event) -> None:
        self.checkpoint_path = event.get("path")

    def _on_done(self, event: Event) -> None:
        command = event.get("command")
        self.masking = None
        if command == "train":
            self.state = _DONE_STATES[event.get("status")]
        else:
            self.task = self.task if self.task and self.task.command == command else TaskState(command)
            self.task.status = "finished" if event.get("status") == "finished" else "cancelled"
            self.task.outputs = dict(event.get("outputs") or {})
        self.command = None

    def _on_error(self, event: Event) -> None:
        error = ErrorInfo(event.get("message"), event.get("hint") or "", event.get("code") or "internal")
        self.masking = None
        # The engine and the add-on stamp errors with their command (older logs lack it). An error with
        # no command and none running, before any training, is a training that never got going.
        command = event.get("command") or self.command or ("train" if self.state == "idle" else None)
        if command == "train":
            self.state = "failed"
            self.error = error
        else:
            if self.task is None or self.task.command != command:
                self.task = TaskState(command or "engine")
            self.task.status = "failed"
            self.task.error = error
        self.command = None

    # ---- transitions the add-on makes itself

    def mark_starting(self, command: str) -> None:
        self.command = command
        if command == "train":
            self.state = "starting"
            self.error = None
        else:
            self.task = TaskState(command)
        self.version += 1

    def mark_cancelling(self) -> None:
        """Training shows `cancelling` until the engine confirms; a task stays running until it ends."""
        if self.command == "train" and self.state in ("starting", "training"):
            self.state = "cancelling"
            self.version += 1

    def mark_followed(self, engine: str) -> None:
        """The add-on follows a run it did not start (`engine` says whose), or stopped following ('')."""
        if self.followed_engine != engine:
            self.followed_engine = engine
            self.version += 1

    def record_task(self, command: str, note: str = "", error: ErrorInfo | None = None) -> None:
        """An operation the add-on finished (or refused) without running the engine: it replaces the
        previous task's message, so the panel never shows an older outcome as the latest."""
        self.task = TaskState(command, status="failed" if error else "finished", note=note, error=error)
        self.version += 1

    def forget_notes(self) -> None:
        """Undo/redo may have taken away what a note describes (the rig, the result strip): drop the
        note; the task's own outcome (the engine's files) still shows."""
        if self.task is not None and self.task.note:
            self.task.note = ""
            if self.task.status == "finished" and not self.task.outputs:
                self.task = None  # nothing but the note: nothing left to say
            self.version += 1

    def note_task(self, note: str = "", error: ErrorInfo | None = None) -> None:
        """Record what the add-on did with a finished task's outputs, or why it could not."""
        if self.task is None:
            return
        self.task.note = note
        if error is not None:
            self.task.status = "failed"
            self.task.error = error
        self.version += 1

    def run_is_open(self) -> bool:
        """True while the current run has not reported its outcome (done or error)."""
        if self.command is None:
            return False
        if self.command == "train":
            return self.state in ACTIVE_STATES
        return self.task is not None and self.task.status == "running"

    def outcome_for_exit(self, returncode: int | None, cancel_requested: bool, log_tail: str,
                         time: float) -> Event | None:
        """The event that closes a run which ended without reporting its outcome, or None if it did.

        A cancelled run that the add-on had to stop by force ends `cancelled`; anything else is an
        engine failure, explained by the last line of engine.log (e.g. a missing Python package).
        """
        if not self.run_is_open():
            return None
        command = self.command
        if cancel_requested:
            return make_event("done", time, command=command, status="cancelled", outputs={},
                              origin="addon")
        reason = log_tail or "no message"
        exit_code = f" (exit code {returncode})" if returncode is not None else ""
        return make_event(
            "error", time, origin="addon", code="internal", command=command,
            message=f"The engine stopped{exit_code} without finishing {command}: {reason}",
            hint="Open the log for details; Preferences › Add-ons › JOKR › Check Engine tests the setup",
        )

    # ---- reading the state back

    def overall_fraction(self) -> float:
        """Training progress over the whole plan (both steps), 0..1."""
        if self.state == "finished":
            return 1.0
        if self.progress is None:
            return 0.0
        plan = [p for p in self.plan if isinstance(p, dict)]
        total = sum(int(p.get("iterations", 0)) for p in plan)
        if total <= 0:
            return self.progress.iteration / self.progress.of if self.progress.of else 0.0
        before = sum(int(p.get("iterations", 0)) for p in plan if int(p.get("step", 0)) < self.progress.step)
        return min(max((before + self.progress.iteration) / total, 0.0), 1.0)

    def finish_recovery(self) -> None:
        """After replaying a job's history with no engine running: close a run that never reported."""
        if self.run_is_open():
            self.masking = None
            interrupted = ErrorInfo(
                f"The engine was interrupted during {self.command} (Blender closed or the engine was killed)",
                "Resume continues training from the last checkpoint" if self.command == "train" else
                "Run it again", "internal")
            if self.command == "train":
                self.state = "failed"
                self.error = interrupted
            else:
                self.task.status = "failed"
                self.task.error = interrupted
            self.command = None
            self.version += 1


def read_events(job_dir: str) -> list[Event]:
    """Every valid event of a job's events.jsonl; malformed or torn lines are skipped."""
    path = os.path.join(job_dir, EVENTS_FILE)
    events = []
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            for line in stream:
                try:
                    events.append(validate_event(json.loads(line)))
                except (json.JSONDecodeError, ProtocolError):
                    continue
    except FileNotFoundError:
        pass
    return events


class EventTail:
    """Follows a job's events.jsonl: each read() returns the events appended since the last one.

    Only complete lines count: a line the engine is still writing is read once its newline is there.
    Malformed lines are returned apart, for the log."""

    def __init__(self, job_dir: str, offset: int = 0):
        self.path = os.path.join(job_dir, EVENTS_FILE)
        self.offset = offset
        self._partial = b""

    @classmethod
    def at_end(cls, job_dir: str) -> EventTail:
        """A tail that skips what the file holds now."""
        try:
            return cls(job_dir, os.path.getsize(os.path.join(job_dir, EVENTS_FILE)))
        except OSError:
            return cls(job_dir)

    def read(self) -> tuple[list[Event], list[str]]:
        try:
            with open(self.path, "rb") as stream:
                if os.fstat(stream.fileno()).st_size < self.offset:  # replaced by a shorter file
                    self.offset, self._partial = 0, b""
                stream.seek(self.offset)
                data = stream.read()
        except FileNotFoundError:
            return [], []
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        events, malformed = [], []
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                events.append(validate_event(json.loads(line)))
            except (json.JSONDecodeError, ProtocolError):
                malformed.append(line)
        return events, malformed


def recover(job_dir: str) -> JobState:
    """The state of a job that no engine is running for, from its events.jsonl."""
    state = JobState()
    for event in read_events(job_dir):
        state.apply(event)
    state.finish_recovery()
    return state


def append_event(job_dir: str, event: Event) -> bool:
    """Append an event the add-on made (the outcome of a run whose engine died) to events.jsonl.
    False when the job folder is gone."""
    if not os.path.isdir(job_dir):
        return False
    with open(os.path.join(job_dir, EVENTS_FILE), "a", encoding="utf-8") as stream:
        stream.write(json.dumps(event.data) + "\n")
    return True


def has_checkpoint(job_dir: str) -> bool:
    return os.path.isfile(os.path.join(job_dir, CHECKPOINT_FILE))


def can_resume(state: JobState, job_dir: str) -> bool:
    return state.state in ("cancelled", "failed") and has_checkpoint(job_dir)
