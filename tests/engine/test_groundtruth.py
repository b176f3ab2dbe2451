"""The ground-truth benchmark: the truth is drawn consistently, the ceiling scores near-perfect, baselines
and deliberately wrong outputs score what they must, generation is deterministic, the CLI writes the
documented layout. No training: the scored "outputs" are made from the truth."""

import dataclasses
import json

import cv2
import numpy as np
import pytest

from jokr_engine.clips import ClipSpec, load_clip
from jokr_engine.errors import JokrError
from jokr_engine.framing import paste_back
from jokr_engine.groundtruth import score as gt_score
from jokr_engine.groundtruth.animal import Gait, draw
from jokr_engine.groundtruth.pairs import PairSpec, generate_pair, pair_spec, unit_maps
from jokr_engine.groundtruth.report import pair_table, write_outputs
from jokr_engine.groundtruth.score import Lpips, baselines, ceiling, pair_geometry, score_direction

from .engine_cli import run_engine

SIZE = 64  # the tiny/demo model size: the hardest ceiling
PHASES = 24


def shifted(stack: np.ndarray, dx: int) -> np.ndarray:
    out = np.zeros_like(stack)
    out[:, :, dx:] = stack[:, :, :-dx]
    return out


@pytest.fixture(scope="module")
def generated():
    return {name: generate_pair(pair_spec(name, 0), 0) for name in ("similar", "fullframe")}


@pytest.fixture(scope="module")
def scored(generated):
    """{pair: {direction: scores}} for the ceiling, the baselines and two wrong outputs."""
    results = {}
    for name, pair in generated.items():
        geometry = pair_geometry(pair, SIZE)
        results[name] = {}
        for direction in ("AB", "BA"):
            top = ceiling(pair, geometry, direction)
            rows = {"ceiling": top, **baselines(pair, geometry, direction)}
            if direction == "AB":
                rows["shifted"] = shifted(top, 8)
                rows["frozen"] = np.repeat(top[len(top) // 2][None], len(top), axis=0)
            results[name][direction] = score_direction(pair, geometry, direction, rows, PHASES)
    return results


@pytest.mark.parametrize("name", ["similar", "fullframe"])
@pytest.mark.parametrize("direction", ["AB", "BA"])
def test_ceiling_is_near_perfect(scored, name, direction):
    top = scored[name][direction]["ceiling"]
    assert top["iou"] > 0.9
    assert top["pose_following"] >= 0.9
    assert top["phase_error"] < 0.03  # the grid's own error is at most 1 / (2 · 24)
    assert top["psnr"] > scored[name][direction]["copy"]["psnr"] + 3


@pytest.fixture(scope="module")
def affine():
    pair = generate_pair(pair_spec("affine", 0), 0)
    return pair, pair_geometry(pair, SIZE)


@pytest.mark.parametrize("name", ["similar", "fullframe"])
def test_a_perfect_model_drawn_in_the_look_space_matches_the_truth(generated, scored, name):
    """Independent of the truth's formula: draw B's look in A's pose where a perfect G_B would, in B's
    S×S model image at T⁻¹·(A's model-space placement), and paste it as render does."""
    pair = generated[name]
    geometry = pair_geometry(pair, SIZE)
    clips = pair.meta["clips"]

    def placements(label):
        rows = np.asarray(clips[label]["placements"])
        return np.concatenate([rows, np.tile([[[0.0, 0.0, 1.0]]], (len(rows), 1, 1))], axis=1)

    model_a = unit_maps(geometry.boxes["A"]) @ placements("A")
    model_b = unit_maps(geometry.boxes["B"]) @ placements("B")
    t_inverse = model_b.mean(axis=0) @ np.linalg.inv(model_a.mean(axis=0))
    to_pixels = np.diag([SIZE, SIZE, 1.0])  # the padded box's unit square → S×S model pixels
    look, gait = pair.spec.B.look, pair.spec.A.gait
    pictures = []
    for n, phase in enumerate(pair.phases("A")):
        colour, alpha = draw(look, gait, float(phase), to_pixels @ t_inverse @ model_a[n], (SIZE, SIZE))
        rgb = np.where(alpha[..., None] > 0, colour / np.maximum(alpha[..., None], 1e-6), 0)
        picture = np.round(np.concatenate([rgb, alpha[..., None]], axis=-1) * 255).astype(np.uint8)
        pictures.append(paste_back(picture, geometry.paste("AB")[n], tuple(clips["A"]["frame_size"]), geometry.pad))
    perfect = score_direction(pair, geometry, "AB", {"perfect": np.stack(pictures)}, PHASES)["perfect"]
    # Soft edges drawn at S×S beat the ceiling, whose masks are binarised at S×S as the training data are.
    assert perfect["iou"] > 0.95
    assert perfect["iou"] >= scored[name]["AB"]["ceiling"]["iou"]
    assert perfect["pose_following"] >= 0.9 and perfect["phase_error"] < 0.03


def test_ceiling_of_the_uncropped_affine_pair(affine):
    pair, geometry = affine
    assert (geometry.boxes["A"] == [0, 0, 192, 192]).all()  # crop off: the affine has to do the work
    top = score_direction(pair, geometry, "AB", {"ceiling": ceiling(pair, geometry, "AB")}, PHASES)["ceiling"]
    assert top["iou"] > 0.9 and top["pose_following"] >= 0.9 and top["phase_error"] < 0.03


@pytest.mark.parametrize("direction", ["AB", "BA"])
def test_baselines_do_not_follow_the_pose(scored, direction):
    rows = scored["similar"][direction]
    # Copy and retrieve show frames of the look clip, whose gait differs from the driver's.
    assert rows["copy"]["pose_following"] <= 0.1
    assert rows["retrieve"]["pose_following"] <= 0.1
    assert rows["copy"]["phase_error"] > 0.15
    assert rows["retrieve"]["iou"] > rows["copy"]["iou"]
    assert rows["ceiling"]["iou"] > rows["retrieve"]["iou"] + 0.15


def test_wrong_outputs_score_badly_on_the_right_metric(scored):
    rows = scored["similar"]["AB"]
    top, moved, frozen = rows["ceiling"], rows["shifted"], rows["frozen"]
    # 8 pixels off: the silhouette and the colours inside the true silhouette suffer.
    assert moved["iou"] < top["iou"] - 0.15
    assert moved["psnr"] < top["psnr"] - 3
    # One frame for every frame: the gait phase does not follow the driver. (Pose-following only asks
    # "closer to the truth than to any look-clip frame": a frozen truth frame often still is.)
    assert frozen["phase_error"] > 0.15
    assert frozen["iou"] < top["iou"] - 0.1


def test_truth_of_identical_looks_is_the_driving_clip():
    base = pair_spec("affine", 3)
    short_a = dataclasses.replace(base.A.motion, frames=10)
    # Same look, same placement, another gait and speed: the truth is A's own frames (and B's for BA).
    clip_b = dataclasses.replace(base.A, gait=Gait("trot", offsets=(0.0, 0.5, 0.5, 0.0), swing=30.0, knee=55.0),
                                 motion=dataclasses.replace(short_a, frames=12, speed=0.07, phase0=0.4),
                                 plate_seed=base.A.plate_seed + 1)
    spec = PairSpec("same", "identical looks", "off", dataclasses.replace(base.A, motion=short_a), clip_b)
    pair = generate_pair(spec, 3)
    assert np.array_equal(pair.frames["truth_AB"], pair.frames["A"])
    assert np.array_equal(pair.masks["truth_AB"], pair.masks["A"])
    assert np.array_equal(pair.frames["truth_BA"], pair.frames["B"])
    assert not np.array_equal(pair.masks["A"][:10], pair.masks["B"][:10])  # the gaits do differ


def short(spec: PairSpec, frames: int = 8) -> PairSpec:
    return dataclasses.replace(spec, A=dataclasses.replace(spec.A, motion=dataclasses.replace(spec.A.motion,
                                                                                              frames=frames)),
                               B=dataclasses.replace(spec.B, motion=dataclasses.replace(spec.B.motion, frames=frames)))


def test_generation_is_deterministic_for_a_seed():
    first = generate_pair(short(pair_spec("proportions", 5)), 5)
    again = generate_pair(short(pair_spec("proportions", 5)), 5)
    other = generate_pair(short(pair_spec("proportions", 6)), 6)
    for name in ("A", "B", "truth_AB", "truth_BA"):
        encoded = [cv2.imencode(".png", f)[1].tobytes() for f in (first.frames[name][5], again.frames[name][5])]
        assert encoded[0] == encoded[1]
        assert np.array_equal(first.masks[name], again.masks[name])
        assert not np.array_equal(first.frames[name], other.frames[name])
    assert first.meta == again.meta


def test_lpips_missing_says_not_available(monkeypatch, scored):
    import jokr_engine.lpips_net as lpips_net

    def missing(net, device):
        raise JokrError("LPIPS-Alex weights not found", "run `jokr-engine setup`", code="missing_weights")

    monkeypatch.setattr(lpips_net, "build_lpips", missing)
    lpips = Lpips("cpu")
    assert not lpips.available
    assert lpips.description.startswith("not available: LPIPS-Alex weights not found")
    table = "\n".join(pair_table("similar", "d", scored["similar"], lpips.available))
    assert "not available" in table
    assert scored["similar"]["AB"]["ceiling"]["lpips"] is None  # never a number without the network


def test_report_files(tmp_path, scored):
    md, js = write_outputs(tmp_path, {"similar": {"description": "d", "results": scored["similar"]}},
                           {"preset": "none"}, "not available: test", False)
    doc = json.loads(js.read_text())
    assert doc["format"] == "jokr.groundtruth.scores"
    assert set(doc["pairs"]["similar"]["scores"]["AB"]) >= {"ceiling", "copy", "retrieve"}
    text = md.read_text()
    for row in ("ceiling", "copy", "retrieve"):
        assert f"| {row} |" in text
    assert "AB IoU" in text and "BA phase error" in text


def test_cli_generate_writes_the_documented_layout(tmp_path):
    code, events, _ = run_engine("groundtruth", "generate", "--out", tmp_path, "--pairs", "affine", "--seed", "2")
    assert code == 0 and events[-1]["event"] == "done"
    folder = tmp_path / "affine"
    meta = json.loads((folder / "pair.json").read_text())
    assert meta["format"] == "jokr.groundtruth" and meta["seed"] == 2 and meta["crop"] == "off"
    counts = {"A": meta["clips"]["A"]["frame_count"], "B": meta["clips"]["B"]["frame_count"]}
    counts |= {"truth_AB": counts["A"], "truth_BA": counts["B"]}
    for name, count in counts.items():
        for kind in ("frames", "masks"):
            files = sorted((folder / name / kind).glob("*.png"))
            assert [f.name for f in files] == [f"{i:05d}.png" for i in range(count)]
        clip = load_clip(ClipSpec(str(folder / name)))  # the engine reads it as a clip folder
        assert set(np.unique(clip.masks)) <= {0, 255}
    assert len(meta["clips"]["A"]["phases"]) == counts["A"]
    assert len(meta["truths"]["AB"]["placements"]) == counts["A"]
    assert meta["truths"]["BA"]["driver"] == "B" and meta["truths"]["BA"]["look"] == "A"


def test_rows_must_be_full_frame_rgba(affine):
    pair, geometry = affine
    with pytest.raises(ValueError, match="row 'output'"):
        gt_score.score_direction(pair, geometry, "AB", {"output": np.zeros((3, 64, 64, 4), np.uint8)}, PHASES)


def test_placed_alphas_of_many_masks_shrunk_into_a_small_box_match_paste_back():
    """A 128² model larger than its paste box: OpenCV shrinks at most 4 channels at a time (the 128² scaling
    run failed here); every mask must land where paste_back puts a picture's alpha."""
    from jokr_engine.framing import paste_back
    from jokr_engine.groundtruth.score import _placed_alphas

    rng = np.random.default_rng(0)
    masks = (rng.random((10, 1, 128, 128)) > 0.5).astype(np.uint8) * 255
    box, size = np.array([30.0, 20.0, 60.0, 50.0]), (160, 120)
    placed = _placed_alphas(masks, box, size, 0.2)
    assert placed.shape == (120, 160, 10)
    for m in range(10):
        rgba = np.repeat(masks[m, 0][:, :, None], 4, axis=2)
        assert (placed[:, :, m] == (paste_back(rgba, box, size, 0.2)[:, :, 3] > 127)).mean() > 0.999


def test_a_job_with_other_crop_boxes_is_refused_unless_scored_with_its_own(generated):
    """A job trained on other masks of the pair's frames (automatic ones) crops elsewhere: scoring it as if its
    boxes were the truth's would be wrong, so it is refused, and --own-boxes places its render with its boxes."""
    from types import SimpleNamespace

    pair = generated["fullframe"]
    truth = pair_geometry(pair, SIZE)
    moved = {label: boxes + np.array([3.0, -2.0, 0.0, 0.0])[: boxes.shape[1]] for label, boxes in truth.boxes.items()}
    prepared = {label: SimpleNamespace(frame_count=len(pair.frames[label]),
                                       frame_size=tuple(pair.meta["clips"][label]["frame_size"]),
                                       boxes=moved[label], images=truth.model_images[label],
                                       masks=truth.model_masks[label]) for label in ("A", "B")}
    job = SimpleNamespace(folder="jobs/auto", config=lambda: SimpleNamespace(image_size=SIZE, pad=truth.pad),
                          load_prepared=lambda: prepared)
    with pytest.raises(JokrError) as refused:
        gt_score.job_geometry(job, pair)
    assert "crop boxes differ" in refused.value.message and "--own-boxes" in refused.value.hint
    geometry = gt_score.job_geometry(job, pair, own_boxes=True)
    assert all(np.array_equal(geometry.boxes[label], moved[label]) for label in ("A", "B"))
    # The rows are pasted with the job's boxes: the same model frames land elsewhere than with the truth's.
    own_copy, true_copy = baselines(pair, geometry, "AB")["copy"], baselines(pair, truth, "AB")["copy"]
    assert own_copy.shape == true_copy.shape and not np.array_equal(own_copy, true_copy)
