"""The add-on's runtime in this Blender session: the one job manager, and how to reach the engine.

Nothing here holds Blender data: jobs are keyed by folder and scenes looked up by name, so undo,
redo and reloading files never leave a dangling reference behind."""

from __future__ import annotations

import os

import bpy

from ..io.process import JobManager, engine_environment
from . import preferences

manager = JobManager()
# Job key → (scene name, absolute job folder) of every run started here: an undo can take a running job's
# folder off its scene, and the timer puts it back (timers.sync_all_scenes).
run_owners: dict[str, tuple[str, str]] = {}

DEFAULT_JOB_ROOT = "//jokr/"


class UserError(Exception):
    """Something the artist can fix. Operators report the message; nothing shows a traceback."""


def engine_python(context) -> str:
    prefs = preferences.get(context)
    python = bpy.path.abspath(prefs.engine_python) if prefs and prefs.engine_python else ""
    if not python:
        raise UserError("Set the engine's Python in Preferences › Add-ons › JOKR Motion Retargeting")
    if not os.path.isfile(python):
        raise UserError(f"Engine Python not found: {python} (Preferences › Add-ons › JOKR Motion "
                        "Retargeting)")
    return python


def engine_env(context) -> dict:
    prefs = preferences.get(context)
    engine_path = bpy.path.abspath(prefs.engine_path) if prefs and prefs.engine_path else ""
    return engine_environment(os.path.normpath(engine_path) if engine_path else "")


def device(context) -> str:
    prefs = preferences.get(context)
    return prefs.device if prefs else "auto"


def user_jobs_folder(context) -> str:
    """Where jobs of unsaved .blend files go: the Unsaved Files' Jobs preference, by default `jokr/jobs` in
    the platform's user data folder. Not the extension's own user folder, which uninstalling the
    extension deletes, nor Blender's versioned config folder, which a new Blender version leaves behind."""
    prefs = preferences.get(context)
    folder = bpy.path.abspath(prefs.unsaved_job_root) if prefs and prefs.unsaved_job_root else ""
    return os.path.normpath(folder or preferences.default_unsaved_job_root())


def job_root(context) -> tuple[str, str | None]:
    """(folder for job folders, an info message when it is not where the artist would expect it)."""
    prefs = preferences.get(context)
    root = (prefs.job_root if prefs else "") or DEFAULT_JOB_ROOT
    if root.startswith("//") and not bpy.data.filepath:
        folder = user_jobs_folder(context)
        return folder, f"The .blend file is not saved yet: the job goes to {folder}"
    return os.path.normpath(bpy.path.abspath(root)), None


def stored_path(folder: str, blend_path: str | None = None) -> str:
    """A folder as the .blend at `blend_path` (default: the open one) keeps it: relative ('//…') when it
    lies inside the .blend's folder, so the project can move as a whole; absolute otherwise."""
    blend_path = bpy.data.filepath if blend_path is None else blend_path
    if blend_path:
        base = os.path.dirname(os.path.abspath(blend_path))
        try:
            inside = os.path.commonpath([base, os.path.abspath(folder)]) == base
        except ValueError:  # another drive
            inside = False
        if inside:
            return bpy.path.relpath(folder, start=base)
    return os.path.abspath(folder)


def job_name(settings) -> str:
    name = settings.job_name.strip() or f"{settings.clip_a.strip}_{settings.clip_b.strip}"
    return bpy.path.clean_name(name) or "job"


def current_job_dir(settings) -> str:
    """The folder of the scene's job; UserError before the first training."""
    if not settings.job_dir:
        raise UserError("This scene has no JOKR job yet: choose the strips and press Train")
    folder = bpy.path.abspath(settings.job_dir)
    if not os.path.isdir(folder):
        raise UserError(f"The job folder {folder} does not exist any more")
    return os.path.normpath(folder)
