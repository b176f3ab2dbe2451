"""Known-answer tests for jokr_engine.metrics: every expected value is worked out by hand."""

import math

import pytest
import torch

from jokr_engine import metrics


def square_mask(size=32, top=5, left=5, side=10):
    m = torch.zeros(1, 1, size, size)
    m[..., top : top + side, left : left + side] = 1.0
    return m


def random_images(n=4, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g) * 2 - 1


# --- l1 / psnr ---------------------------------------------------------------------------------------


def test_identical_images_give_zero_l1_and_capped_psnr():
    x = random_images()
    assert metrics.l1(x, x.clone()) == 0.0
    assert metrics.psnr(x, x.clone()) == metrics.PSNR_CAP_DB == 100.0


def test_l1_is_in_unit_intensity():
    # -1 and 1 are black and white: the full range, so the error is 1 (not 2).
    assert metrics.l1(-torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4)) == pytest.approx(1.0)
    # 0 and 0.5 in [-1, 1] are 0.5 and 0.75 in [0, 1].
    assert metrics.l1(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)) == pytest.approx(0.25)


def test_psnr_known_value_and_mean_over_frames():
    pred = torch.zeros(2, 3, 4, 4)
    target = torch.zeros(2, 3, 4, 4)
    target[1] = 0.5  # frame 1: [0,1] error 0.25 everywhere -> MSE 1/16 -> 10·log10(16) dB
    expected = (100.0 + 10 * math.log10(16)) / 2
    assert metrics.psnr(pred, target) == pytest.approx(expected, rel=1e-6)
    # Black vs white: MSE 1 -> 0 dB.
    assert metrics.psnr(-torch.ones(1, 3, 2, 2), torch.ones(1, 3, 2, 2)) == pytest.approx(0.0, abs=1e-6)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.l1(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


# --- silhouette IoU ----------------------------------------------------------------------------------


def test_identical_and_empty_masks_give_iou_one():
    m = torch.cat([square_mask(), torch.zeros(1, 1, 32, 32)])
    assert metrics.silhouette_iou(m, m.clone()) == 1.0


def test_shifted_square_iou_by_hand():
    # 10x10 squares, one shifted right by 3: intersection 10·7 = 70, union 100 + 100 - 70 = 130.
    a = square_mask(left=5)
    b = square_mask(left=8)
    assert metrics.silhouette_iou(a, b) == pytest.approx(70 / 130)


def test_iou_means_over_frames_and_disjoint_is_zero():
    a = torch.cat([square_mask(left=0), square_mask(left=0)])
    b = torch.cat([square_mask(left=0), square_mask(left=20)])  # frame 1: disjoint
    assert metrics.silhouette_iou(a, b) == pytest.approx(0.5)


def test_iou_threshold_is_strict():
    soft = square_mask() * 0.5  # exactly at the threshold: outside
    assert metrics.silhouette_iou(soft, square_mask()) == 0.0
    assert metrics.silhouette_iou(soft, square_mask(), threshold=0.4) == 1.0


# --- keypoint jitter / cycle / spread ----------------------------------------------------------------


def test_constant_track_has_zero_jitter():
    kp = torch.tensor([[[0.1, -0.3], [0.5, 0.5]]]).repeat(6, 1, 1)
    assert metrics.keypoint_jitter(kp) == 0.0


def test_jitter_known_step_in_normalised_units():
    # Every keypoint moves (0.03, 0.04) per frame in model coordinates: 0.05 model units = 0.025 of the side.
    steps = torch.arange(5, dtype=torch.float32)[:, None, None] * torch.tensor([0.03, 0.04])
    kp = torch.zeros(5, 3, 2) + steps
    assert metrics.keypoint_jitter(kp) == pytest.approx(0.025)


def test_jitter_averages_over_keypoints():
    # Keypoint 0 still, keypoint 1 moves 0.2 model units a frame: mean 0.1 model units = 0.05.
    kp = torch.zeros(4, 2, 2)
    kp[:, 1, 0] = torch.tensor([-0.3, -0.1, 0.1, 0.3])
    assert metrics.keypoint_jitter(kp) == pytest.approx(0.05)


def test_jitter_needs_two_frames():
    with pytest.raises(ValueError):
        metrics.keypoint_jitter(torch.zeros(1, 3, 2))


def test_cycle_error_known_offset():
    driving = torch.rand(7, 5, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    offset = torch.tensor([0.06, -0.08])  # 0.1 model units = 0.05 of the side
    assert metrics.keypoint_cycle_error(driving, driving + offset) == pytest.approx(0.05, rel=1e-5)
    assert metrics.keypoint_cycle_error(driving, driving.clone()) == 0.0


def test_spread_known_values():
    # Opposite edges: 2 model units apart = one image side.
    assert metrics.keypoint_spread(torch.tensor([[[-1.0, 0.0], [1.0, 0.0]]])) == pytest.approx(1.0)
    # A 0.6-0.8-1.0 triangle: mean 0.8 model units = 0.4.
    tri = torch.tensor([[[0.0, 0.0], [0.6, 0.0], [0.0, 0.8]]])
    assert metrics.keypoint_spread(tri) == pytest.approx(0.4, rel=1e-5)
    # Collapsed keypoints have no spread.
    assert metrics.keypoint_spread(torch.full((3, 6, 2), 0.2)) == 0.0


# --- keypoint mask hit rate ---------------------------------------------------------------------------


def test_hit_rate_uses_align_corners_and_x_first():
    # 9x9 mask with only pixel (row 2, col 6) set; with align_corners=True that is u = -1 + 6·2/8 = 0.5,
    # v = -1 + 2·2/8 = -0.5.
    mask = torch.zeros(1, 1, 9, 9)
    mask[0, 0, 2, 6] = 1.0
    on = torch.tensor([[[0.5, -0.5]]])
    swapped = torch.tensor([[[-0.5, 0.5]]])  # (row 6, col 2) if x and y were exchanged
    neighbour = torch.tensor([[[0.25, -0.5]]])  # col 5: samples 0
    assert metrics.keypoint_mask_hit_rate(on, mask) == 1.0
    assert metrics.keypoint_mask_hit_rate(swapped, mask) == 0.0
    assert metrics.keypoint_mask_hit_rate(neighbour, mask) == 0.0


def test_hit_rate_fraction_and_outside_image_misses():
    mask = torch.zeros(2, 1, 9, 9)
    mask[:, :, :, :5] = 1.0  # left half: columns 0..4, u <= 0
    kp = torch.tensor([[[-1.0, 0.0], [-0.5, 0.9]], [[1.0, 0.0], [-1.5, 0.0]]])  # 2 inside, 2 outside
    assert metrics.keypoint_mask_hit_rate(kp, mask) == pytest.approx(0.5)


# --- nearest silhouette IoU ---------------------------------------------------------------------------


def test_nearest_iou_permutation_is_one():
    real = torch.cat([square_mask(left=i * 2, top=i) for i in range(10)])
    generated = real[torch.randperm(10, generator=torch.Generator().manual_seed(3))]
    mean, per_frame = metrics.nearest_silhouette_iou(generated, real, chunk=3)  # chunk not dividing 10
    assert mean == 1.0
    assert per_frame.shape == (10,)
    assert torch.equal(per_frame, torch.ones(10))


def test_nearest_iou_by_hand():
    real = torch.cat([square_mask(left=5), square_mask(left=8)])
    # Shifted by 2 from the first real square: 80/120; shifted by 1 from the second: 90/110 (the best).
    # An empty silhouette matches no real (non-empty) one: 0.
    generated = torch.cat([square_mask(left=7), torch.zeros(1, 1, 32, 32)])
    mean, per_frame = metrics.nearest_silhouette_iou(generated, real)
    assert per_frame.tolist() == pytest.approx([90 / 110, 0.0])
    assert mean == pytest.approx(45 / 110)


def test_nearest_iou_matches_pairwise_silhouette_iou():
    g = torch.Generator().manual_seed(5)
    generated = torch.rand(7, 1, 6, 6, generator=g)
    real = torch.rand(5, 1, 6, 6, generator=g)
    expected = [max(metrics.silhouette_iou(generated[n : n + 1], real[m : m + 1]) for m in range(5)) for n in range(7)]
    _, per_frame = metrics.nearest_silhouette_iou(generated, real, chunk=2)
    assert per_frame.tolist() == pytest.approx(expected)


def test_nearest_iou_refuses_size_mismatch():
    with pytest.raises(ValueError, match="sizes differ"):
        metrics.nearest_silhouette_iou(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_metrics_on_cuda_match_cpu():
    g = torch.Generator().manual_seed(7)
    generated = torch.rand(70, 1, 64, 64, generator=g)
    real = torch.rand(50, 1, 64, 64, generator=g)
    cpu_mean, cpu_frames = metrics.nearest_silhouette_iou(generated, real, chunk=16)
    gpu_mean, gpu_frames = metrics.nearest_silhouette_iou(generated.cuda(), real.cuda(), chunk=16)
    assert gpu_frames.device.type == "cuda"
    assert gpu_mean == pytest.approx(cpu_mean, rel=1e-6)
    assert torch.allclose(gpu_frames.cpu(), cpu_frames)
    kp = torch.rand(70, 5, 2, generator=g) * 2 - 1
    assert metrics.keypoint_mask_hit_rate(kp.cuda(), generated.cuda()) == pytest.approx(
        metrics.keypoint_mask_hit_rate(kp, generated)
    )
    assert metrics.keypoint_jitter(kp.cuda()) == pytest.approx(metrics.keypoint_jitter(kp), rel=1e-5)
    images = torch.rand(4, 3, 16, 16, generator=g) * 2 - 1
    assert metrics.psnr(images.cuda(), images.cuda() * 0.9) == pytest.approx(
        metrics.psnr(images, images * 0.9), rel=1e-5
    )
