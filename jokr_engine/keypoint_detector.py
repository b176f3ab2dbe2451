"""Keypoint extractor E (First Order Motion Model's hourglass + spatial softmax) and the keypoint maps
that are drawn for the generator.

Keypoints are returned in model coordinates (docs/FORMATS.md): the expectation is taken on the
grid of the image positions that the heatmap pixels look at, so a keypoint sits on the image content
it describes. (The authors take it on a [-1, 1] grid of the heatmap itself, which puts ±1 at about
±0.9 of the image; see docs/METHOD.md.)"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from kornia.geometry import create_meshgrid
from kornia.geometry.subpix import spatial_expectation2d, spatial_softmax2d
from kornia.geometry.transform import rescale
from torch import nn

from .config import Config


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    # The authors keep BatchNorm in training mode everywhere, inference included: statistics always
    # come from the batch at hand. Without running statistics the module does exactly that in both modes.
    return nn.BatchNorm2d(channels, affine=True, track_running_stats=False)


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = _batch_norm(out_channels)

    def forward(self, x):
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class UpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = _batch_norm(out_channels)

    def forward(self, x):
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))))


class Hourglass(nn.Module):
    """U-Net with `blocks` down and up blocks; the output keeps the input concatenated (FOMM)."""

    def __init__(self, in_channels: int, base: int, max_channels: int, blocks: int):
        super().__init__()

        def width(level: int) -> int:
            return min(max_channels, base * 2**level)

        self.down = nn.ModuleList(
            DownBlock(in_channels if i == 0 else width(i), width(i + 1)) for i in range(blocks)
        )
        self.up = nn.ModuleList(
            UpBlock((1 if i == blocks - 1 else 2) * width(i + 1), width(i)) for i in reversed(range(blocks))
        )
        self.out_channels = base + in_channels

    def forward(self, x):
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class KeypointDetector(nn.Module):
    """E: image in [-1, 1] (B, 3, S, S) → keypoints (B, K, 2) in model coordinates and the
    softmax heatmaps (B, K, h, w) they are the expectations of."""

    def __init__(self, config: Config):
        super().__init__()
        self.scale = config.kp_input_scale
        # A Python number: kornia checks a tensor temperature with bool(), a GPU-to-host sync on every call.
        self.temperature = config.kp_temperature
        self.head_kernel = config.kp_head_kernel
        self.predictor = Hourglass(3, config.kp_base_channels, config.kp_max_channels, config.kp_blocks)
        self.head = nn.Conv2d(self.predictor.out_channels, config.num_keypoints, self.head_kernel)

    def heatmap_to_model(self, image_size: int, heatmap_size: int) -> tuple[float, float]:
        """(a, b) with u = a·g + b, where g ∈ [-1, 1] is kornia's normalised heatmap grid and u the model
        coordinate of the image point that heatmap pixel looks at (head without padding: pixel i sees the
        input pixel i + (k−1)/2; the antialiased rescale maps input pixel j to image pixel (j+0.5)/scale−0.5)."""
        f = 1.0 / self.scale
        c = (self.head_kernel - 1) / 2

        def to_u(i: float) -> float:
            return ((i + c + 0.5) * f - 0.5) / (image_size - 1) * 2 - 1

        first, last = to_u(0), to_u(heatmap_size - 1)
        return (last - first) / 2, (last + first) / 2

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        small = image if self.scale == 1 else rescale(image, self.scale, antialias=True)
        features = self.predictor(small)
        # The head and the soft-argmax run in fp32 even under bf16 autocast: the softmax divides the logits
        # by 0.1, and bf16 logits moved keypoints by more than the paper's whole jitter. (Meta tensors, in
        # the tests, have no autocast.)
        device = image.device.type
        fp32 = (torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device)
                else contextlib.nullcontext())
        with fp32:
            heatmaps = spatial_softmax2d(self.head(features.float()), temperature=self.temperature)
            a, b = self.heatmap_to_model(image.shape[-1], heatmaps.shape[-1])
            keypoints = spatial_expectation2d(heatmaps, normalized_coordinates=True) * a + b
        return {"keypoints": keypoints, "heatmaps": heatmaps}

    def mask_at_heatmap(self, mask: torch.Tensor) -> torch.Tensor:
        """The silhouette sampled where the heatmap pixels look, thresholded at 0.5 as the authors do:
        (B, 1, S, S) → (B, 1, h, w) of 0 / 1."""
        small = mask if self.scale == 1 else rescale(mask, self.scale, antialias=True)
        c = (self.head_kernel - 1) // 2
        return (small[..., c : small.shape[-2] - c, c : small.shape[-1] - c] > 0.5).to(small.dtype)


def draw_keypoint_maps(keypoints: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    """The keypoints re-drawn as maps for the generator: exp(−(|dx|+|dy|)/scale) on the S×S model grid
    (the authors' L1 blob), divided by each sample's maximum. (B, K, 2) → (B, K, S, S)."""
    grid = create_meshgrid(size, size, normalized_coordinates=True, device=keypoints.device)
    grid = grid.to(keypoints.dtype).view(1, 1, size, size, 2)
    distance = (grid - keypoints[:, :, None, None, :]).abs().sum(-1)
    maps = torch.exp(-distance / scale)
    peak = maps.amax(dim=(1, 2, 3), keepdim=True)
    return maps / peak
