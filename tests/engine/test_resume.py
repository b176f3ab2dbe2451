"""Training never loses work: a run stopped and resumed ends with exactly the weights of an uninterrupted
run (CPU, fixed seed), in either step; cancelling checkpoints first."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from .engine_cli import REPO, run_engine

SHORT = ["--preset", "tiny", "--set", "step1_iterations=12", "--set", "step2_iterations=6",
         "--set", "checkpoint_every=5", "--set", "preview_every=1000"]


def clip_args(data):
    return ["--a", data / "cat", "--a-count", "12", "--b", data / "fox", "--b-count", "12"]


def model_weights(job):
    tensors = load_file(str(job / "checkpoints" / "latest.safetensors"))
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, shared_data):
    job = tmp_path_factory.mktemp("whole") / "job"
    run_engine("train", *clip_args(shared_data), "--job", job, *SHORT)
    return model_weights(job)


@pytest.mark.parametrize("stop_at", ["1:7", "2:3"])
def test_resume_ends_with_the_same_weights(uninterrupted, tmp_path, shared_data, stop_at):
    job = tmp_path / "job"
    _, events, _ = run_engine("train", *clip_args(shared_data), "--job", job, *SHORT, "--until-iteration", stop_at)
    assert events[-1]["status"] == "paused"
    step, iteration = map(int, stop_at.split(":"))
    meta = json.loads((job / "checkpoints" / "latest.json").read_text())
    assert (meta["step"], meta["iteration"]) == (step, iteration)
    _, events, _ = run_engine("train", "--job", job, "--resume")
    assert events[0]["resumed_from"] == {"step": step, "iteration": iteration}
    assert events[-1]["status"] == "finished"
    resumed = model_weights(job)
    assert resumed.keys() == uninterrupted.keys()
    different = [k for k in resumed if not torch.equal(resumed[k], uninterrupted[k])]
    assert not different, f"weights differ after resume: {different[:5]}"
    assert json.loads((job / "checkpoints" / "latest.json").read_text())["finished"] is True


def test_learned_affine_is_restored(tmp_path, shared_data):
    job = tmp_path / "job"
    run_engine("train", *clip_args(shared_data), "--job", job, *SHORT, "--until-iteration", "1:5")
    saved = json.loads((job / "checkpoints" / "latest.json").read_text())["affine"]
    weights = load_file(str(job / "checkpoints" / "latest.safetensors"))
    assert torch.allclose(weights["model.T.matrix"], torch.tensor(saved))
    assert not torch.allclose(torch.tensor(saved), torch.eye(2, 3)), "T is learned, not the identity"


@pytest.mark.parametrize("how", ["CANCEL file", "SIGTERM"])
def test_cancel_checkpoints_then_resume_finishes(tmp_path, shared_data, how):
    job = tmp_path / "job"
    args = [sys.executable, "-m", "jokr_engine", "train", *map(str, clip_args(shared_data)), "--job", str(job),
            "--preset", "tiny", "--set", "step1_iterations=100000", "--set", "progress_every=1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    events = []
    deadline = time.time() + 120
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "progress" and events[-1]["iteration"] >= 3:
            break
        assert time.time() < deadline
    if how == "CANCEL file":
        (job / "CANCEL").touch()
    else:
        proc.send_signal(signal.SIGTERM)
    events += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 0
    assert events[-1]["event"] == "done" and events[-1]["status"] == "cancelled"
    stop = [e for e in events if e["event"] == "checkpoint"][-1]
    assert stop["reason"] == "cancel"
    _, resumed, _ = run_engine("train", "--job", job, "--resume", "--set", "step1_iterations=" +
                               str(stop["iteration"] + 2), "--set", "step2_iterations=2")
    assert resumed[0]["resumed_from"] == {"step": 1, "iteration": stop["iteration"]}
    assert resumed[-1]["status"] == "finished"
    assert not (job / "CANCEL").exists()


def test_settings_given_on_resume_take_effect_and_are_kept(tmp_path, shared_data):
    """The hint after a non-finite loss says `--resume --set lr=…`: the optimisers must really use it,
    and a later plain resume must keep it."""
    job = tmp_path / "job"
    run_engine("train", *clip_args(shared_data), "--job", job, *SHORT, "--until-iteration", "1:5")
    run_engine("train", "--job", job, "--resume", "--set", "lr=5e-5", "--until-iteration", "1:7")
    assert json.loads((job / "job.json").read_text())["config"]["lr"] == 5e-5
    run_engine("train", "--job", job, "--resume", "--until-iteration", "1:9")
    meta = json.loads((job / "checkpoints" / "latest.json").read_text())
    rates = {g["lr"] for opt in meta["optimizers"].values() for g in opt["param_groups"]}
    assert rates == {5e-5}
