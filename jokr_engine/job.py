"""The job folder (docs/FORMATS.md): job.json, the prepared model-space clips, the models container."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from torch import nn

from . import __version__
from .checkpoint import atomic_write_json
from .clips import AutoMasks, ClipSpec, load_clip
from .config import Config
from .discriminator import KeypointDiscriminator, LearnedAffine
from .errors import JokrError
from .framing import crop_boxes, model_frames
from .generator import shape_generator, texture_refiner
from .keypoint_detector import KeypointDetector

JOB_FORMAT = "jokr.job"
JOB_VERSION = 1
DOMAINS = ("A", "B")


class JokrModels(nn.Module):
    """E, G, R_A, R_B, D and T; their state-dict prefixes are the checkpoint's tensor names."""

    def __init__(self, config: Config):
        super().__init__()
        self.E = KeypointDetector(config)
        self.G = shape_generator(config)
        self.R_A = texture_refiner(config)
        self.R_B = texture_refiner(config)
        self.D = KeypointDiscriminator(config)
        self.T = LearnedAffine(config)

    def refiner(self, look: str) -> nn.Module:
        return self.R_A if look == "A" else self.R_B


@dataclass
class PreparedClip:
    """A clip as the model sees it, plus what is needed to map back to the full frame."""

    name: str
    source: str
    start: int
    fps: float | None
    frame_size: tuple[int, int]  # (W, H) of the full frame
    boxes: np.ndarray  # (N, 4) crop boxes [x0, y0, w, h] in frame pixels
    images: np.ndarray  # (N, 3, S, S) uint8
    masks: np.ndarray  # (N, 1, S, S) uint8, 0/255

    @property
    def frame_count(self) -> int:
        return len(self.images)

    def info(self) -> dict:
        return {"name": self.name, "source": self.source, "start": self.start, "fps": self.fps,
                "frame_size": list(self.frame_size), "frame_count": self.frame_count}


def prepare_clip(spec: ClipSpec, config: Config, label: str, auto_masks: AutoMasks | None = None) -> PreparedClip:
    clip = load_clip(spec, auto_masks)
    if len(clip.frames) < 2:
        raise JokrError(f"clip {label} ({clip.source}) has {len(clip.frames)} frame; training needs at least 2",
                        f"give clip {label} a longer frame range")
    boxes = crop_boxes(clip.masks, config.crop)
    images, masks = model_frames(clip.frames, clip.masks, boxes, config.image_size, config.pad)
    height, width = clip.frames.shape[1:3]
    return PreparedClip(clip.name, clip.source, clip.start, clip.fps, (width, height), boxes, images, masks)


class Job:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def has_checkpoint(self) -> bool:
        return (self.checkpoints / "latest.json").is_file()

    @property
    def cancel_file(self) -> Path:
        return self.folder / "CANCEL"

    @property
    def previews(self) -> Path:
        return self.folder / "previews"

    @property
    def auto_masks(self) -> Path:
        """The cache of the mask source `auto`: one folder per clip label (auto_masks.py)."""
        return self.folder / "auto_masks"

    @property
    def has_prepared(self) -> bool:
        return (self.folder / "prepared.safetensors").is_file() and (self.folder / "prepared.json").is_file()

    def refuse_if_trained(self) -> None:
        """A folder whose job has a checkpoint is never started over (nor written into before that)."""
        if (self.folder / "job.json").exists() and self.has_checkpoint:
            raise JokrError(f"{self.folder} already holds a trained job",
                            "continue it with `train --job DIR --resume`, or choose a new --job folder")

    def create(self, specs: dict[str, ClipSpec], config: Config, preset: str) -> None:
        """A new job; a folder whose job never reached its first checkpoint (it failed at start-up or was
        stopped at once) is started again with the new settings, since nothing trained would be lost."""
        self.refuse_if_trained()
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / "job.json", {
            "format": JOB_FORMAT, "version": JOB_VERSION, "engine_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "preset": preset,
            "clips": {k: dataclasses.asdict(s) for k, s in specs.items()}, "config": config.to_dict(),
        })

    def read(self) -> dict:
        path = self.folder / "job.json"
        if not path.is_file():
            raise JokrError(f"{self.folder} is not a JOKR job folder (no job.json)",
                            "pass the folder given to `train --job`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise JokrError(f"{path} is not valid JSON ({error})", "restore it or start a new job",
                            code="incompatible_job") from None
        if data.get("format") != JOB_FORMAT or data.get("version") != JOB_VERSION:
            raise JokrError(
                f"{path} is a {data.get('format')!r} version {data.get('version')!r} job; this engine "
                f"({__version__}) reads {JOB_FORMAT} version {JOB_VERSION}",
                "open it with the engine version that made it, or start a new job", code="incompatible_job")
        return data

    def config(self) -> Config:
        return Config.from_dict(self.read()["config"])

    def save_config(self, config: Config) -> None:
        """Record settings changed on resume, so the next resume keeps them (e.g. a smaller batch)."""
        atomic_write_json(self.folder / "job.json", {**self.read(), "config": config.to_dict()})

    def specs(self) -> dict[str, ClipSpec]:
        return {k: ClipSpec(**v) for k, v in self.read()["clips"].items()}

    def save_prepared(self, clips: dict[str, PreparedClip]) -> None:
        arrays, info = {}, {}
        for label, clip in clips.items():
            arrays[f"{label}.images"] = clip.images
            arrays[f"{label}.masks"] = clip.masks
            arrays[f"{label}.boxes"] = clip.boxes.astype(np.float64)
            info[label] = clip.info()
        tmp = self.folder / ".prepared.safetensors.tmp"
        save_numpy(arrays, str(tmp))
        tmp.replace(self.folder / "prepared.safetensors")
        atomic_write_json(self.folder / "prepared.json", info)

    def load_prepared(self) -> dict[str, PreparedClip]:
        """The clips as prepared when training started (so later commands see exactly those frames)."""
        path = self.folder / "prepared.safetensors"
        if not self.has_prepared:
            raise JokrError(f"{self.folder} has no prepared clips (prepared.safetensors)",
                            "train the job first")
        arrays = load_numpy(str(path))
        info = json.loads((self.folder / "prepared.json").read_text())
        return {
            label: PreparedClip(meta["name"], meta["source"], meta["start"], meta["fps"],
                                tuple(meta["frame_size"]), arrays[f"{label}.boxes"],
                                arrays[f"{label}.images"], arrays[f"{label}.masks"])
            for label, meta in info.items()
        }


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise JokrError("--device cuda: no CUDA GPU is visible to torch",
                        "install a CUDA build of torch (README, 'Using a GPU') or use --device cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise JokrError("--device mps: Apple's Metal backend is not available", "use --device cpu")
    if name not in ("cuda", "mps", "cpu"):
        raise JokrError(f"unknown device {name!r}", "use auto, cuda, mps or cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return {"mps": "Apple GPU (MPS)", "cpu": "CPU"}.get(device.type, device.type)
