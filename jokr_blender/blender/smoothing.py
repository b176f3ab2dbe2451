"""Smooth Keypoints: the imported keypoints (empties or tracks, as Render reads them) go to `jokr-engine
smooth` with the artist's keys locked; only the engine's keys (type GENERATED, or the engine's markers)
take the smoothed values, and their engine record follows, so they stay the engine's. The artist's keys
are never moved: the engine keeps them bit-identical and bends the smoothed track through them.

Files in the job folder: `keypoints.smooth_in.json` (what was sent, with `locked`) and
`keypoints.smoothed.json` (the engine's answer).
"""

from __future__ import annotations

import os

import bpy
import numpy as np
from bpy.props import EnumProperty, FloatProperty

from ..io import keypoint_file, smoothing
from ..io.coords import frame_to_camera
from . import compat, keyframes, keypoints, operators, render, session, tracks
from .session import UserError

CLIP_CHOICES = {'BOTH': ("A", "B"), 'A': ("A",), 'B': ("B",)}


def _camera_scene(camera, fallback):
    return camera.users_scene[0] if camera.users_scene else fallback


def artist_locks(job_name: str, label: str, engine: keypoint_file.KeypointFile, source: str) -> list[list[bool]]:
    """The `locked` grid of clip `label`: the keys (or markers) the artist set."""
    count, num_keypoints = engine.frame_count(label), engine.num_keypoints
    if source == 'TRACKS':
        clip = tracks.find_clip(job_name, label)
        records = clip.get(tracks.RECORD, {})
        artist = {}
        for index in range(num_keypoints):
            track = clip.tracking.tracks.get(tracks.track_name(index))
            if track is not None:
                name = track.name
                recorded = np.asarray(records[name].to_list()) if name in records else np.empty(0)
                artist[index] = [frame for frame, mine in tracks._artist_markers(track, recorded).items() if mine]
        return smoothing.locked_grid(count, num_keypoints, artist, 1)  # a Movie Clip's frame 1 is clip frame 0
    rig = keypoints.find_rig(job_name, label)
    artist = {index: keyframes.artist_frames(obj) for index, obj in rig.empties.items()}
    return smoothing.locked_grid(count, num_keypoints, artist, int(rig.camera["jokr_first_frame"]))


def write_back(job_name: str, label: str, smoothed: keypoint_file.KeypointFile, scene, source: str) -> None:
    """The smoothed keypoints onto the engine's keys of clip `label`; the artist's stay as they are."""
    points = np.asarray(smoothed.keypoints(label), dtype=np.float64)  # frames × K × 2
    if source == 'TRACKS':
        clip = tracks.find_clip(job_name, label)
        records = dict(clip[tracks.RECORD]) if tracks.RECORD in clip else {}
        for index in range(smoothed.num_keypoints):
            track = clip.tracking.tracks.get(tracks.track_name(index))
            if track is None:
                continue
            recorded = np.asarray(records[track.name].to_list()) if track.name in records else np.empty(0)
            owned = tracks._artist_markers(track, recorded)
            engine = np.stack([points[:, index, 0], 1.0 - points[:, index, 1]], axis=1)  # y up
            for frame_index, (x, y) in enumerate(engine):
                if owned.get(frame_index + 1, False):
                    # A marker is the artist's by its value alone: the record keeps the engine's old value there.
                    old = recorded[2 * frame_index:2 * frame_index + 2]
                    engine[frame_index] = old if len(old) == 2 else np.nan
                else:
                    marker = track.markers.insert_frame(frame_index + 1, co=(float(x), float(y)))
                    marker.mute, marker.is_keyed = False, False
            records[track.name] = engine.astype(np.float32).ravel().tolist()
        clip[tracks.RECORD] = records
        return
    rig = keypoints.find_rig(job_name, label)
    first = int(rig.camera["jokr_first_frame"])
    frame = keypoints.keys_frame(rig.camera, _camera_scene(rig.camera, scene))
    view_x, view_y = frame_to_camera(points[:, :, 0], points[:, :, 1], frame)
    for index, obj in rig.empties.items():
        if index < smoothed.num_keypoints:
            keyframes.write_engine_keys(obj, first, (view_x[:, index], view_y[:, index]), keep_artist=True)


class JOKR_OT_smooth_keypoints(bpy.types.Operator):
    bl_idname = "jokr.smooth_keypoints"
    bl_label = "Smooth Keypoints"
    bl_description = ("Smooth the engine's keypoint tracks to take out jitter; the keys you set never move (the "
                      "smoothed track passes through them). Reports the jitter before and after")
    bl_options = {'REGISTER', 'UNDO'}
    clips: EnumProperty(name="Clips", default='BOTH', description="Whose keypoints to smooth",
                        items=[('BOTH', "Both", "Clips A and B"), ('A', "Clip A", "Only clip A (drives AB)"),
                               ('B', "Clip B", "Only clip B (drives BA)")])
    strength: FloatProperty(name="Strength", min=0.0, soft_max=50.0, default=4.0,
                            description="How hard to smooth: 4 takes out frame-to-frame noise and halves a "
                                        "motion of about 9 frames; a stride of a second keeps 98 %; 0 changes "
                                        "nothing")

    @classmethod
    def poll(cls, context):
        return operators._has_idle_job(cls, context)

    def execute(self, context):
        scene = compat.sequencer_scene(context)
        settings, source = scene.jokr, scene.jokr.keypoint_source
        try:
            job_dir = session.current_job_dir(settings)
            job_name = os.path.basename(job_dir)
            try:
                engine = keypoint_file.load(os.path.join(job_dir, "keypoints.json"))
            except keypoint_file.KeypointFileError:
                raise UserError("Import the keypoints first: Smooth works on the imported keypoints") from None
            replacements, locks = {}, {}
            for label in CLIP_CHOICES[self.clips]:
                points, _missing = render.read_keypoints(job_name, label, engine, scene, source)
                if points is not None:
                    replacements[label] = points
                    locks[label] = artist_locks(job_name, label, engine, source)
            if not replacements:
                raise UserError(f"Import the keypoints first: no {render.SOURCE_NAMES[source]} of "
                                f"{' or '.join('clip ' + label for label in CLIP_CHOICES[self.clips])}")
            sent = engine.with_keypoints(replacements)
            for label, grid in locks.items():
                sent.record["clips"][label]["locked"] = grid
            sent_path = os.path.join(job_dir, "keypoints.smooth_in.json")
            smoothed_path = os.path.join(job_dir, "keypoints.smoothed.json")
            try:
                keypoint_file.save(sent_path, sent)
            except OSError as error:
                raise UserError(f"Cannot write {sent_path}: {error.strerror}") from None
            try:
                outputs = smoothing.run_smooth(session.engine_python(context), session.engine_env(context),
                                               sent_path, smoothed_path, tuple(replacements), self.strength,
                                               job_dir)
                smoothed = keypoint_file.load(smoothed_path)
            except (smoothing.SmoothError, keypoint_file.KeypointFileError) as error:
                raise UserError(str(error)) from None
            for label in replacements:
                write_back(job_name, label, smoothed, scene, source)
        except UserError as error:
            operators._record_task(settings, "smooth", error=str(error))
            self.report({'ERROR'}, str(error))
            return {'CANCELLED'}
        message = "Smoothed " + "; ".join(clip.describe() for clip in smoothing.jitter_report(outputs))
        operators._record_task(settings, "smooth", note=message[len("Smoothed "):])
        self.report({'INFO'}, message)
        return {'FINISHED'}


classes = (JOKR_OT_smooth_keypoints,)
