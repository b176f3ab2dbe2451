"""Random affine augmentation on the device (kornia) and the random warps of the equivariance term."""

from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.geometry.conversions import denormalize_homography
from kornia.geometry.transform import warp_affine


class PairAugment(torch.nn.Module):
    """The authors' augmentation: with p = 0.6 rotate ±20°, translate ±10 %, shear x and y ±15°;
    otherwise scale x and y independently by 0.8–1.2, translate ±10 %, shear x and y ±20°, rotate ±20°.
    One draw per sample, applied identically to every channel given (both frames and both masks are
    stacked as channels). Always computed in fp32: under bf16 autocast the warp's matrix products would
    move pixels by up to a pixel."""

    def __init__(self):
        super().__init__()
        self.rigid = K.RandomAffine(degrees=20.0, translate=(0.1, 0.1), shear=(-15.0, 15.0, -15.0, 15.0), p=1.0)
        self.stretch = K.RandomAffine(degrees=20.0, translate=(0.1, 0.1), scale=(0.8, 1.2, 0.8, 1.2),
                                      shear=(-20.0, 20.0, -20.0, 20.0), p=1.0)

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        # Both branches run on the whole batch and a per-sample choice picks one: no host sync, and the
        # random stream consumed is the same every iteration (exact resume).
        with torch.autocast(stacked.device.type, enabled=False):
            stacked = stacked.float()
            use_rigid = torch.rand(stacked.shape[0], 1, 1, 1, device=stacked.device) < 0.6
            return torch.where(use_rigid, self.rigid(stacked), self.stretch(stacked))


def random_theta(batch: int, std: float, device, dtype=torch.float32) -> torch.Tensor:
    """θ = I + N(0, std) per sample (B, 2, 3), as in the authors' equivariance term (no thin-plate part)."""
    return torch.eye(2, 3, device=device, dtype=dtype) + torch.randn(batch, 2, 3, device=device, dtype=dtype) * std


def warp_by_theta(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Image whose pixel at model coordinate p is image(θ·p) (zeros outside), computed in fp32."""
    size = image.shape[-2:]
    with torch.autocast(image.device.type, enabled=False):
        theta = theta.float()
        full = torch.cat([theta, theta.new_tensor([0.0, 0.0, 1.0]).expand(theta.shape[0], 1, 3)], dim=1)
        # kornia's matrices map source pixels to destination pixels, so the warp takes θ⁻¹. inv_ex, not
        # inv: inv checks for singular input by reading a flag back, a GPU sync; θ = I + noise is invertible.
        src_to_dst = denormalize_homography(torch.linalg.inv_ex(full).inverse, size, size)
        return warp_affine(image.float(), src_to_dst[:, :2], dsize=(size[0], size[1]), align_corners=True)
