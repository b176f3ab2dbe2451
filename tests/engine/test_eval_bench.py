"""The eval and bench commands run on a tiny job and report what they promise."""

import json

import pytest
import torch

from jokr_engine.bench import count_work

from .engine_cli import run_engine


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory, shared_data):
    job = tmp_path_factory.mktemp("eval") / "job"
    run_engine("train", "--a", shared_data / "cat", "--a-count", "16", "--b", shared_data / "fox", "--b-count", "16",
               "--job", job, "--preset", "tiny", "--set", "step1_iterations=20", "--set", "step2_iterations=10")
    return job


def test_eval_writes_json_markdown_and_contact_sheet(tiny_job, lpips_cache):
    _, events, _ = run_engine("eval", "--job", tiny_job, env={"JOKR_WEIGHTS_DIR": str(lpips_cache)})
    outputs = events[-1]["outputs"]
    report = json.loads((tiny_job / "eval" / "eval.json").read_text())
    for name in ("l1_A", "psnr_B", "silhouette_iou_A", "keypoint_jitter_B", "keypoint_cycle_error_AB",
                 "nearest_silhouette_iou_BA", "keypoint_mask_hit_rate_A"):
        assert report["metrics"][name] is not None and report["definitions"][name], name
    assert 0 <= report["metrics"]["silhouette_iou_A"] <= 1
    assert report["conditions"]["num_keypoints"] == 6
    assert (tiny_job / "eval" / "contact_sheet.png").stat().st_size > 1000
    assert "keypoint_jitter_A" in (tiny_job / "eval" / "eval.md").read_text()
    assert outputs["metrics"] == report["metrics"]
    # LPIPS-Alex of the own-look reconstructions, with the real weights (a barely trained tiny job).
    assert 0.05 < report["metrics"]["lpips_alex_A"] < 1 and 0.05 < report["metrics"]["lpips_alex_B"] < 1
    assert str(lpips_cache / "lpips_alex.safetensors") in report["conditions"]["lpips_alex"]


def test_eval_without_lpips_weights_says_why_instead_of_a_number(tiny_job, tmp_path):
    run_engine("eval", "--job", tiny_job, "--out", tmp_path / "eval", env={"JOKR_WEIGHTS_DIR": str(tmp_path)})
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["metrics"]["lpips_alex_A"] is None and report["metrics"]["psnr_A"] is not None
    assert "jokr-engine setup" in report["conditions"]["lpips_alex"]
    assert "| `lpips_alex_A` | n/a |" in (tmp_path / "eval" / "eval.md").read_text()


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    """One bench run, recorded and profiled, for the tests below: (figures, record, profile)."""
    folder = tmp_path_factory.mktemp("bench")
    record, profile = folder / "BENCH.md", folder / "profile.txt"
    _, events, _ = run_engine("bench", "--preset", "tiny", "--iterations", "3", "--record", record,
                              "--profile", profile)
    return events[-1]["outputs"], record, profile


def test_bench_reports_speeds_and_records_markdown(tiny_bench):
    figures, record, _ = tiny_bench
    for key in ("step1_its_per_s", "step2_its_per_s", "render_batched_fps", "render_single_frame_ms",
                "render_gflop_per_frame", "peak_memory_gib", "projected_schedule_min"):
        assert figures[key] > 0, key
    expected = 150 / figures["step1_its_per_s"] + 60 / figures["step2_its_per_s"]
    assert figures["projected_schedule_min"] == pytest.approx(expected / 60)
    for step in (1, 2):
        assert figures[f"step{step}_gflop_per_it"] > 0 and figures[f"step{step}_operators_per_it"] > 100
        assert figures[f"step{step}_achieved_tflop_per_s"] == pytest.approx(
            figures[f"step{step}_gflop_per_it"] * figures[f"step{step}_its_per_s"] / 1000)
    schedule_gflop = 150 * figures["step1_gflop_per_it"] + 60 * figures["step2_gflop_per_it"]
    assert figures["tflop_per_s_for_30_min"] == pytest.approx(schedule_gflop / 1000 / 1800)
    text = record.read_text()
    assert "`tiny` on CPU" in text and "step 1 iterations/s" in text and "GFLOP per iteration" in text


def test_bench_profile_writes_both_steps_operator_tables(tiny_bench):
    text = tiny_bench[2].read_text()
    assert "step 1, 3 iterations" in text and "step 2, 3 iterations" in text
    assert text.count("aten::convolution_backward") >= 2  # both steps train convolutions


def test_count_work_known_matrix_product():
    a, b = torch.randn(64, 32, requires_grad=True), torch.randn(32, 16)

    def forward_backward():
        (a @ b).sum().backward()

    work = count_work(forward_backward)
    # forward 64×32×16 multiply-adds, backward the same again for a's gradient (b needs none)
    assert work["gflop"] * 1e9 == 2 * (2 * 64 * 32 * 16)
    assert 3 <= work["operators"] <= 20

