"""Add-on preferences: where the engine is, which device it uses and where job folders go."""

import bpy
from bpy.props import EnumProperty, StringProperty

from . import compat

# The add-on's package ("jokr_blender", or "bl_ext.<repo>.jokr" once installed as an extension).
ADDON_PACKAGE = __package__.rpartition(".")[0]

DEVICE_ITEMS = (
    ('auto', "Automatic", "CUDA if available, then Apple Metal (MPS), then the CPU"),
    ('cuda', "CUDA", "An NVIDIA GPU"),
    ('mps', "Apple Metal", "The GPU of an Apple Silicon Mac"),
    ('cpu', "CPU", "The processor (slow, fine for the tiny preset)"),
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
        description="Folder for job folders (empty: a 'jokr' folder next to the .blend file; the add-on's "
                    "user data folder while the file is unsaved)",
        subtype='DIR_PATH', options=compat.BLEND_RELATIVE_PATH,
    )
    engine_status: StringProperty(name="Engine", description="Result of the last Check Engine")

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "engine_python")
        layout.prop(self, "engine_path")
        row = layout.row()
        row.operator("jokr.check_engine", icon='CHECKMARK')
        if self.engine_status:
            row.label(text=self.engine_status)
        layout.prop(self, "device")
        layout.prop(self, "job_root")


def get(context) -> JOKR_AddonPreferences | None:
    """The preferences, or None when the add-on runs without being enabled through Blender."""
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon else None


classes = (JOKR_AddonPreferences,)
