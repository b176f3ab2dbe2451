"""Add-on preferences: where the engine is, which device it uses and where job folders go."""

import os

import bpy
from bpy.props import EnumProperty, StringProperty

from ..io.engine_install import user_data_dir
from . import compat

# The add-on's package ("jokr_blender", or "bl_ext.<repo>.jokr" once installed as an extension).
ADDON_PACKAGE = __package__.rpartition(".")[0]

QUIT_ITEMS = (
    ('KEEP', "Keep Training", "The engine trains on after Blender quits (or crashes); reopening the .blend "
                              "shows its progress again"),
    ('STOP', "Checkpoint and Stop", "Quitting Blender asks the engines it started to save a checkpoint and "
                                    "stop; Resume continues later"),
)

DEVICE_ITEMS = (
    ('auto', "Automatic", "CUDA if available, then Apple Metal (MPS), then the CPU"),
    ('cuda', "CUDA", "An NVIDIA GPU"),
    ('mps', "Apple Metal", "The GPU of an Apple Silicon Mac"),
    ('cpu', "CPU", "The processor (slow, fine for the tiny preset)"),
)

TORCH_BUILD_ITEMS = (
    ('auto', "Automatic", "CUDA where an NVIDIA GPU is present (Linux, Windows), Apple Metal on Apple Silicon, "
                          "else the CPU build"),
    ('cuda', "CUDA", "For an NVIDIA GPU (Linux, Windows)"),
    ('mps', "Apple Metal", "For an Apple Silicon Mac"),
    ('cpu', "CPU", "The CPU-only build: a much smaller download, slow training"),
)


class JOKR_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    engine_python: StringProperty(
        name="Engine Python",
        description="Python interpreter that has the JOKR engine and PyTorch installed "
                    "(e.g. <venv>/bin/python); Blender's own Python has no PyTorch",
        subtype='FILE_PATH',
    )
    engine_path: StringProperty(
        name="Engine Folder",
        description="Optional: the folder that holds the jokr_engine package, when it is not installed "
                    "in that Python (added to PYTHONPATH)",
        subtype='DIR_PATH',
    )
    device: EnumProperty(name="Device", description="Where the engine trains and renders",
                         items=DEVICE_ITEMS, default='auto')
    job_root: StringProperty(
        name="Job Folder",
        description="Folder for job folders (empty: a 'jokr' folder next to the .blend file; Unsaved Files' "
                    "Jobs while the file is unsaved)",
        subtype='DIR_PATH', options=compat.BLEND_RELATIVE_PATH,
    )
    unsaved_job_root: StringProperty(
        name="Unsaved Files' Jobs",
        description="Folder for the jobs of .blend files not saved yet (empty: the 'jokr/jobs' folder in "
                    "this computer's user data folder, which uninstalling the add-on leaves alone)",
        subtype='DIR_PATH',
    )
    on_quit: EnumProperty(name="When Blender Quits", items=QUIT_ITEMS, default='KEEP',
                          description="What a training started in this Blender does when Blender quits",
                          update=lambda self, _context: remember_quit_policy(self))
    engine_status: StringProperty(name="Engine", description="Result of the last Check Engine")
    engine_install_dir: StringProperty(
        name="Install Folder",
        description="Where Install Engine puts the engine's Python environment (empty: JOKR's user data "
                    "folder, e.g. ~/.local/share/jokr/engine); uninstalling the add-on leaves it in place",
        subtype='DIR_PATH',
    )
    engine_torch_build: EnumProperty(name="PyTorch Build", description="Which PyTorch Install Engine installs",
                                     items=TORCH_BUILD_ITEMS, default='auto')
    engine_torch_index: StringProperty(
        name="Torch Index URL",
        description="Optional: the package index to install PyTorch from instead (a mirror, or another CUDA "
                    "version such as https://download.pytorch.org/whl/cu126)",
    )
    engine_install_status: StringProperty(name="Install Engine", description="Outcome of the last Install Engine")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "engine_python")
        layout.prop(self, "engine_path")
        row = layout.row()
        row.operator("jokr.check_engine", icon='CHECKMARK')
        if self.engine_status:
            row.label(text=self.engine_status)
        from .engine_install import draw_install  # not at the top: engine_install imports this module

        draw_install(self, layout)
        layout.prop(self, "device")
        layout.prop(self, "job_root")
        layout.prop(self, "unsaved_job_root", placeholder=default_unsaved_job_root())
        layout.prop(self, "on_quit")


def default_unsaved_job_root() -> str:
    return os.path.join(user_data_dir(), "jobs")


# Read when Blender quits, when bpy.context may be gone already: kept up to date here instead.
stop_on_quit = False


def remember_quit_policy(prefs) -> None:
    global stop_on_quit
    stop_on_quit = prefs is not None and prefs.on_quit == 'STOP'


def get(context) -> JOKR_AddonPreferences | None:
    """The preferences, or None when the add-on runs without being enabled through Blender."""
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon else None


classes = (JOKR_AddonPreferences,)
