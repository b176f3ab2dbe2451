"""Every difference between the Blender versions the add-on supports (4.2 LTS, 4.5 LTS, 5.0).

- Sequencer: 4.4 renamed `sequences`/`sequences_all` to `strips`/`strips_all`; 5.0 removed the old names.
- Sequencer scene: 5.0 edits the sequence of `context.sequencer_scene`, which may be absent or None
  (no sequencer scene chosen, or bpy without a window): then it is `context.scene`, as before 5.0.
- Paths: newer versions warn when a path property holds a '//' (blend-relative) path unless it is
  declared with the PATH_SUPPORTS_BLEND_RELATIVE option, which 4.2 does not know.
- Animation: 4.4 introduced slotted (layered) actions; 5.0 removed the legacy `Action.fcurves`.
  From 4.4 an action gets a slot for its object, and F-curves live in the channelbag of that slot.
  The keyframe type GENERATED (4.2+) is in every supported version; `foreach_get/set("type")` use the
  enum's values, read here from RNA rather than written down.
- Workspaces: 5.0 gives a workspace its own sequencer scene (`WorkSpace.sequencer_scene`); before 5.0
  the sequencer shows the window's scene, so there is nothing to set.
"""

from __future__ import annotations

import bpy

_EDITOR_PROPERTIES = bpy.types.SequenceEditor.bl_rna.properties
STRIPS = "strips" if "strips" in _EDITOR_PROPERTIES else "sequences"
STRIPS_ALL = "strips_all" if "strips_all" in _EDITOR_PROPERTIES else "sequences_all"
_BLEND_RELATIVE_KNOWN = "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties
BLEND_RELATIVE_PATH = {'PATH_SUPPORTS_BLEND_RELATIVE'} if _BLEND_RELATIVE_KNOWN else set()
SLOTTED_ACTIONS = "slots" in bpy.types.Action.bl_rna.properties
KEYFRAME_TYPES = {item.identifier: item.value for item in bpy.types.Keyframe.bl_rna.properties["type"].enum_items}
WORKSPACE_SEQUENCER_SCENE = "sequencer_scene" in bpy.types.WorkSpace.bl_rna.properties


def sequencer_scene(context) -> bpy.types.Scene:
    return getattr(context, "sequencer_scene", None) or context.scene


def set_workspace_sequencer_scene(workspace, scene) -> None:
    """Make the workspace's sequencer show `scene` (5.0); before 5.0 it shows the window's scene."""
    if WORKSPACE_SEQUENCER_SCENE:
        workspace.sequencer_scene = scene


def all_strips(scene) -> list:
    """Every strip of the scene's sequence, including those inside meta strips."""
    editor = scene.sequence_editor
    return list(getattr(editor, STRIPS_ALL)) if editor else []


def find_strip(scene, name: str):
    if not name or scene.sequence_editor is None:
        return None
    return getattr(scene.sequence_editor, STRIPS_ALL).get(name)


def new_image_strip(scene, name: str, filepath: str, channel: int, frame_start: int):
    editor = scene.sequence_editor or scene.sequence_editor_create()
    return getattr(editor, STRIPS).new_image(name=name, filepath=filepath, channel=channel,
                                             frame_start=frame_start, fit_method='ORIGINAL')


def _fcurve_collection(obj, create: bool):
    """The F-curve collection that animates `obj`, or None; with `create`, an action made for it."""
    anim = obj.animation_data or (obj.animation_data_create() if create else None)
    if anim is None:
        return None
    if anim.action is None:
        if not create:
            return None
        anim.action = bpy.data.actions.new(obj.name)
    action = anim.action
    if not SLOTTED_ACTIONS:
        return action.fcurves
    if anim.action_slot is None:
        if not create:
            return None
        # The action is assigned first, then the slot, as Blender's own keying does.
        anim.action_slot = action.slots.new(id_type='OBJECT', name=obj.name)
    for layer in action.layers:
        for strip in layer.strips:
            channelbag = strip.channelbag(anim.action_slot, ensure=create)
            if channelbag is not None:
                return channelbag.fcurves
    if not create:
        return None
    layer = action.layers.new("Layer")
    strip = layer.strips.new(type='KEYFRAME')
    return strip.channelbag(anim.action_slot, ensure=True).fcurves


def location_fcurves(obj, create: bool = False) -> tuple:
    """(x, y) location F-curves of `obj`; None for a missing one unless `create` makes them."""
    fcurves = _fcurve_collection(obj, create)
    if fcurves is None:
        return None, None
    curves = []
    for index in (0, 1):
        fcurve = fcurves.find("location", index=index)
        if fcurve is None and create:
            fcurve = fcurves.new("location", index=index)
        curves.append(fcurve)
    return tuple(curves)


def tag_redraw(context, area_type: str) -> None:
    window_manager = context.window_manager
    for window in window_manager.windows if window_manager else ():
        for area in window.screen.areas:
            if area.type == area_type:
                area.tag_redraw()
