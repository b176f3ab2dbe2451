"""The pictures of docs/ADDON.md: the sequencer's own render of the result strips over their plates.

Takes a trained job of the demo clips (default: the demo's, demo/output/jokr/cat_fox; run scripts/demo.sh
first), copies it to a scratch folder, and does what an artist does in the add-on, headless in bpy: the
demo's Video Editing file, Import Keypoints, the demo's keypoint edit, Render Strip AB and BA and the
clean plates of A and B (the real engine). Then it renders the sequencer on one frame with the strips
that show each composite and tiles them: A | AB over A | AB over A's clean plate, and the same for B/BA.

    .venv/bin/python scripts/addon_pictures.py [--job DIR] [--frame N] [--out docs/images/addon_composite.png]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_demo():
    spec = importlib.util.spec_from_file_location("jokr_demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_frame(bpy, scene, shown: set[str], path: Path) -> np.ndarray:
    """The sequencer's render of the current frame with only the strips named in `shown` unmuted."""
    from jokr_blender.blender import compat

    for strip in compat.all_strips(scene):
        strip.mute = strip.name not in shown
    scene.render.filepath = str(path)
    if "media_type" in scene.render.image_settings.bl_rna.properties:  # 5.0 (the template writes video)
        scene.render.image_settings.media_type = 'IMAGE'
    scene.render.image_settings.file_format = 'PNG'
    scene.render.image_settings.color_mode = 'RGB'
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    width, height = image.size
    pixels = np.array(image.pixels[:], dtype=np.float32).reshape(height, width, 4)[::-1, :, :3]
    bpy.data.images.remove(image)
    return pixels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", type=Path, default=REPO / "demo" / "output" / "jokr" / "cat_fox")
    parser.add_argument("--frame", type=int, default=35, help="scene frame of the picture (the edit: 30–39)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "addon_composite.png")
    args = parser.parse_args()
    if not (args.job / "checkpoints").is_dir():
        print(f"no trained job in {args.job}: run scripts/demo.sh first", file=sys.stderr)
        return 1
    scratch = Path(tempfile.mkdtemp(prefix="jokr-pictures-"))
    os.environ["BLENDER_USER_RESOURCES"] = str(scratch / "blender-user")  # never the user's own settings
    import bpy  # noqa: I001 - first: importing bpy puts Blender's own modules (addon_utils) on the path
    import addon_utils

    sys.path.insert(0, str(REPO))
    demo = load_demo()
    demo.open_video_editing_file(scratch)
    addon_utils.enable("jokr_blender", default_set=True, handle_error=None)
    from jokr_blender.blender import compat, result_strips
    from jokr_blender.io.results import DIRECTIONS

    prefs = bpy.context.preferences.addons["jokr_blender"].preferences
    prefs.engine_python, prefs.engine_path = sys.executable, str(REPO)
    job = scratch / "jokr" / args.job.name
    shutil.copytree(args.job, job)
    scene = compat.sequencer_scene(bpy.context)
    demo.show_sequencer_scene(scene)
    strips = demo.add_clips(scene, demo.DATA)
    bpy.ops.jokr.scene_from_clip(clip='A')
    bpy.ops.wm.save_as_mainfile(filepath=str(scratch / "pictures.blend"))
    scene = compat.sequencer_scene(bpy.context)
    scene.jokr.job_dir = str(job)
    assert bpy.ops.jokr.import_keypoints(wait=True) == {'FINISHED'}
    demo.edit_keypoint(job.name, demo.EDITED_KEYPOINT, demo.EDITED_FRAMES)
    names = {}
    for code, direction in DIRECTIONS.items():
        assert bpy.ops.jokr.render_strip(direction=code, wait=True) == {'FINISHED'}, scene.jokr.task_text
        strip = result_strips.find_result_strip(scene, str(job), direction)
        names[code] = strip.name
        print(f"{strip.name}: channel {strip.channel}, frames {strip.frame_final_start}–{strip.frame_final_end - 1}")
    plates = {}
    for label in ("A", "B"):
        assert bpy.ops.jokr.clean_plate(clip=label, wait=True) == {'FINISHED'}, scene.jokr.task_text
        plates[label] = result_strips.find_plate_strip(scene, str(job), label).name
    scene.frame_set(args.frame)
    rows = []
    for label, code in (("A", "AB"), ("B", "BA")):
        footage, clean, result = strips[label].name, plates[label], names[code]
        shown = ({footage}, {footage, result}, {footage, clean, result})
        rows.append(np.concatenate([render_frame(bpy, scene, unmuted, scratch / f"{code}{index}.png")
                                    for index, unmuted in enumerate(shown)], axis=1))
    grid = np.concatenate(rows, axis=0)
    from PIL import Image

    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    shutil.rmtree(scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
