"""Motion paths of the keypoint empties: each empty's track drawn in the 3D view, as Blender draws an
object's motion path, over the frames of its clip. Blender updates a path when its empty is moved."""

from __future__ import annotations

import os

import bpy
from bpy.props import EnumProperty

from . import compat, keypoints


def job_empties(context) -> list:
    settings = compat.sequencer_scene(context).jokr
    if not settings.job_dir:
        return []
    job_name = os.path.basename(os.path.normpath(bpy.path.abspath(settings.job_dir)))
    return [obj for label in keypoints.LABELS
            for _index, obj in sorted(keypoints.find_rig(job_name, label).empties.items())]


class JOKR_OT_keypoint_paths(bpy.types.Operator):
    bl_idname = "jokr.keypoint_paths"
    bl_label = "Keypoint Paths"
    bl_description = "Show or clear the motion paths of the keypoint empties, over each clip's keyed frames"
    bl_options = {'REGISTER', 'UNDO'}
    action: EnumProperty(name="Action", default='SHOW', items=[('SHOW', "Show", "Calculate the paths (again)"),
                                                               ('CLEAR', "Clear", "Remove the paths")])

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        if scene is None or not job_empties(context):
            cls.poll_message_set("No keypoint empties yet: Import Keypoints first")
            return False
        return True

    def execute(self, context):
        empties = job_empties(context)
        with context.temp_override(selected_objects=empties, selected_editable_objects=empties,
                                   active_object=empties[0], object=empties[0]):
            if self.action == 'SHOW':
                # Each empty's own keyed range: clips A and B cover different frames.
                bpy.ops.object.paths_calculate(display_type='RANGE', range='KEYS_ALL')
            else:
                bpy.ops.object.paths_clear(only_selected=True)
        self.report({'INFO'}, f"Motion paths {'shown' if self.action == 'SHOW' else 'cleared'} for "
                              f"{len(empties)} keypoint empties")
        return {'FINISHED'}


classes = (JOKR_OT_keypoint_paths,)
