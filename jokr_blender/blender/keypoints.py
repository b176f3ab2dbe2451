"""Keypoint empties: per job clip, an orthographic camera that shows the clip and one empty per keypoint.

Layout, per job (docs/ADDON.md, "Keypoint empties"):

    JOKR.<job>                      collection in the scene
      JOKR.<job>.A                  clip A's rig: camera + empties
        JOKR.<job>.A.camera         orthographic; background = the strip's footage, stretched to the frame
        JOKR.<job>.A.kp00 …         empties parented to the camera, on its frame plane (Z locked),
                                    location keyed on every frame of the strip
        JOKR.<job>.A.kp00.dot …     a small disc in the keypoint's colour, child of its empty, not
                                    selectable (Blender draws every empty in one theme colour)
      JOKR.<job>.B                  the same for clip B

Keypoint k has the same name suffix and colour in A and B (material JOKR.kp<k>). The empties' X/Y are camera-view
coordinates; io/coords.py maps them to and from the engine's frame coordinates.

Re-importing updates the rig in place. An empty whose keys changed since they were imported (the
artist edited them) is kept as it is unless `reset` asks for the engine's keypoints again.
"""

from __future__ import annotations

import colorsys
import hashlib
from dataclasses import astuple, dataclass, field

import bpy
import numpy as np

from ..io.coords import CameraFrame, frame_to_camera
from ..io.keypoint_file import KeypointFile
from . import compat, strips

LABELS = ("A", "B")
JOB_NAME_MAX = 40  # Blender names hold 63 bytes: leave room for ".A.camera" / ".A.kp00"
KEYS_HASH = "jokr_keys"  # custom property: hash of the keys as imported
KEYS_FRAME = "jokr_keys_frame"  # camera property: the camera frame (left, right, bottom, top) the keys are in
GOLDEN_RATIO = 0.618033988749895
EMPTY_SIZE = 0.02  # of the frame's height
MARKER_SUFFIX = ".dot"
MARKER_RADIUS = 0.6  # of the empty's display size: the disc sits inside the empty's sphere
MARKER_SEGMENTS = 16
RIG_SPACING = 0.25  # gap between the A and B rigs, in frame heights


def rig_prefix(job_name: str) -> str:
    """`JOKR.<job name>`, unique for every job name: a name longer than JOB_NAME_MAX bytes keeps its start
    and ends in a hash of the whole name, so `…_take1` and `…_take2` get separate rigs."""
    encoded = job_name.encode()
    if len(encoded) <= JOB_NAME_MAX:
        return f"JOKR.{job_name}"
    head = encoded[: JOB_NAME_MAX - 9].decode(errors="ignore")  # never cut a character in half
    return f"JOKR.{head}~{hashlib.sha1(encoded).hexdigest()[:8]}"


def camera_name(job_name: str, label: str) -> str:
    return f"{rig_prefix(job_name)}.{label}.camera"


def empty_name(job_name: str, label: str, index: int) -> str:
    return f"{rig_prefix(job_name)}.{label}.kp{index:02d}"


def keypoint_color(index: int) -> tuple[float, float, float, float]:
    """Well-separated hues, the same for keypoint `index` of every clip."""
    return (*colorsys.hsv_to_rgb((index * GOLDEN_RATIO) % 1.0, 0.85, 1.0), 1.0)


def camera_frame(camera, scene) -> CameraFrame:
    return CameraFrame.from_corners(camera.data.view_frame(scene=scene))


def keys_frame(camera, scene) -> CameraFrame:
    """The frame the rig's keys were written in. The camera's own frame follows the scene's resolution,
    which an artist may change after Import; the keys must keep meaning the same footage positions."""
    stored = camera.get(KEYS_FRAME)
    return CameraFrame(*(float(v) for v in stored)) if stored is not None else camera_frame(camera, scene)


def view_changed(camera, scene) -> bool:
    """True when the camera view no longer shows the keys' frame (the scene's resolution changed)."""
    now, keys = astuple(camera_frame(camera, scene)), astuple(keys_frame(camera, scene))
    return any(abs(a - b) > 1e-6 for a, b in zip(now, keys))


def keys_hash(obj) -> str:
    """A fingerprint of the empty's X/Y keys, to tell whether the artist changed them."""
    digest = hashlib.sha1()
    for fcurve in compat.location_fcurves(obj):
        if fcurve is None:
            digest.update(b"none")
            continue
        co = np.empty(2 * len(fcurve.keyframe_points), dtype=np.float32)
        fcurve.keyframe_points.foreach_get("co", co)
        digest.update(co.tobytes())
    return digest.hexdigest()


def edited_by_artist(obj) -> bool:
    """The empty's keys differ from those the last import wrote."""
    return obj.get(KEYS_HASH) != keys_hash(obj)


def write_keys(fcurve, frames: np.ndarray, values: np.ndarray) -> None:
    """Replace all keys in one go: add + foreach_set + update, not one keyframe_insert per frame."""
    points = fcurve.keyframe_points
    points.clear()
    points.add(len(frames))
    co = np.empty(2 * len(frames), dtype=np.float32)
    co[0::2], co[1::2] = frames, values
    points.foreach_set("co", co)
    fcurve.update()


@dataclass
class ImportResult:
    written: int = 0
    kept_edited: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def message(self) -> str:
        """One line for a report, warnings included."""
        text = f"{self.written} keypoint empties keyed"
        if self.kept_edited:
            text += (f"; kept {len(self.kept_edited)} you edited ({', '.join(self.kept_edited[:3])}"
                     f"{' …' if len(self.kept_edited) > 3 else ''}): Reset to Engine Keypoints replaces them")
        return "; ".join([text, *self.warnings])


def _child_collection(parent, name: str):
    collection = bpy.data.collections.get(name)
    if collection is None:
        collection = bpy.data.collections.new(name)
    if collection.name not in parent.children:
        parent.children.link(collection)
    return collection


def _link(obj, collection) -> None:
    if obj.name not in collection.objects:
        collection.objects.link(obj)


def _setup_camera(collection, name: str, strip, frame_size, offset_x: float):
    camera = bpy.data.objects.get(name)
    if camera is None or camera.type != 'CAMERA':
        camera = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        camera.location = (offset_x, 0.0, 0.0)
    _link(camera, collection)
    data = camera.data
    data.type = 'ORTHO'
    data.sensor_fit = 'HORIZONTAL'
    footage = strips.footage(strip)
    image = bpy.data.images.load(footage.filepath, check_existing=True)
    image.source = footage.source
    # The frame is one unit high when the render resolution has the clip's shape.
    data.ortho_scale = frame_size[0] / frame_size[1]
    background = data.background_images[0] if data.background_images else data.background_images.new()
    background.image = image
    background.frame_method = 'STRETCH'  # the footage's corners are the camera frame's corners
    background.display_depth = 'BACK'
    background.alpha = 1.0
    user = background.image_user
    user.frame_start = footage.frame_start
    user.frame_offset = footage.frame_offset
    user.frame_duration = footage.frame_duration
    user.use_auto_refresh = True
    data.show_background_images = True
    return camera


def _marker_mesh(index: int):
    """A unit disc facing the camera, with keypoint `index`'s material; shared by A's and B's marker."""
    name = f"JOKR.kp{index:02d}"
    material = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    material.diffuse_color = keypoint_color(index)  # what Solid shading shows (its default colour type)
    mesh = bpy.data.meshes.get(name + MARKER_SUFFIX)
    if mesh is None:
        mesh = bpy.data.meshes.new(name + MARKER_SUFFIX)
        angles = np.linspace(0.0, 2.0 * np.pi, MARKER_SEGMENTS, endpoint=False)
        rim = [(float(np.cos(a)), float(np.sin(a)), 0.0) for a in angles]
        mesh.from_pydata([(0.0, 0.0, 0.0), *rim], [],
                         [(0, 1 + i, 1 + (i + 1) % MARKER_SEGMENTS) for i in range(MARKER_SEGMENTS)])
        mesh.materials.append(material)
    return mesh


def _ensure_marker(empty, collection, index: int) -> None:
    name = empty.name + MARKER_SUFFIX
    marker = bpy.data.objects.get(name)
    if marker is None:
        marker = bpy.data.objects.new(name, _marker_mesh(index))
    _link(marker, collection)
    marker.parent = empty
    marker.scale = (empty.empty_display_size * MARKER_RADIUS,) * 3
    marker.color = keypoint_color(index)  # for the Object colour type
    marker.hide_select = True  # clicks go to the empty, which carries the keys
    marker.hide_render = True
    marker.show_in_front = True


def _new_empty(name: str, camera, collection, index: int, size: float, depth: float):
    obj = bpy.data.objects.new(name, None)
    _link(obj, collection)
    obj.parent = camera  # identity parent inverse: location is in camera-view coordinates
    obj.empty_display_type = 'SPHERE'
    obj.empty_display_size = size
    obj.color = keypoint_color(index)
    obj.show_in_front = True
    obj.show_name = False
    obj.location = (0.0, 0.0, depth)
    obj.lock_location = (False, False, True)  # keypoints live on the footage's plane
    return obj


def import_rig(rig_scene, sequencer_scene, settings, job_name: str, keypoint_file: KeypointFile,
               reset: bool) -> ImportResult:
    """Build or update both clips' rigs from the keypoint file."""
    result = ImportResult()
    clip_settings = {"A": settings.clip_a, "B": settings.clip_b}
    # Check both strips first, so a missing one leaves the scene untouched.
    clip_strips = {label: strips.get_strip(sequencer_scene, clip_settings[label].strip, f"clip {label}")
                   for label in LABELS}
    root = _child_collection(rig_scene.collection, rig_prefix(job_name))
    offset_x = 0.0
    stretched = []
    for label in LABELS:
        strip = clip_strips[label]
        count = keypoint_file.frame_count(label)
        if strip.frame_final_duration != count:
            result.warnings.append(f"Strip '{strip.name}' shows {strip.frame_final_duration} frames but clip "
                                   f"{label} was trained on {count}: keyed {count} frames from its start")
        collection = _child_collection(root, f"{rig_prefix(job_name)}.{label}")
        size = keypoint_file.clip(label)["frame_size"]
        camera = _setup_camera(collection, camera_name(job_name, label), strip, size, offset_x)
        offset_x += camera.data.ortho_scale + RIG_SPACING
        render = rig_scene.render
        if abs(render.resolution_x / render.resolution_y - size[0] / size[1]) > 0.01 * size[0] / size[1]:
            stretched.append(f"clip {label} is {size[0]}×{size[1]}")
        first_frame = int(strip.frame_final_start)
        camera["jokr_first_frame"] = first_frame
        camera["jokr_frame_count"] = count
        # Keys already there stay in their frame, edited or not; Reset starts over in the current one.
        frame = camera_frame(camera, rig_scene) if reset else keys_frame(camera, rig_scene)
        camera[KEYS_FRAME] = astuple(frame)
        depth = camera.data.view_frame(scene=rig_scene)[0][2]
        frames = np.arange(first_frame, first_frame + count, dtype=np.float64)
        points = np.asarray(keypoint_file.keypoints(label), dtype=np.float64)  # frames × K × 2
        view_x, view_y = frame_to_camera(points[:, :, 0], points[:, :, 1], frame)
        for index in range(keypoint_file.num_keypoints):
            name = empty_name(job_name, label, index)
            obj = bpy.data.objects.get(name)
            edited = obj is not None and not reset and edited_by_artist(obj)
            if obj is None:
                obj = _new_empty(name, camera, collection, index, EMPTY_SIZE * frame.height, depth)
            _ensure_marker(obj, collection, index)
            if edited:
                result.kept_edited.append(name)
                continue
            _link(obj, collection)
            fcurve_x, fcurve_y = compat.location_fcurves(obj, create=True)
            write_keys(fcurve_x, frames, view_x[:, index])
            write_keys(fcurve_y, frames, view_y[:, index])
            obj[KEYS_HASH] = keys_hash(obj)
            obj["jokr_clip"], obj["jokr_index"] = label, index
            result.written += 1
        _remove_extra_empties(job_name, label, keypoint_file.num_keypoints, reset, result)
    if stretched:
        render = rig_scene.render
        result.warnings.append(
            f"The camera views look stretched: the scene is {render.resolution_x}×{render.resolution_y}, "
            f"{' and '.join(stretched)} (the keypoints still line up)")
    if rig_scene.camera is None:
        rig_scene.camera = bpy.data.objects[camera_name(job_name, "A")]
    return result


def _remove_extra_empties(job_name: str, label: str, count: int, reset: bool, result: ImportResult) -> None:
    """Empties of a previous import with more keypoints: removed unless the artist edited them."""
    index = count
    while (obj := bpy.data.objects.get(empty_name(job_name, label, index))) is not None:
        if reset or not edited_by_artist(obj):
            marker = bpy.data.objects.get(obj.name + MARKER_SUFFIX)
            if marker is not None:
                bpy.data.objects.remove(marker)
            bpy.data.objects.remove(obj)
        else:
            result.kept_edited.append(obj.name)
        index += 1
