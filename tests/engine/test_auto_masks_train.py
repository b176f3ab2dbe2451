"""`train --a-mask auto`: the masks are made by the matting model, cached in the job folder, used for
training, and a job stopped while they were being made continues from the cache on `--resume`."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np

from .engine_cli import REPO, run_engine

TINY = ["--preset", "tiny", "--set", "step1_iterations=4", "--set", "step2_iterations=2"]


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def masking(events, clip):
    return [e for e in events if e["event"] == "masking" and e["clip"] == clip]


def test_train_with_auto_masks_caches_them_in_the_job(matting_cache, shared_data, tmp_path):
    job = tmp_path / "job"
    _, events, _ = run_engine("train", "--a", shared_data / "dog", "--a-count", "4", "--a-mask", "auto",
                              "--b", shared_data / "fox", "--b-count", "4", "--job", job, *TINY,
                              env={"JOKR_WEIGHTS_DIR": str(matting_cache)})
    assert events[-1]["event"] == "done" and events[-1]["status"] == "finished"
    progress = masking(events, "A")
    assert progress[0]["cached"] == 0 and progress[-1]["done"] == progress[-1]["of"] == 4
    assert not masking(events, "B") and not (job / "auto_masks" / "B").exists()  # B keeps its masks/ folder
    check = [e for e in events if e["event"] == "mask_check"]
    assert [c["clip"] for c in check] == ["A"] and check[0]["report"] == str(job / "auto_masks" / "A" /
                                                                            "mask_check.json")
    folder = job / "auto_masks" / "A"
    assert sorted(p.name for p in folder.glob("*.png")) == [f"{i:05d}.png" for i in range(4)]
    for i in range(4):
        mask = cv2.imread(str(folder / f"{i:05d}.png"), cv2.IMREAD_GRAYSCALE)
        truth = cv2.imread(str(shared_data / "dog" / "masks" / f"{i:05d}.png"), cv2.IMREAD_GRAYSCALE)
        assert set(np.unique(mask)) <= {0, 255} and iou(mask > 127, truth > 127) > 0.85
    logged = [json.loads(line)["event"] for line in (job / "events.jsonl").read_text().splitlines()]
    assert "masking" in logged and "mask_check" in logged
    assert json.loads((job / "job.json").read_text())["clips"]["A"]["mask"] == "auto"


def test_a_cancel_during_the_masks_keeps_them_and_resume_continues(matting_cache, shared_data, tmp_path):
    job = tmp_path / "job"
    env = {**os.environ, "PYTHONPATH": str(REPO), "JOKR_WEIGHTS_DIR": str(matting_cache)}
    command = [sys.executable, "-m", "jokr_engine", "train", "--a", str(shared_data / "dog"), "--a-count", "30",
               "--a-mask", "auto", "--b", str(shared_data / "fox"), "--b-count", "4", "--job", str(job), *TINY]
    first = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                          cwd=REPO) as engine:
        for line in engine.stdout:
            first.append(json.loads(line))
            if first[-1]["event"] == "masking" and first[-1]["done"] >= 1:
                (job / "CANCEL").touch()
    assert engine.returncode == 0 and first[-1]["event"] == "done" and first[-1]["status"] == "cancelled"
    kept = len(list((job / "auto_masks" / "A").glob("*.png")))
    assert 1 <= kept < 30 and not (job / "prepared.safetensors").exists()

    _, second, _ = run_engine("train", "--job", job, "--resume", env={"JOKR_WEIGHTS_DIR": str(matting_cache)})
    progress = masking(second, "A")
    assert progress[0]["cached"] == kept and progress[-1]["done"] == 30
    assert second[-1]["status"] == "finished" and len(list((job / "auto_masks" / "A").glob("*.png"))) == 30
