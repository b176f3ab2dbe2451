"""The JOKR tab of the sequencer's sidebar: clips, training, keypoints and render.

Panels only draw the scene's settings and state mirrors; they never touch the engine or the disk,
except for the training preview, which is loaded into a preview collection when its file changes."""

from __future__ import annotations

import os

import bpy
import bpy.utils.previews

from ..io.results import DIRECTIONS
from . import compat, render

PREVIEW_SCALE = 8.0

_previews = None  # bpy.utils.previews collection, alive between register and unregister
_preview_stamps: dict[str, float] = {}


def preview_icon(path: str) -> int:
    """Icon id of the preview image, reloaded when the engine rewrote the file; 0 if there is none."""
    if _previews is None or not path:
        return 0
    try:
        stamp = os.path.getmtime(path)
    except OSError:
        return 0
    if path in _previews and _preview_stamps.get(path) == stamp:
        return _previews[path].icon_id
    if path in _previews:
        del _previews[path]
    _preview_stamps[path] = stamp
    return _previews.load(path, path, 'IMAGE', force_reload=True).icon_id


def _format_eta(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class _JokrPanel:
    bl_space_type = 'SEQUENCE_EDITOR'
    bl_region_type = 'UI'
    bl_category = "JOKR"

    @classmethod
    def poll(cls, context):
        return compat.sequencer_scene(context) is not None


class JOKR_PT_main(_JokrPanel, bpy.types.Panel):
    bl_label = "JOKR Motion Retargeting"

    def draw(self, context):
        layout = self.layout
        settings = compat.sequencer_scene(context).jokr
        layout.prop(settings, "job_name")
        if settings.job_dir:
            layout.label(text=settings.job_dir, icon='FILE_FOLDER')


class JOKR_PT_clips(_JokrPanel, bpy.types.Panel):
    bl_label = "Clips"
    bl_parent_id = "JOKR_PT_main"

    def draw(self, context):
        layout = self.layout
        scene = compat.sequencer_scene(context)
        editor = scene.sequence_editor
        if editor is None:
            layout.label(text="Add the two clips as strips first", icon='INFO')
            return
        for label, clip, title in (("A", scene.jokr.clip_a, "Motion"), ("B", scene.jokr.clip_b, "Look")):
            box = layout.box()
            box.label(text=f"Clip {label}: {title}")
            box.prop_search(clip, "strip", editor, compat.STRIPS_ALL, text="Strip")
            box.prop(clip, "mask_source")
            if clip.mask_source == 'MATTE_STRIP':
                box.prop_search(clip, "matte_strip", editor, compat.STRIPS_ALL, text="Matte")
            elif clip.mask_source == 'KEY':
                row = box.row(align=True)
                row.prop(clip, "key_color", text="")
                row.prop(clip, "key_threshold")
            elif clip.mask_source == 'LUMA':
                box.prop(clip, "luma_threshold")
            elif clip.mask_source == 'FOLDER':
                box.prop(clip, "mask_folder", text="")
            elif clip.mask_source == 'MATTING':
                box.prop(clip, "matting_model")
            elif clip.mask_source == 'MASK_STRIP':
                box.prop_search(clip, "mask_strip", editor, compat.STRIPS_ALL, text="Mask")
        row = layout.row(align=True)
        row.label(text="Set Scene to", icon='SCENE_DATA')
        for label in ("A", "B"):
            row.operator("jokr.scene_from_clip", text=f"Clip {label}").clip = label


class JOKR_PT_training(_JokrPanel, bpy.types.Panel):
    bl_label = "Training"
    bl_parent_id = "JOKR_PT_main"

    def draw(self, context):
        layout = self.layout
        settings = compat.sequencer_scene(context).jokr
        column = layout.column()
        column.use_property_split = True
        column.prop(settings, "preset")
        column.prop(settings, "num_keypoints")
        column.prop(settings, "step1_iterations")
        column.prop(settings, "step2_iterations")
        column.prop(settings, "perceptual")

        row = layout.row(align=True)
        row.operator("jokr.train", icon='PLAY')
        if settings.state in {'starting', 'training', 'cancelling'}:
            row.operator("jokr.cancel", icon='CANCEL')
        elif settings.can_resume:
            row.operator("jokr.resume", icon='FILE_REFRESH')

        if settings.state == 'idle':
            return
        state_text = settings.state.title()
        if settings.device_name:
            state_text += f" on {settings.device_name}"
        layout.progress(factor=settings.progress, type='BAR', text=f"{state_text}  {settings.progress:.0%}")
        if settings.followed_engine:  # read-only: this Blender did not start it (Cancel asks first)
            layout.label(text=f"Started elsewhere: {settings.followed_engine}", icon='LINKED')
        if settings.iterations:
            details = layout.column(align=True)
            details.label(text=f"Step {settings.step}: {settings.iteration} / {settings.iterations}")
            if settings.eta_s > 0 and settings.state == 'training':
                details.label(text=f"Time left: {_format_eta(settings.eta_s)}", icon='TIME')
            if settings.losses:
                details.label(text=settings.losses)
        icon = preview_icon(settings.preview_path)
        if icon:
            layout.template_icon(icon_value=icon, scale=PREVIEW_SCALE)
        if settings.error_message:
            box = layout.box()
            box.alert = True
            box.label(text=settings.error_message, icon='ERROR')
            if settings.error_hint:
                box.label(text=settings.error_hint, icon='INFO')
        if settings.job_dir:
            layout.operator("jokr.open_log", icon='TEXT')


class JOKR_PT_keypoints(_JokrPanel, bpy.types.Panel):
    bl_label = "Keypoints & Render"
    bl_parent_id = "JOKR_PT_main"

    def draw(self, context):
        layout = self.layout
        settings = compat.sequencer_scene(context).jokr
        layout.row().prop(settings, "keypoint_source", expand=True)
        column = layout.column(align=True)
        column.operator("jokr.import_keypoints", icon='EMPTY_AXIS' if settings.keypoint_source == 'EMPTIES'
                        else 'TRACKER')
        reset = column.operator("jokr.import_keypoints", text="Reset to Engine Keypoints", icon='LOOP_BACK')
        reset.reset = True
        column.operator("jokr.smooth_keypoints", icon='SMOOTHCURVE')
        if settings.keypoint_source == 'EMPTIES':
            row = column.row(align=True)
            row.operator("jokr.keypoint_paths", text="Show Paths", icon='IPO_BEZIER').action = 'SHOW'
            row.operator("jokr.keypoint_paths", text="Clear Paths", icon='X').action = 'CLEAR'
        job_name = os.path.basename(os.path.normpath(bpy.path.abspath(settings.job_dir))) if settings.job_dir else ""
        for code, direction in DIRECTIONS.items():
            box = layout.box()
            box.label(text=f"{code}: {direction.describe()}", icon='SEQUENCE')
            box.label(text=f"Only clip {direction.driver}'s keypoints drive it", icon='INFO')
            missing = render.missing_keypoints(job_name, direction.driver, settings.keypoint_source) \
                if job_name else []
            if missing:
                kind = "track" if settings.keypoint_source == 'TRACKS' else "empty"
                box.label(text=f"Keypoint{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} "
                               f"without {kind}: the engine's used", icon='MODIFIER_OFF')
            row = box.row(align=True)
            row.operator("jokr.render_strip", text="Render Strip", icon='RENDER_ANIMATION').direction = code
            row.operator("jokr.render_frame", text="Current Frame", icon='RENDER_STILL').direction = code
            box.operator("jokr.clean_plate", text=f"Clean Plate of {direction.driver} (under {code})",
                         icon='IMAGE_DATA').clip = direction.driver
        if settings.task_text:
            box = layout.box()
            box.alert = settings.task_failed
            box.label(text=settings.task_text, icon='ERROR' if settings.task_failed else 'INFO')


classes = (JOKR_PT_main, JOKR_PT_clips, JOKR_PT_training, JOKR_PT_keypoints)


def register():
    global _previews
    _previews = bpy.utils.previews.new()


def unregister():
    global _previews
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
    _previews = None
    _preview_stamps.clear()
