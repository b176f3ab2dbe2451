"""train → keypoints → render with the tiny preset, on a DAVIS full-frame clip (cropped) and a tight crop."""

import json

import cv2
import numpy as np
import pytest

from jokr_engine.events import SCHEMA
from jokr_engine.framing import look_boxes

from .engine_cli import run_engine


@pytest.fixture(scope="module")
def trained_job(tmp_path_factory, shared_data):
    job = tmp_path_factory.mktemp("e2e") / "job"
    _, events, _ = run_engine("train", "--a", shared_data / "cows", "--a-start", "20", "--a-count", "30",
                              "--b", shared_data / "fox", "--b-count", "30", "--job", job, "--preset", "tiny")
    return job, events


def test_training_reports_every_event_kind_in_the_schema(trained_job):
    job, events = trained_job
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert {"progress", "preview", "checkpoint"} <= set(kinds)
    assert all(e["schema"] == SCHEMA for e in events)
    progress = [e for e in events if e["event"] == "progress"]
    assert {e["step"] for e in progress} == {1, 2}
    assert all(np.isfinite(list(e["losses"].values())).all() for e in progress)
    assert events[-1]["status"] == "finished"
    assert (job / "previews" / "latest.png").is_file()
    assert (job / "checkpoints" / "step1.safetensors").is_file()
    logged = [json.loads(line) for line in (job / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in logged] == kinds


def test_davis_clip_is_cropped_and_keypoints_sit_on_the_animal(trained_job, shared_data):
    job, _ = trained_job
    _, events, _ = run_engine("keypoints", "--job", job)
    data = json.loads((job / "keypoints.json").read_text())
    cows = data["clips"]["A"]
    assert cows["frame_size"] == [854, 480] and cows["frame_count"] == 30
    boxes = np.array(cows["crop_boxes"])
    assert (boxes[:, 2] < 854 * 0.8).all(), "the DAVIS clip should be cropped around the cow"
    assert np.array(data["clips"]["B"]["crop_boxes"])[0].tolist() == [0, 0, 624, 320], "a tight crop is kept whole"
    keypoints = np.array(cows["keypoints"])
    assert keypoints.shape == (30, 6, 2)
    # Whatever the tiny model learned, its keypoints are expectations over the padded crop box.
    x0, y0, w, h = boxes[:, None, 0], boxes[:, None, 1], boxes[:, None, 2], boxes[:, None, 3]
    xs, ys = keypoints[..., 0] * 854, keypoints[..., 1] * 480
    assert ((xs > x0 - 0.2 * w) & (xs < x0 + 1.2 * w) & (ys > y0 - 0.2 * h) & (ys < y0 + 1.2 * h)).all()


def test_render_composites_in_the_full_frame_and_edits_round_trip(trained_job, tmp_path):
    job, _ = trained_job
    run_engine("keypoints", "--job", job)
    run_engine("render", "--job", job, "--look", "B", "--out", tmp_path / "plain", "--preview-video",
               tmp_path / "side.mp4")
    frames = sorted((tmp_path / "plain").glob("*.png"))
    assert [f.name for f in frames[:2]] == ["00000.png", "00001.png"] and len(frames) == 30
    first = cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED)
    assert first.shape == (480, 854, 4)
    box = json.loads((job / "keypoints.json").read_text())["clips"]["A"]["crop_boxes"][0]
    x0, y0, w, h = look_boxes(np.array([box]), 624 / 320)[0]  # unsquashed with the fox's (B's) aspect
    outside = np.ones(first.shape[:2], bool)
    margin = int(np.ceil(1.4 * max(w, h) / 64)) + 1  # resampling ramps off over one model pixel (S = 64)
    top, bottom = max(0, int(y0 - 0.2 * h) - margin), int(y0 + 1.2 * h) + margin
    left, right = max(0, int(x0 - 0.2 * w) - margin), int(x0 + 1.2 * w) + margin
    outside[top:bottom, left:right] = False
    assert first[..., 3][outside].max() == 0, "nothing is drawn outside the padded crop box"
    assert first[..., 3].max() > 128, "the generated silhouette is drawn"
    visible = first[..., 3][first[..., 3] > 0]
    assert (visible <= 25).sum() / visible.size < 0.05, "no haze of nearly transparent pixels"
    assert cv2.VideoCapture(str(tmp_path / "side.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 30

    # The exported keypoints drive the same picture (the coordinate maps round-trip).
    run_engine("render", "--job", job, "--look", "B", "--out", tmp_path / "file", "--keypoints",
               job / "keypoints.json", "--frames", "0:3")
    again = cv2.imread(str(tmp_path / "file" / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert np.abs(again.astype(int) - first.astype(int)).max() <= 2
    assert not (tmp_path / "file" / "00003.png").exists()

    # Moving one keypoint changes the picture, mostly near where it moved.
    edited = json.loads((job / "keypoints.json").read_text())
    point = edited["clips"]["A"]["keypoints"][0][2]
    point[0] += 0.04
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    run_engine("render", "--job", job, "--look", "B", "--out", tmp_path / "edit", "--keypoints",
               tmp_path / "edited.json", "--frames", "0:1")
    moved = cv2.imread(str(tmp_path / "edit" / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert np.abs(moved.astype(int) - first.astype(int)).max() > 10


def test_both_looks_and_no_affine(trained_job, tmp_path):
    job, _ = trained_job
    run_engine("render", "--job", job, "--look", "A", "--out", tmp_path / "ba", "--frames", "0:2", "--no-affine")
    picture = cv2.imread(str(tmp_path / "ba" / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert picture.shape == (320, 624, 4), "BA is drawn at the driving clip B's frame size"


def test_render_keeps_the_look_clips_aspect(trained_job, tmp_path, monkeypatch):
    """A disc drawn in B's model space (B = the fox, 624×320 uncropped) is B's squashed frame: in the
    driver's frame it must come out with B's aspect 1.95, whatever the cow's crop box is shaped like."""
    import torch

    from jokr_engine import render as render_module
    from jokr_engine.job import Job

    job, _ = trained_job

    def disc_generate(models, keypoints, look, image_size, heatmap_scale, refine=True, batch=16):
        yy, xx = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
        centre = (image_size - 1) / 2
        inside = ((xx - centre) ** 2 + (yy - centre) ** 2).float().sqrt() < image_size * 0.3
        silhouette = inside.float()[None, None].expand(len(keypoints), 1, -1, -1)
        return torch.zeros(len(keypoints), 3, image_size, image_size), silhouette

    monkeypatch.setattr(render_module, "generate", disc_generate)
    (written,) = render_module.render(Job(job), torch.device("cpu"), "B", tmp_path / "disc", frames="0:1")
    alpha = cv2.imread(str(written), cv2.IMREAD_UNCHANGED)[..., 3]
    rows, columns = np.nonzero(alpha > 127)
    aspect = (columns.max() - columns.min() + 1) / (rows.max() - rows.min() + 1)
    assert aspect == pytest.approx(624 / 320, rel=0.06)
