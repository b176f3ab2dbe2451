"""The eval and bench commands run on a tiny job and report what they promise."""

import json

import pytest

from .engine_cli import run_engine


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory, shared_data):
    job = tmp_path_factory.mktemp("eval") / "job"
    run_engine("train", "--a", shared_data / "cat", "--a-count", "16", "--b", shared_data / "fox", "--b-count", "16",
               "--job", job, "--preset", "tiny", "--set", "step1_iterations=20", "--set", "step2_iterations=10")
    return job


def test_eval_writes_json_markdown_and_contact_sheet(tiny_job):
    _, events, _ = run_engine("eval", "--job", tiny_job)
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


def test_bench_reports_speeds_and_records_markdown(tmp_path):
    record = tmp_path / "BENCH.md"
    _, events, _ = run_engine("bench", "--preset", "tiny", "--iterations", "3", "--record", record)
    figures = events[-1]["outputs"]
    for key in ("step1_its_per_s", "step2_its_per_s", "render_batched_fps", "render_single_frame_ms",
                "peak_memory_gib", "projected_schedule_min"):
        assert figures[key] > 0, key
    expected = 150 / figures["step1_its_per_s"] + 60 / figures["step2_its_per_s"]
    assert figures["projected_schedule_min"] == pytest.approx(expected / 60)
    text = record.read_text()
    assert "`tiny` on CPU" in text and "step 1 iterations/s" in text
