"""The demo, headless in real Blender (bpy): two bundled clips → trained job → keypoint empties →
one keypoint edited → retargeted strips (AB and BA) in the sequencer → saved .blend, side-by-side video,
contact sheet.

demo.blend opens in the Video Editing workspace (its sequencer showing the demo's scene), with a Layout
workspace beside it for looking through the keypoint cameras.

Run through scripts/demo.sh (which sets up .venv first). Everything goes to demo/output/."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "demo" / "data"
ADDON = "jokr_blender"
JOB_NAME = "cat_fox"
EDITED_KEYPOINT, EDITED_FRAMES = 3, range(30, 40)


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="demo", choices=["demo", "tiny", "fast", "paper"],
                        help="demo: 2-core CPU in under 10 minutes; paper: the authors' settings (GPU)")
    parser.add_argument("--out", type=Path, default=REPO / "demo" / "output")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    return parser.parse_args()


def open_video_editing_file(scratch: Path) -> None:
    """A new, empty file in Blender's Video Editing workspace (its template), plus the General template's
    Layout workspace (a 3D view) for the keypoint cameras. The window's workspace cannot be switched
    without Blender's event loop, so the file starts from the template instead."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    general = scratch / "general.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(general), copy=True)
    bpy.ops.wm.read_factory_settings(app_template="Video_Editing", use_empty=True)
    with bpy.data.libraries.load(str(general)) as (_source, target):
        target.workspaces = ["Layout"]
    general.unlink()


def add_clips(scene, data: Path) -> dict:
    """Strips 'cat' (clip A, channel 1) and 'fox' (clip B, channel 2) from frame 1, chosen in the panel."""
    from jokr_blender.blender import compat

    strips = {}
    for label, name, channel in (("A", "cat", 1), ("B", "fox", 2)):
        frames = sorted((data / name / "frames").iterdir())
        strip = compat.new_image_strip(scene, name, str(frames[0]), channel, 1)
        for frame in frames[1:]:
            strip.elements.append(frame.name)
        strips[label] = strip
    scene.jokr.clip_a.strip, scene.jokr.clip_b.strip = strips["A"].name, strips["B"].name
    return strips


def show_sequencer_scene(scene) -> None:
    """The Video Editing workspace's sequencer shows `scene` (5.0 gives a workspace its own)."""
    import bpy

    from jokr_blender.blender import compat

    compat.set_workspace_sequencer_scene(bpy.data.workspaces["Video Editing"], scene)


def edit_keypoint(job_name: str, index: int, frames: range) -> object:
    """Raise keypoint `index` of the cat by 12 % of the frame's height on `frames`, as an artist would:
    move the empty on each frame and key its X and Y (its depth in front of the camera stays)."""
    import bpy

    from jokr_blender.blender import keypoints

    scene = bpy.context.scene
    empty = keypoints.find_rig(job_name, "A").empties[index]
    for frame in frames:
        scene.frame_set(frame)
        empty.location.y += 0.12  # the frame is 1 unit high
        empty.keyframe_insert("location", index=0, frame=frame)
        empty.keyframe_insert("location", index=1, frame=frame)
    return empty


def main() -> int:
    args = parse_args()
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # A private Blender user folder: the demo never touches the user's own preferences.
    os.environ["BLENDER_USER_RESOURCES"] = str(out / ".blender-user")
    import bpy  # noqa: I001 - first: importing bpy puts Blender's own modules (addon_utils) on the path
    import addon_utils

    sys.path.insert(0, str(REPO))
    open_video_editing_file(out)
    if addon_utils.enable(ADDON, default_set=True, handle_error=None) is None:
        say("the add-on did not enable")
        return 1
    from jokr_blender.blender import compat, keypoints, render, result_strips, session, timers
    from jokr_blender.io.results import DIRECTIONS

    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.engine_python = sys.executable  # this venv has the engine's packages
    prefs.engine_path = str(REPO)
    prefs.device = args.device

    scene = compat.sequencer_scene(bpy.context)
    show_sequencer_scene(scene)
    scene.render.fps = 25  # image sequences carry no frame rate
    add_clips(scene, DATA)
    bpy.ops.jokr.scene_from_clip(clip='A')  # frame range and resolution of clip A
    settings = scene.jokr
    settings.job_name, settings.preset = JOB_NAME, args.preset
    blend = out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))  # saved first: the job goes to //jokr/<job>/ beside it
    say(f"scene with strips 'cat' (A, motion) and 'fox' (B, look) saved to {blend}")

    started = time.monotonic()
    if bpy.ops.jokr.train() != {'FINISHED'}:
        say(f"training did not start: {settings.error_message} {settings.error_hint}")
        return 1
    shown, shown_at = None, 0.0
    while session.manager.is_running():
        session.manager.pump(timeout=1.0)
        timers.poll_jobs()
        position = (settings.step, settings.iteration)
        if position != shown and time.monotonic() - shown_at > 15:  # a line when it moved, at most every 15 s
            shown, shown_at = position, time.monotonic()
            say(f"training: step {settings.step}, iteration {settings.iteration}/{settings.iterations}, "
                f"{settings.losses}, {settings.eta_s / 60:.1f} min left")
    timers.poll_jobs()
    if settings.state != "finished":
        say(f"training ended '{settings.state}': {settings.error_message} {settings.error_hint}")
        return 1
    job = Path(bpy.path.abspath(settings.job_dir))
    job_name = session.job_name(settings)
    say(f"trained in {(time.monotonic() - started) / 60:.1f} min; job folder {job}")

    if bpy.ops.jokr.import_keypoints() != {'FINISHED'}:
        say("importing keypoints failed")
        return 1
    session.manager.pump(timeout=600)
    timers.poll_jobs()
    empty = edit_keypoint(job_name, EDITED_KEYPOINT, EDITED_FRAMES)
    say(f"moved {empty.name} up on frames {EDITED_FRAMES.start}–{EDITED_FRAMES.stop - 1}")

    for code, direction in DIRECTIONS.items():
        if bpy.ops.jokr.render_strip(direction=code, wait=True) != {'FINISHED'}:
            say(f"render {code} failed: {settings.task_text}")
            return 1
        result = result_strips.find_result_strip(scene, str(job), direction)
        say(f"rendered strip '{result.name}' in channel {result.channel}")
    scene.frame_set(EDITED_FRAMES.start)
    scene.camera = keypoints.find_rig(job_name, "A").camera
    bpy.ops.wm.save_mainfile()
    say(f"saved {blend}")

    engine = [sys.executable, "-m", "jokr_engine"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    video = out / "side_by_side.mp4"
    subprocess.run([*engine, "render", "--job", str(job), "--look", "B", "--keypoints",
                    render.edited_keypoints_path(str(job)), "--out", str(out / "ab_frames"), "--preview-video",
                    str(video), "--device", args.device], check=True, stdout=subprocess.DEVNULL, env=env)
    subprocess.run([*engine, "eval", "--job", str(job), "--out", str(out / "eval"), "--device", args.device],
                   check=True, stdout=subprocess.DEVNULL, env=env)
    shutil.copy(out / "eval" / "contact_sheet.png", out / "contact_sheet.png")
    addon_utils.disable(ADDON, default_set=True, handle_error=None)

    say("done. Files:")
    for what, path in (("Blender file (strips, keypoint empties, rendered strip)", blend),
                       ("rendered RGBA frames", render.render_folder(str(job))),
                       ("side-by-side video (input over result)", video),
                       ("contact sheet (inputs, keypoints, silhouettes, AB, BA)", out / "contact_sheet.png"),
                       ("quality report", out / "eval" / "eval.md"),
                       ("job folder (checkpoints, events, keypoints)", job)):
        print(f"  {what}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
