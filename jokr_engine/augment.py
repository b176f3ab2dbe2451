"""Random affine augmentation on the device (kornia) and the random warps of the equivariance term."""

from __future__ import annotations

import math

import torch
from kornia.geometry.conversions import denormalize_homography
from kornia.geometry.transform import get_affine_matrix2d, warp_affine


class PairAugment(torch.nn.Module):
    """The authors' augmentation: with p = 0.6 rotate ±20°, translate ±10 %, shear x and y ±15°;
    otherwise scale x and y independently by 0.8–1.2, translate ±10 %, shear x and y ±20°, rotate ±20°.
    One draw per sample, applied identically to every channel given (both frames and both masks are
    stacked as channels). Always computed in fp32: under bf16 autocast the warp's matrix products would
    move pixels by up to a pixel.

    The parameters are drawn on the input's device and applied as kornia's RandomAffine applies them.
    RandomAffine itself samples on the CPU and copies its parameters to the device at every call; moved
    to a GPU it samples there but casts every parameter back to the CPU (its ranges are Python numbers,
    so its parameters go to the default device), a GPU sync each."""

    def draw(self, batch: int, height: int, width: int, device) -> dict[str, torch.Tensor]:
        """One draw per sample, in RandomAffine's parameter names and units (pixels, degrees)."""
        u = torch.rand(batch, 8, device=device) * 2 - 1  # uniform in [-1, 1): 7 parameters and the branch
        rigid = u[:, 7:] < 0.2  # (u + 1) / 2 < 0.6
        shear = torch.where(rigid, 15.0, 20.0) * u[:, 5:7]
        center_x = torch.full((batch,), (width - 1) / 2, device=device)
        center_y = torch.full((batch,), (height - 1) / 2, device=device)
        return {
            "angle": 20.0 * u[:, 0],
            "translations": torch.stack([0.1 * width * u[:, 1], 0.1 * height * u[:, 2]], dim=1),
            "scale": torch.where(rigid, 1.0, 1.0 + 0.2 * u[:, 3:5]),
            "shear_x": shear[:, 0],
            "shear_y": shear[:, 1],
            "center": torch.stack([center_x, center_y], dim=1),
            "rigid": rigid[:, 0],
        }

    @staticmethod
    def warp(stacked: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """RandomAffine's transform with these parameters: bilinear, zeros outside."""
        radians = math.pi / 180.0
        matrix = get_affine_matrix2d(params["translations"], params["center"], params["scale"], params["angle"],
                                     params["shear_x"] * radians, params["shear_y"] * radians)
        return warp_affine(stacked, matrix[:, :2], tuple(stacked.shape[-2:]), align_corners=False)

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        # Both branches are one draw with per-sample ranges: one warp, no host sync, and the random
        # stream consumed is the same every iteration (exact resume).
        with torch.autocast(stacked.device.type, enabled=False):
            stacked = stacked.float()
            return self.warp(stacked, self.draw(stacked.shape[0], *stacked.shape[-2:], stacked.device))


def random_theta(batch: int, std: float, device, dtype=torch.float32) -> torch.Tensor:
    """θ = I + N(0, std) per sample (B, 2, 3), as in the authors' equivariance term (no thin-plate part)."""
    return torch.eye(2, 3, device=device, dtype=dtype) + torch.randn(batch, 2, 3, device=device, dtype=dtype) * std


def warp_by_theta(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Image whose pixel at model coordinate p is image(θ·p) (zeros outside), computed in fp32."""
    size = image.shape[-2:]
    with torch.autocast(image.device.type, enabled=False):
        theta = theta.float()
        # The bottom row (0, 0, 1) is made on the device: new_tensor([0, 0, 1]) would be a blocking
        # host-to-device copy at every call.
        bottom = torch.eye(3, device=theta.device)[2:].expand(theta.shape[0], 1, 3)
        full = torch.cat([theta, bottom], dim=1)
        # kornia's matrices map source pixels to destination pixels, so the warp takes θ⁻¹. inv_ex, not
        # inv: inv checks for singular input by reading a flag back, a GPU sync; θ = I + noise is invertible.
        src_to_dst = denormalize_homography(torch.linalg.inv_ex(full).inverse, size, size)
        return warp_affine(image.float(), src_to_dst[:, :2], dsize=(size[0], size[1]), align_corners=True)
