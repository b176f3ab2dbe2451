"""Bad input: one clear error event (what, where, what to do), a non-zero exit, nothing good lost."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from jokr_engine.acceleration import Acceleration
from jokr_engine.errors import JokrError

from .engine_cli import last_error, run_engine

TINY = ["--preset", "tiny", "--set", "step1_iterations=4", "--set", "step2_iterations=2"]


def make_clip(folder, frames=4, mask_value=255, size=(48, 40)):
    (folder / "frames").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(frames):
        image = np.full((size[1], size[0], 3), 40 * i % 255, np.uint8)
        mask = np.zeros((size[1], size[0]), np.uint8)
        mask[10:30, 12:36] = mask_value
        cv2.imwrite(str(folder / "frames" / f"{i:05d}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"{i:05d}.png"), mask)
    return folder


def train_error(tmp_path, a, b, *extra):
    code, events, _ = run_engine("train", "--a", a, "--b", b, "--job", tmp_path / "job", *TINY, *extra, check=False)
    return code, last_error(events)


def test_missing_video(tmp_path):
    code, error = train_error(tmp_path, tmp_path / "nowhere.mp4", make_clip(tmp_path / "b"))
    assert code == 2 and "nowhere.mp4" in error["message"] and error["hint"]


def test_unreadable_video(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    code, error = train_error(tmp_path, broken, make_clip(tmp_path / "b"))
    assert code == 2 and "broken.mp4" in error["message"]


def test_zero_frames(tmp_path):
    empty = tmp_path / "empty"
    (empty / "frames").mkdir(parents=True)
    (empty / "masks").mkdir()
    code, error = train_error(tmp_path, empty, make_clip(tmp_path / "b"))
    assert code == 2 and "empty" in error["message"]


def test_masks_empty_on_every_frame(tmp_path):
    code, error = train_error(tmp_path, make_clip(tmp_path / "a", mask_value=0), make_clip(tmp_path / "b"))
    assert code == 2 and "empty" in error["message"].lower()


def test_mismatched_counts(tmp_path):
    clip = make_clip(tmp_path / "a")
    (clip / "masks" / "00003.png").unlink()
    code, error = train_error(tmp_path, clip, make_clip(tmp_path / "b"))
    assert code == 2 and "3" in error["message"] and "4" in error["message"]


def test_mismatched_sizes_name_the_first_bad_frame(tmp_path):
    clip = make_clip(tmp_path / "a")
    cv2.imwrite(str(clip / "masks" / "00002.png"), np.zeros((10, 10), np.uint8))
    code, error = train_error(tmp_path, clip, make_clip(tmp_path / "b"))
    assert code == 2 and "00002" in error["message"]


def test_unknown_setting(tmp_path):
    code, error = train_error(tmp_path, make_clip(tmp_path / "a"), make_clip(tmp_path / "b"), "--set", "speed=11")
    assert code == 2 and "speed" in error["message"]


@pytest.fixture(scope="module")
def small_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    job = root / "job"
    run_engine("train", "--a", make_clip(root / "a"), "--b", make_clip(root / "b"), "--job", job, *TINY)
    run_engine("keypoints", "--job", job)
    return job


def edited_keypoints(small_job, tmp_path, edit):
    data = json.loads((small_job / "keypoints.json").read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    code, events, _ = run_engine("render", "--job", small_job, "--look", "B", "--out", tmp_path / "out",
                                 "--keypoints", path, check=False)
    return code, last_error(events)


def test_keypoint_file_with_wrong_k(small_job, tmp_path):
    def drop_one(data):
        data["num_keypoints"] = 5
        data["clips"]["A"]["keypoints"] = [frame[:5] for frame in data["clips"]["A"]["keypoints"]]

    code, error = edited_keypoints(small_job, tmp_path, drop_one)
    assert code == 2 and "num_keypoints" in error["message"] and "6" in error["message"]


def test_keypoint_file_with_wrong_frame_count(small_job, tmp_path):
    def drop_frame(data):
        data["clips"]["A"]["keypoints"].pop()
        data["clips"]["A"]["frame_count"] -= 1

    code, error = edited_keypoints(small_job, tmp_path, drop_frame)
    assert code == 2 and "3 frames" in error["message"] and "4" in error["message"]


def test_keypoint_file_with_non_finite_value_names_the_spot(small_job, tmp_path):
    def poison(data):
        data["clips"]["A"]["keypoints"][2][1][0] = float("nan")

    code, error = edited_keypoints(small_job, tmp_path, poison)
    assert code == 2 and "frame 2 keypoint 1 x" in error["message"] and "not finite" in error["message"]


def test_keypoint_out_of_range(small_job, tmp_path):
    def fling(data):
        data["clips"]["A"]["keypoints"][0][0][1] = 7.0

    code, error = edited_keypoints(small_job, tmp_path, fling)
    assert code == 2 and "frame 0 keypoint 0 y" in error["message"] and "out of range" in error["message"]


def test_job_from_an_incompatible_version(small_job, tmp_path):
    job = tmp_path / "old"
    shutil.copytree(small_job, job)
    meta = json.loads((job / "job.json").read_text())
    meta["version"] = 99
    (job / "job.json").write_text(json.dumps(meta))
    code, events, _ = run_engine("render", "--job", job, "--look", "B", "--out", tmp_path / "out", check=False)
    error = last_error(events)
    assert code == 2 and error["code"] == "incompatible_job" and "version 99" in error["message"]


def test_torn_checkpoint_is_detected_not_loaded(small_job, tmp_path):
    job = tmp_path / "torn"
    shutil.copytree(small_job, job)
    weights = job / "checkpoints" / "latest.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    code, events, _ = run_engine("keypoints", "--job", job, check=False)
    assert code == 2 and "does not match" in last_error(events)["message"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(small_job, tmp_path):
    job = tmp_path / "nan"
    shutil.copytree(small_job, job)
    before = (job / "checkpoints" / "latest.safetensors").read_bytes()
    code, events, _ = run_engine("train", "--job", job, "--resume", "--set", "step2_iterations=10",
                                 "--set", "w_l1=nan", check=False)
    error = last_error(events)
    assert code == 1 and error["code"] == "non_finite_loss"
    assert "loss 'l1'" in error["message"] and "last good checkpoint is kept" in error["message"]
    assert (job / "checkpoints" / "latest.safetensors").read_bytes() == before


def test_out_of_memory_names_the_setting_to_lower(monkeypatch, tmp_path):
    from jokr_engine import train as train_module
    from jokr_engine.config import preset_config
    from jokr_engine.events import Emitter

    def exhausted(self, until=None):
        raise torch.OutOfMemoryError("CUDA out of memory")

    def bare_init(self, job, config, clips, device, emitter):
        self.step, self.acceleration = 1, Acceleration.for_device(config, device)

    monkeypatch.setattr(train_module.Trainer, "__init__", bare_init)
    monkeypatch.setattr(train_module.Trainer, "run", exhausted)
    job = train_module.Job(tmp_path)
    with pytest.raises(JokrError) as caught:
        train_module.train(job, preset_config("tiny"), {}, torch.device("cpu"), Emitter(tmp_path), "tiny",
                           resume=False, until=None)
    assert caught.value.code == "out_of_memory" and "--set step1_batch=2" in caught.value.hint


def test_missing_lpips_weights_stop_the_run_before_step_one(tmp_path):
    code, events, _ = run_engine("train", "--a", make_clip(tmp_path / "a"), "--b", make_clip(tmp_path / "b"),
                                 "--job", tmp_path / "job", *TINY, "--set", "perceptual=lpips",
                                 env={"TORCH_HOME": str(tmp_path / "empty-torch-home")}, check=False)
    error = last_error(events)
    assert code == 2 and error["code"] == "missing_weights" and "vgg16" in error["message"]
    assert not [e for e in events if e["event"] == "progress"], "it must stop before training, not after step 1"
    assert not (tmp_path / "job" / "checkpoints").exists()
    # Fixed (here: another loss), the job starts again under the same name; nothing trained was there.
    _, events, _ = run_engine("train", "--a", tmp_path / "a", "--b", tmp_path / "b", "--job", tmp_path / "job", *TINY)
    assert events[-1]["status"] == "finished"
    assert json.loads((tmp_path / "job" / "job.json").read_text())["config"]["perceptual"] == "ssim"
    # A trained job is never replaced.
    code, events, _ = run_engine("train", "--a", tmp_path / "a", "--b", tmp_path / "b", "--job", tmp_path / "job",
                                 *TINY, check=False)
    assert code == 2 and "already holds a trained job" in last_error(events)["message"]


def test_resume_before_the_first_checkpoint_trains_from_the_start(tmp_path):
    """A job killed before its first checkpoint has its settings and prepared clips: resume starts it."""
    job = tmp_path / "job"
    run_engine("train", "--a", make_clip(tmp_path / "a"), "--b", make_clip(tmp_path / "b"), "--job", job, *TINY)
    shutil.rmtree(job / "checkpoints")  # as if killed before the first one was written
    _, events, _ = run_engine("train", "--job", job, "--resume")
    assert events[0]["event"] == "started" and events[0]["resumed_from"] is None
    assert {e["step"] for e in events if e["event"] == "progress"} == {1, 2}  # step 1 trained again, from 0
    assert events[-1]["status"] == "finished" and (job / "checkpoints" / "latest.json").is_file()


def test_resume_with_other_network_settings_is_refused_and_keeps_the_checkpoint(small_job, tmp_path):
    job = tmp_path / "job"
    shutil.copytree(small_job, job)
    before = (job / "checkpoints" / "latest.safetensors").read_bytes()
    code, events, _ = run_engine("train", "--job", job, "--resume", "--set", "num_keypoints=9", check=False)
    error = last_error(events)
    assert code == 2 and error["code"] == "incompatible_job" and "num_keypoints" in error["hint"]
    assert (job / "checkpoints" / "latest.safetensors").read_bytes() == before
    assert json.loads((job / "job.json").read_text())["config"]["num_keypoints"] != 9
