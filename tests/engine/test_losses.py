"""Every loss against a value computed by hand on a tiny input."""

import math

import pytest
import torch

from jokr_engine.augment import random_theta, warp_by_theta
from jokr_engine.config import preset_config
from jokr_engine.discriminator import apply_affine
from jokr_engine.keypoint_detector import KeypointDetector, draw_keypoint_maps
from jokr_engine.losses import (
    containment_loss,
    discriminator_loss,
    domain_confusion_loss,
    equivariance_loss,
    reconstruction_l1,
    separation_loss,
    silhouette_loss,
    temporal_loss,
)


def test_silhouette_is_mean_squared_error():
    generated = torch.tensor([0.2, 0.8]).view(1, 1, 1, 2)
    mask = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    assert silhouette_loss(generated, mask).item() == pytest.approx((0.2**2 + 0.2**2) / 2)


def test_equivariance_maps_warped_keypoints_back_with_theta():
    keypoints = torch.tensor([[[0.1, 0.2]]])
    warped = torch.tensor([[[0.3, 0.4]]])
    theta = torch.tensor([[[2.0, 0.0, 0.1], [0.0, 1.0, -0.1]]])
    # θ·(0.3, 0.4) = (0.7, 0.3); |0.7 − 0.1| = 0.6, |0.3 − 0.2| = 0.1; mean 0.35
    assert equivariance_loss(keypoints, warped, theta).item() == pytest.approx(0.35)


def test_separation_hinges_on_squared_distance_and_skips_self_pairs():
    keypoints = torch.tensor([[[0.0, 0.0], [0.1, 0.0], [0.9, 0.0]]])
    # only the pair (0, 1) is closer than δ: δ − 0.01 = 0.11, counted for (0,1) and (1,0); / 2K = 6
    assert separation_loss(keypoints, delta=0.12).item() == pytest.approx(2 * 0.11 / 6)


def test_containment_is_negative_log_of_mass_inside_the_mask():
    heatmaps = torch.tensor([[0.5, 0.25], [0.25, 0.0]]).view(1, 1, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    assert containment_loss(heatmaps, mask).item() == pytest.approx(-math.log(0.5), rel=1e-6)


def test_temporal_is_mean_euclidean_displacement():
    now = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    later = torch.tensor([[[0.3, 0.4], [1.0, 1.0]]])
    assert temporal_loss(now, later).item() == pytest.approx((0.5 + 0.0) / 2, abs=1e-4)


def test_domain_confusion_labels_both_domains_as_a():
    undecided = torch.zeros(3)
    assert domain_confusion_loss(undecided, undecided).item() == pytest.approx(2 * math.log(2))


def test_discriminator_labels_a_one_and_b_zero():
    a_logit = torch.tensor([math.log(3.0)])  # D says 0.75 "A"
    b_logit = torch.tensor([math.log(1 / 3)])  # D says 0.25 "A"
    assert discriminator_loss(a_logit, b_logit).item() == pytest.approx(-2 * math.log(0.75))
    assert discriminator_loss(b_logit, a_logit).item() == pytest.approx(-2 * math.log(0.25))


def test_reconstruction_l1():
    assert reconstruction_l1(torch.tensor([0.5, -0.5]), torch.tensor([0.0, 0.0])).item() == pytest.approx(0.5)


def test_keypoint_maps_are_l1_blobs_peaking_at_one():
    size, scale = 5, 0.04
    keypoint = torch.tensor([[[0.0, -0.5]]])  # grid column 2, row 1 of a 5×5 grid in [-1, 1]
    maps = draw_keypoint_maps(keypoint, size, scale)[0, 0]
    assert maps[1, 2].item() == pytest.approx(1.0)
    assert maps[1, 3].item() == pytest.approx(math.exp(-0.5 / scale))  # one column is 0.5 away
    assert maps[2, 3].item() == pytest.approx(math.exp(-1.0 / scale))


def test_heatmap_pixels_map_to_the_image_pixels_they_see():
    detector = KeypointDetector(preset_config("paper"))
    a, b = detector.heatmap_to_model(256, 58)
    # heatmap pixel 0 sees input pixel 3 (7×7 head, no padding) = image pixel (3 + 0.5)·4 − 0.5 = 13.5
    assert a * -1 + b == pytest.approx(13.5 / 255 * 2 - 1)
    # heatmap pixel 57 sees input pixel 60 = image pixel 241.5
    assert a * 1 + b == pytest.approx(241.5 / 255 * 2 - 1)


def test_containment_mask_is_thresholded_at_one_half():
    detector = KeypointDetector(preset_config("tiny"))
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:44, 20:44] = 1.0
    sampled = detector.mask_at_heatmap(mask)
    assert set(sampled.unique().tolist()) == {0.0, 1.0}
    assert sampled[..., sampled.shape[-2] // 2, sampled.shape[-1] // 2].item() == 1.0


def test_geometry_stays_fp32_under_bf16_autocast():
    """The equivariance warp and the affine on keypoints must not lose precision to bf16 autocast."""
    torch.manual_seed(0)
    theta = random_theta(2, 0.1, "cpu")
    keypoints = torch.rand(2, 14, 2) * 2 - 1
    image = torch.rand(2, 3, 32, 32)
    exact_points, exact_image = apply_affine(theta, keypoints), warp_by_theta(image, theta)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        points, warped = apply_affine(theta, keypoints), warp_by_theta(image, theta)
    assert points.dtype == torch.float32 and warped.dtype == torch.float32
    assert torch.allclose(points, exact_points, atol=1e-6)
    assert torch.allclose(warped, exact_image, atol=1e-5)


def test_keypoint_softmax_divides_by_the_temperature():
    """E's heatmaps are softmax(logits / 0.1), as the authors': pinned because kornia's meaning of
    `temperature` is what makes them sharp."""
    from kornia.geometry.subpix import spatial_softmax2d

    detector = KeypointDetector(preset_config("paper"))
    logits = torch.randn(2, 3, 5, 5)
    expected = torch.softmax(logits.flatten(2) / 0.1, dim=-1).view_as(logits)
    assert torch.allclose(spatial_softmax2d(logits, temperature=detector.temperature), expected, atol=1e-6)
