"""Scene set-up: Set Scene to Clip (frame range, resolution, frame rate), and the demo's .blend, which
opens in the Video Editing workspace with the edited keypoint in view of its camera."""

import importlib.util

import bpy
import pytest
from bpy_extras.object_utils import world_to_camera_view

from .helpers import ADDON, REPO, disable_addon, enable_addon, pump, set_up_scene, write_fake_python


def test_set_scene_to_clip_frames_and_resolution(addon, tiny_clips, capsys):
    scene = set_up_scene(bpy, tiny_clips, frame_start_a=5, frame_start_b=30)
    scene.render.fps, scene.render.fps_base = 24, 1.0
    assert bpy.ops.jokr.scene_from_clip() == {'FINISHED'}  # clip A by default
    render = scene.render
    assert (scene.frame_start, scene.frame_end) == (5, 16)
    assert (render.resolution_x, render.resolution_y, render.resolution_percentage) == (32, 16, 100)
    assert (render.fps, render.fps_base) == (24, 1.0)
    assert "24 fps kept (an image sequence has no frame rate)" in capsys.readouterr().out
    bpy.ops.jokr.train(wait=True)
    capsys.readouterr()
    bpy.ops.jokr.import_keypoints(wait=True)
    assert "stretched" not in capsys.readouterr().out  # the warning's one-click fix worked
    assert bpy.ops.jokr.scene_from_clip(clip='B') == {'FINISHED'}
    assert (scene.frame_start, scene.frame_end) == (30, 39)


def write_movie(path, frames_folder, count, fps, fps_base):
    """A small H.264 movie of the frames, written by Blender itself."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences  # 4.4 renamed it
    strip = strips.new_image(name="frames", filepath=str(frames_folder / "00000.png"), channel=1, frame_start=1)
    for index in range(1, count):
        strip.elements.append(f"{index:05d}.png")
    render = scene.render
    scene.frame_start, scene.frame_end = 1, count
    render.resolution_x, render.resolution_y, render.resolution_percentage = 32, 16, 100
    render.fps, render.fps_base = fps, fps_base
    if "media_type" in render.image_settings.bl_rna.properties:  # 5.0
        render.image_settings.media_type = 'VIDEO'
    render.image_settings.file_format = 'FFMPEG'
    render.ffmpeg.format, render.ffmpeg.codec = 'MPEG4', 'H264'
    render.filepath = str(path)
    bpy.ops.render.render(animation=True)


def test_set_scene_to_a_movie_clip_takes_its_frame_rate(tiny_clips, tmp_path, bpy_module):
    movie = tmp_path / "cat.mp4"
    write_movie(movie, tiny_clips["cat"] / "frames", 10, 30, 1.001)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_addon()
    try:
        from jokr_blender.blender import compat

        scene = compat.sequencer_scene(bpy.context)
        editor = scene.sequence_editor_create()
        strip = getattr(editor, compat.STRIPS).new_movie(name="cat", filepath=str(movie), channel=1, frame_start=3)
        scene.jokr.clip_a.strip = strip.name
        assert bpy.ops.jokr.scene_from_clip() == {'FINISHED'}
        render = scene.render
        assert (scene.frame_start, scene.frame_end) == (3, 12)
        assert (render.resolution_x, render.resolution_y) == (32, 16)
        assert render.fps == 30 and render.fps / render.fps_base == pytest.approx(29.97, abs=0.005)
    finally:
        disable_addon()


@pytest.mark.parametrize("fps, expected", [(25.0, (25, 1.0)), (29.97003, (30, 1.001)), (23.976, (24, 1.001))])
def test_frame_rates_as_blender_writes_them(addon, fps, expected):
    from jokr_blender.blender.scene_setup import frame_rate

    whole, base = frame_rate(fps)
    assert whole == expected[0] and base == pytest.approx(expected[1], abs=1e-4)
    assert whole / base == pytest.approx(fps, abs=1e-3)


def load_demo():
    spec = importlib.util.spec_from_file_location("jokr_demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_file_opens_in_video_editing_with_the_edit_in_view(tiny_clips, tmp_path, bpy_module):
    """The demo's own steps (scripts/demo.py) on the tiny clips, with the fake engine instead of training."""
    from jokr_blender.blender import compat, keypoints

    demo = load_demo()
    demo.open_video_editing_file(tmp_path)
    enable_addon()
    try:
        prefs = bpy.context.preferences.addons[ADDON].preferences
        prefs.engine_python, prefs.job_root = write_fake_python(tmp_path), ""
        scene = compat.sequencer_scene(bpy.context)
        demo.show_sequencer_scene(scene)
        demo.add_clips(scene, tiny_clips["cat"].parent)
        bpy.ops.jokr.scene_from_clip(clip='A')
        scene.jokr.job_name = "demo"
        blend = tmp_path / "out" / "demo.blend"
        blend.parent.mkdir()
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        bpy.ops.jokr.train(wait=True)
        bpy.ops.jokr.import_keypoints(wait=True)
        pump()
        demo.edit_keypoint("demo", 3, range(4, 7))
        scene_name = scene.name
        bpy.ops.wm.save_mainfile()

        bpy.ops.wm.open_mainfile(filepath=str(blend))
        workspace = bpy.context.window_manager.windows[0].workspace
        assert workspace.name == "Video Editing" and "Layout" in bpy.data.workspaces
        if compat.WORKSPACE_SEQUENCER_SCENE:  # 5.0: the workspace's sequencer shows the demo's scene
            assert workspace.sequencer_scene is not None and workspace.sequencer_scene.name == scene_name
        scene = bpy.data.scenes[scene_name]
        rig = keypoints.find_rig("demo", "A")
        engine = keypoints.find_rig("demo", "A").empties[2]  # an unedited neighbour, for comparison
        for frame in (4, 5, 6):
            scene.frame_set(frame)
            view = world_to_camera_view(scene, rig.camera, rig.empties[3].matrix_world.translation)
            assert rig.camera.data.clip_start < view.z < rig.camera.data.clip_end  # the camera sees it
            assert 0.0 <= view.x <= 1.0 and 0.0 <= view.y <= 1.0
            assert world_to_camera_view(scene, rig.camera, engine.matrix_world.translation).z == pytest.approx(view.z)
    finally:
        disable_addon()
        bpy.ops.wm.read_factory_settings(app_template="", use_empty=True)  # the other tests' default file
