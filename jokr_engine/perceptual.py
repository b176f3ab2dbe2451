"""The perceptual term of step 2.

`lpips` is LPIPS-VGG (linear heads v0.1) built from torch.nn alone (`lpips_net.py`), with the weights
`jokr-engine setup` verified and cached, or a user's own torchvision `vgg16-397923af.pth` (see
`lpips_net.py` for the order). Nothing is downloaded at training time: when the weights are missing we
stop at start-up and say to run `jokr-engine setup`. `ssim` (kornia, no weights) and `none` are explicit
choices, never a fallback. `build_lpips("alex" | "vgg", device)` gives the evaluator the network itself."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .errors import JokrError
from .lpips_net import build_lpips

__all__ = ["LpipsLoss", "PerceptualLoss", "build_lpips", "build_perceptual_loss"]

PerceptualLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def build_perceptual_loss(kind: str, device: torch.device,
                          prepare: Callable[[nn.Module], nn.Module] | None = None) -> PerceptualLoss | None:
    """A loss on images in [-1, 1] (B, 3, H, W), or None for `none`. `prepare` is applied to the LPIPS
    network (the trainer's layout and compilation)."""
    if kind == "none":
        return None
    if kind == "ssim":
        from kornia.losses import ssim_loss

        def ssim(image, target):
            return ssim_loss((image.float() + 1) / 2, (target.float() + 1) / 2, window_size=11)

        return ssim
    if kind == "lpips":
        network = build_lpips("vgg", device)
        return LpipsLoss(prepare(network) if prepare is not None else network)
    raise JokrError(f"unknown perceptual loss {kind!r}", "use --set perceptual=lpips, ssim or none")


class LpipsLoss:
    """The batch mean of an LPIPS network's distances, as step 2's loss; `network` is the LPIPS module."""

    def __init__(self, network: nn.Module):
        self.network = network

    def __call__(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.network(image.float(), target.float()).mean()

