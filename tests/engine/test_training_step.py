"""One step-1 iteration and the augmentation, checked against the authors' code (METHOD-NOTES.md)."""

import io

import kornia.augmentation as K
import torch

from jokr_engine.augment import PairAugment
from jokr_engine.bench import count_work, synthetic_clip
from jokr_engine.config import preset_config
from jokr_engine.events import Emitter
from jokr_engine.job import Job
from jokr_engine.train import Trainer

from .host_reads import HostReads

# Where kornia makes tensors from Python numbers that stay on the host (its Gaussian blur checks sigma
# there): no copy to a GPU.
HOST_SIDE = ("kornia/filters/gaussian.py",)


def _tiny_trainer(folder, *settings) -> Trainer:
    config = preset_config("tiny").override(list(settings))
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


def test_augmentation_ranges_are_the_authors():
    torch.manual_seed(0)
    size = 64
    params = PairAugment().draw(4000, size, size, "cpu")
    rigid = params["rigid"]
    assert 0.57 < rigid.float().mean() < 0.63  # the rigid branch with p = 0.6
    for branch, shear in ((rigid, 15.0), (~rigid, 20.0)):
        for axis in ("shear_x", "shear_y"):  # both axes, as imgaug's shear={"x": …, "y": …}
            values = params[axis][branch].abs()
            assert values.max() <= shear and values.max() > 0.9 * shear
    assert params["angle"].abs().max() <= 20 and params["angle"].abs().max() > 18
    translations = params["translations"].abs() / size  # both branches translate, ±10 % of the image
    assert translations.max() <= 0.1 + 1e-6 and translations.max() > 0.09
    assert torch.all(params["scale"][rigid] == 1)
    stretch = params["scale"][~rigid]  # x and y scaled independently by 0.8–1.2
    assert stretch.min() >= 0.8 and stretch.max() <= 1.2 and (stretch[:, 0] - stretch[:, 1]).abs().max() > 0.2


def test_augmentation_warps_as_kornias_random_affine():
    """The parameters are drawn here, on the device, but applied exactly as kornia's RandomAffine
    applies them (a non-square image, to tell x from y)."""
    torch.manual_seed(0)
    augment = PairAugment()
    image = torch.rand(64, 3, 24, 20)
    params = augment.draw(64, 24, 20, "cpu")
    kornia_params = {k: v for k, v in params.items() if k != "rigid"}
    ours = augment.warp(image, params)
    for rigid, settings in ((True, {"shear": (-15.0, 15.0, -15.0, 15.0)}),
                            (False, {"scale": (0.8, 1.2, 0.8, 1.2), "shear": (-20.0, 20.0, -20.0, 20.0)})):
        kornia = K.RandomAffine(degrees=20.0, translate=(0.1, 0.1), p=1.0, **settings)(image, params=kornia_params)
        branch = params["rigid"] == rigid
        assert torch.equal(ours[branch], kornia[branch])


def test_augmentation_draws_and_warps_on_the_device():
    """kornia's RandomAffine samples on the CPU and copies its parameters to the device at every call
    (moved to the GPU, it casts them back to the CPU instead). Here, on the meta device, a copy from
    the host shows up as an upload and a read of a value raises."""
    augment = PairAugment()
    with HostReads() as reads:
        out = augment.warp(torch.empty(4, 8, 64, 64, device="meta"), augment.draw(4, 64, 64, "meta"))
    assert out.device.type == "meta" and out.shape == (4, 8, 64, 64)
    assert reads.uploads == [] and reads.syncs == [] and reads.scalars == 0


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


def test_training_iterations_read_nothing_back_and_copy_nothing_to_the_device(tmp_path):
    """torch.linalg.inv reads its singular-matrix flag back (a GPU sync); the equivariance warp, twice
    per step-1 iteration, takes inv_ex. Boolean indexing (nonzero) would sync the same way. A tensor
    made from Python data on the device (new_tensor, as_tensor(0.0)) is a blocking host-to-device copy.
    Step 2 runs without the perceptual term: kornia's SSIM makes its window from a Python number on the
    device at every call (kornia/filters/kernels.py), outside the engine."""
    trainer = _tiny_trainer(tmp_path, "perceptual=none")
    for step, iteration in ((1, trainer.step1_iteration), (2, trainer.step2_iteration)):
        trainer.step = step
        trainer.set_phase()
        with HostReads() as reads:
            iteration()
        assert reads.syncs == [], step
        assert [u for u in reads.uploads if not any(place in u for place in HOST_SIDE)] == [], step



def test_cosine_schedule_decays_each_steps_rate_to_zero_and_constant_keeps_it(tmp_path):
    def rates(trainer, iterations):
        trainer.set_learning_rate(iterations)
        return [g["lr"] for opt in trainer.optimizers().values() for g in opt.param_groups]

    cosine = _tiny_trainer(tmp_path / "cosine", "lr_schedule=cosine", "lr=1e-3")
    assert rates(cosine, 100) == [1e-3, 1e-3, 1e-3]
    cosine.iteration = 50
    assert rates(cosine, 100)[:2] == [0.5e-3, 0.5e-3]  # step 1's optimisers only
    cosine.step, cosine.iteration = 2, 99
    shape, disc, texture = rates(cosine, 100)
    assert texture < 1e-6 and shape == disc == 0.5e-3
    constant = _tiny_trainer(tmp_path / "constant", "lr=1e-3")
    constant.iteration = 50
    assert rates(constant, 100) == [1e-3, 1e-3, 1e-3]
