"""LPIPS-VGG through lpips' real loading path, offline: a clear error naming the missing backbone file,
and a working loss once the file is where torch hub looks (a file this test writes)."""

import pytest
import torch

from jokr_engine.errors import JokrError
from jokr_engine.perceptual import VGG16_FILE, build_perceptual_loss, vgg16_weights_path

from .host_reads import HostReads


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # make torch.hub re-read TORCH_HOME
    return tmp_path


def test_missing_backbone_names_the_file_and_where_to_put_it(torch_home):
    with pytest.raises(JokrError) as caught:
        build_perceptual_loss("lpips", torch.device("cpu"))
    error = caught.value
    assert error.code == "missing_weights"
    assert VGG16_FILE in error.message and str(torch_home / "hub" / "checkpoints") in error.message
    assert "perceptual=ssim" in error.hint


def test_lpips_loads_from_the_hub_cache_without_network(torch_home, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    path = vgg16_weights_path()
    assert path == torch_home / "hub" / "checkpoints" / VGG16_FILE
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)

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


def test_ssim_needs_no_download_and_is_zero_for_equal_images():
    loss = build_perceptual_loss("ssim", torch.device("cpu"))
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(image, image).item() == pytest.approx(0.0, abs=1e-5)
    assert loss(image, torch.zeros_like(image)).item() > 0.05
    assert build_perceptual_loss("none", torch.device("cpu")) is None
