"""Install Engine, in the add-on's preferences: one button makes the engine's Python environment with
Blender's own Python, installs PyTorch, the engine and its pinned packages, fetches the weights and checks
the engine (the plan and its runner: io/engine_install.py).

It never blocks Blender: each step is a subprocess, and a timer moves the install on, as the job timer does
for engine runs. The current step shows in the preferences and the status bar; Cancel stops the step's
process group; pressing Install Engine again repairs. On success, Engine Python points to the new
environment. The engine travels inside the extension (engine/, scripts/build_extension.py).
"""

from __future__ import annotations

import atexit
import os
import platform
import sys
import textwrap

import bpy

from ..io.engine_install import (
    Installer,
    InstallError,
    Plan,
    choose_torch,
    default_install_dir,
    has_nvidia_gpu,
    make_plan,
)
from . import compat, preferences
from .operators import WAIT
from .session import manager

INTERVAL_S = 0.25
# The extension's root holds the add-on's files and engine/ (scripts/build_extension.py).
ENGINE_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine")
WRAP_CHARS = 100

installer: Installer | None = None  # the install of this session: running, or the last one, for its outcome
_applied: set[int] = set()  # id() of installers whose outcome went into the preferences


def blender_python() -> tuple[str, tuple]:
    """Blender's own interpreter (sys.executable is it since Blender 2.91) and its version."""
    return sys.executable, tuple(sys.version_info[:3])


def install_dir(prefs) -> str:
    folder = prefs.engine_install_dir.strip()
    return os.path.normpath(bpy.path.abspath(folder)) if folder else default_install_dir()


def install_plan(prefs) -> Plan:
    """The plan for this machine and these preferences; InstallError when there can be none."""
    torch = choose_torch(prefs.engine_torch_build, platform.system(), platform.machine(), has_nvidia_gpu(),
                         prefs.engine_torch_index)
    python, version = blender_python()
    return make_plan(python, version, install_dir(prefs), ENGINE_FOLDER, torch)


def is_installing() -> bool:
    return installer is not None and installer.running


def interrupted_note(run: Installer) -> str:
    """What the preferences keep while a step runs: what is true should Blender quit in the middle (and
    setting a preference redraws Blender's windows, the status bar included)."""
    return f"Interrupted at {run.step_place()}\nPress Install Engine again to finish: it repairs"


def apply_outcome(run: Installer) -> None:
    """Once per install: its outcome into the preferences; on success Engine Python is the new environment
    and Engine Folder is cleared (a source folder there would shadow the installed engine)."""
    if id(run) in _applied:
        return
    _applied.add(id(run))
    remove_status_bar()
    prefs = preferences.get(bpy.context)
    if prefs is None:
        return
    prefs.engine_install_status = f"{run.message}\n{run.hint}"
    if run.status == "finished":
        prefs.engine_python = run.plan.python
        prefs.engine_path = ""
        prefs.engine_status = run.message.removeprefix("Engine installed: ")


def poll_install() -> float | None:
    """The timer of Install Engine (scripts and tests may call it too): moves the install on and shows its
    step; applies the outcome once it ended. Returns None then."""
    if installer is None:
        return None
    step = installer.index
    running = installer.poll()
    if running and installer.index != step:
        prefs = preferences.get(bpy.context)
        if prefs is not None:
            prefs.engine_install_status = interrupted_note(installer)
    if not running:
        apply_outcome(installer)
    compat.tag_redraw(bpy.context, 'PREFERENCES')
    return INTERVAL_S if running else None


class JOKR_OT_install_engine(bpy.types.Operator):
    bl_idname = "jokr.install_engine"
    bl_label = "Install Engine"
    bl_description = ("Make the engine's Python environment with Blender's own Python in the Install Folder, "
                      "install PyTorch, the engine and its packages into it, fetch the weights and check the "
                      "engine; Engine Python then points to it. Press it again to repair an install")
    wait: WAIT

    @classmethod
    def poll(cls, context):
        if is_installing():
            cls.poll_message_set("Install Engine is running: wait for it, or Cancel")
            return False
        if manager.is_running():  # pip would replace the packages under a running engine
            cls.poll_message_set("The engine is working on a job: wait for it, or Cancel it")
            return False
        if not bpy.app.online_access:
            cls.poll_message_set("Online access is off: allow it in Preferences › System › Network (Install "
                                 "Engine downloads PyTorch and the engine's packages)")
            return False
        return True

    def execute(self, context):
        global installer
        prefs = preferences.get(context)
        if prefs is None:
            self.report({'ERROR'}, "Enable the JOKR add-on first: Install Engine keeps its settings there")
            return {'CANCELLED'}
        try:
            run = Installer(install_plan(prefs))
            run.start()
        except InstallError as error:
            prefs.engine_install_status = str(error)
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        installer = run
        prefs.engine_install_status = interrupted_note(run)
        if self.wait:
            run.pump()
            poll_install()
            self.report({'INFO'} if run.status == "finished" else {'ERROR'}, run.message)
            return {'FINISHED'} if run.status == "finished" else {'CANCELLED'}
        if not bpy.app.timers.is_registered(poll_install):
            bpy.app.timers.register(poll_install, first_interval=INTERVAL_S, persistent=True)  # survives File › Open
        add_status_bar()
        self.report({'INFO'}, f"Installing the engine into {run.plan.install_dir}: the steps show in the "
                              "preferences and the status bar")
        return {'FINISHED'}


class JOKR_OT_cancel_engine_install(bpy.types.Operator):
    bl_idname = "jokr.cancel_engine_install"
    bl_label = "Cancel Install"
    bl_description = ("Stop Install Engine now; pressing Install Engine again later finishes what was left "
                      "half-done")

    @classmethod
    def poll(cls, context):
        if not is_installing():
            cls.poll_message_set("Install Engine is not running")
            return False
        return True

    def execute(self, context):
        installer.cancel()
        self.report({'INFO'}, "Cancelling Install Engine")
        return {'FINISHED'}


# ---- drawing


def _wrapped(layout, text: str) -> None:
    for paragraph in text.splitlines():
        for line in textwrap.wrap(paragraph, WRAP_CHARS, break_long_words=False, break_on_hyphens=False) or [""]:
            layout.label(text=line)


def draw_install(prefs, layout) -> None:
    """The Install Engine box of the preferences."""
    box = layout.box()
    column = box.column()
    column.prop(prefs, "engine_install_dir")
    if not prefs.engine_install_dir.strip():
        column.label(text=f"Empty: {default_install_dir()}")
    column.prop(prefs, "engine_torch_build")
    column.prop(prefs, "engine_torch_index")
    if is_installing():
        row = box.row()
        row.progress(factor=installer.progress, type='BAR', text=installer.step_line())
        row.operator("jokr.cancel_engine_install", text="Cancel", icon='CANCEL')
        if installer.detail:
            box.label(text=installer.detail[:WRAP_CHARS * 2])
        return
    box.operator("jokr.install_engine", icon='IMPORT')
    if prefs.engine_install_status:
        column = box.column()
        column.alert = installer is not None and installer.status in ("failed", "cancelled")
        _wrapped(column, prefs.engine_install_status)
    log = os.path.join(install_dir(prefs), "install.log")
    if os.path.isfile(log):
        box.operator("wm.path_open", text="Open Install Log", icon='TEXT').filepath = log


def draw_status_bar(self, context) -> None:
    """Appended to Blender's status bar while an install runs."""
    if not is_installing():
        return
    row = self.layout.row(align=True)
    row.progress(factor=installer.progress, type='BAR', text=f"JOKR engine: {installer.step_line()}")
    row.operator("jokr.cancel_engine_install", text="", icon='CANCEL')


def add_status_bar() -> None:
    remove_status_bar()  # append() would add it twice
    bpy.types.STATUSBAR_HT_header.append(draw_status_bar)


def remove_status_bar() -> None:
    bpy.types.STATUSBAR_HT_header.remove(draw_status_bar)  # a no-op when it is not there


def stop_install() -> None:
    """Blender quits or the add-on goes away: stop the running step (its outcome is dropped)."""
    if installer is not None and installer.running:
        installer.stop()


def register():
    atexit.register(stop_install)


def unregister():
    global installer
    stop_install()
    atexit.unregister(stop_install)
    if bpy.app.timers.is_registered(poll_install):
        bpy.app.timers.unregister(poll_install)
    remove_status_bar()
    installer = None
    _applied.clear()


classes = (JOKR_OT_install_engine, JOKR_OT_cancel_engine_install)
