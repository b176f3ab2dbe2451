"""The JOKR loss terms (paper Sec. 3, authors' code for the exact forms). Each returns a scalar tensor;
the weights live in Config and are applied by the training loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .discriminator import apply_affine

EPS = 1e-8


def silhouette_loss(generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE between G's silhouette and the real mask, both (B, 1, S, S) in [0, 1]."""
    return F.mse_loss(generated.float(), mask.float())


def equivariance_loss(keypoints: torch.Tensor, warped_keypoints: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Mean L1 between θ(E(warp_θ(x))) and E(x). warp_θ(x)(p) = x(θ·p), so a point k of x appears at
    θ⁻¹k in the warped image and θ maps it back."""
    return (apply_affine(theta, warped_keypoints) - keypoints).abs().mean()


def separation_loss(keypoints: torch.Tensor, delta: float) -> torch.Tensor:
    """(1/2K) Σ_{l≠r} max(0, δ − ‖k_l − k_r‖²), averaged over the batch: the authors' normalisation.
    Unlike their code it covers every keypoint, not the first 10, and skips the l = r pairs, which only
    add the constant δ·K/2K (docs/METHOD.md)."""
    k = keypoints.shape[1]
    squared = (keypoints[:, :, None, :] - keypoints[:, None, :, :]).pow(2).sum(-1)
    hinge = F.relu(delta - squared) * (1 - torch.eye(k, device=keypoints.device, dtype=squared.dtype))
    return hinge.sum(dim=(1, 2)).mean() / (2 * k)


def containment_loss(heatmaps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """−log of each keypoint heatmap's mass inside the silhouette, averaged over keypoints and batch.
    heatmaps (B, K, h, w) sum to 1; mask (B, 1, h, w) in [0, 1] sampled at the heatmap pixels."""
    mass = (heatmaps * mask).sum(dim=(2, 3))
    return -torch.log(mass + EPS).mean()


def temporal_loss(keypoints_t: torch.Tensor, keypoints_next: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance of each keypoint between frames t and t+1."""
    return (keypoints_t - keypoints_next).pow(2).sum(-1).add(EPS).sqrt().mean()


def domain_confusion_loss(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """For E, G and T: BCE(D(k_A), 1) + BCE(D(T(k_B)), 1), as coded by the authors (paper eq. 4)."""
    ones = torch.ones_like(logits_a)
    return (F.binary_cross_entropy_with_logits(logits_a, ones)
            + F.binary_cross_entropy_with_logits(logits_b, torch.ones_like(logits_b)))


def discriminator_loss(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """For D: A's keypoints labelled 1, B's (through T) labelled 0."""
    return (F.binary_cross_entropy_with_logits(logits_a, torch.ones_like(logits_a))
            + F.binary_cross_entropy_with_logits(logits_b, torch.zeros_like(logits_b)))


def reconstruction_l1(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (image.float() - target.float()).abs().mean()
