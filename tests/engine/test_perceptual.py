"""LPIPS-VGG offline: a clear error naming the missing weights and `jokr-engine setup`, and a working loss
from a user's own torchvision file plus the lpips package's heads (random weights here, written by the
test; the real weights and their values are tests/engine/test_lpips_weights.py)."""

import pytest
import torch

from jokr_engine.errors import JokrError
from jokr_engine.lpips_net import LPIPS, TORCHVISION_FILES, torchvision_weights_path
from jokr_engine.perceptual import build_perceptual_loss

from .host_reads import HostReads

VGG16_FILE = TORCHVISION_FILES["vgg"]


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # make torch.hub re-read TORCH_HOME
    return tmp_path


def put_lpips_package(root, monkeypatch, heads: dict | None = None, net: str = "vgg"):
    """A stand-in for the installed lpips package: its shipped heads (lpips' key layout) and an
    __init__ that fails, so a test also proves the engine never imports it."""
    package = root / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the engine must not import lpips')\n")
    if heads is not None:
        torch.save({f"{key.split('.')[0]}.model.1.weight": value for key, value in heads.items()},
                   package / "weights" / "v0.1" / f"{net}.pth")
    monkeypatch.syspath_prepend(str(root))


def test_missing_weights_name_the_files_and_setup(torch_home):
    with pytest.raises(JokrError) as caught:
        build_perceptual_loss("lpips", torch.device("cpu"))
    error = caught.value
    assert error.code == "missing_weights"
    assert "lpips_vgg.safetensors" in error.message and VGG16_FILE in error.message
    assert str(torch_home / "hub" / "checkpoints") in error.message
    assert "jokr-engine setup" in error.hint and "perceptual=ssim" in error.hint


def test_a_torchvision_file_without_lpips_heads_says_which_part_is_missing(torch_home, tmp_path, monkeypatch):
    path = torchvision_weights_path("vgg")
    path.parent.mkdir(parents=True)
    torch.save({k: v for k, v in LPIPS("vgg").state_dict().items() if k.startswith("features.")}, path)
    put_lpips_package(tmp_path / "site", monkeypatch, heads=None)
    with pytest.raises(JokrError) as caught:
        build_perceptual_loss("lpips", torch.device("cpu"))
    assert caught.value.code == "missing_weights" and "heads" in caught.value.message
    assert "jokr-engine setup" in caught.value.hint


def test_lpips_loads_from_a_torchvision_file_without_network(torch_home, tmp_path, monkeypatch):
    torch.manual_seed(0)
    state = LPIPS("vgg").state_dict()
    path = torchvision_weights_path("vgg")
    assert path == torch_home / "hub" / "checkpoints" / VGG16_FILE
    path.parent.mkdir(parents=True)
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, path)
    put_lpips_package(tmp_path / "site", monkeypatch, {k: v.abs() for k, v in state.items() if k.startswith("lin")})

    def no_network(*args, **kwargs):
        raise AssertionError("LPIPS tried to download something")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    loss = build_perceptual_loss("lpips", torch.device("cpu"))
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    assert loss(image, image).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(image, -image).item() > 0.01
    rebuilt = image.clone().requires_grad_()
    with HostReads() as reads:  # step 2 runs it every iteration: it must not stall a GPU
        loss(rebuilt, image).backward()
    assert reads.syncs == [] and reads.scalars == 0
    assert torch.isfinite(rebuilt.grad).all()


def test_ssim_needs_no_download_and_is_zero_for_equal_images():
    loss = build_perceptual_loss("ssim", torch.device("cpu"))
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(image, image).item() == pytest.approx(0.0, abs=1e-5)
    assert loss(image, torch.zeros_like(image)).item() > 0.05
    assert build_perceptual_loss("none", torch.device("cpu")) is None
