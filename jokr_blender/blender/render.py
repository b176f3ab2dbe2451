"""Render back: the keypoints as the artist left them → an edited keypoint file → the engine's frames →
a result strip (blender/result_strips.py).

Two directions (io/results.py): AB has A's motion and B's look (`render --look B`), BA has B's motion
and A's look (`render --look A`). Only the driving clip's keypoints (A's for AB, B's for BA) move the
result. They are read from the source the scene chose: the keypoint empties (`fcurve.evaluate(frame)`
on the frames the rig was keyed on, so every edit counts) or the Movie Clip's tracks. A keypoint whose
empty or track was deleted keeps the engine's position: deleting one means "use the engine's keypoint".
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..io.coords import camera_to_frame
from ..io.keypoint_file import KeypointFile, KeypointFileError
from ..io.results import DIRECTIONS, Direction
from . import compat, keyframes, keypoints, tracks
from .session import UserError

FRAME_FILE = re.compile(r"^(\d+)\.png$")
SOURCE_NAMES = {'EMPTIES': "keypoint empties", 'TRACKS': "Movie Clip tracks"}


def render_folder(job_dir: str, direction: Direction = DIRECTIONS["AB"]) -> str:
    return os.path.join(job_dir, f"render_look{direction.look}")


def edited_keypoints_path(job_dir: str) -> str:
    return os.path.join(job_dir, "keypoints.edited.json")


def _rig_camera(job_name: str, label: str):
    camera = keypoints.find_rig(job_name, label).camera
    return camera if camera is not None and "jokr_first_frame" in camera else None


def _keyed(job_name: str, label: str, source: str):
    """What holds clip `label`'s keypoints in this source (rig camera or Movie Clip), if imported."""
    holder = tracks.find_clip(job_name, label) if source == 'TRACKS' else _rig_camera(job_name, label)
    return holder if holder is not None and "jokr_first_frame" in holder else None


def rig_first_frame(job_name: str, label: str, source: str = 'EMPTIES') -> int | None:
    """The scene frame keyed with the clip's frame 0, or None when nothing was imported."""
    holder = _keyed(job_name, label, source)
    return int(holder["jokr_first_frame"]) if holder is not None else None


def _scene_of(obj, fallback):
    return obj.users_scene[0] if obj.users_scene else fallback


def views_changed(job_name: str, fallback_scene) -> list[str]:
    """The clips whose camera view no longer matches the frame their keys are in."""
    return [label for label in keypoints.LABELS
            if (camera := _rig_camera(job_name, label)) is not None
            and keypoints.view_changed(camera, _scene_of(camera, fallback_scene))]


def missing_keypoints(job_name: str, label: str, source: str) -> list[int]:
    """The keypoints of an imported clip whose empty or track is gone (Render uses the engine's)."""
    holder = _keyed(job_name, label, source)
    if holder is None or "jokr_num_keypoints" not in holder:
        return []
    count = int(holder["jokr_num_keypoints"])
    if source == 'TRACKS':
        names = {track.name for track in holder.tracking.tracks}
        return [i for i in range(count) if tracks.track_name(i) not in names]
    present = keypoints.find_rig(job_name, label).empties
    return [i for i in range(count) if i not in present]


def read_rig(job_name: str, label: str, keypoint_file: KeypointFile, fallback_scene) -> tuple[list | None, list[int]]:
    """Clip `label`'s keypoints (frames × K × [x, y]) from its empties, or None if it has no rig; and the
    keypoints whose empty is gone, which keep the engine's positions."""
    camera = _rig_camera(job_name, label)
    if camera is None:
        return None, []
    rig = keypoints.find_rig(job_name, label)
    rig.check_unique(label)
    count = keypoint_file.frame_count(label)
    if camera["jokr_frame_count"] != count:
        raise UserError(f"The keypoint empties of clip {label} cover {camera['jokr_frame_count']} frames but "
                        f"the job has {count}: import the keypoints again")
    frame = keypoints.keys_frame(camera, _scene_of(camera, fallback_scene))
    first = int(camera["jokr_first_frame"])
    frames = range(first, first + count)
    points = np.asarray(keypoint_file.keypoints(label), dtype=np.float64).copy()
    missing = []
    for index in range(keypoint_file.num_keypoints):
        obj = rig.empties.get(index)
        if obj is None:
            missing.append(index)
            continue
        keyframes.mark_artist_keys(obj)
        view = np.empty((count, 2))
        for axis, fcurve in enumerate(compat.location_fcurves(obj)):
            # An axis without animation holds still where the empty is.
            view[:, axis] = [fcurve.evaluate(f) for f in frames] if fcurve is not None else obj.location[axis]
        points[:, index, 0], points[:, index, 1] = camera_to_frame(view[:, 0], view[:, 1], frame)
    return points.tolist(), missing


def read_keypoints(job_name: str, label: str, keypoint_file: KeypointFile, scene,
                   source: str) -> tuple[list | None, list[int]]:
    if source == 'TRACKS':
        return tracks.read_tracks(job_name, label, keypoint_file)
    return read_rig(job_name, label, keypoint_file, scene)


def edited_keypoint_file(job_name: str, keypoint_file: KeypointFile, scene, direction: Direction,
                         source: str) -> tuple[KeypointFile, list[int]]:
    """The engine's keypoint file with every clip imported in `source` replaced by the artist's
    keypoints; and the driving clip's keypoints that had no empty or track (the engine's are used)."""
    replacements, missing = {}, []
    for label in keypoint_file.labels:
        points, gone = read_keypoints(job_name, label, keypoint_file, scene, source)
        if points is not None:
            replacements[label] = points
            missing = gone if label == direction.driver else missing
    if direction.driver not in replacements:
        raise UserError(f"Import the keypoints first: rendering {direction.code} reads clip {direction.driver}'s "
                        f"{SOURCE_NAMES[source]}")
    try:
        return keypoint_file.with_keypoints(replacements), missing
    except KeypointFileError as error:
        if error.keypoint is None:
            raise UserError(str(error)) from None
        frame = rig_first_frame(job_name, error.clip, source) + error.frame
        if source == 'TRACKS':
            clip = tracks.find_clip(job_name, error.clip)
            what = f"Track {tracks.track_name(error.keypoint)} of Movie Clip {clip.name}"
        else:
            what = f"Keypoint empty {keypoints.find_rig(job_name, error.clip).empties[error.keypoint].name}"
        raise UserError(f"{what} is too far outside the frame at frame {frame}: move it back near the "
                        "footage") from None


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
