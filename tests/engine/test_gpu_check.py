"""scripts/gpu_check.sh cannot rot: its CPU dry run (tiny sizes) runs every step and writes what it promises."""

import os
import subprocess
import sys

from .engine_cli import REPO

STEPS = ("cuda_tests", "bench_tiny", "train", "eval", "groundtruth", "bench_compare")


def run_check(tmp_path, seconds: int) -> tuple[subprocess.CompletedProcess, str]:
    out = tmp_path / "out"
    env = {**os.environ, "JOKR_GPU_CHECK_DRY": "1", "JOKR_GPU_CHECK_SECONDS": str(seconds),
           "JOKR_GPU_CHECK_WORK": str(tmp_path / "work"), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1200)
    return proc, (out / "summary.md").read_text()


def test_dry_run_runs_every_step_and_brings_back_at_most_eight_files(tmp_path):
    proc, summary = run_check(tmp_path, 900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for step in STEPS:
        assert f"| {step} | ok |" in summary, step
    assert "device CPU" in summary and "DRY RUN" in summary and "commit " in summary
    assert "SSIM (no LPIPS-VGG weights here)" in summary  # the tests' weights folder is empty
    assert "| ceiling |" in summary and "psnr_A" in summary  # the ground-truth and eval reports are in it
    assert "channels_last compared" in summary and "Fastest: **channels_last=" in summary
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) <= 8, files  # the device tool brings back at most 8 files
    assert {"summary.md", "logs.txt", "bench_tiny.json", "profile_tiny.txt", "contact_sheet.png",
            "groundtruth.png"} <= set(files)


def test_steps_that_do_not_fit_the_budget_are_skipped_and_said(tmp_path):
    proc, summary = run_check(tmp_path, 5)
    assert proc.returncode == 0
    for step in STEPS:
        assert f"| {step} | skipped:" in summary, step
