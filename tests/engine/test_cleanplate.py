"""Clean plate: a moving square over a textured background is removed, with a static and with a moving
camera, better than inpainting alone; the CLI writes one PNG per frame; bad input is refused clearly."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from jokr_engine.cleanplate import Aligner, clean_plates, dilate, inpaint
from jokr_engine.errors import JokrError

from .engine_cli import last_error, run_engine

WIDTH, HEIGHT, FRAMES, SIDE = 160, 120, 16, 24
DILATION = 3


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Blurred colour noise with blobs: plenty of corners for the feature detector, nothing repeats."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (height, width, 3)).astype(np.float32), (0, 0), 1.5)
    blobs = cv2.resize(rng.uniform(0, 255, (height // 16, width // 16, 3)).astype(np.float32), (width, height))
    image = 0.6 * (noise - noise.mean()) * 4 + 0.4 * blobs + 0.6 * noise.mean()
    return np.clip(image, 0, 255).astype(np.uint8)


def square_masks() -> np.ndarray:
    """A square crossing the frame left to right, 6 px per frame."""
    masks = np.zeros((FRAMES, HEIGHT, WIDTH), dtype=np.uint8)
    for i in range(FRAMES):
        x = 20 + 6 * i
        masks[i, 48 : 48 + SIDE, x : x + SIDE] = 255
    return masks


def with_square(backgrounds: np.ndarray, masks: np.ndarray) -> np.ndarray:
    frames = backgrounds.copy()
    frames[masks > 0] = (250, 30, 200)
    return frames


def camera_matrix(i: int) -> np.ndarray:
    """Frame i's view of the big texture: panning 3 px right, 1 px down per frame, slowly turning."""
    angle = np.deg2rad(0.3 * i)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return np.array([[1, 0, -40 - 3 * i], [0, 1, -30 - i], [0, 0, 1]], dtype=np.float64) @ rotation


def mae(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    return float(np.abs(a[region].astype(np.float64) - b[region].astype(np.float64)).mean())


def plates_and_stats(frames, masks, targets):
    return {i: (plate, stats) for i, plate, stats in clean_plates(frames, masks, targets, dilation=DILATION)}


def test_static_camera_is_detected_and_the_square_removed_exactly():
    background = texture(WIDTH, HEIGHT)
    masks = square_masks()
    frames = with_square(np.repeat(background[None], FRAMES, axis=0), masks)
    results = plates_and_stats(frames, masks, [0, 7, 15])
    for index, (plate, stats) in results.items():
        hole = dilate(masks[index] > 0, DILATION)
        assert stats.alignments["homography"] == 0 and stats.alignments["failed"] == 0
        assert stats.alignments["static"] > 0  # detected from the matches, not assumed
        assert stats.inpainted_px == 0 and stats.filled_px == hole.sum()
        assert mae(plate, background, hole) < 0.5, index  # copied pixels, no resampling
        assert (plate[~hole] == frames[index][~hole]).all()  # outside the hole: the frame untouched
        assert mae(inpaint(frames[index], hole), background, hole) > 10 * max(mae(plate, background, hole), 1)


def test_moving_camera_is_aligned_with_a_homography():
    big = texture(WIDTH + 120, HEIGHT + 80, seed=1)
    backgrounds = np.stack([cv2.warpPerspective(big, camera_matrix(i), (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
                            for i in range(FRAMES)])
    masks = square_masks()
    frames = with_square(backgrounds, masks)

    # The fitted map between two frames is the known one, to a pixel at the frame's corners.
    holes = np.stack([dilate(m > 0, DILATION) for m in masks])
    matrix, kind = Aligner(frames, ~holes).matrix(3, 9)
    truth = camera_matrix(9) @ np.linalg.inv(camera_matrix(3))
    corners = np.array([[[0, 0]], [[WIDTH, 0]], [[WIDTH, HEIGHT]], [[0, HEIGHT]]], dtype=np.float32)
    assert kind == "homography"
    assert np.abs(cv2.perspectiveTransform(corners, matrix) - cv2.perspectiveTransform(corners, truth)).max() < 1.0

    for index, (plate, stats) in plates_and_stats(frames, masks, [2, 8, 13]).items():
        hole = holes[index]
        assert stats.alignments["homography"] > 0 and stats.alignments["static"] == 0
        assert stats.filled_px > 0.95 * stats.hole_px
        ours = mae(plate, backgrounds[index], hole)
        baseline = mae(inpaint(frames[index], hole), backgrounds[index], hole)
        assert ours < 6, (index, ours)  # bilinear resampling of a sharp texture
        assert baseline > 2 * ours, (index, ours, baseline)


def test_what_no_frame_sees_is_inpainted():
    """A square that never moves hides the same pixels in every frame: nothing to copy from."""
    background = texture(WIDTH, HEIGHT)
    masks = np.repeat(square_masks()[:1], FRAMES, axis=0)
    frames = with_square(np.repeat(background[None], FRAMES, axis=0), masks)
    (plate, stats), = plates_and_stats(frames, masks, [5]).values()
    assert stats.filled_px == 0 and stats.inpainted_px == stats.hole_px
    assert stats.inpainted is not None and stats.inpainted.sum() == stats.hole_px
    hole = dilate(masks[5] > 0, DILATION)
    assert (plate == inpaint(frames[5], hole)).all()


def test_bad_arrays_and_settings_are_refused():
    masks = square_masks()
    frames = with_square(np.repeat(texture(WIDTH, HEIGHT)[None], FRAMES, axis=0), masks)
    with pytest.raises(JokrError, match="masks"):
        next(clean_plates(frames, masks[:-1]))
    with pytest.raises(JokrError, match="uint8"):
        next(clean_plates(frames.astype(np.float32), masks))
    with pytest.raises(JokrError, match="--spacing 0"):
        next(clean_plates(frames, masks, spacing=0))


# ---------------------------------------------------------------------------------------------------
# Command line


def write_clip(folder: Path, frames: np.ndarray, masks: np.ndarray | None) -> Path:
    (folder / "frames").mkdir(parents=True)
    for i, frame in enumerate(frames):
        assert cv2.imwrite(str(folder / "frames" / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if masks is not None:
        (folder / "masks").mkdir()
        for i, mask in enumerate(masks):
            assert cv2.imwrite(str(folder / "masks" / f"{i:05d}.png"), mask)
    return folder


@pytest.fixture(scope="module")
def static_clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    background = texture(WIDTH, HEIGHT)
    masks = square_masks()[::2]  # 12 px a frame: with --spacing 1 every frame's square is seen elsewhere
    folder = write_clip(tmp_path_factory.mktemp("clip") / "square", with_square(np.repeat(background[None], 8, 0),
                                                                                    masks), masks)
    return folder, background


def test_cli_writes_a_plate_per_frame_with_progress(static_clip, tmp_path):
    folder, background = static_clip
    code, events, _ = run_engine("clean-plate", "--clip", folder, "--out", tmp_path / "plate", "--dilate", DILATION,
                                 "--spacing", 1)
    assert code == 0
    assert [e["event"] for e in events] == ["started"] + ["progress"] * 8 + ["done"]
    assert events[0]["command"] == "clean-plate" and events[0]["plan"] == [{"step": 1, "iterations": 8}]
    assert [e["iteration"] for e in events[1:-1]] == list(range(1, 9)) and events[-2]["of"] == 8
    outputs = events[-1]["outputs"]
    assert outputs["frames"] == 8 and outputs["camera"] == "static" and outputs["dilation_px"] == DILATION
    assert outputs["filled_fraction"] == 1.0 and outputs["inpainted_fraction"] == 0.0
    written = sorted(p.name for p in (tmp_path / "plate").iterdir())
    assert written == [f"{i:05d}.png" for i in range(8)]  # no temporary files left behind
    plate = cv2.cvtColor(cv2.imread(str(tmp_path / "plate" / "00004.png")), cv2.COLOR_BGR2RGB)
    assert np.abs(plate.astype(int) - background).max() <= 1


def test_cli_job_mode_reads_the_clip_from_the_job(static_clip, tmp_path):
    from jokr_engine.clips import ClipSpec
    from jokr_engine.config import Config
    from jokr_engine.job import Job

    folder, _ = static_clip
    Job(tmp_path / "job").create({"A": ClipSpec(str(folder), start=2, count=5), "B": ClipSpec(str(folder))},
                                 Config(), "tiny")
    code, events, _ = run_engine("clean-plate", "--job", tmp_path / "job", "--clip", "A", "--out", tmp_path / "p")
    assert code == 0 and events[-1]["outputs"]["frames"] == 5
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [f"{i:05d}.png" for i in range(5)]

    code, events, _ = run_engine("clean-plate", "--job", tmp_path / "job", "--clip", "C", "--out", tmp_path / "q",
                                 check=False)
    assert code == 2 and "--clip must be A or B" in last_error(events)["message"]
    code, events, _ = run_engine("clean-plate", "--job", tmp_path / "job", "--clip", "A", "--mask", "alpha",
                                 "--out", tmp_path / "q", check=False)
    assert code == 2 and "from the job" in last_error(events)["message"]
    assert not (tmp_path / "q").exists()


def test_cli_bad_input_names_the_problem(static_clip, tmp_path):
    folder, _ = static_clip
    no_masks = write_clip(tmp_path / "no_masks", np.repeat(texture(WIDTH, HEIGHT)[None], 3, 0), None)
    code, events, _ = run_engine("clean-plate", "--clip", no_masks, "--out", tmp_path / "out", check=False)
    error = last_error(events)
    assert code == 2 and "no masks/ folder" in error["message"] and error["hint"]

    code, events, _ = run_engine("clean-plate", "--clip", folder, "--out", tmp_path / "out", "--dilate", "-1",
                                 check=False)
    assert code == 2 and "--dilate -1" in last_error(events)["message"]

    code, events, _ = run_engine("clean-plate", "--job", tmp_path, "--clip", "A", "--out", tmp_path / "out",
                                 check=False)
    assert code == 2 and "not a JOKR job folder" in last_error(events)["message"]
    assert not (tmp_path / "out").exists()
