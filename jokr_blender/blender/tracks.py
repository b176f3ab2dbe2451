"""Keypoints as tracks of a Movie Clip, so Blender's tracker tools apply to them: the track path,
Filter Tracks and Clean Tracks, the Clip editor's graph view, and editing a marker on a frame.

Per job clip, one Movie Clip of the strip's footage (`JOKR.<job>.A`, found by its custom properties
jokr_job/jokr_clip) playing on the strip's own scene frames (`frame_start`), with one track per
keypoint, named `kp00 …` and coloured as the empties, and one marker per frame. Clip frame i + 1 is
clip frame i of the engine (Blender numbers a clip's frames from 1).

Marker positions are normalised to the footage with y up, so marker (x, 1 − y) is the engine's (x, y).
A track cannot carry custom properties: its name says which keypoint it is.

As with the empties, a marker belongs to the engine while it holds the value the engine gave it (kept
per track in the clip's `jokr_engine` property); Import replaces only those, and the artist's markers
stay. Render reads a keypoint from the marker on each frame; where the track, or an enabled marker on
that frame, is missing, the engine's keypoint is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy
import numpy as np

from ..io.key_ownership import TOLERANCE
from ..io.keypoint_file import KeypointFile
from . import keypoints, scene_setup, strips

RECORD = "jokr_engine"  # clip property: track name → the engine's marker positions, x0, y0, x1, y1 …


def track_name(index: int) -> str:
    return f"kp{index:02d}"


def find_clip(job_name: str, label: str):
    return next((clip for clip in bpy.data.movieclips
                 if clip.get(keypoints.JOB) == job_name and clip.get(keypoints.CLIP) == label), None)


@dataclass
class TrackImportResult:
    written: int = 0
    kept_markers: dict[str, int] = field(default_factory=dict)  # "clip › track" → markers the artist set

    @property
    def worth_a_warning(self) -> bool:
        return bool(self.kept_markers)

    def message(self) -> str:
        text = f"{self.written} keypoint tracks written"
        if self.kept_markers:
            names = list(self.kept_markers)
            kept = sum(self.kept_markers.values())
            text += (f"; kept {kept} marker{'s' if kept != 1 else ''} you set on {', '.join(names[:3])}"
                     f"{' …' if len(names) > 3 else ''} (Reset to Engine Keypoints replaces them)")
        return text


def _load_clip(job_name: str, label: str, strip):
    footage = strips.footage(strip)
    clip = find_clip(job_name, label)
    if clip is None:
        clip = bpy.data.movieclips.load(footage.filepath)
        clip.name = f"{keypoints.rig_prefix(job_name)}.{label}"
        clip[keypoints.JOB], clip[keypoints.CLIP] = job_name, label
    else:
        clip.filepath = footage.filepath
    clip.filepath = scene_setup.blend_relative(footage.filepath)
    clip.frame_start = int(strip.frame_final_start)
    # A sequence is loaded from its first shown image; a movie from its start, so skip to the first shown frame.
    clip.frame_offset = footage.frame_offset if footage.source == 'MOVIE' else 0
    return clip


def _artist_markers(track, recorded: np.ndarray) -> dict[int, bool]:
    """Clip frame → True for a marker the artist placed or moved, False for one that holds the engine's value."""
    owned = {}
    for marker in track.markers:
        index = marker.frame - 1
        engine = 0 <= index < len(recorded) // 2 and not marker.mute and all(
            abs(marker.co[axis] - recorded[2 * index + axis]) <= TOLERANCE for axis in (0, 1))
        owned[marker.frame] = not engine
    return owned


def import_tracks(sequencer_scene, settings, job_name: str, keypoint_file: KeypointFile,
                  reset: bool) -> TrackImportResult:
    """Write the keypoints of both clips as tracks: the engine's markers replaced, the artist's kept."""
    result = TrackImportResult()
    clip_settings = {"A": settings.clip_a, "B": settings.clip_b}
    clip_strips = {label: strips.get_strip(sequencer_scene, clip_settings[label].strip, f"clip {label}")
                   for label in keypoints.LABELS}
    for label in keypoints.LABELS:
        clip = _load_clip(job_name, label, clip_strips[label])
        count = keypoint_file.frame_count(label)
        clip["jokr_first_frame"] = int(clip_strips[label].frame_final_start)
        clip["jokr_frame_count"] = count
        clip["jokr_num_keypoints"] = keypoint_file.num_keypoints
        points = np.asarray(keypoint_file.keypoints(label), dtype=np.float64)  # frames × K × 2
        records = dict(clip[RECORD]) if RECORD in clip else {}
        tracks = clip.tracking.tracks
        for index in range(keypoint_file.num_keypoints):
            name = track_name(index)
            track = tracks.get(name)
            if track is None:  # first import, or the artist deleted it: the engine's keypoint again
                track, owned = tracks.new(name=name, frame=1), {}
            else:
                recorded = np.asarray(records[name].to_list()) if name in records else np.empty(0)
                owned = {frame: artist and not reset
                         for frame, artist in _artist_markers(track, recorded).items()}
            track.color = keypoints.keypoint_color(index)[:3]
            track.use_custom_color = True
            for frame, artist in owned.items():
                if not artist and not 1 <= frame <= count:  # beyond the clip's new length
                    track.markers.delete_frame(frame)
            engine = np.stack([points[:, index, 0], 1.0 - points[:, index, 1]], axis=1)  # y up
            for frame_index, (x, y) in enumerate(engine):
                if not owned.get(frame_index + 1, False):
                    marker = track.markers.insert_frame(frame_index + 1, co=(float(x), float(y)))
                    marker.mute = False
                    marker.is_keyed = False  # drawn as tracked, not as a keyframe the artist set
            records[name] = engine.astype(np.float32).ravel().tolist()  # markers hold float32
            kept = sum(owned.values())
            if kept:
                result.kept_markers[f"{clip.name} › {name}"] = kept
            result.written += 1
        clip[RECORD] = records
    return result


def count_artist_markers(job_name: str) -> int:
    """Markers the artist set or moved, over both clips: what Reset discards."""
    total = 0
    for label in keypoints.LABELS:
        clip = find_clip(job_name, label)
        if clip is None:
            continue
        records = clip.get(RECORD, {})
        for track in clip.tracking.tracks:
            recorded = np.asarray(records[track.name].to_list()) if track.name in records else np.empty(0)
            total += sum(_artist_markers(track, recorded).values())
    return total


def read_tracks(job_name: str, label: str, keypoint_file: KeypointFile) -> tuple[list | None, list[int]]:
    """Clip `label`'s keypoints (frames × K × [x, y]) from its tracks, or None when it has no Movie Clip;
    and the keypoints with no track, which keep the engine's positions."""
    clip = find_clip(job_name, label)
    if clip is None:
        return None, []
    count = keypoint_file.frame_count(label)
    points = np.asarray(keypoint_file.keypoints(label), dtype=np.float64).copy()
    missing = []
    for index in range(keypoint_file.num_keypoints):
        track = clip.tracking.tracks.get(track_name(index))
        if track is None:
            missing.append(index)
            continue
        for frame_index in range(count):
            marker = track.markers.find_frame(frame_index + 1, exact=True)
            if marker is not None and not marker.mute:
                points[frame_index, index] = (marker.co[0], 1.0 - marker.co[1])
    return points.tolist(), missing
