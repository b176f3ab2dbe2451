"""Result strips where they belong: AB right above clip A, BA right above clip B, in time and in space.

The fake engine draws the driving clip's keypoint 0 as a white 3×3 square on transparent frames, so the
sequencer's own render of the result shows where Blender puts the result over its plate."""

import filecmp
import json
import os
import shutil

import bpy
import numpy as np
import pytest

from .helpers import new_image_strip, set_up_scene


@pytest.fixture
def imported(addon, tiny_clips):
    """Clip A 'cat' (12 frames) on channel 1 and clip B 'fox' (10 frames) on channel 2, both from frame 1,
    so B sits in the way of AB; a title strip above B and a strip later on channel 2 that is not."""
    scene = set_up_scene(bpy, tiny_clips, frame_start_a=1, frame_start_b=1)
    title = new_image_strip(scene, "title", tiny_clips["cat"] / "masks", channel=3, frame_start=5)
    later = new_image_strip(scene, "later", tiny_clips["cat"] / "masks", channel=2, frame_start=40)
    assert (title.channel, later.channel) == (3, 2)
    bpy.ops.jokr.train(wait=True)
    bpy.ops.jokr.import_keypoints(wait=True)
    return scene


def strip(scene, name):
    from jokr_blender.blender import compat

    return compat.find_strip(scene, name)


def results(scene):
    from jokr_blender.blender import compat

    return {s.get("jokr_direction"): s for s in compat.all_strips(scene) if s.get("jokr_job") and "jokr_plate" not in s}


def test_ab_and_ba_land_right_above_their_driving_clips(imported, tmp_path):
    scene = imported
    assert bpy.ops.jokr.render_strip(direction='AB', wait=True) == {'FINISHED'}
    ab = results(scene)["AB"]
    assert ab.name == "JOKR AB: motion A (cat) · look B (fox)"
    assert ab.channel == 2 and strip(scene, "cat").channel == 1
    # B was in the way: it moved up one channel, and the title above it too; the later strip stayed.
    assert (strip(scene, "fox").channel, strip(scene, "title").channel, strip(scene, "later").channel) == (3, 4, 2)
    assert (ab.frame_final_start, ab.frame_final_duration) == (1, 12)

    assert bpy.ops.jokr.render_strip(direction='BA', wait=True) == {'FINISHED'}
    ba = results(scene)["BA"]
    assert ba.name == "JOKR BA: motion B (fox) · look A (cat)"
    assert ba.channel == 4 and strip(scene, "title").channel == 5  # right above B; the title made room
    assert (ba.frame_final_start, ba.frame_final_duration) == (1, 10)
    assert ba.blend_type == 'ALPHA_OVER'
    assert bpy.path.abspath(ba.directory).rstrip(os.sep).endswith("render_lookA")

    # Re-rendering AB replaces AB's frames only: BA's strip and files stay as they were.
    shutil.copytree(bpy.path.abspath(ba.directory), tmp_path / "ba_before")
    ba_state = (ba.name, ba.channel, ba.frame_final_start, ba.frame_final_duration)
    obj = next(o for o in bpy.data.objects if o.get("jokr_clip") == "A" and o.get("jokr_index") == 0)
    obj.location.x += 0.2
    obj.keyframe_insert("location", index=0, frame=3)
    assert bpy.ops.jokr.render_strip(direction='AB', wait=True) == {'FINISHED'}
    assert set(results(scene)) == {"AB", "BA"} and results(scene)["AB"] == ab
    assert (ba.name, ba.channel, ba.frame_final_start, ba.frame_final_duration) == ba_state
    folder = bpy.path.abspath(ba.directory)
    assert all(filecmp.cmp(tmp_path / "ba_before" / name, os.path.join(folder, name), shallow=False)
               for name in os.listdir(folder))


def test_only_the_driving_clips_keypoints_move_a_result(imported):
    """AB follows A's empties, BA follows B's: an edit of B's keypoint 0 changes BA, never AB."""
    scene = imported
    bpy.ops.jokr.render_strip(direction='AB', wait=True)
    bpy.ops.jokr.render_strip(direction='BA', wait=True)
    folders = {code: bpy.path.abspath(s.directory) for code, s in results(scene).items()}
    before = {code: {n: open(os.path.join(f, n), "rb").read() for n in os.listdir(f)} for code, f in folders.items()}
    obj = next(o for o in bpy.data.objects if o.get("jokr_clip") == "B" and o.get("jokr_index") == 0)
    obj.location.y += 0.3
    obj.keyframe_insert("location", index=1, frame=4)
    for code in ("AB", "BA"):
        bpy.ops.jokr.render_strip(direction=code, wait=True)
    after = {code: {n: open(os.path.join(f, n), "rb").read() for n in os.listdir(f)} for code, f in folders.items()}
    assert after["AB"] == before["AB"]
    assert [n for n in sorted(after["BA"]) if after["BA"][n] != before["BA"][n]] == ["00003.png"]


def render_sequencer(scene, frame, path):
    scene.frame_set(frame)
    scene.render.filepath = str(path)
    scene.render.image_settings.file_format = 'PNG'
    scene.render.image_settings.color_mode = 'RGBA'
    with bpy.context.temp_override(scene=scene):
        bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    width, height = image.size
    pixels = np.array(image.pixels[:], dtype=np.float32).reshape(height, width, 4)[::-1]  # top row first
    bpy.data.images.remove(image)
    return pixels


def square_centre(pixels):
    """Centre (x right, y down, in scene pixels) of the white square."""
    rows, columns = np.nonzero((pixels[:, :, 3] > 0.5) & (pixels[:, :, 0] > 0.5))
    assert len(rows), "the result shows nothing"
    return columns.mean() + 0.5, rows.mean() + 0.5


@pytest.mark.parametrize("code, name, scale, offset", [("AB", "cat", 2.0, (5.0, -3.0)),
                                                       ("BA", "fox", 1.5, (-4.0, 2.0))])
def test_result_composites_exactly_over_its_plate(imported, tmp_path, code, name, scale, offset):
    """The artist placed the driving strip in the frame (scaled, moved); the result lands where its animal
    is in that strip, as Blender's sequencer renders it, on the driving strip's frames."""
    scene = imported
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 32, 100
    driver = strip(scene, name)
    driver.transform.scale_x = driver.transform.scale_y = scale
    driver.transform.offset_x, driver.transform.offset_y = offset
    bpy.ops.jokr.render_strip(direction=code, wait=True)
    result = results(scene)[code]
    assert (result.transform.scale_x, result.transform.offset_x) == (scale, offset[0])
    for other in (strip(scene, "cat"), strip(scene, "fox"), strip(scene, "title")):
        other.mute = True  # only the result: its pixels say where it is
    job_dir = bpy.path.abspath(scene.jokr.job_dir)
    with open(os.path.join(job_dir, "keypoints.edited.json")) as stream:
        keypoints = json.load(stream)["clips"][code[0]]["keypoints"]
    for clip_frame in (0, 7):
        pixels = render_sequencer(scene, driver.frame_final_start + clip_frame, tmp_path / f"{code}{clip_frame}.png")
        x, y = keypoints[clip_frame][0]
        u, v = int(x * 32) + 0.5, int(y * 16) + 0.5  # the square's centre in the 32×16 frame (fake engine)
        expected = (32 + offset[0] + scale * (u - 16), 16 - offset[1] + scale * (v - 8))
        assert square_centre(pixels) == pytest.approx(expected, abs=0.75)


def test_clean_plate_goes_between_the_plate_and_the_result(imported, tmp_path):
    """`clean-plate` (the fake engine's: grey frames) is its own strip right above its clip, under the result:
    made after the result, it pushes the result up; a result made after it goes above it."""
    scene = imported
    bpy.ops.jokr.render_strip(direction='AB', wait=True)
    assert bpy.ops.jokr.clean_plate(clip='A', wait=True) == {'FINISHED'}
    plate = next(s for s in results_and_plates(scene) if s.get("jokr_plate") == "A")
    ab = results(scene)["AB"]
    assert plate.name == "JOKR clean plate A (cat)" and "jokr_direction" not in plate
    assert (plate.channel, ab.channel, strip(scene, "fox").channel) == (2, 3, 4)
    assert (plate.frame_final_start, plate.frame_final_duration) == (1, 12)
    assert bpy.ops.jokr.clean_plate(clip='B', wait=True) == {'FINISHED'}  # BA not rendered yet
    bpy.ops.jokr.render_strip(direction='BA', wait=True)
    plate_b = next(s for s in results_and_plates(scene) if s.get("jokr_plate") == "B")
    assert results(scene)["BA"].channel == plate_b.channel + 1 == strip(scene, "fox").channel + 2
    # The composite over A: the grey plate hides A's own animal, the result sits on top.
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 32, 16, 100
    for other in (strip(scene, "fox"), strip(scene, "title"), plate_b, results(scene)["BA"]):
        other.mute = True
    pixels = render_sequencer(scene, 3, tmp_path / "plate.png")
    grey = np.isclose(pixels[:, :, 0], 0x80 / 255, atol=0.02)
    white = (pixels[:, :, 0] > 0.9)
    assert grey.sum() + white.sum() == 32 * 16 and white.sum() == 9  # plate everywhere, the result on top
    assert bpy.ops.jokr.clean_plate(clip='A', wait=True) == {'FINISHED'}  # again: the same strip, updated
    assert sum(1 for s in results_and_plates(scene) if s.get("jokr_plate") == "A") == 1


def results_and_plates(scene):
    from jokr_blender.blender import compat

    return [s for s in compat.all_strips(scene) if s.get("jokr_job")]
