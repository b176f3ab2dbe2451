"""Render back: the empties' animation → an edited keypoint file → the engine's frames → a result strip.

The keypoints are read with `fcurve.evaluate(frame)` on the frames the rig was keyed on, so every edit
the artist made counts. The result is A's motion with B's look (`render --look B`), RGBA frames at
clip A's size, shown as an image strip above the sources, frame for frame over strip A, blended with
Alpha Over. Rendering again updates that strip (files and cache) instead of adding another.
"""

from __future__ import annotations

import os
import re

import bpy
import numpy as np

from ..io.coords import camera_to_frame
from ..io.keypoint_file import KeypointFile, KeypointFileError
from . import compat, keypoints, session, strips
from .session import UserError

LOOK = "B"  # the result has clip B's look and clip A's motion
DRIVING = "A"
FRAME_FILE = re.compile(r"^(\d+)\.png$")
MAX_CHANNEL = 128


def render_folder(job_dir: str) -> str:
    return os.path.join(job_dir, f"render_look{LOOK}")


def edited_keypoints_path(job_dir: str) -> str:
    return os.path.join(job_dir, "keypoints.edited.json")


def _rig_camera(job_name: str, label: str):
    camera = bpy.data.objects.get(keypoints.camera_name(job_name, label))
    return camera if camera is not None and "jokr_first_frame" in camera else None


def rig_first_frame(job_name: str, label: str) -> int | None:
    """The scene frame keyed with the clip's frame 0, or None without a rig."""
    camera = _rig_camera(job_name, label)
    return int(camera["jokr_first_frame"]) if camera is not None else None


def _scene_of(obj, fallback):
    return obj.users_scene[0] if obj.users_scene else fallback


def views_changed(job_name: str, fallback_scene) -> list[str]:
    """The clips whose camera view no longer matches the frame their keys are in."""
    return [label for label in keypoints.LABELS
            if (camera := _rig_camera(job_name, label)) is not None
            and keypoints.view_changed(camera, _scene_of(camera, fallback_scene))]


def read_rig(job_name: str, label: str, keypoint_file: KeypointFile, fallback_scene) -> list | None:
    """Clip `label`'s keypoints (frames × K × [x, y]) from its empties, or None if it has no rig."""
    camera = _rig_camera(job_name, label)
    if camera is None:
        return None
    count = keypoint_file.frame_count(label)
    if camera["jokr_frame_count"] != count:
        raise UserError(f"The keypoint empties of clip {label} cover {camera['jokr_frame_count']} frames but "
                        f"the job has {count}: import the keypoints again")
    frame = keypoints.keys_frame(camera, _scene_of(camera, fallback_scene))
    first = int(camera["jokr_first_frame"])
    frames = range(first, first + count)
    points = np.empty((count, keypoint_file.num_keypoints, 2))
    for index in range(keypoint_file.num_keypoints):
        name = keypoints.empty_name(job_name, label, index)
        obj = bpy.data.objects.get(name)
        if obj is None:
            raise UserError(f"Keypoint empty {name} is missing: Reset to Engine Keypoints rebuilds the rig")
        curves = compat.location_fcurves(obj)
        for axis, fcurve in enumerate(curves):
            # An axis without animation holds still where the empty is.
            points[:, index, axis] = ([fcurve.evaluate(f) for f in frames] if fcurve is not None
                                      else obj.location[axis])
    points[:, :, 0], points[:, :, 1] = camera_to_frame(points[:, :, 0], points[:, :, 1], frame)
    return points.tolist()


def edited_keypoint_file(job_name: str, keypoint_file: KeypointFile, scene) -> KeypointFile:
    """The engine's keypoint file with every clip that has a rig replaced by its empties' keys."""
    replacements = {}
    for label in keypoint_file.labels:
        points = read_rig(job_name, label, keypoint_file, scene)
        if points is not None:
            replacements[label] = points
    if DRIVING not in replacements:
        raise UserError("Import the keypoints first: rendering reads the keypoint empties of clip A")
    try:
        return keypoint_file.with_keypoints(replacements)
    except KeypointFileError as error:
        if error.keypoint is None:
            raise UserError(str(error)) from None
        camera = _rig_camera(job_name, error.clip)
        frame = int(camera["jokr_first_frame"]) + error.frame
        name = keypoints.empty_name(job_name, error.clip, error.keypoint)
        raise UserError(f"Keypoint empty {name} is too far outside the frame at frame {frame}: move it back "
                        "near the footage") from None


def rendered_run(folder: str, around: int | None) -> list[str]:
    """The consecutive run of rendered frame files that holds frame `around` (default: the first)."""
    indices = sorted(int(m.group(1)) for n in os.listdir(folder) if (m := FRAME_FILE.match(n))) \
        if os.path.isdir(folder) else []
    if not indices:
        return []
    present = set(indices)
    first = around if around in present else indices[0]
    while first - 1 in present:
        first -= 1
    last = first
    while last + 1 in present:
        last += 1
    return [f"{i:05d}.png" for i in range(first, last + 1)]


def _free_channel(scene, above: int, start: int, end: int) -> int:
    editor = scene.sequence_editor
    top_level = list(getattr(editor, compat.STRIPS))
    for channel in range(above + 1, MAX_CHANNEL + 1):
        if not any(s.channel == channel and s.frame_final_start < end and start < s.frame_final_end
                   for s in top_level):
            return channel
    raise UserError("No free channel above the clips for the result strip")


def _match_placement(result, source) -> None:
    """Same transform and crop as the driving strip: the frames are rendered at its size."""
    for name in ("offset_x", "offset_y", "scale_x", "scale_y", "rotation"):
        setattr(result.transform, name, getattr(source.transform, name))
    result.transform.origin = source.transform.origin
    for name in ("min_x", "max_x", "min_y", "max_y"):
        setattr(result.crop, name, getattr(source.crop, name))


def _result_strip(scene, name: str, job_dir: str):
    """The job's result strip: by name, else (renamed by the artist) by the job it was made for. The job
    is stored as the scene stores it (relative to the .blend when inside its folder), so the strip is
    still found after the project moved."""
    for strip in (compat.find_strip(scene, name), *compat.all_strips(scene)):
        if (strip is not None and strip.type == 'IMAGE' and strip.get("jokr_job")
                and session.manager.key(bpy.path.abspath(strip["jokr_job"])) == session.manager.key(job_dir)):
            return strip
    return None


def update_result_strip(scene, settings, job_dir: str, job_name: str, around: int | None = None):
    """Add the result strip, or point the existing one at the current frames. Returns the strip."""
    driving = strips.get_strip(scene, settings.clip_a.strip, "clip A")
    folder = render_folder(job_dir)
    names = rendered_run(folder, around)
    if not names:
        raise UserError(f"The engine wrote no frames into {folder}")
    first_index = int(names[0][:-4])
    result = _result_strip(scene, settings.result_strip, job_dir)
    if result is None:
        other = compat.find_strip(scene, settings.clip_b.strip)
        above = max(driving.channel, other.channel if other else 0)
        start = driving.frame_final_start + first_index
        channel = _free_channel(scene, above, start, start + len(names))
        result = compat.new_image_strip(scene, f"JOKR.{job_name[:keypoints.JOB_NAME_MAX]}.AB",
                                        os.path.join(folder, names[0]), channel, start)
        for name in names[1:]:
            result.elements.append(name)
        result["jokr_job"] = session.stored_path(job_dir)
    else:
        elements = result.elements
        while len(elements) > 1:
            elements.pop(len(elements) - 1)
        elements[0].filename = names[0]
        for name in names[1:]:
            elements.append(name)
    result.directory = session.stored_path(folder) + os.sep  # relative inside the project: it can move
    # Element e is shown at frame_start + e - animation_offset_start: line file i up with strip A's frame i.
    result.frame_start = driving.frame_final_start + first_index + result.animation_offset_start
    settings.result_strip = result.name
    result.blend_type = 'ALPHA_OVER'
    _match_placement(result, driving)
    result.invalidate_cache('RAW')
    return result
