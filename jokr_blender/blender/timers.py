"""Keeping Blender in step with the engine without blocking it, and stopping the engine with Blender.

- A bpy.app.timers callback polls the job manager on the main thread while runs are open, syncs the
  panel's mirrors of every job that changed and redraws the sequencer. It unregisters itself when
  nothing runs; starting a run registers it again.
- load_post: a reopened .blend shows its job's last state, recovered from the job's events.jsonl, or
  follows the engine that still trains it (started before Blender quit or crashed, or by another Blender).
- undo_post/redo_post: undo restores the mirrors with the rest of the scene, maybe to a state the job
  has left long ago; they are synced again from the job, and the notes about what the add-on built (the
  rig, the result strip), which the undo may have taken away, are dropped.
- save_pre/save_post: the job folders a scene keeps relative to the .blend are re-stored relative to
  where the file is saved (or absolute), so Save As elsewhere never strands a job.
- atexit and unregister: engines train on, or, with the preference "When Blender Quits: Checkpoint and
  Stop", the engines this Blender started are asked to checkpoint and stop.
- Check Engine runs `--version` on a thread (the engine's first PyTorch import takes seconds); a timer
  shows the answer in the preferences.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from functools import partial

import bpy

from ..io.process import EngineStartError, check_engine
from . import compat, preferences, properties, session
from .session import manager

INTERVAL_S = 0.25

_synced_versions: dict[str, int] = {}
_engine_checks: list[tuple[threading.Thread, dict]] = []  # running Check Engine threads and their outcome


def sync_changed() -> bool:
    """Sync the scenes of every job whose state changed since the last sync. True if any did."""
    changed = False
    for job_dir, state in manager.known_jobs():
        if _synced_versions.get(job_dir) != state.version:
            _synced_versions[job_dir] = state.version
            properties.sync_scenes(job_dir, state)
            changed = True
    return changed


def poll_jobs() -> float | None:
    """The timer callback (scripts and tests may call it too): events in, panel up to date."""
    manager.poll()
    if sync_changed():
        compat.tag_redraw(bpy.context, 'SEQUENCE_EDITOR')
    return INTERVAL_S if manager.is_running() else None


def ensure_polling() -> None:
    if not bpy.app.timers.is_registered(poll_jobs):
        bpy.app.timers.register(poll_jobs, first_interval=INTERVAL_S, persistent=True)


def reattach_running_jobs() -> None:
    """Undo restores a scene as it was before Train, but the engine still runs: give the scene its running
    job back, so the panel shows it and Cancel reaches it."""
    for key, (scene_name, folder) in list(session.run_owners.items()):
        if not manager.is_running(key):
            del session.run_owners[key]
            continue
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            continue
        if not scene.jokr.job_dir or manager.key(bpy.path.abspath(scene.jokr.job_dir)) != key:
            scene.jokr.job_dir = session.stored_path(folder)


def sync_all_scenes(reload: bool) -> None:
    """Every scene's mirrors from its job; `reload` re-reads jobs without a run from their folders."""
    _synced_versions.clear()
    reattach_running_jobs()
    for scene in bpy.data.scenes:
        settings = scene.jokr
        if not settings.job_dir:
            continue
        job_dir = bpy.path.abspath(settings.job_dir)
        if reload:
            manager.forget(job_dir)  # another Blender may have resumed it meanwhile
        properties.sync(settings, manager.state(job_dir), manager.key(job_dir))
    if manager.is_running():
        ensure_polling()


@bpy.app.handlers.persistent
def on_load_post(_filepath) -> None:
    sync_all_scenes(reload=True)


@bpy.app.handlers.persistent
def on_undo_redo(_scene, *_args) -> None:
    for _job_dir, state in manager.known_jobs():
        state.forget_notes()
    sync_all_scenes(reload=False)


def _stored_job_paths() -> list[tuple[Callable[[str], None], str]]:
    """(setter, absolute folder) of every job folder the file keeps: each scene's job and the job a
    result strip remembers."""
    found = []
    for scene in bpy.data.scenes:
        settings = scene.jokr
        if settings.job_dir:
            found.append((partial(setattr, settings, "job_dir"), bpy.path.abspath(settings.job_dir)))
        editor = scene.sequence_editor
        for strip in getattr(editor, compat.STRIPS_ALL) if editor else ():
            if isinstance(strip.get("jokr_job"), str):
                found.append((partial(strip.__setitem__, "jokr_job"), bpy.path.abspath(strip["jokr_job"])))
    return found


_paths_before_save: list[tuple[Callable[[str], None], str]] = []


@bpy.app.handlers.persistent
def on_save_pre(filepath, *_args) -> None:
    """Relative folders are relative to the file: store them for where it is being saved."""
    _paths_before_save[:] = _stored_job_paths()
    for set_path, folder in _paths_before_save:
        set_path(session.stored_path(folder, filepath))


@bpy.app.handlers.persistent
def on_save_post(_filepath, *_args) -> None:
    """Back to the open file's point of view (it differs after "Save Copy")."""
    for set_path, folder in _paths_before_save:
        set_path(session.stored_path(folder))
    _paths_before_save.clear()


def start_engine_check(python: str, env: dict) -> tuple[threading.Thread, dict]:
    """`--version --json` on a thread. The outcome dict gets `ok` and `status` (the line to show)."""
    outcome: dict = {}

    def check():
        try:
            info = check_engine(python, env)
            outcome.update(ok=True, status=f"JOKR engine {info.version} on {info.device}")
        except EngineStartError as error:
            outcome.update(ok=False, status=str(error))

    thread = threading.Thread(target=check, name="jokr-check-engine", daemon=True)
    thread.start()
    return thread, outcome


def watch_engine_check(thread: threading.Thread, outcome: dict) -> None:
    _engine_checks.append((thread, outcome))
    if not bpy.app.timers.is_registered(apply_engine_checks):
        bpy.app.timers.register(apply_engine_checks, first_interval=INTERVAL_S)


def apply_engine_checks() -> float | None:
    """The timer of Check Engine (scripts and tests may call it too): finished answers into the
    preferences. Returns None once no check is left."""
    for item in list(_engine_checks):
        thread, outcome = item
        if thread.is_alive():
            continue
        _engine_checks.remove(item)
        prefs = preferences.get(bpy.context)
        if prefs is not None:
            prefs.engine_status = outcome["status"]
        compat.tag_redraw(bpy.context, 'PREFERENCES')
    return INTERVAL_S if _engine_checks else None


def release_engines() -> None:
    """Blender quits or the add-on goes: the engines train on, or are asked to checkpoint and stop."""
    manager.release_all(stop=preferences.stop_on_quit)


def follow_running_jobs() -> None:
    """After the add-on is enabled (installed again, updated): follow the open file's running jobs."""
    sync_all_scenes(reload=True)


HANDLERS = (("load_post", on_load_post), ("undo_post", on_undo_redo), ("redo_post", on_undo_redo),
            ("save_pre", on_save_pre), ("save_post", on_save_post))


def register():
    for name, handler in HANDLERS:
        getattr(bpy.app.handlers, name).append(handler)
    atexit.register(release_engines)
    preferences.remember_quit_policy(preferences.get(bpy.context))
    # Persistent: in bpy 4.2 a plain timer dropped by a file load made Python's exit crash.
    bpy.app.timers.register(follow_running_jobs, first_interval=0.0, persistent=True)


def unregister():
    release_engines()
    atexit.unregister(release_engines)
    for timer in (poll_jobs, apply_engine_checks, follow_running_jobs):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    _engine_checks.clear()  # a check still running ends on its own; nobody shows its answer
    for name, handler in HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        if handler in handlers:
            handlers.remove(handler)
    _synced_versions.clear()
    session.run_owners.clear()
