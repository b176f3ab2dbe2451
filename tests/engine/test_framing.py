"""Crop boxes, model images and the frame ↔ model coordinate maps agree with docs/FORMATS.md."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from jokr_engine.errors import JokrError
from jokr_engine.framing import (
    box_aspect,
    crop_boxes,
    frame_to_model,
    look_boxes,
    model_frames,
    model_to_frame,
    paste_back,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def load_masks(clip: str, count: int | None = None) -> np.ndarray:
    folder = DATA / clip / "masks"
    if not folder.is_dir():
        pytest.skip(f"sample data not found at {folder} (the repository must sit next to shared/)")
    files = sorted(folder.glob("*.png"))[:count]
    return np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])


def load_frame(clip: str, index: int) -> np.ndarray:
    path = DATA / clip / "frames" / f"{index:05d}.jpg"
    if not path.is_file():
        pytest.skip(f"sample data not found at {path} (the repository must sit next to shared/)")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def mask_bounds(masks: np.ndarray) -> np.ndarray:
    """(N, 4) [left, top, right, bottom] pixel edges of each non-empty mask."""
    out = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.array(out, dtype=np.float64)


def centroid(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid (x, y) in pixel-index coordinates (pixel i's centre at i)."""
    weights = image.astype(np.float64)
    ys, xs = np.indices(weights.shape)
    return np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()


def model_index(uv: np.ndarray, size: int) -> np.ndarray:
    """Model coordinates → pixel-index coordinates of the S×S model image."""
    return (np.asarray(uv) + 1) / 2 * (size - 1)


# ---------------------------------------------------------------------------------------------------
# Coordinate maps


def test_model_to_frame_matches_the_documented_formula():
    # Box [100, 50, 200, 100] in a 400×300 frame, pad 0.2 → padded box origin (60, 30), extent 280×140.
    boxes = np.array([[100.0, 50.0, 200.0, 100.0]])
    size = 8
    uv = np.array([[[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]])
    xy = model_to_frame(uv, boxes, (400, 300), size)
    # u = −1 is the centre of the first model column: px = 0.5 → xf = 60 + 0.5 / 8 · 280 = 77.5
    np.testing.assert_allclose(xy[0, 0], [77.5 / 400, (30 + 0.5 / 8 * 140) / 300])
    np.testing.assert_allclose(xy[0, 1], [(60 + 7.5 / 8 * 280) / 400, (30 + 7.5 / 8 * 140) / 300])
    np.testing.assert_allclose(xy[0, 2], [200 / 400, 100 / 300])  # the centre of the box


def test_whole_frame_without_padding_maps_pixel_centres_to_pixel_centres():
    width, height = 64, 64
    boxes = np.array([[0.0, 0.0, width, height]])
    columns = np.arange(width)
    uv = np.stack([columns / (width - 1) * 2 - 1, np.zeros(width)], axis=1)[None]  # centres of model columns
    xy = model_to_frame(uv, boxes, (width, height), size=width, pad=0.0)
    np.testing.assert_allclose(xy[0, :, 0], (columns + 0.5) / width)


@pytest.mark.parametrize("shape", [(5, 7, 2), (5, 2)])
def test_round_trips_are_identity(shape):
    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.uniform(-50, 300, (5, 2)), rng.uniform(20, 400, (5, 2))])
    uv = rng.uniform(-1.5, 1.5, shape)
    xy = model_to_frame(uv, boxes, (640, 360), 256)
    assert xy.shape == uv.shape
    np.testing.assert_allclose(frame_to_model(xy, boxes, (640, 360), 256), uv, atol=1e-12)
    frame_points = rng.uniform(-0.5, 1.5, shape)
    back = model_to_frame(
        frame_to_model(frame_points, boxes, (640, 360), 128, pad=0.1), boxes, (640, 360), 128, 0.1
    )
    np.testing.assert_allclose(back, frame_points, atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# Model images agree with the coordinate maps

BOXES = {
    "whole frame, shrunk": [0.0, 0.0, 854.0, 480.0],
    "small box, enlarged": [300.0, 200.0, 40.0, 30.0],
    "box reaching outside the frame": [-30.0, 400.0, 200.0, 150.0],
    "anisotropic": [100.0, 100.0, 500.0, 60.0],
}


@pytest.mark.parametrize("box", BOXES.values(), ids=BOXES.keys())
def test_a_bright_pixel_lands_where_frame_to_model_says(box):
    width, height, size = 854, 480, 128
    boxes = np.array([box])
    x0, y0, w, h = box
    rng = np.random.default_rng(1)
    for _ in range(5):
        # a pixel inside both the frame and the box
        column = int(rng.integers(max(0, x0), min(width, x0 + w)))
        row = int(rng.integers(max(0, y0), min(height, y0 + h)))
        frame = np.zeros((1, height, width, 3), dtype=np.uint8)
        frame[0, row, column] = 255
        masks = np.zeros((1, height, width), dtype=np.uint8)
        images, _ = model_frames(frame, masks, boxes, size)
        assert images[0, 0].sum() > 0, "the pixel vanished from the model image"
        uv = frame_to_model(
            np.array([[(column + 0.5) / width, (row + 0.5) / height]]), boxes, (width, height), size
        )
        np.testing.assert_allclose(centroid(images[0, 0]), model_index(uv[0], size), atol=0.5)


def test_a_mask_centroid_lands_where_frame_to_model_says():
    masks = load_masks("cows", 30)
    height, width = masks.shape[1:]
    frames = np.repeat(masks[..., None], 3, axis=3)
    boxes = crop_boxes(masks, "on")
    size = 128
    images, model_masks = model_frames(frames, masks, boxes, size)
    for i in range(0, 30, 7):
        frame_centre = centroid(masks[i]) + 0.5  # continuous pixel position
        uv = frame_to_model(frame_centre / [width, height], boxes[i], (width, height), size)
        np.testing.assert_allclose(centroid(model_masks[i, 0]), model_index(uv, size), atol=0.5)
        np.testing.assert_allclose(centroid(images[i, 0]), model_index(uv, size), atol=0.5)


def test_model_frames_shapes_values_and_black_outside_the_frame():
    frames = np.full((2, 100, 200, 3), (200, 100, 50), dtype=np.uint8)
    masks = np.zeros((2, 100, 200), dtype=np.uint8)
    masks[:, 40:60, 80:120] = 255
    boxes = np.array([[0.0, 0.0, 200.0, 100.0], [150.0, 50.0, 100.0, 100.0]])  # the second overhangs
    images, model_masks = model_frames(frames, masks, boxes, 64)
    assert images.shape == (2, 3, 64, 64) and images.dtype == np.uint8
    assert model_masks.shape == (2, 1, 64, 64) and model_masks.dtype == np.uint8
    assert set(np.unique(model_masks)) <= {0, 255}
    assert model_masks[0].any()
    # channel order stays RGB and the frame's inside keeps its colour
    np.testing.assert_array_equal(images[0, :, 32, 32], [200, 100, 50])
    # box 2's padded box spans x 130..270 of a 200-wide frame: the right half of the model image is black
    assert images[1, :, :, 40:].max() == 0
    np.testing.assert_array_equal(images[1, :, 5:25, 10:20].min(axis=(1, 2)), [200, 100, 50])
    np.testing.assert_array_equal(images[1, :, 5:25, 10:20].max(axis=(1, 2)), [200, 100, 50])


# ---------------------------------------------------------------------------------------------------
# paste_back


def smooth_image(width: int, height: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 127 + 100 * np.sin(xs / 23.0) * np.cos(ys / 17.0)
    green = 255 * xs / width
    blue = 255 * ys / height
    return np.stack([red, green, blue], axis=2).round().astype(np.uint8)


def test_paste_back_at_one_to_one_scale_is_exact():
    frame = load_frame("cat", 0)
    height, width = frame.shape[:2]
    box = np.array([100.0, 50.0, 200.0, 200.0])  # padded: origin (60, 10), 280×280
    masks = np.zeros((1, height, width), dtype=np.uint8)
    images, _ = model_frames(frame[None], masks, box[None], 280)
    rgba = np.concatenate([images[0].transpose(1, 2, 0), np.full((280, 280, 1), 255, np.uint8)], axis=2)
    pasted = paste_back(rgba, box, (width, height))
    assert pasted.shape == (height, width, 4)
    region = np.s_[10:290, 60:340]
    assert np.abs(pasted[region][..., :3].astype(int) - frame[region]).max() <= 1
    assert (pasted[region][..., 3] == 255).all()
    outside = np.ones((height, width), dtype=bool)
    outside[10:290, 60:340] = False
    assert (pasted[outside][:, 3] == 0).all()


@pytest.mark.parametrize(
    "box", [[200.0, 100.0, 300.0, 250.0], [30.0, 20.0, 60.0, 40.0]], ids=["shrunk", "enlarged"]
)
def test_paste_back_of_model_frames_reproduces_the_region(box):
    width, height, size = 640, 400, 160
    frame = smooth_image(width, height)
    box = np.array(box)
    images, _ = model_frames(frame[None], np.zeros((1, height, width), np.uint8), box[None], size)
    rgba = np.concatenate([images[0].transpose(1, 2, 0), np.full((size, size, 1), 255, np.uint8)], axis=2)
    pasted = paste_back(rgba, box, (width, height))
    x0, y0, w, h = box
    left, top = int(np.ceil(x0 - 0.2 * w)) + 2, int(np.ceil(y0 - 0.2 * h)) + 2
    right, bottom = int(x0 + 1.2 * w) - 2, int(y0 + 1.2 * h) - 2
    region = np.s_[max(top, 0) : bottom, max(left, 0) : right]
    difference = np.abs(pasted[region][..., :3].astype(int) - frame[region])
    assert difference.mean() < 1.5 and difference.max() <= 8
    assert (pasted[region][..., 3] == 255).all()
    assert (pasted[:, right + 4 :, 3] == 0).all() and (pasted[bottom + 4 :, :, 3] == 0).all()


def test_paste_back_keeps_the_silhouette_colour_at_its_edge():
    size = 32
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # transparent white around an opaque black square: no light fringe may appear
    rgba[8:24, 8:24, 3] = 255
    rgba[8:24, 8:24, :3] = 0
    pasted = paste_back(rgba, np.array([10.0, 10.0, 100.0, 100.0]), (200, 200))
    seen = pasted[..., 3] > 0
    assert seen.sum() > 40 * 40
    assert pasted[seen][:, :3].max() <= 1


# ---------------------------------------------------------------------------------------------------
# Crop boxes


def test_crop_off_and_auto_on_a_tight_clip_give_the_whole_frame():
    masks = load_masks("cat", 40)
    height, width = masks.shape[1:]
    for mode in ("off", "auto"):
        boxes = crop_boxes(masks, mode)
        assert boxes.shape == (40, 4) and boxes.dtype == np.float64
        np.testing.assert_array_equal(boxes, np.tile([0, 0, width, height], (40, 1)))


@pytest.mark.parametrize("clip", ["cows", "bear", "dog"])
def test_auto_crops_a_small_animal_with_a_steady_box_that_contains_it(clip):
    masks = load_masks(clip)
    height, width = masks.shape[1:]
    boxes = crop_boxes(masks, "auto")
    np.testing.assert_array_equal(boxes, crop_boxes(masks, "on"))
    assert boxes[:, 2].max() < width and boxes[:, 3].max() < height  # it did crop
    assert np.ptp(boxes[:, 2:], axis=0).max() == 0  # one size for the whole clip
    bounds = mask_bounds(masks)
    extent = (bounds[:, 2:] - bounds[:, :2]).max(axis=0)
    np.testing.assert_allclose(boxes[0, 2:], extent * 1.1)
    inside = (bounds[:, :2] >= boxes[:, :2] - 1).all(axis=1) & (
        bounds[:, 2:] <= boxes[:, :2] + boxes[:, 2:] + 1
    ).all(axis=1)
    assert inside.mean() >= 0.95
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    raw_centres = (bounds[:, :2] + bounds[:, 2:]) / 2
    jumps = np.abs(np.diff(centres, axis=0)).max(axis=0)
    assert (jumps < 0.05 * boxes[0, 2:]).all()
    assert (jumps <= np.abs(np.diff(raw_centres, axis=0)).max(axis=0)).all()
    # smooth: the frame-to-frame change of velocity is far below the raw mask box's
    acceleration = np.abs(np.diff(centres, 2, axis=0)).max(axis=0)
    assert (acceleration < 0.3 * np.abs(np.diff(raw_centres, 2, axis=0)).max(axis=0)).all()


def moving_square(count: int) -> np.ndarray:
    """A 20×20 square moving right 10 px per frame; its centre on frame i is (20 + 10·i, 60)."""
    masks = np.zeros((count, 120, 20 + 10 * count), dtype=np.uint8)
    for i in range(count):
        masks[i, 50:70, 10 + 10 * i : 30 + 10 * i] = 255
    return masks


def test_crop_follows_steady_motion_without_lag_up_to_the_ends():
    boxes = crop_boxes(moving_square(30), "on")
    np.testing.assert_allclose(boxes[:, 2:], np.tile([22.0, 22.0], (30, 1)))
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    np.testing.assert_allclose(centres[:, 0], 20 + 10 * np.arange(30.0), atol=1e-6)
    np.testing.assert_allclose(centres[:, 1], 60.0)


def test_crop_bridges_empty_frames_with_the_nearest_centre():
    masks = moving_square(30)
    masks[[0, 1, 14, 15]] = 0  # empty at the start and in the middle
    boxes = crop_boxes(masks, "on")
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    truth = 20 + 10 * np.arange(30.0)
    with_mask = np.ones(30, dtype=bool)
    with_mask[[0, 1, 14, 15]] = False
    # frames with a mask still follow the square exactly, even next to the gaps
    np.testing.assert_allclose(centres[with_mask, 0], truth[with_mask], atol=1e-6)
    # empty frames take the nearest frame's centre (the earlier one on ties)
    np.testing.assert_allclose(centres[[0, 1, 14, 15], 0], truth[[2, 2, 13, 16]], atol=1e-6)


def test_crop_errors():
    masks = np.zeros((3, 10, 10), dtype=np.uint8)
    with pytest.raises(JokrError, match="unknown crop mode 'tight'") as error:
        crop_boxes(masks, "tight")
    assert error.value.code == "bad_input" and "auto" in error.value.hint
    with pytest.raises(JokrError, match="empty on every frame"):
        crop_boxes(masks, "on")


def test_look_boxes_keep_centre_and_area_and_take_the_look_aspect():
    driver = np.array([[100.0, 50.0, 60.0, 120.0], [0.0, 0.0, 854.0, 480.0]])
    placed = look_boxes(driver, 2.0)
    np.testing.assert_allclose(placed[:, :2] + placed[:, 2:] / 2, driver[:, :2] + driver[:, 2:] / 2)
    np.testing.assert_allclose(placed[:, 2] * placed[:, 3], driver[:, 2] * driver[:, 3])
    np.testing.assert_allclose(placed[:, 2] / placed[:, 3], 2.0)
    assert box_aspect(np.array([[0.0, 0.0, 624.0, 320.0]] * 3)) == pytest.approx(1.95)


def test_a_round_look_pasted_into_a_tall_driver_box_stays_round():
    # A disc in the look's model space, whose boxes are square: it must come out round in any driver box.
    size = 64
    yy, xx = np.mgrid[:size, :size]
    disc = ((xx - 31.5) ** 2 + (yy - 31.5) ** 2 < 20**2).astype(np.uint8) * 255
    rgba = np.dstack([disc, disc, disc, disc])
    tall = np.array([[200.0, 40.0, 80.0, 320.0]])
    pasted = paste_back(rgba, look_boxes(tall, box_aspect(np.array([[0.0, 0.0, 100.0, 100.0]])))[0], (480, 400))
    rows, columns = np.nonzero(pasted[..., 3] > 127)
    width, height = columns.max() - columns.min() + 1, rows.max() - rows.min() + 1
    assert abs(width / height - 1) < 0.05
