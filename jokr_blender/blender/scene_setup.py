"""Scene set-up: the scene's frame range, frame rate and resolution from a clip's strip, in one click;
and footage paths stored relative to the .blend, so a moved project keeps its footage."""

from __future__ import annotations

import math
import os

import bpy
from bpy.props import EnumProperty

from . import compat, strips
from .session import UserError

CLIP_ITEMS = (('A', "Clip A", "The motion clip (the one AB follows)"),
              ('B', "Clip B", "The look clip (the one BA follows)"))


def blend_relative(path: str) -> str:
    """`path` relative to the saved .blend ('//…'), or as it is while the .blend is unsaved or the path is
    on another drive."""
    if not bpy.data.filepath:
        return path
    try:
        return bpy.path.relpath(os.path.abspath(bpy.path.abspath(path)))
    except ValueError:  # another drive (Windows)
        return path


def frame_rate(fps: float) -> tuple[int, float]:
    """Blender's (fps, fps_base) for a frame rate: 25 → (25, 1), 29.97 → (30, 1.001)."""
    if abs(fps - round(fps)) < 1e-3:
        return round(fps), 1.0
    whole = math.ceil(fps)
    return whole, whole / fps


def strip_size(strip) -> tuple[int, int]:
    """The pixel size of the strip's footage (what the engine renders the result at)."""
    element = strip.elements[0] if len(strip.elements) else None
    if element is not None and element.orig_width and element.orig_height:
        return element.orig_width, element.orig_height
    image = bpy.data.images.load(strips.footage(strip).filepath, check_existing=True)
    width, height = image.size
    if not width or not height:
        raise UserError(f"Cannot read the frame size of strip '{strip.name}'")
    return width, height


def set_scene_to_strip(scene, strip) -> list[str]:
    """Frame range, resolution (at 100 %) and, for a movie, frame rate of `scene` from `strip`. Returns
    what was set, for the report."""
    width, height = strip_size(strip)
    scene.frame_start, scene.frame_end = int(strip.frame_final_start), int(strip.frame_final_end) - 1
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0
    done = [f"frames {scene.frame_start}–{scene.frame_end}", f"{width}×{height}"]
    if strip.type == 'MOVIE' and strip.fps > 0:
        render.fps, render.fps_base = frame_rate(strip.fps)
        done.append(f"{strip.fps:g} fps")
    else:
        done.append(f"{render.fps / render.fps_base:g} fps kept (an image sequence has no frame rate)")
    return done


class JOKR_OT_scene_from_clip(bpy.types.Operator):
    bl_idname = "jokr.scene_from_clip"
    bl_label = "Set Scene to Clip"
    bl_description = ("Set the scene's frame range, resolution and (for a movie) frame rate to the clip's "
                      "strip, so the keypoint cameras show the footage unstretched and the whole clip plays")
    bl_options = {'REGISTER', 'UNDO'}
    clip: EnumProperty(name="Clip", items=CLIP_ITEMS, default='A')

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        if scene is None or scene.sequence_editor is None:
            cls.poll_message_set("Open a scene with a Video Sequencer holding the clips")
            return False
        return True

    def execute(self, context):
        scene = compat.sequencer_scene(context)
        clip = scene.jokr.clip_a if self.clip == 'A' else scene.jokr.clip_b
        try:
            strip = strips.get_strip(scene, clip.strip, f"clip {self.clip}")
            done = set_scene_to_strip(scene, strip)
            if context.scene is not None and context.scene != scene:  # 5.0: the keypoint cameras' scene too
                set_scene_to_strip(context.scene, strip)
        except UserError as error:
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        self.report({'INFO'}, f"Scene set to strip '{strip.name}': {', '.join(done)}")
        return {'FINISHED'}


classes = (JOKR_OT_scene_from_clip,)
