"""Inference: keypoints of real frames, and frames generated from (possibly edited) keypoints.

AB (A's motion, B's look) = R_B(G_B(maps(T⁻¹ k_A))); BA = R_A(G_A(maps(T k_B))). Without the affine the
source's position, rotation and scale are kept (paper Fig. 9)."""

from __future__ import annotations

import numpy as np
import torch

from .job import JokrModels, PreparedClip
from .keypoint_detector import draw_keypoint_maps

SHAPE_CHANNEL = {"A": 0, "B": 1}


def masked_images(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 model frames → image in [-1, 1] with the background at 0 (mid-grey), mask in {0, 1}."""
    mask = (masks.float() / 255.0 > 0.5).float()
    return (images.float() / 127.5 - 1.0) * mask, mask


@torch.no_grad()
def extract_keypoints(models: JokrModels, clip: PreparedClip, device: torch.device,
                      indices: list[int] | None = None) -> torch.Tensor:
    """(N, K, 2) model coordinates. One frame per call, as the authors do at inference: E's batch
    statistics then come from that frame alone, so a frame's keypoints do not depend on its neighbours."""
    indices = range(clip.frame_count) if indices is None else indices
    out = []
    for i in indices:
        image, _ = masked_images(torch.from_numpy(clip.images[i : i + 1]).to(device),
                                 torch.from_numpy(clip.masks[i : i + 1]).to(device))
        out.append(models.E(image)["keypoints"].float())
    return torch.cat(out)


@torch.no_grad()
def generate(models: JokrModels, keypoints: torch.Tensor, look: str, image_size: int, heatmap_scale: float,
             refine: bool = True, batch: int = 16) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Keypoints (N, K, 2) already in `look`'s frame → (RGB in [-1, 1] or None, silhouette in [0, 1])."""
    rgb, silhouettes = [], []
    refiner = models.refiner(look)
    for chunk in keypoints.split(batch):
        maps = draw_keypoint_maps(chunk, image_size, heatmap_scale)
        silhouette = models.G(maps)[:, SHAPE_CHANNEL[look] : SHAPE_CHANNEL[look] + 1].float()
        silhouettes.append(silhouette)
        if refine:
            rgb.append(refiner(silhouette.mul(2).sub(1).expand(-1, 3, -1, -1)).float())
    return (torch.cat(rgb) if refine else None), torch.cat(silhouettes)


def to_look_frame(models: JokrModels, keypoints: torch.Tensor, driving: str, use_affine: bool) -> torch.Tensor:
    """Driving clip's keypoints → the frame of the other clip's look (T maps B into A's frame)."""
    if not use_affine:
        return keypoints
    return models.T.inverse(keypoints) if driving == "A" else models.T(keypoints)


MATTE_EDGE = 0.05
"""Half-width of the matte's ramp in silhouette units: values ≤ 0.5 − MATTE_EDGE are transparent, ≥ 0.5 +
MATTE_EDGE opaque. G's sigmoid is never exactly 0 or 1, so using it as alpha directly left a haze of
nearly transparent pixels over the whole plate and a ghosted, partly transparent animal."""


def matte(silhouette: torch.Tensor) -> torch.Tensor:
    """The generated silhouette (values in [0, 1]) → alpha in [0, 1]: solid inside the 0.5 contour (where
    the metrics and the silhouette loss put the animal's edge), zero outside, a narrow linear ramp between."""
    return ((silhouette.float() - 0.5) / (2 * MATTE_EDGE) + 0.5).clamp(0, 1)


def to_uint8_rgba(rgb: torch.Tensor, silhouette: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) in [-1, 1] and (N, 1, S, S) in [0, 1] → (N, S, S, 4) uint8 (alpha = `matte`)."""
    colour = ((rgb.clamp(-1, 1) + 1) * 127.5).round()
    alpha = (matte(silhouette) * 255).round()
    return torch.cat([colour, alpha], dim=1).permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()
