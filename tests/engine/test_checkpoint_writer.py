"""Checkpoints are taken on a timer (and every N iterations if set) and written in the background: the
loop goes on while a checkpoint is written, the file holds exactly the state of the iteration it was
taken at, every stop waits for it, and a failed write is raised."""

import io
import json
import threading
import time

import pytest
import torch

from jokr_engine import checkpoint
from jokr_engine.bench import synthetic_clip
from jokr_engine.checkpoint import CheckpointWriter, load_checkpoint, save_checkpoint
from jokr_engine.config import preset_config
from jokr_engine.events import Emitter
from jokr_engine.job import Job
from jokr_engine.train import Trainer


def _trainer(folder, *settings) -> tuple[Trainer, io.StringIO]:
    config = preset_config("tiny").override(["perceptual=none", *settings])
    clips = {"A": synthetic_clip(8, config.image_size, 1), "B": synthetic_clip(8, config.image_size, 2)}
    events = io.StringIO()
    trainer = Trainer(Job(folder), config, clips, torch.device("cpu"), Emitter(stream=events, terminal=io.StringIO()))
    trainer._install_signal_handlers = lambda: None  # leave pytest's own handlers alone
    return trainer, events


def _checkpoints(events: io.StringIO) -> list[tuple[int, str]]:
    lines = map(json.loads, events.getvalue().splitlines())
    return [(e["iteration"], e["reason"]) for e in lines if e["event"] == "checkpoint"]


def test_checkpoints_on_a_timer(tmp_path):
    trainer, events = _trainer(tmp_path, "checkpoint_every=0", "checkpoint_minutes=1")
    trainer.clock = lambda: 20.0 * trainer.iteration  # a fake clock: each iteration takes 20 s
    assert trainer.run(until=(1, 7)) == "paused"
    assert _checkpoints(events) == [(3, "interval"), (6, "interval"), (7, "until")]


def test_background_write_is_the_synchronous_write_of_the_same_state(tmp_path, monkeypatch):
    """The write starts only after training has changed every weight: it must still hold the state
    it was given, byte for byte."""
    trainer, _ = _trainer(tmp_path / "job")
    trainer.set_phase()
    trainer.step1_iteration()
    trainer.iteration = 1
    tensors, meta = trainer.state("interval")
    save_checkpoint(tmp_path / "now", "latest", tensors, meta)
    gate = threading.Event()

    def gated(*args):
        gate.wait(timeout=60)
        return save_checkpoint(*args)

    monkeypatch.setattr(checkpoint, "save_checkpoint", gated)
    writer = CheckpointWriter()
    writer.save(tmp_path / "background", "latest", tensors, meta)
    trainer.step1_iteration()
    gate.set()
    writer.wait()
    for name in ("latest.safetensors", "latest.json"):
        assert (tmp_path / "background" / name).read_bytes() == (tmp_path / "now" / name).read_bytes()


@pytest.mark.parametrize("stop", ["until", "cancel", "error"])
def test_every_stop_waits_for_the_checkpoint_being_written(tmp_path, monkeypatch, stop):
    written = []

    def slow(*args):
        time.sleep(0.5)
        path = save_checkpoint(*args)
        written.append(json.loads(path.with_suffix(".json").read_text())["reason"])
        return path

    monkeypatch.setattr(checkpoint, "save_checkpoint", slow)
    trainer, _ = _trainer(tmp_path, "checkpoint_every=1")
    if stop == "until":
        assert trainer.run(until=(1, 1)) == "paused"
    elif stop == "cancel":
        trainer.job.cancel_file.touch()
        assert trainer.run() == "cancelled"
    else:  # the interval checkpoint of iteration 1 is being written when iteration 2 fails
        step1_iteration = trainer.step1_iteration
        trainer.step1_iteration = lambda: step1_iteration() if trainer.iteration == 0 else 1 / 0
        with pytest.raises(ZeroDivisionError):
            trainer.run()
    assert written == [{"until": "until", "cancel": "cancel", "error": "interval"}[stop]]


def test_a_failed_write_is_raised_by_the_loop(tmp_path, monkeypatch):
    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_checkpoint", broken)
    trainer, _ = _trainer(tmp_path, "checkpoint_every=2")
    with pytest.raises(OSError, match="disk full"):
        trainer.run(until=(1, 8))
    assert trainer.iteration <= 4  # by the next checkpoint at the latest, not only when training stops


def test_training_goes_on_while_a_checkpoint_is_written_and_resumes_from_it_exactly(tmp_path, monkeypatch):
    """The checkpoint of iteration 4 can only be written once iteration 6 has run: a loop that waited
    for the write would stall here. Resumed from that file, training ends where the run that wrote it
    ended, bit for bit."""
    gate, released = threading.Event(), []

    def gated(folder, stem, tensors, meta):  # each checkpoint in a folder of its own
        released.append(gate.wait(timeout=30))
        return save_checkpoint(folder / f"at{meta['iteration']}", stem, tensors, meta)

    monkeypatch.setattr(checkpoint, "save_checkpoint", gated)
    first, events = _trainer(tmp_path, "checkpoint_every=4")
    step1_iteration = first.step1_iteration

    def iteration():
        losses = step1_iteration()
        if first.iteration == 5:  # the sixth iteration has run
            gate.set()
        return losses

    first.step1_iteration = iteration
    first.run(until=(1, 8))
    assert released == [True, True] and _checkpoints(events) == [(4, "interval"), (8, "until")]
    second, _ = _trainer(tmp_path / "resumed")
    second.restore(*load_checkpoint(tmp_path / "checkpoints" / "at4"))
    second.run(until=(1, 8))
    ended, resumed = first.models.state_dict(), second.models.state_dict()
    assert [k for k in ended if not torch.equal(ended[k], resumed[k])] == []
