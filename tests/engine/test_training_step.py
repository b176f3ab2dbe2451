"""One step-1 iteration and the augmentation, checked against the authors' code (METHOD-NOTES.md)."""

import io

import pytest
import torch

from jokr_engine.augment import PairAugment
from jokr_engine.bench import synthetic_clip
from jokr_engine.config import preset_config
from jokr_engine.events import Emitter
from jokr_engine.job import Job
from jokr_engine.train import Trainer


def test_keypoint_detector_sees_frame_pairs_and_warps_in_separate_calls(tmp_path):
    """BatchNorm statistics come from each call's batch: per domain, the frames (t, t+1) together and
    the equivariance warps on their own, as the authors' KP(cat[t, t+1]) and equi_loss calls."""
    config = preset_config("tiny")
    clips = {"A": synthetic_clip(8, config.image_size, 1), "B": synthetic_clip(8, config.image_size, 2)}
    trainer = Trainer(Job(tmp_path), config, clips, torch.device("cpu"),
                      Emitter(stream=io.StringIO(), terminal=io.StringIO()))
    batches = []
    trainer.models.E.register_forward_hook(lambda _module, args, _out: batches.append(args[0].shape[0]))
    trainer.set_phase()
    trainer.step1_iteration()
    b = config.step1_batch
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
