"""Keypoint empties: per job clip, an orthographic camera that shows the clip and one empty per keypoint.

Layout, per job (docs/ADDON.md, "Keypoint empties"):

    JOKR.<job>                      collection in the scene
      JOKR.<job>.A                  clip A's rig: camera + empties
        JOKR.<job>.A.camera         orthographic; background = the strip's footage, stretched to the frame
        JOKR.<job>.A.kp00 …         empties parented to the camera, on a plane in front of it (Z locked),
                                    location keyed on every frame of the strip
        JOKR.<job>.A.kp00.dot …     a small disc in the keypoint's colour, child of its empty, not
                                    selectable (Blender draws every empty in one theme colour)
      JOKR.<job>.B                  the same for clip B

Keypoint k has the same name suffix and colour in A and B (material JOKR.kp<k>). The empties' X/Y are camera-view
coordinates; io/coords.py maps them to and from the engine's frame coordinates.

The names are only the first guess: the rig's cameras, empties and collections are found by their
custom properties (jokr_job, jokr_clip, jokr_role, jokr_index), so the artist may rename them.

Re-importing updates the rig in place: the engine's keys (type GENERATED) are replaced and the artist's
keys stay (blender/keyframes.py); `reset` replaces the artist's keys too.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections import defaultdict
from dataclasses import astuple, dataclass, field

import bpy
import numpy as np

from ..io.coords import CameraFrame, frame_to_camera
from ..io.keypoint_file import KeypointFile
from . import keyframes, scene_setup, strips
from .session import UserError

LABELS = ("A", "B")
JOB_NAME_MAX = 40  # Blender names hold 63 bytes: leave room for ".A.camera" / ".A.kp00"
JOB, CLIP, ROLE, INDEX = "jokr_job", "jokr_clip", "jokr_role", "jokr_index"  # what finds the rig's parts
KEYS_FRAME = "jokr_keys_frame"  # camera property: the camera frame (left, right, bottom, top) the keys are in
GOLDEN_RATIO = 0.618033988749895
EMPTY_SIZE = 0.02  # of the frame's height
MARKER_SUFFIX = ".dot"
MARKER_RADIUS = 0.6  # of the empty's display size: the disc sits inside the empty's sphere
MARKER_SEGMENTS = 16
RIG_SPACING = 0.25  # gap between the A and B rigs, in frame heights
EMPTY_DEPTH = 1.0  # how far in front of its camera the keypoint plane is: well inside the clip range


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


@dataclass
class Rig:
    """One clip's rig as the scene has it now, found by custom properties, whatever its names."""

    camera: object | None = None
    empties: dict[int, object] = field(default_factory=dict)  # keypoint index → empty
    duplicates: dict[int, list] = field(default_factory=dict)  # keypoint index → empties claiming it

    def check_unique(self, label: str) -> None:
        for index, objects in sorted(self.duplicates.items()):
            names = " and ".join(o.name for o in objects)
            raise UserError(f"{names} are both keypoint {index} of clip {label} (a duplicate?): delete one")


def find_rig(job_name: str, label: str) -> Rig:
    rig = Rig()
    claims = defaultdict(list)
    for obj in bpy.data.objects:
        if obj.get(JOB) != job_name or obj.get(CLIP) != label:
            continue
        role = obj.get(ROLE)
        if role == "camera" and obj.type == 'CAMERA' and rig.camera is None:
            rig.camera = obj
        elif role == "keypoint" and INDEX in obj:
            claims[int(obj[INDEX])].append(obj)
    for index, objects in claims.items():
        rig.empties[index] = objects[0]
        if len(objects) > 1:
            rig.duplicates[index] = objects
    return rig


def _tag(id_data, job_name: str, label: str, role: str) -> None:
    id_data[JOB], id_data[CLIP], id_data[ROLE] = job_name, label, role


@dataclass
class ImportResult:
    written: int = 0
    kept_keys: dict[str, int] = field(default_factory=dict)  # empty name → frames with the artist's keys
    warnings: list[str] = field(default_factory=list)

    @property
    def worth_a_warning(self) -> bool:
        return bool(self.kept_keys or self.warnings)

    def message(self) -> str:
        """One line for a report, warnings included."""
        text = f"{self.written} keypoint empties keyed"
        if self.kept_keys:
            names = list(self.kept_keys)
            kept = sum(self.kept_keys.values())
            text += (f"; kept {kept} key{'s' if kept != 1 else ''} you set on {', '.join(names[:3])}"
                     f"{' …' if len(names) > 3 else ''} (Reset to Engine Keypoints replaces them)")
        return "; ".join([text, *self.warnings])


def _rig_collection(parent, name: str, job_name: str, label: str):
    """The rig's collection (label "" for the job's own), found by its properties, else made."""
    collection = next((c for c in bpy.data.collections
                       if c.get(JOB) == job_name and c.get(CLIP) == label and c.get(ROLE) == "collection"), None)
    if collection is None:
        collection = bpy.data.collections.new(name)
        _tag(collection, job_name, label, "collection")
    if collection.name not in parent.children:
        parent.children.link(collection)
    return collection


def _link(obj, collection) -> None:
    if obj.name not in collection.objects:
        collection.objects.link(obj)


def _setup_camera(camera, collection, name: str, strip, frame_size, offset_x: float):
    if camera is None:
        camera = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        camera.location = (offset_x, 0.0, 0.0)
    _link(camera, collection)
    data = camera.data
    data.type = 'ORTHO'
    data.sensor_fit = 'HORIZONTAL'
    footage = strips.footage(strip)
    image = bpy.data.images.load(footage.filepath, check_existing=True)
    image.filepath = scene_setup.blend_relative(footage.filepath)  # a moved project keeps its footage
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
    marker = next((child for child in empty.children if child.get(ROLE) == "marker"), None)
    if marker is None:
        marker = bpy.data.objects.new(empty.name + MARKER_SUFFIX, _marker_mesh(index))
        marker[ROLE] = "marker"
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
    obj[INDEX] = index
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
    # Check everything first, so a problem leaves the scene untouched.
    clip_strips = {label: strips.get_strip(sequencer_scene, clip_settings[label].strip, f"clip {label}")
                   for label in LABELS}
    rigs = {label: find_rig(job_name, label) for label in LABELS}
    for label, rig in rigs.items():
        rig.check_unique(label)
    root = _rig_collection(rig_scene.collection, rig_prefix(job_name), job_name, "")
    offset_x = 0.0
    stretched = []
    for label in LABELS:
        strip, rig = clip_strips[label], rigs[label]
        count = keypoint_file.frame_count(label)
        if strip.frame_final_duration != count:
            result.warnings.append(f"Strip '{strip.name}' shows {strip.frame_final_duration} frames but clip "
                                   f"{label} was trained on {count}: keyed {count} frames from its start")
        collection = _rig_collection(root, f"{rig_prefix(job_name)}.{label}", job_name, label)
        size = keypoint_file.clip(label)["frame_size"]
        camera = _setup_camera(rig.camera, collection, camera_name(job_name, label), strip, size, offset_x)
        _tag(camera, job_name, label, "camera")
        offset_x += camera.data.ortho_scale + RIG_SPACING
        render = rig_scene.render
        if abs(render.resolution_x / render.resolution_y - size[0] / size[1]) > 0.01 * size[0] / size[1]:
            stretched.append(f"clip {label} is {size[0]}×{size[1]}")
        first_frame = int(strip.frame_final_start)
        camera["jokr_first_frame"] = first_frame
        camera["jokr_frame_count"] = count
        camera["jokr_num_keypoints"] = keypoint_file.num_keypoints
        # Keys already there stay in their frame, edited or not; Reset starts over in the current one.
        frame = camera_frame(camera, rig_scene) if reset else keys_frame(camera, rig_scene)
        camera[KEYS_FRAME] = astuple(frame)
        points = np.asarray(keypoint_file.keypoints(label), dtype=np.float64)  # frames × K × 2
        view_x, view_y = frame_to_camera(points[:, :, 0], points[:, :, 1], frame)
        for index in range(keypoint_file.num_keypoints):
            obj = rig.empties.get(index)
            if obj is None:  # first import, or the artist deleted it: the engine's keypoint again
                obj = _new_empty(empty_name(job_name, label, index), camera, collection, index,
                                 EMPTY_SIZE * frame.height, -EMPTY_DEPTH)
            _tag(obj, job_name, label, "keypoint")
            _link(obj, collection)
            _ensure_marker(obj, collection, index)
            kept = keyframes.write_engine_keys(obj, first_frame, (view_x[:, index], view_y[:, index]),
                                               keep_artist=not reset)
            if kept:
                result.kept_keys[obj.name] = kept
            result.written += 1
        _remove_extra_empties(rig, keypoint_file.num_keypoints, reset, result)
    if stretched:
        render = rig_scene.render
        result.warnings.append(
            f"The camera views look stretched: the scene is {render.resolution_x}×{render.resolution_y}, "
            f"{' and '.join(stretched)} (the keypoints still line up; Set Scene to Clip fixes the view)")
    if rig_scene.camera is None:
        rig_scene.camera = find_rig(job_name, "A").camera
    return result


def _remove_extra_empties(rig: Rig, count: int, reset: bool, result: ImportResult) -> None:
    """Empties of a previous import with more keypoints: removed unless they hold the artist's keys."""
    for index, obj in sorted(rig.empties.items()):
        if index < count:
            continue
        kept = len(keyframes.artist_frames(obj))
        if reset or not kept:
            for child in obj.children:
                if child.get(ROLE) == "marker":
                    bpy.data.objects.remove(child)
            bpy.data.objects.remove(obj)
        else:
            result.kept_keys[obj.name] = kept


def count_artist_keys(job_name: str) -> tuple[int, list[str]]:
    """(frames keyed by the artist, the empties holding them) over both clips' rigs: what Reset discards."""
    total, names = 0, []
    for label in LABELS:
        for _index, obj in sorted(find_rig(job_name, label).empties.items()):
            frames = len(keyframes.artist_frames(obj))
            if frames:
                total += frames
                names.append(obj.name)
    return total, names
