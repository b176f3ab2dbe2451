# SPDX-License-Identifier: GPL-3.0-or-later
"""JOKR Motion Retargeting: train the JOKR engine on two sequencer clips, edit its keypoints as empties
and render one animal's motion with the other's look. The engine runs as a separate process."""

import bpy

from .blender import operators, panels, preferences, properties, timers

classes = (
    *preferences.classes,
    *properties.classes,
    *operators.classes,
    *panels.classes,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.register()
    panels.register()
    timers.register()


def unregister():
    timers.unregister()  # first: stops running engines while their callbacks can still be dropped
    panels.unregister()
    properties.unregister()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
