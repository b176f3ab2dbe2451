"""load_clip: every clip layout and mask source, and a clear JokrError for every bad input."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from jokr_engine.clips import ClipSpec, load_clip
from jokr_engine.errors import JokrError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

WIDTH, HEIGHT = 64, 48
BACKGROUND_RGB = (200, 40, 30)  # reddish, so a swapped channel order shows


def square_mask(index: int) -> np.ndarray:
    """A 20×16 square that moves 4 px right per frame."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[12:28, 4 + 4 * index : 24 + 4 * index] = 255
    return mask


def rgb_frame(index: int) -> np.ndarray:
    frame = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame[:] = BACKGROUND_RGB
    frame[square_mask(index) > 0] = (250, 250, 250)
    return frame


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def image_folder(folder: Path, count: int, names: str = "f{}.png") -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        write_rgb(folder / names.format(i), rgb_frame(i))
    return folder


def mask_folder(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        assert cv2.imwrite(str(folder / f"m{i}.png"), square_mask(i))
    return folder


def write_video(path: Path, images: list[np.ndarray], fps: float = 12.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v videos")
    for image in images:
        writer.write(image)
    writer.release()
    return path


def rgb_video(path: Path, count: int) -> Path:
    return write_video(path, [cv2.cvtColor(rgb_frame(i), cv2.COLOR_RGB2BGR) for i in range(count)])


def matte_video(path: Path, count: int) -> Path:
    return write_video(path, [cv2.cvtColor(square_mask(i), cv2.COLOR_GRAY2BGR) for i in range(count)])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.logical_and(a > 0, b > 0).sum() / np.logical_or(a > 0, b > 0).sum()


def bad_input(spec: ClipSpec, *fragments: str) -> JokrError:
    """load_clip(spec) raises a bad_input JokrError whose one-line message holds every fragment."""
    with pytest.raises(JokrError) as caught:
        load_clip(spec)
    error = caught.value
    assert error.code == "bad_input"
    assert "\n" not in error.message and error.hint
    for fragment in fragments:
        assert fragment in error.message
    return error


# ---------------------------------------------------------------------------------------------------
# Layouts


def test_frames_and_masks_layout_of_the_sample_data():
    clip_folder = DATA / "cat"
    if not clip_folder.is_dir():
        pytest.skip(f"sample data not found at {clip_folder} (the repository must sit next to shared/)")
    clip = load_clip(ClipSpec(str(clip_folder), start=10, count=5))
    assert clip.name == "cat" and clip.source == str(clip_folder) and clip.start == 10 and clip.fps is None
    assert clip.frames.shape == (5, 320, 608, 3) and clip.frames.dtype == np.uint8
    assert clip.masks.shape == (5, 320, 608) and clip.masks.dtype == np.uint8
    assert set(np.unique(clip.masks)) == {0, 255}
    expected_frame = cv2.cvtColor(cv2.imread(str(clip_folder / "frames" / "00012.jpg")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(clip.frames[2], expected_frame)
    expected_mask = cv2.imread(str(clip_folder / "masks" / "00012.png"), cv2.IMREAD_GRAYSCALE) > 127
    np.testing.assert_array_equal(clip.masks[2] > 0, expected_mask)


def test_image_folder_with_a_mask_folder_in_natural_order(tmp_path):
    frames = image_folder(tmp_path / "shots", 12)  # f0 … f11: f10 sorts after f9
    masks = mask_folder(tmp_path / "mattes", 12)
    clip = load_clip(ClipSpec(str(frames), start=8, count=4, mask=str(masks)))
    assert clip.name == "shots" and clip.fps is None
    assert clip.frames.shape == (4, HEIGHT, WIDTH, 3)
    for i in range(4):
        np.testing.assert_array_equal(clip.frames[i], rgb_frame(8 + i))
        np.testing.assert_array_equal(clip.masks[i], square_mask(8 + i))


def test_colour_mask_images_use_their_first_channel(tmp_path):
    frames = image_folder(tmp_path / "frames", 3)
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(3):
        colour = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        colour[..., 0] = square_mask(i)  # blue channel in OpenCV's BGR order = first channel
        colour[..., 2] = 255 - square_mask(i)
        assert cv2.imwrite(str(masks / f"{i:03d}.png"), colour)
    clip = load_clip(ClipSpec(str(frames), mask=str(masks)))
    for i in range(3):
        np.testing.assert_array_equal(clip.masks[i], square_mask(i))


def test_video_with_a_matte_video(tmp_path):
    video = rgb_video(tmp_path / "walk.mp4", 8)
    matte = matte_video(tmp_path / "walk_matte.mp4", 8)
    clip = load_clip(ClipSpec(str(video), start=2, count=3, mask=str(matte)))
    assert clip.name == "walk" and clip.start == 2 and clip.fps == pytest.approx(12.0)
    assert clip.frames.shape == (3, HEIGHT, WIDTH, 3) and clip.masks.shape == (3, HEIGHT, WIDTH)
    assert set(np.unique(clip.masks)) <= {0, 255}
    for i in range(3):
        assert iou(clip.masks[i], square_mask(2 + i)) > 0.9  # the range applies to the matte too
        assert np.abs(clip.frames[i].astype(int) - rgb_frame(2 + i)).mean() < 6  # lossy codec, RGB order


def test_video_to_its_end_with_a_luma_mask(tmp_path):
    video = rgb_video(tmp_path / "walk.mp4", 8)
    clip = load_clip(ClipSpec(str(video), start=5, mask="luma:0.8"))
    assert len(clip.frames) == 3
    for i in range(3):
        assert iou(clip.masks[i], square_mask(5 + i)) > 0.9


def test_alpha_channel_of_rgba_images(tmp_path):
    folder = tmp_path / "rgba"
    folder.mkdir()
    for i in range(3):
        bgra = np.dstack([cv2.cvtColor(rgb_frame(i), cv2.COLOR_RGB2BGR), square_mask(i)])
        assert cv2.imwrite(str(folder / f"{i}.png"), bgra)
    clip = load_clip(ClipSpec(str(folder), mask="alpha"))
    for i in range(3):
        np.testing.assert_array_equal(clip.frames[i], rgb_frame(i))
        np.testing.assert_array_equal(clip.masks[i], square_mask(i))


def test_sixteen_bit_rgba_images(tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    for i in range(2):
        bgra = (
            np.dstack([cv2.cvtColor(rgb_frame(i), cv2.COLOR_RGB2BGR), square_mask(i)]).astype(np.uint16) * 257
        )
        assert cv2.imwrite(str(folder / f"{i}.png"), bgra)
    clip = load_clip(ClipSpec(str(folder), mask="alpha"))
    assert clip.frames.dtype == np.uint8
    np.testing.assert_array_equal(clip.frames[1], rgb_frame(1))
    np.testing.assert_array_equal(clip.masks[1], square_mask(1))


def test_luma_mask_thresholds_the_gray_frame(tmp_path):
    folder = tmp_path / "gray"
    folder.mkdir()
    ramp = np.tile(np.linspace(0, 255, WIDTH).round().astype(np.uint8), (HEIGHT, 1))
    for i in range(2):
        write_rgb(folder / f"{i}.png", np.dstack([ramp] * 3))
    clip = load_clip(ClipSpec(str(folder), mask="luma:0.5"))
    np.testing.assert_array_equal(clip.masks[0] > 0, ramp > 127.5)


def test_key_mask_keeps_pixels_far_from_the_key_colour(tmp_path):
    folder = tmp_path / "greenscreen"
    folder.mkdir()
    for i in range(2):
        frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        frame[:] = (10, 240, 20)  # close to pure green: distance 0.06 of the largest possible
        frame[square_mask(i) > 0] = (120, 90, 60)  # far from it: distance 0.55
        write_rgb(folder / f"{i}.png", frame)
    clip = load_clip(ClipSpec(str(folder), mask="key:00FF00:0.3"))
    for i in range(2):
        np.testing.assert_array_equal(clip.masks[i], square_mask(i))
    # a threshold above the animal's distance keys it out as well: nothing is left
    bad_input(ClipSpec(str(folder), mask="key:00ff00:0.6"), "empty on every frame")


def test_exr_frames_are_converted_from_linear_light(tmp_path):
    folder = tmp_path / "exr"
    folder.mkdir()
    linear = np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32)
    linear[:, WIDTH // 2 :] = (1.0, 0.214, 0.0)  # sRGB 255, 128, 0
    for i in range(2):
        if not cv2.imwrite(str(folder / f"{i}.exr"), linear[..., ::-1].copy()):
            pytest.skip("this OpenCV build cannot write EXR")
    clip = load_clip(ClipSpec(str(folder), mask="luma:0.1"))
    np.testing.assert_allclose(clip.frames[0, 0, -1], [255, 128, 0], atol=1)
    np.testing.assert_array_equal(clip.frames[0, 0, 0], [0, 0, 0])


# ---------------------------------------------------------------------------------------------------
# Bad input


def test_missing_paths(tmp_path):
    bad_input(ClipSpec(str(tmp_path / "nowhere")), "not found", str(tmp_path / "nowhere"))
    frames = image_folder(tmp_path / "frames", 3)
    bad_input(ClipSpec(str(frames), mask=str(tmp_path / "no_masks")), "no_masks")


def test_unreadable_image_is_named(tmp_path):
    frames = image_folder(tmp_path / "frames", 4)
    (frames / "f2.png").write_bytes(b"not a png")
    bad_input(ClipSpec(str(frames), mask="luma:0.5"), "cannot read image", "f2.png")


def test_unreadable_video_is_named(tmp_path):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00" * 1000)
    bad_input(ClipSpec(str(video), mask="luma:0.5"), "cannot read video", "broken.mp4")


def test_a_file_that_is_no_clip(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    bad_input(ClipSpec(str(notes)), "notes.txt", "neither a folder of images nor a video")


def test_zero_frames(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    bad_input(ClipSpec(str(empty), mask="luma:0.5"), "has no frames", "empty")


@pytest.mark.parametrize(
    ("start", "count", "fragments"),
    [
        (12, None, ["start frame 12", "has 12 frames"]),
        (10, 5, ["frames 10..14", "has 12 frames"]),
        (-1, None, ["start frame -1", "negative"]),
        (0, 0, ["count 0", "selects no frames"]),
    ],
)
def test_ranges_outside_the_clip(tmp_path, start, count, fragments):
    frames = image_folder(tmp_path / "frames", 12)
    error = bad_input(ClipSpec(str(frames), start=start, count=count, mask="luma:0.5"), *fragments)
    assert str(frames) in error.message


def test_video_range_outside_the_clip(tmp_path):
    video = rgb_video(tmp_path / "walk.mp4", 8)
    bad_input(ClipSpec(str(video), start=6, count=3, mask="luma:0.5"), "frames 6..8", "has 8 frames")


def test_mask_count_differs_from_frame_count(tmp_path):
    frames = image_folder(tmp_path / "frames", 6)
    masks = mask_folder(tmp_path / "masks", 5)
    bad_input(ClipSpec(str(frames), count=2, mask=str(masks)), "has 5 frames", "the clip has 6")


def test_matte_video_count_differs_from_frame_count(tmp_path):
    video = rgb_video(tmp_path / "walk.mp4", 8)
    matte = matte_video(tmp_path / "matte.mp4", 6)
    bad_input(ClipSpec(str(video), mask=str(matte)), "matte.mp4", "has 6 frames", "the clip has 8")


def test_first_mask_of_another_size_is_named(tmp_path):
    frames = image_folder(tmp_path / "frames", 5)
    masks = mask_folder(tmp_path / "masks", 5)
    for name in ("m3.png", "m4.png"):
        assert cv2.imwrite(str(masks / name), np.zeros((HEIGHT // 2, WIDTH // 2), np.uint8))
    bad_input(ClipSpec(str(frames), mask=str(masks)), "m3.png", "32x24", f"{WIDTH}x{HEIGHT}")


def test_first_frame_of_another_size_is_named(tmp_path):
    frames = image_folder(tmp_path / "frames", 5)
    for name in ("f2.png", "f3.png"):
        write_rgb(frames / name, np.zeros((HEIGHT, WIDTH + 2, 3), np.uint8))
    bad_input(ClipSpec(str(frames), mask="luma:0.5"), "f2.png", f"{WIDTH + 2}x{HEIGHT}", f"{WIDTH}x{HEIGHT}")


def test_masks_empty_or_full_on_every_frame(tmp_path):
    frames = image_folder(tmp_path / "frames", 3)
    for value, fragment in ((0, "empty on every frame"), (255, "whole picture on every frame")):
        masks = tmp_path / f"masks{value}"
        masks.mkdir()
        for i in range(3):
            assert cv2.imwrite(str(masks / f"{i}.png"), np.full((HEIGHT, WIDTH), value, np.uint8))
        bad_input(ClipSpec(str(frames), mask=str(masks)), fragment)


@pytest.mark.parametrize(
    ("mask", "fragment"),
    [
        ("luma:abc", "threshold 'abc'"),
        ("luma:1.5", "threshold '1.5'"),
        ("luma", "'luma'"),
        ("key:GG0000:0.2", "key colour 'GG0000'"),
        ("key:00ff00", "threshold ''"),
        ("chroma:00ff00:0.2", "'chroma:00ff00:0.2'"),
    ],
)
def test_bad_mask_option(tmp_path, mask, fragment):
    frames = image_folder(tmp_path / "frames", 2)
    bad_input(ClipSpec(str(frames), mask=mask), fragment)


def test_alpha_needs_an_alpha_channel(tmp_path):
    frames = image_folder(tmp_path / "frames", 3)
    bad_input(ClipSpec(str(frames), mask="alpha"), "no alpha channel", "f0.png")
    video = rgb_video(tmp_path / "walk.mp4", 3)
    bad_input(ClipSpec(str(video), mask="alpha"), "walk.mp4", "is a video")


def test_no_mask_source_at_all(tmp_path):
    frames = image_folder(tmp_path / "clip" / "frames", 3)  # frames/ without masks/
    bad_input(ClipSpec(str(frames.parent)), "no masks/ folder")
    bad_input(ClipSpec(str(frames)), "no masks/ folder")
