"""Masks in the sequencer: the engine's automatic masks as a strip to scrub, the suspect frames its check
found (with a jump to each), and sequencer Mask strips (Blender's rotoscoping) as a clip's matte.

- **Show Masks** adds the clip's masks as an image strip over the clip (file i on the clip strip's frame i,
  its transform, crop and flips) in the first free channel above everything there, blended Multiply, so
  the preview shows the footage cut out by the mask. It remembers its job and clip (`jokr_masks_job`,
  `jokr_masks_clip`: not `jokr_job`, which marks result strips), so showing them again updates it.
- **Mask Strip** as mask source: before the engine starts, Train renders the Mask strip on each scene frame
  the clip strip shows (a temporary scene holding a copy of that strip, at the footage's size, Standard
  view), thresholds it at one half into 0/255 grey PNGs, one per frame of the whole clip as the engine
  wants (frames outside the strip's range are empty), each written atomically.
- **Override Masks** (mask source Automatic, after a training made the masks): the same render, where the
  Mask strip is not empty it replaces the automatic mask, elsewhere the automatic mask stays; the result
  goes to `<job>/merged_masks/<A|B>/` and becomes the clip's mask source (Image Folder) for a new job.
"""

from __future__ import annotations

import os
import tempfile

import bpy
import numpy as np
from bpy.props import EnumProperty, IntProperty

from ..io import atomic, masks, results
from ..io.masks import auto_mask_folder, strip_mask_folder
from . import compat, operators, result_strips, session, strips
from .session import UserError

MASKS_JOB, MASKS_CLIP = "jokr_masks_job", "jokr_masks_clip"
MERGED_MASKS = "merged_masks"  # <job>/merged_masks/<A|B>/: automatic masks with a Mask strip over them
MAX_CHANNEL = 128
SUSPECTS_SHOWN = 12
CLIP_ITEMS = (('A', "Clip A", "The motion clip"), ('B', "Clip B", "The look clip"))


# ---- Mask strips → mask PNGs


def footage_size(strip) -> tuple[int, int]:
    """The clip strip's footage size in pixels (its first shown image or the movie)."""
    path = strips.footage(strip).filepath
    image = bpy.data.images.load(path)
    try:
        width, height = image.size
    finally:
        bpy.data.images.remove(image)
    if not width or not height:
        raise UserError(f"Strip '{strip.name}': Blender cannot read the size of {path}")
    return int(width), int(height)


def clip_total(strip) -> int:
    """Frames of the whole clip (the engine wants one mask per frame of it, not only the strip's range)."""
    if strip.type == 'MOVIE':
        return int(strip.frame_duration)
    return len(strips.folder_images(os.path.normpath(bpy.path.abspath(strip.directory))))


def _read_coverage(path: str) -> np.ndarray:
    """The rendered mask's coverage, rows top first: white × alpha."""
    image = bpy.data.images.load(path)
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    pixels = pixels.reshape(height, width, 4)[::-1]
    return pixels[:, :, 0] * pixels[:, :, 3]


def _render_scene(scene, mask_strip, size: tuple[int, int]):
    """A scene of its own that shows nothing but a copy of the Mask strip, at the same frames."""
    render_scene = bpy.data.scenes.new("JOKR mask render")
    render = render_scene.render
    render.resolution_x, render.resolution_y = size
    render.resolution_percentage = 100
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0
    render.fps, render.fps_base = scene.render.fps, scene.render.fps_base
    render.image_settings.file_format = 'PNG'
    render.image_settings.color_mode = 'RGBA'
    render_scene.view_settings.view_transform = 'Standard'  # white stays 1.0
    render_scene.view_settings.look = 'None'
    render_scene.view_settings.exposure, render_scene.view_settings.gamma = 0.0, 1.0
    editor = render_scene.sequence_editor_create()
    copy = getattr(editor, compat.STRIPS).new_mask(name=mask_strip.name, mask=mask_strip.mask, channel=1,
                                                   frame_start=int(mask_strip.frame_start))
    copy.frame_offset_start, copy.frame_offset_end = mask_strip.frame_offset_start, mask_strip.frame_offset_end
    return render_scene


def _strip_mattes(scene, clip_strip, mask_strip, size: tuple[int, int]):
    """The Mask strip's matte (boolean, rows top first) on each frame the clip strip shows, in order."""
    render_scene = _render_scene(scene, mask_strip, size)
    try:
        with tempfile.TemporaryDirectory(prefix="jokr-mask-") as scratch:
            render_scene.render.filepath = os.path.join(scratch, "mask.png")
            for offset in range(int(clip_strip.frame_final_duration)):
                render_scene.frame_set(int(clip_strip.frame_final_start) + offset)
                with bpy.context.temp_override(scene=render_scene):
                    bpy.ops.render.render(write_still=True)
                yield _read_coverage(render_scene.render.filepath) > 0.5
    finally:
        bpy.data.scenes.remove(render_scene)


def write_masks(scene, clip_strip, mask_strip, folder: str, start: int, under: list[str] | None = None) -> int:
    """Write the Mask strip's matte of every frame of the clip strip's whole clip into `folder` (see the
    module's docstring). `start`: the clip frame the strip shows first. With `under` (a mask file per shown
    frame), a frame where the Mask strip is empty takes that file's mask instead: the Mask strip overrides
    the frames it covers. Returns the frames the Mask strip covered."""
    size = footage_size(clip_strip)
    total, shown = clip_total(clip_strip), int(clip_strip.frame_final_duration)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise UserError(f"Cannot write the mask folder {folder}: {error.strerror}") from None
    empty = masks.encode_grey_png(np.zeros(size[::-1], dtype=bool))
    mattes = _strip_mattes(scene, clip_strip, mask_strip, size)
    covered = 0
    try:
        for index in range(total):
            data = empty
            if start <= index < start + shown:
                matte = next(mattes)
                if matte.any():
                    covered += 1
                    data = masks.encode_grey_png(matte)
                elif under is not None:
                    data = masks.encode_grey_png(_read_coverage(under[index - start]) > 0.5)
            atomic.write_atomic(os.path.join(folder, masks.mask_file_name(index)), data)
    finally:
        mattes.close()
    if not covered:
        raise UserError(f"Mask strip '{mask_strip.name}' is empty on every frame of strip '{clip_strip.name}': "
                        "draw the mask over the frames the clip shows (or move the Mask strip there)")
    keep = {masks.mask_file_name(index) for index in range(total)}
    for name in os.listdir(folder):  # a longer clip's masks from before: the engine counts the files
        if name.endswith(".png") and name not in keep:
            os.unlink(os.path.join(folder, name))
    return covered


def render_mask_sources(scene, settings, job_dir: str, clips) -> list[str]:
    """Render the matte of every clip whose mask source is a Mask strip; one line per clip for a report."""
    lines = []
    for clip in clips:
        panel_clip = result_strips.clip_settings(settings, clip.label)
        if panel_clip.mask_source != 'MASK_STRIP':
            continue
        strip = strips.get_strip(scene, clip.strip_name, f"clip {clip.label}")
        mask_strip = strips.get_mask_strip(scene, panel_clip.mask_strip, f"mask of clip {clip.label}")
        covered = write_masks(scene, strip, mask_strip, strip_mask_folder(job_dir, clip.label), clip.args.start)
        lines.append(f"Mask strip '{mask_strip.name}' rendered for clip {clip.label}: a matte on {covered} of "
                     f"{clip.count} frames")
    return lines


# ---- Showing the masks


def mask_names(strip, start: int, source: str) -> list[str]:
    """The mask file of each frame the clip strip shows. Automatic masks are named after the clip's frames
    (the image's name, or 00012 in a movie); a Mask strip's after the frame's place in the whole clip."""
    if source == 'MASK_STRIP':
        return [masks.mask_file_name(start + i) for i in range(int(strip.frame_final_duration))]
    if strip.type == 'MOVIE':
        return [f"{start + i:05d}.png" for i in range(int(strip.frame_final_duration))]
    return [os.path.splitext(name)[0] + ".png" for name in strips.shown_images(strip)]


def find_mask_strip(scene, job_dir: str, label: str):
    key = session.manager.key(job_dir)
    return next((strip for strip in compat.all_strips(scene)
                 if strip.type == 'IMAGE' and strip.get(MASKS_CLIP) == label and strip.get(MASKS_JOB)
                 and session.manager.key(bpy.path.abspath(strip[MASKS_JOB])) == key), None)


def free_channel(scene, start: int, end: int) -> int:
    """The channel above every strip that overlaps frames [start, end)."""
    used = [s.channel for s in getattr(scene.sequence_editor, compat.STRIPS)
            if s.frame_final_start < end and start < s.frame_final_end]
    channel = max(used, default=0) + 1
    if channel > MAX_CHANNEL:
        raise UserError(f"No free channel above the strips at frames {start}–{end - 1}: free one")
    return channel


def show_masks(scene, settings, job_dir: str, label: str):
    """Add the clip's masks as a strip over it, or update the one there. Returns the strip."""
    clip = result_strips.clip_settings(settings, label)
    driver = strips.get_strip(scene, clip.strip, f"clip {label}")
    source = 'MASK_STRIP' if clip.mask_source == 'MASK_STRIP' else 'MATTING'
    folder = strip_mask_folder(job_dir, label) if source == 'MASK_STRIP' else auto_mask_folder(job_dir, label)
    start = strips.clip_from_settings(scene, clip, label, job_dir).args.start
    names = mask_names(driver, start, source)
    missing = [name for name in names if not os.path.isfile(os.path.join(folder, name))]
    if len(missing) == len(names):
        made_by = "Train renders them" if source == 'MASK_STRIP' else \
            "they are made when Train starts with the mask source Automatic"
        raise UserError(f"No masks of clip {label} in {folder}: {made_by}")
    if missing:
        raise UserError(f"{len(missing)} of the {len(names)} masks of clip {label} are missing in {folder} "
                        f"(first: {missing[0]}): train or resume to finish them")
    strip = find_mask_strip(scene, job_dir, label)
    if strip is None:
        start_frame = driver.frame_final_start
        channel = free_channel(scene, start_frame, start_frame + len(names))
        name = f"JOKR masks {label} ({driver.name})".encode()[:results.NAME_BYTES].decode(errors="ignore")
        strip = compat.new_image_strip(scene, name, os.path.join(folder, names[0]), channel, start_frame)
        strip[MASKS_JOB], strip[MASKS_CLIP] = session.stored_path(job_dir), label
    result_strips.show_frames(strip, folder, names, driver, 0)
    strip.blend_type = 'MULTIPLY'  # the footage shows inside the mask, black outside
    return strip


class JOKR_OT_show_masks(bpy.types.Operator):
    bl_idname = "jokr.show_masks"
    bl_label = "Show Masks"
    bl_description = ("Add the clip's masks (the automatic ones the engine made, or the rendered Mask strip) as a "
                      "strip over the clip, blended Multiply, to scrub through them; mute it to hide it")
    bl_options = {'REGISTER', 'UNDO'}
    clip: EnumProperty(name="Clip", items=CLIP_ITEMS, default='A', description="Whose masks")

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        return operators._poll(cls, [(scene is not None and scene.sequence_editor is not None,
                                      "Open a scene with a Video Sequencer"),
                                     (scene is not None and bool(scene.jokr.job_dir),
                                      "No job yet: the masks are made when Train starts")])

    def execute(self, context):
        scene = compat.sequencer_scene(context)
        try:
            strip = show_masks(scene, scene.jokr, session.current_job_dir(scene.jokr), self.clip)
        except UserError as error:
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        self.report({'INFO'}, f"Masks of clip {self.clip} in strip '{strip.name}' (channel {strip.channel})")
        return {'FINISHED'}


def override_masks(scene, settings, job_dir: str, label: str) -> tuple[str, int, int]:
    """Merge the clip's Mask strip over its automatic masks into <job>/merged_masks/<label>/ and make that
    folder the clip's mask source. Returns (folder, frames the Mask strip covered, frames shown)."""
    clip = result_strips.clip_settings(settings, label)
    driver = strips.get_strip(scene, clip.strip, f"clip {label}")
    mask_strip = strips.get_mask_strip(scene, clip.mask_strip, f"override of clip {label}'s masks")
    start = strips.clip_from_settings(scene, clip, label, job_dir).args.start
    automatic = auto_mask_folder(job_dir, label)
    names = mask_names(driver, start, 'MATTING')
    missing = [name for name in names if not os.path.isfile(os.path.join(automatic, name))]
    if missing:
        raise UserError(f"{len(missing)} of the {len(names)} automatic masks of clip {label} are missing in "
                        f"{automatic} (first: {missing[0]}): train with the mask source Automatic first")
    folder = os.path.join(job_dir, MERGED_MASKS, label)
    covered = write_masks(scene, driver, mask_strip, folder, start,
                          under=[os.path.join(automatic, name) for name in names])
    clip.mask_source, clip.mask_folder = 'FOLDER', session.stored_path(folder) + os.sep
    return folder, covered, len(names)


class JOKR_OT_override_masks(bpy.types.Operator):
    bl_idname = "jokr.override_masks"
    bl_label = "Override Masks"
    bl_description = ("Replace the clip's automatic masks with the Mask strip on every frame where the Mask strip "
                      "is not empty, into a mask folder of the job that becomes the clip's mask source (Image "
                      "Folder): train a new job to use it")
    bl_options = {'REGISTER', 'UNDO'}
    clip: EnumProperty(name="Clip", items=CLIP_ITEMS, default='A', description="Whose masks")

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        return operators._poll(cls, [(scene is not None and bool(scene.jokr.job_dir),
                                      "No job yet: train with the mask source Automatic first")])

    def execute(self, context):
        scene = compat.sequencer_scene(context)
        try:
            folder, covered, shown = override_masks(scene, scene.jokr, session.current_job_dir(scene.jokr),
                                                    self.clip)
        except UserError as error:
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        self.report({'INFO'}, f"The Mask strip replaced {covered} of the {shown} automatic masks of clip "
                              f"{self.clip} in {folder}, now its mask source (Image Folder): train a new job "
                              "(another Job Name) to use them")
        return {'FINISHED'}


class JOKR_OT_jump_to_mask_frame(bpy.types.Operator):
    bl_idname = "jokr.jump_to_mask_frame"
    bl_label = "Jump to Frame"
    bl_description = "Make this frame of the clip the current frame, to look at its mask"
    clip: EnumProperty(name="Clip", items=CLIP_ITEMS, default='A', description="The clip")
    index: IntProperty(name="Frame Index", min=0, description="Frame in the clip's range (0: the strip's first)")

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        return operators._poll(cls, [(scene is not None, "Open a scene with a Video Sequencer")])

    def execute(self, context):
        scene = compat.sequencer_scene(context)
        try:
            strip = strips.get_strip(scene, result_strips.clip_settings(scene.jokr, self.clip).strip,
                                     f"clip {self.clip}")
        except UserError as error:
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        # Frame `index` of the trained range is on the strip's first shown frame + index.
        scene.frame_set(int(strip.frame_final_start) + self.index)
        return {'FINISHED'}


class JOKR_PT_masks(bpy.types.Panel):
    bl_space_type = 'SEQUENCE_EDITOR'
    bl_region_type = 'UI'
    bl_category = "JOKR"
    bl_label = "Masks"
    bl_parent_id = "JOKR_PT_main"

    @classmethod
    def poll(cls, context):
        scene = compat.sequencer_scene(context)
        if scene is None:
            return False
        settings = scene.jokr
        return bool(settings.mask_check_text or settings.masking_text) or any(
            clip.mask_source in {'MATTING', 'MASK_STRIP'} for clip in (settings.clip_a, settings.clip_b))

    def draw(self, context):
        layout = self.layout
        settings = compat.sequencer_scene(context).jokr
        if settings.masking_text:
            layout.progress(factor=settings.masking_progress, type='BAR', text=settings.masking_text)
        if settings.mask_check_text:
            layout.label(text=settings.mask_check_text, icon='ERROR' if len(settings.suspect_frames) else 'CHECKMARK')
        column = layout.column(align=True)
        for row_data in list(settings.suspect_frames)[:SUSPECTS_SHOWN]:
            row = column.row(align=True)
            jump = row.operator("jokr.jump_to_mask_frame", text=f"{row_data.clip} {row_data.frame}", icon='TIME')
            jump.clip, jump.index = row_data.clip, row_data.index
            row.label(text=row_data.reasons)
        hidden = len(settings.suspect_frames) - SUSPECTS_SHOWN
        if hidden > 0:
            column.label(text=f"… and {hidden} more (mask_check.json in the masks folder)")
        editor = compat.sequencer_scene(context).sequence_editor
        for label, clip in (("A", settings.clip_a), ("B", settings.clip_b)):
            if clip.mask_source not in {'MATTING', 'MASK_STRIP'}:
                continue
            row = layout.row(align=True)
            row.operator("jokr.show_masks", text=f"Show Masks {label}", icon='MOD_MASK').clip = label
            if clip.mask_source == 'MATTING' and editor is not None:
                row = layout.row(align=True)
                row.prop_search(clip, "mask_strip", editor, compat.STRIPS_ALL, text="Override")
                row.operator("jokr.override_masks", text="", icon='CHECKMARK').clip = label


classes = (JOKR_OT_show_masks, JOKR_OT_override_masks, JOKR_OT_jump_to_mask_frame)
panel_classes = (JOKR_PT_masks,)
