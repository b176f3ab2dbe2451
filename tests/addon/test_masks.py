"""Masks in the add-on (issue 15): the mask source Automatic reaching the engine as `auto[:MODEL]`, masking
progress and suspect frames in the panel with a jump to each, Show Masks as a strip over the clip, and a
sequencer Mask strip rendered into one 0/255 PNG per frame of the whole clip. Fake engine; real bpy."""

import json
import os

import bpy
import numpy as np
import pytest

from .helpers import pump, set_up_scene
from .test_panels import RecordingLayout, operators_drawn


def job_spec(scene):
    with open(os.path.join(scene.jokr.job_dir, "job.json")) as stream:
        return json.load(stream)["clips"]


def read_png(path):
    image = bpy.data.images.load(str(path))
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1]  # rows top first


def draw_masks_panel(context):
    from jokr_blender.blender import mask_sources

    panel = mask_sources.JOKR_PT_masks
    if not panel.poll(context):
        return None
    calls = []
    panel.draw(type("Panel", (), {"layout": RecordingLayout(calls)})(), context)
    return calls


def test_saved_files_keep_the_masks_folder_beside_identifier():
    from jokr_blender.blender import properties

    items = {identifier: name for identifier, name, _ in properties.MASK_SOURCE_ITEMS}
    assert items['AUTO'] == "Masks Folder Beside" and items['MATTING'] == "Automatic (u2netp)"


@pytest.mark.usefixtures("addon")
def test_automatic_masks_progress_suspects_and_jump(tiny_clips):
    scene = set_up_scene(bpy, tiny_clips, frame_start_a=5, first_a=2, count_a=8)
    scene.jokr.clip_a.mask_source = 'MATTING'
    scene.jokr.clip_b.mask_source, scene.jokr.clip_b.matting_model = 'MATTING', 'both'
    assert draw_masks_panel(bpy.context) is not None  # shown as soon as a clip uses automatic masks
    assert bpy.ops.jokr.train() == {'FINISHED'}
    pump()
    settings = scene.jokr
    assert settings.state == 'finished'
    clips = job_spec(scene)
    assert (clips["A"]["mask"], clips["B"]["mask"]) == ("auto", "auto:both")
    log = open(os.path.join(settings.job_dir, "engine.log")).read()
    assert "not an event" not in log  # masking and mask_check are events the add-on knows
    assert settings.mask_check_text == "Masks A: 1 of 8 frames suspect  Masks B: 1 of 10 frames suspect"
    assert settings.masking_text == ""  # done: the progress is gone
    rows = [(row.clip, row.index, row.frame, row.reasons) for row in settings.suspect_frames]
    assert rows == [("A", 1, "00003", "size jumps"), ("B", 1, "00001", "size jumps")]

    calls = draw_masks_panel(bpy.context)
    assert operators_drawn(calls).count("jokr.jump_to_mask_frame") == 2
    assert operators_drawn(calls).count("jokr.show_masks") == 2

    # Clip A's range starts at its file 2, shown on scene frame 5: the suspect frame 1 is scene frame 6.
    assert bpy.ops.jokr.jump_to_mask_frame(clip='A', index=1) == {'FINISHED'}
    assert scene.frame_current == 6
    bpy.ops.jokr.jump_to_mask_frame(clip='B', index=1)
    assert scene.frame_current == 2

    # While masks are being made the panel shows how far they are.
    from jokr_blender.blender import properties, session
    from jokr_blender.io import protocol

    state = session.manager.state(bpy.path.abspath(settings.job_dir))
    state.apply(protocol.make_event("masking", 1.0, command="train", clip="A", model="u2netp", done=3, of=8,
                                    cached=0, eta_s=75.0))
    properties.sync(settings, state, settings.job_dir)
    assert settings.masking_text == "Masks A (u2netp): 3/8, 1:15 left"
    assert settings.masking_progress == pytest.approx(3 / 8)
    assert [row.clip for row in settings.suspect_frames] == ["B"]  # A's masks are being made anew
    assert ("progress", (pytest.approx(3 / 8),), {"text": settings.masking_text}) in draw_masks_panel(bpy.context)


@pytest.mark.usefixtures("addon")
def test_show_masks_adds_one_strip_over_the_clip(tiny_clips):
    from jokr_blender.blender import compat, mask_sources, result_strips

    scene = set_up_scene(bpy, tiny_clips, frame_start_a=5, first_a=2, count_a=8)
    scene.jokr.clip_a.mask_source = 'MATTING'
    assert bpy.ops.jokr.train() == {'FINISHED'}
    pump()
    clip_strip = compat.find_strip(scene, "cat")
    clip_strip.transform.offset_x, clip_strip.transform.scale_x = 7.0, 1.5
    assert bpy.ops.jokr.show_masks(clip='A') == {'FINISHED'}
    job_dir = bpy.path.abspath(scene.jokr.job_dir)
    strip = mask_sources.find_mask_strip(scene, job_dir, "A")
    assert strip.name == "JOKR masks A (cat)"
    assert [e.filename for e in strip.elements] == [f"{i:05d}.png" for i in range(2, 10)]
    assert os.path.samefile(bpy.path.abspath(strip.directory), os.path.join(job_dir, "auto_masks", "A"))
    assert (strip.frame_final_start, strip.frame_final_end) == (5, 13)
    assert strip.channel > max(s.channel for s in compat.all_strips(scene) if s != strip)
    assert strip.blend_type == 'MULTIPLY'
    assert (strip.transform.offset_x, strip.transform.scale_x) == (7.0, 1.5)
    assert result_strips.find_result_strip(scene, job_dir, result_strips.results.DIRECTIONS["AB"]) is None

    strip.name = "renamed"
    assert bpy.ops.jokr.show_masks(clip='A') == {'FINISHED'}
    assert sum(1 for s in compat.all_strips(scene) if s.get(mask_sources.MASKS_CLIP)) == 1

    # Clip B has no automatic masks: a clear message, nothing added.
    with pytest.raises(RuntimeError, match="No masks of clip B"):
        bpy.ops.jokr.show_masks(clip='B')


def add_mask_strip(scene, frame_start, points=((0.25, 0.25), (0.75, 0.25), (0.75, 0.5), (0.25, 0.5))):
    from jokr_blender.blender import compat

    mask = bpy.data.masks.new("roto")
    spline = mask.layers.new().splines.new()
    spline.points.add(len(points) - 1)
    for point, co in zip(spline.points, points):
        point.co = point.handle_left = point.handle_right = co
        point.handle_type = 'VECTOR'
    spline.use_cyclic = True
    strip = getattr(scene.sequence_editor, compat.STRIPS).new_mask(name="roto", mask=mask, channel=5,
                                                                   frame_start=frame_start)
    return strip


@pytest.mark.usefixtures("addon")
def test_a_mask_strip_becomes_the_clips_masks(tiny_clips):
    # Clip A shows files 2..7 of 12 from scene frame 1; the Mask strip starts on scene frame 3 (file 4).
    scene = set_up_scene(bpy, tiny_clips, first_a=2, count_a=6)
    add_mask_strip(scene, frame_start=3)
    scene.jokr.clip_a.mask_source, scene.jokr.clip_a.mask_strip = 'MASK_STRIP', "roto"
    assert bpy.ops.jokr.train() == {'FINISHED'}
    pump()
    job_dir = bpy.path.abspath(scene.jokr.job_dir)
    folder = os.path.join(job_dir, "strip_masks", "A")
    assert job_spec(scene)["A"]["mask"] == folder
    assert sorted(os.listdir(folder)) == [f"{i:05d}.png" for i in range(12)]  # the whole clip, as the engine wants
    covered = {}
    for i in range(12):
        pixels = read_png(os.path.join(folder, f"{i:05d}.png"))
        assert pixels.shape[:2] == (16, 32)  # the footage's size
        assert set(np.unique(np.round(pixels[:, :, 0] * 255))) <= {0.0, 255.0}
        covered[i] = pixels[:, :, 0] > 0.5
    assert [i for i in range(12) if covered[i].any()] == [4, 5, 6, 7]
    columns = np.flatnonzero(covered[5].any(axis=0))
    assert (columns.min(), columns.max()) == (8, 23)  # x 0.25 … 0.75 of 32 pixels

    # Show Masks shows the rendered matte over the clip.
    assert bpy.ops.jokr.show_masks(clip='A') == {'FINISHED'}
    from jokr_blender.blender import mask_sources

    strip = mask_sources.find_mask_strip(scene, job_dir, "A")
    assert [e.filename for e in strip.elements] == [f"{i:05d}.png" for i in range(2, 8)]

    # The real engine reads the folder as clip A's masks (where its OpenCV is installed).
    engine_clips = pytest.importorskip("jokr_engine.clips")
    spec = job_spec(scene)["A"]
    clip = engine_clips.load_clip(engine_clips.ClipSpec(spec["path"], spec["start"], spec["count"], spec["mask"]))
    assert [bool(mask.any()) for mask in clip.masks] == [False, False, True, True, True, True]


@pytest.mark.usefixtures("addon")
def test_mask_strip_mistakes_are_named(tiny_clips):
    from jokr_blender.blender import compat

    scene = set_up_scene(bpy, tiny_clips)
    scene.jokr.clip_a.mask_source, scene.jokr.clip_a.mask_strip = 'MASK_STRIP', "fox"
    with pytest.raises(RuntimeError, match="Strip 'fox' .* is a image strip, not a Mask strip"):
        bpy.ops.jokr.train()
    scene.jokr.clip_a.mask_strip = "gone"
    with pytest.raises(RuntimeError, match="Mask strip 'gone' .* is not in the sequencer"):
        bpy.ops.jokr.train()
    add_mask_strip(scene, frame_start=40)  # after the clip: nothing on its frames
    scene.jokr.clip_a.mask_strip = "roto"
    with pytest.raises(RuntimeError, match="Mask strip 'roto' is empty on every frame of strip 'cat'"):
        bpy.ops.jokr.train()
    assert scene.jokr.job_dir == "" and compat.find_strip(scene, "roto") is not None


@pytest.mark.usefixtures("addon")
def test_a_mask_strip_overrides_the_automatic_masks_it_covers(tiny_clips):
    from jokr_blender.blender import mask_sources

    scene = set_up_scene(bpy, tiny_clips, first_a=2, count_a=8)
    scene.jokr.clip_a.mask_source = 'MATTING'
    assert bpy.ops.jokr.train() == {'FINISHED'}
    pump()
    with pytest.raises(RuntimeError, match="Choose the Mask strip of override"):
        bpy.ops.jokr.override_masks(clip='A')
    roto = add_mask_strip(scene, frame_start=3)
    roto.frame_final_duration = 2  # scene frames 3 and 4: clip A's files 4 and 5
    scene.jokr.clip_a.mask_strip = "roto"
    assert bpy.ops.jokr.override_masks(clip='A') == {'FINISHED'}

    job_dir = bpy.path.abspath(scene.jokr.job_dir)
    folder = os.path.join(job_dir, "merged_masks", "A")
    assert scene.jokr.clip_a.mask_source == 'FOLDER'
    assert os.path.samefile(bpy.path.abspath(scene.jokr.clip_a.mask_folder), folder)
    assert sorted(os.listdir(folder)) == [f"{i:05d}.png" for i in range(12)]
    for i in range(12):
        merged = read_png(os.path.join(folder, f"{i:05d}.png"))[:, :, 0] > 0.5
        if i in (4, 5):  # the Mask strip's rectangle
            assert np.flatnonzero(merged.any(axis=0)).tolist() == list(range(8, 24))
        elif 2 <= i < 10:  # the automatic mask (the fake engine's: the frame's square)
            automatic = read_png(os.path.join(job_dir, "auto_masks", "A", f"{i:05d}.png"))
            assert np.array_equal(merged, automatic[:, :, 0] * automatic[:, :, 3] > 0.5) and merged.any()
        else:  # outside the strip's range
            assert not merged.any()

    # A new job trains on the merged masks.
    scene.jokr.job_name = "fixed"
    assert bpy.ops.jokr.train() == {'FINISHED'}
    pump()
    assert job_spec(scene)["A"]["mask"] == folder
    assert mask_sources.find_mask_strip(scene, job_dir, "A") is None
