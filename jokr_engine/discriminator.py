"""The keypoint discriminator D and the learned affine T of the domain-confusion term."""

from __future__ import annotations

import torch
from torch import nn

from .config import Config


class KeypointDiscriminator(nn.Module):
    """D: keypoints (B, K, 2) → logit that they come from clip A. The authors end with a sigmoid and use
    BCE; we return the logit and use BCE-with-logits (the same loss, stable under bf16 autocast)."""

    def __init__(self, config: Config):
        super().__init__()
        widths = [2 * config.num_keypoints, *config.disc_hidden]
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths, widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Linear(widths[-1], 1))
        self.model = nn.Sequential(*layers)

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        return self.model(keypoints.flatten(1)).squeeze(1)


class LearnedAffine(nn.Module):
    """T: a 2×3 matrix in model coordinates that maps B's keypoints into A's frame (identity + noise)."""

    def __init__(self, config: Config):
        super().__init__()
        init = torch.eye(2, 3) + torch.randn(2, 3) * config.affine_init_std if config.use_affine else torch.eye(2, 3)
        self.matrix = nn.Parameter(init, requires_grad=config.use_affine)

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        return apply_affine(self.matrix, keypoints)

    def inverse(self, keypoints: torch.Tensor) -> torch.Tensor:
        return apply_affine(invert_affine(self.matrix), keypoints)


def apply_affine(matrix: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """matrix (2, 3) or (B, 2, 3); keypoints (B, K, 2) → A·k + t, in fp32 even under bf16 autocast
    (bf16 would move keypoints by ~0.001, half the temporal jitter the paper reports)."""
    with torch.autocast(keypoints.device.type, enabled=False):
        matrix, keypoints = matrix.float(), keypoints.float()
        linear, shift = matrix[..., :2], matrix[..., 2]
        if matrix.dim() == 2:
            return keypoints @ linear.T + shift
        return torch.einsum("bij,bkj->bki", linear, keypoints) + shift[:, None, :]


def invert_affine(matrix: torch.Tensor) -> torch.Tensor:
    linear_inv = torch.linalg.inv(matrix[:, :2])
    return torch.cat([linear_inv, -(linear_inv @ matrix[:, 2:])], dim=1)
