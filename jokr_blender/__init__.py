# SPDX-License-Identifier: GPL-3.0-or-later
"""JOKR Motion Retargeting: train the JOKR engine on two sequencer clips, edit its keypoints as empties
and render one animal's motion with the other's look. The engine runs as a separate process."""

import bpy

from .blender import (
    clean_plate,
    engine_install,
    mask_sources,
    operators,
    panels,
    paths,
    preferences,
    properties,
    scene_setup,
    smoothing,
    timers,
)

classes = (
    *preferences.classes,
    *properties.classes,
    *operators.classes,
    *engine_install.classes,
    *scene_setup.classes,
    *paths.classes,
    *clean_plate.classes,
    *mask_sources.classes,
    *smoothing.classes,
    *panels.classes,
    *mask_sources.panel_classes,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.register()
    panels.register()
    timers.register()
    engine_install.register()


def unregister():
    timers.unregister()  # first: stops running engines while their callbacks can still be dropped
    engine_install.unregister()
    panels.unregister()
    properties.unregister()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
