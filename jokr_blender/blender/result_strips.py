"""The result strips: AB over clip A's strip, BA over clip B's (io/results.py says where and why).

Each result is an image strip of the engine's RGBA frames, blended Alpha Over, starting on its driving
strip's first shown frame (file i on the driving strip's frame i) with the driving strip's transform,
crop and flips: the frames are rendered at the driving clip's size, so the result lands on the plate
in the preview exactly where the animal it replaces was. It is named after what drives it, e.g.
"JOKR AB: motion A (cat) · look B (fox)", and remembers its job and direction (custom properties), so
rendering again updates that strip (files, frame range, cache), even after the artist renamed or
moved it, and never touches another.
"""

from __future__ import annotations

import os

import bpy

from ..io import results
from ..io.results import Direction
from . import compat, render, session, strips
from .session import UserError

MAX_CHANNEL = 128
JOB, DIRECTION = "jokr_job", "jokr_direction"
PLATE = "jokr_plate"  # a clean plate strip (blender/clean_plate.py): the clip whose plate it shows


def clip_settings(settings, label: str):
    return settings.clip_a if label == "A" else settings.clip_b


def _job_strips(scene, job_dir: str):
    key = session.manager.key(job_dir)
    return [strip for strip in compat.all_strips(scene)
            if strip.type == 'IMAGE' and strip.get(JOB)
            and session.manager.key(bpy.path.abspath(strip[JOB])) == key]


def find_result_strip(scene, job_dir: str, direction: Direction):
    """The strip this job rendered in this direction, or None. Strips made before BA existed are AB."""
    return next((strip for strip in _job_strips(scene, job_dir)
                 if PLATE not in strip and strip.get(DIRECTION, "AB") == direction.code), None)


def find_plate_strip(scene, job_dir: str, label: str):
    """The job's clean plate strip of clip `label`, or None."""
    return next((strip for strip in _job_strips(scene, job_dir) if strip.get(PLATE) == label), None)


def channel_above(scene, below: int, start: int, end: int) -> int:
    """A channel directly above `below` for frames [start, end): the strips in the way move up."""
    top_level = list(getattr(scene.sequence_editor, compat.STRIPS))
    spans = [results.Span(index, s.channel, s.frame_final_start, s.frame_final_end)
             for index, s in enumerate(top_level)]
    plan = results.place_above(spans, below, start, end, MAX_CHANNEL)
    if plan is None:
        raise UserError(f"No free channel above channel {below} for the result strip: free one")
    channel, moves = plan
    for index, new_channel in moves:
        top_level[index].channel = new_channel
    return channel


def _match_placement(result, source) -> None:
    """Same transform, crop and flips as the driving strip: the frames are rendered at its size."""
    for name in ("offset_x", "offset_y", "scale_x", "scale_y", "rotation"):
        setattr(result.transform, name, getattr(source.transform, name))
    result.transform.origin = source.transform.origin
    for name in ("min_x", "max_x", "min_y", "max_y"):
        setattr(result.crop, name, getattr(source.crop, name))
    result.use_flip_x, result.use_flip_y = source.use_flip_x, source.use_flip_y


def show_frames(strip, folder: str, names: list[str], driver, first_index: int) -> None:
    """Point the image strip at the frame files `names` of `folder` (file `first_index` first), over the
    driving strip: the same frames, transform, crop and flips."""
    elements = strip.elements
    while len(elements) > 1:
        elements.pop(len(elements) - 1)
    elements[0].filename = names[0]
    for name in names[1:]:
        elements.append(name)
    strip.directory = session.stored_path(folder) + os.sep  # relative inside the project: it can move
    # Element e is shown at frame_start + e - animation_offset_start: line file i up with the driver's frame i.
    strip.frame_start = driver.frame_final_start + first_index + strip.animation_offset_start
    strip.blend_type = 'ALPHA_OVER'
    _match_placement(strip, driver)
    strip.invalidate_cache('RAW')


def update_result_strip(scene, settings, job_dir: str, direction: Direction, around: int | None = None):
    """Add the direction's result strip, or point the existing one at the current frames. Returns it.
    A new result goes directly above the driving strip, or above its clean plate when there is one."""
    driver = strips.get_strip(scene, clip_settings(settings, direction.driver).strip, f"clip {direction.driver}")
    folder = render.render_folder(job_dir, direction)
    names = render.rendered_run(folder, around)
    if not names:
        raise UserError(f"The engine wrote no frames into {folder}")
    first_index = int(names[0][:-4])
    result = find_result_strip(scene, job_dir, direction)
    if result is None:
        start = driver.frame_final_start + first_index
        plate = find_plate_strip(scene, job_dir, direction.driver)
        below = plate.channel if plate is not None else driver.channel
        channel = channel_above(scene, below, start, start + len(names))
        look = clip_settings(settings, direction.look).strip or "?"
        result = compat.new_image_strip(scene, results.result_name(direction, driver.name, look),
                                        os.path.join(folder, names[0]), channel, start)
        result[JOB], result[DIRECTION] = session.stored_path(job_dir), direction.code
    show_frames(result, folder, names, driver, first_index)
    settings.result_strip = result.name
    return result
