"""One step-1 iteration and the augmentation, checked against the authors' code (METHOD-NOTES.md)."""

import io

import pytest
import torch

from jokr_engine.augment import PairAugment
from jokr_engine.bench import count_work, synthetic_clip
from jokr_engine.config import preset_config
from jokr_engine.events import Emitter
from jokr_engine.job import Job
from jokr_engine.train import Trainer

from .host_reads import HostReads


def _tiny_trainer(folder) -> Trainer:
    config = preset_config("tiny")
    clips = {"A": synthetic_clip(8, config.image_size, 1), "B": synthetic_clip(8, config.image_size, 2)}
    emitter = Emitter(stream=io.StringIO(), terminal=io.StringIO())
    return Trainer(Job(folder), config, clips, torch.device("cpu"), emitter)


def test_keypoint_detector_sees_frame_pairs_and_warps_in_separate_calls(tmp_path):
    """BatchNorm statistics come from each call's batch: per domain, the frames (t, t+1) together and
    the equivariance warps on their own, as the authors' KP(cat[t, t+1]) and equi_loss calls."""
    trainer = _tiny_trainer(tmp_path)
    batches = []
    trainer.models.E.register_forward_hook(lambda _module, args, _out: batches.append(args[0].shape[0]))
    trainer.set_phase()
    trainer.step1_iteration()
    b = trainer.config.step1_batch
    assert batches == [2 * b, b, 2 * b, b]  # A: (t, t+1), A's warps; then the same for B


@pytest.mark.parametrize("branch, shear, stretch", [("rigid", 15.0, False), ("stretch", 20.0, True)])
def test_augmentation_ranges_are_the_authors(branch, shear, stretch):
    torch.manual_seed(0)
    size = 64
    params = getattr(PairAugment(), branch).forward_parameters(torch.Size((2000, 3, size, size)))
    for axis in ("shear_x", "shear_y"):  # both axes, as imgaug's shear={"x": …, "y": …}
        values = params[axis]
        assert values.abs().max() <= shear and values.abs().max() > 0.9 * shear
    assert params["angle"].abs().max() <= 20 and params["angle"].abs().max() > 18
    translations = params["translations"].abs() / size  # both branches translate, ±10 % of the image
    assert translations.max() <= 0.1 + 1e-6 and translations.max() > 0.09
    scale = params["scale"]
    if stretch:  # x and y scaled independently by 0.8–1.2
        assert scale.min() >= 0.8 and scale.max() <= 1.2 and (scale[:, 0] - scale[:, 1]).abs().max() > 0.2
    else:
        assert torch.all(scale == 1)


def test_keypoint_detector_reads_nothing_back_from_the_device(tmp_path):
    """E runs four times per step-1 iteration and in every render; a value read back to the host (kornia
    checks a tensor temperature with bool()) would stall the GPU each time. On the meta device, tensors
    have no values: any such read raises."""
    detector = _tiny_trainer(tmp_path).models.E.to("meta")
    keypoints = detector(torch.empty(2, 3, 64, 64, device="meta"))["keypoints"]
    assert keypoints.shape == (2, 6, 2)


def test_adam_step_is_a_few_kernels_whatever_the_parameter_count(tmp_path):
    """Fused Adam: PyTorch's default on CPU, a loop over parameters, dispatched ~4 operators per
    parameter tensor (~800 for the paper's E + G + T) and read each step count back with item()."""
    trainer = _tiny_trainer(tmp_path)
    trainer.set_phase()
    trainer.step1_iteration()
    assert sum(len(group["params"]) for group in trainer.opt_shape.param_groups) > 40
    with HostReads() as reads:
        work = count_work(trainer.opt_shape.step)
    assert work["operators"] <= 10 and reads.scalars == 0 and not reads.syncs


def test_training_iterations_wait_for_no_flag_or_index_readback(tmp_path):
    """torch.linalg.inv reads its singular-matrix flag back (a GPU sync); the equivariance warp, twice
    per step-1 iteration, takes inv_ex. Boolean indexing (nonzero) would sync the same way."""
    trainer = _tiny_trainer(tmp_path)
    for step, iteration in ((1, trainer.step1_iteration), (2, trainer.step2_iteration)):
        trainer.step = step
        trainer.set_phase()
        with HostReads() as reads:
            iteration()
        assert reads.syncs == [], step
