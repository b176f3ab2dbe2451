"""The perceptual term of step 2.

`lpips` is LPIPS-VGG through the lpips package's own loading path: torchvision's VGG16 backbone from
the torch hub cache (`$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`) and lpips' linear layers shipped
inside the package. Nothing is downloaded: when the backbone file is missing we stop at start-up and
say which file to put where. `ssim` (kornia, no weights) and `none` are explicit choices, never a
fallback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .errors import JokrError

VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/" + VGG16_FILE

PerceptualLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def vgg16_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


def build_perceptual_loss(kind: str, device: torch.device) -> PerceptualLoss | None:
    """A loss on images in [-1, 1] (B, 3, H, W), or None for `none`."""
    if kind == "none":
        return None
    if kind == "ssim":
        from kornia.losses import ssim_loss

        def ssim(image, target):
            return ssim_loss((image.float() + 1) / 2, (target.float() + 1) / 2, window_size=11)

        return ssim
    if kind == "lpips":
        return _lpips_vgg(device)
    raise JokrError(f"unknown perceptual loss {kind!r}", "use --set perceptual=lpips, ssim or none")


def _lpips_vgg(device: torch.device) -> PerceptualLoss:
    weights = vgg16_weights_path()
    if not weights.is_file():
        raise JokrError(
            f"LPIPS needs the VGG16 backbone weights {VGG16_FILE}, not found at {weights}",
            f"download {VGG16_URL} and put it at that path (or set TORCH_HOME), "
            "or choose the download-free loss with --set perceptual=ssim",
            code="missing_weights",
        )
    try:
        import lpips  # imported here: the engine runs without lpips/torchvision unless LPIPS is chosen
    except (ImportError, RuntimeError) as error:
        raise JokrError(
            f"LPIPS cannot be loaded: {str(error).splitlines()[0]}",
            "install lpips with a torchvision that matches your torch (README, 'Using a GPU'), "
            "or choose --set perceptual=ssim",
            code="missing_weights",
        ) from None
    model = lpips.LPIPS(net="vgg", pretrained=True, verbose=False).to(device).eval()
    model.requires_grad_(False)

    def lpips_vgg(image, target):
        return model(image.float(), target.float()).mean()

    return lpips_vgg
