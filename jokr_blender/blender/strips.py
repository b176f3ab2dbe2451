"""Sequencer strips → engine clips (docs/CLI.md, "Clips"), and the footage of a strip for a camera.

A movie strip is its file with the first shown frame and the number of shown frames. An image strip
is its folder with a start and count: the engine reads a folder in natural name order, so the strip's
shown images must be a run of consecutive images of that folder, and every one must exist.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import bpy

from ..io import masks
from ..io.protocol import ClipArgs, mask_alpha, mask_auto, mask_key, mask_luma
from . import compat
from .session import UserError

# The engine's readable files (jokr_engine/clips.py).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".exr")
LIST_AT_MOST = 5


@dataclass
class StripClip:
    """One clip as the engine gets it, and where it sits in the timeline."""

    label: str  # "A" or "B"
    strip_name: str
    args: ClipArgs
    first_frame: int  # scene frame showing the clip's frame 0
    count: int
    fps: float


def natural_key(name: str) -> list:
    # "frame2.png" before "frame10.png", as the engine sorts.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def folder_images(folder: str) -> list[str]:
    names = [n for n in os.listdir(folder) if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)
             and os.path.isfile(os.path.join(folder, n))]
    return sorted(names, key=natural_key)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:LIST_AT_MOST])
    return shown + (f" and {len(names) - LIST_AT_MOST} more" if len(names) > LIST_AT_MOST else "")


def shown_images(strip) -> list[str]:
    """File names of the images the strip shows, frame by frame."""
    names = []
    for frame in range(strip.frame_final_start, strip.frame_final_end):
        element = strip.strip_elem_from_frame(frame)
        names.append(element.filename if element else "")
    return names


def get_strip(scene, name: str, what: str):
    if not name:
        raise UserError(f"Choose the strip of {what} in the JOKR panel")
    strip = compat.find_strip(scene, name)
    if strip is None:
        raise UserError(f"Strip '{name}' ({what}) is not in the sequencer any more: add it back or choose "
                        "another strip in the JOKR panel")
    if strip.type not in {'IMAGE', 'MOVIE'}:
        raise UserError(f"Strip '{name}' ({what}) is a {strip.type.lower()} strip: use a movie or an image "
                        "strip")
    return strip


def _image_clip(strip, what: str) -> tuple[str, int]:
    folder = os.path.normpath(bpy.path.abspath(strip.directory))
    names = shown_images(strip)
    missing = [n for n in names if not n or not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise UserError(f"Strip '{strip.name}' ({what}) is missing {len(missing)} of its {len(names)} frames "
                        f"in {folder}: {_listing(missing)}")
    unreadable = sorted({n for n in names if not n.lower().endswith(IMAGE_EXTENSIONS)})
    if unreadable:
        raise UserError(f"Strip '{strip.name}' ({what}): the engine cannot read {_listing(unreadable)}; use "
                        f"{' '.join(IMAGE_EXTENSIONS)} images")
    listing = folder_images(folder)
    start = listing.index(names[0])
    if listing[start:start + len(names)] != names:
        raise UserError(f"Strip '{strip.name}' ({what}) shows images that are not consecutive in {folder}: "
                        "the engine reads a folder in name order, so give the clip a folder of its own")
    return folder, start


def _movie_clip(strip, what: str) -> tuple[str, int]:
    path = os.path.normpath(bpy.path.abspath(strip.filepath))
    if not os.path.isfile(path):
        raise UserError(f"Strip '{strip.name}' ({what}): the movie {path} does not exist")
    if not path.lower().endswith(VIDEO_EXTENSIONS):
        raise UserError(f"Strip '{strip.name}' ({what}): the engine reads {' '.join(VIDEO_EXTENSIONS)} "
                        "movies; convert it or use an image sequence")
    return path, int(strip.animation_offset_start + strip.frame_offset_start)


def get_mask_strip(scene, name: str, what: str):
    """The sequencer Mask strip a clip's matte comes from; UserError when it is missing or not a mask."""
    if not name:
        raise UserError(f"Choose the Mask strip of {what} in the JOKR panel")
    strip = compat.find_strip(scene, name)
    if strip is None:
        raise UserError(f"Mask strip '{name}' ({what}) is not in the sequencer any more: add it back or choose "
                        "another in the JOKR panel")
    if strip.type != 'MASK' or strip.mask is None:
        raise UserError(f"Strip '{name}' ({what}) is a {strip.type.lower()} strip, not a Mask strip with a mask: "
                        "add the mask with Add › Mask, or choose the mask source Matte Strip")
    return strip


def _mask(scene, clip, strip, label: str, job_dir: str | None) -> str | None:
    what = f"clip {label}"
    source = clip.mask_source
    if source == 'MATTING':
        return mask_auto(clip.matting_model)
    if source == 'MASK_STRIP':
        get_mask_strip(scene, clip.mask_strip, f"mask of {what}")
        if job_dir is None:
            raise ValueError("the mask source Mask Strip needs the job folder its masks are rendered into")
        # Rendered there by the Train operator (blender/mask_sources.py) before the engine starts.
        return masks.strip_mask_folder(job_dir, label)
    if source == 'ALPHA':
        if strip.type != 'IMAGE':
            raise UserError(f"Mask 'Alpha' of {what} needs an image sequence with alpha, not a movie")
        return mask_alpha()
    if source == 'KEY':
        return mask_key(tuple(clip.key_color), clip.key_threshold)
    if source == 'LUMA':
        return mask_luma(clip.luma_threshold)
    if source == 'FOLDER':
        folder = os.path.normpath(bpy.path.abspath(clip.mask_folder)) if clip.mask_folder else ""
        if not os.path.isdir(folder):
            raise UserError(f"Mask folder of {what} not found: {folder or '(none chosen)'}")
        return folder
    if source == 'MATTE_STRIP':
        matte = get_strip(scene, clip.matte_strip, f"matte of {what}")
        if matte.type == 'MOVIE':
            return os.path.normpath(bpy.path.abspath(matte.filepath))
        return os.path.normpath(bpy.path.abspath(matte.directory))
    # AUTO: the sample layout, <clip>/frames/ beside <clip>/masks/.
    if strip.type == 'IMAGE':
        folder = os.path.normpath(bpy.path.abspath(strip.directory))
        beside = os.path.join(os.path.dirname(folder), "masks")
        if os.path.isdir(beside):
            return beside
        raise UserError(f"No 'masks' folder next to {folder} for {what}: choose its mask source")
    raise UserError(f"Choose the mask source of {what}: a movie strip has no masks folder beside it")


def strip_fps(scene, strip) -> float:
    if strip.type == 'MOVIE' and strip.fps > 0:
        return strip.fps
    return scene.render.fps / scene.render.fps_base


def clip_from_settings(scene, clip, label: str, job_dir: str | None = None) -> StripClip:
    """The engine clip of one of the panel's clips; UserError for anything the engine would refuse.
    `job_dir`: where a Mask strip's mattes go (mask source Mask Strip)."""
    what = f"clip {label}"
    strip = get_strip(scene, clip.strip, what)
    path, start = _image_clip(strip, what) if strip.type == 'IMAGE' else _movie_clip(strip, what)
    count = int(strip.frame_final_duration)
    args = ClipArgs(path=path, start=start, count=count, mask=_mask(scene, clip, strip, label, job_dir))
    return StripClip(label, strip.name, args, int(strip.frame_final_start), count, strip_fps(scene, strip))


@dataclass
class Footage:
    """What a camera background needs to show the strip's frames on the strip's own scene frames."""

    filepath: str
    source: str  # Image.source: 'SEQUENCE' or 'MOVIE'
    frame_start: int
    frame_offset: int
    frame_duration: int


def footage(strip) -> Footage:
    """The strip's shown frames for an image user. Blender shows image number (or movie frame, from 1)
    `frame - frame_start + 1 + frame_offset` at a scene frame, hence the offsets below."""
    if strip.type == 'MOVIE':
        path, first_index = _movie_clip(strip, strip.name)
        return Footage(path, 'MOVIE', strip.frame_final_start, first_index, strip.frame_final_duration)
    folder, _ = _image_clip(strip, strip.name)
    first = shown_images(strip)[0]
    digits = re.findall(r"\d+", first)
    number = int(digits[-1]) if digits else 1
    return Footage(os.path.join(folder, first), 'SEQUENCE', strip.frame_final_start, number - 1,
                   strip.frame_final_duration)
