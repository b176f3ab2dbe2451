"""One configuration dataclass for the whole method, and the named presets.

`paper` reproduces the authors' settings (docs/METHOD.md lists where and why we differ)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import JokrError


@dataclass
class Config:
    # data
    image_size: int = 256  # S: the model sees S×S images
    pad: float = 0.2  # padding around the crop box, fraction of its size on every side
    crop: str = "auto"  # auto | on | off (see framing.crop_boxes)
    # keypoint extractor E (FOMM hourglass)
    num_keypoints: int = 14
    kp_input_scale: float = 0.25  # E sees the image downsampled by this factor
    kp_base_channels: int = 32
    kp_max_channels: int = 1024
    kp_blocks: int = 5
    kp_head_kernel: int = 7
    kp_temperature: float = 0.1
    heatmap_scale: float = 0.04  # L1 blob exp(-(|dx|+|dy|)/scale) drawn for G
    # generators G (shape) and R_A / R_B (texture): CycleGAN ResNet generators
    gen_channels: int = 64
    gen_blocks: int = 9
    gen_dropout: float = 0.5
    # keypoint discriminator D: MLP 2K → hidden… → 1
    disc_hidden: tuple[int, ...] = (512, 512, 64)
    use_affine: bool = True  # learned affine T inside the domain-confusion term
    affine_init_std: float = 0.05
    # step 1
    step1_iterations: int = 45_000
    step1_batch: int = 8
    lr: float = 1e-4
    lr_schedule: str = "constant"  # constant (the authors') | cosine: each step decays from lr to 0 over its iterations
    betas: tuple[float, float] = (0.5, 0.999)
    w_silhouette: float = 50.0
    w_equivariance: float = 2.0
    w_separation: float = 4.0
    w_domain: float = 1.0
    w_containment: float = 0.5
    w_temporal: float = 13.0  # the authors' code scales the mean displacement by 13 (weight 1)
    separation_delta: float = 0.12
    equivariance_std: float = 0.1
    # step 2
    step2_iterations: int = 30_000
    step2_batch: int = 6
    w_l1: float = 1.0
    perceptual: str = "lpips"  # lpips (LPIPS-VGG, needs the VGG16 weights) | ssim (kornia, no download) | none
    w_perceptual: float = 1.0
    # augmentation (the authors' random affine, applied on the device)
    augment: bool = True
    # run
    checkpoint_minutes: float = 5.0  # checkpoint every so many minutes of training (0 = off) …
    checkpoint_every: int = 0  # … and every so many iterations (0 = off); always at every stop
    preview_every: int = 500
    progress_every: int = 10
    precision: str = "auto"  # auto (bf16 autocast on CUDA) | bf16 | fp32
    # How the networks run (acceleration.py; what was measured: docs/BENCHMARKS.md). auto = on CUDA only.
    channels_last: str = "auto"  # auto | on | off: channels-last memory layout of the networks
    compile: str = "auto"  # auto | on | off: torch.compile of E, G, R_A, R_B and LPIPS for training
    cudnn_benchmark: bool = True  # on CUDA: cuDNN times its convolution algorithms once per shape
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Config":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise JokrError(
                f"configuration has unknown fields: {', '.join(unknown)}",
                "the job was written by another engine version; start a new job",
                code="incompatible_job",
            )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if isinstance(values.get("channels_last"), bool):  # jobs written when it meant "on CUDA" or "never"
            values["channels_last"] = "auto" if values["channels_last"] else "off"
        return cls(**values)

    def override(self, assignments: list[str]) -> "Config":
        """Apply `KEY=VALUE` strings (from `--set`), parsed to each field's type."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes = {}
        for item in assignments:
            key, sep, raw = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in fields:
                raise JokrError(
                    f"--set {item!r}: unknown setting {key!r}",
                    f"use KEY=VALUE with one of: {', '.join(sorted(fields))}",
                )
            current = getattr(self, key)
            try:
                if isinstance(current, bool):
                    if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(raw)
                    value = raw.lower() in ("1", "true", "yes", "on")
                elif isinstance(current, tuple):
                    value = tuple(type(current[0])(v) for v in raw.split(","))
                else:
                    value = type(current)(raw)
            except ValueError:
                raise JokrError(
                    f"--set {item!r}: {raw!r} is not a valid {type(current).__name__}",
                    f"give {key} a value like {current!r}",
                ) from None
            changes[key] = value
        updated = dataclasses.replace(self, **changes)
        updated.validate()
        return updated

    def validate(self) -> None:
        checks = [
            (self.num_keypoints >= 2, "num_keypoints must be at least 2"),
            (self.crop in ("auto", "on", "off"), "crop must be auto, on or off"),
            (self.perceptual in ("lpips", "ssim", "none"), "perceptual must be lpips, ssim or none"),
            (self.lr_schedule in ("constant", "cosine"), "lr_schedule must be constant or cosine"),
            (self.precision in ("auto", "bf16", "fp32"), "precision must be auto, bf16 or fp32"),
            (self.channels_last in ("auto", "on", "off"), "channels_last must be auto, on or off"),
            (self.compile in ("auto", "on", "off"), "compile must be auto, on or off"),
            (self.step1_batch >= 2 and self.step2_batch >= 1, "batch sizes too small (step 1 needs ≥ 2)"),
            (self.step1_iterations >= 0 and self.step2_iterations >= 0, "iterations must be ≥ 0"),
            (self.checkpoint_minutes >= 0 and self.checkpoint_every >= 0,
             "checkpoint_minutes and checkpoint_every must be ≥ 0 (0 = off)"),
            (self.image_size * self.kp_input_scale / 2**self.kp_blocks >= 1,
             "image_size × kp_input_scale must be divisible down kp_blocks times"),
        ]
        for ok, message in checks:
            if not ok:
                raise JokrError(f"invalid setting: {message}", "change the --set value or the preset")


PRESETS: dict[str, dict] = {
    # The authors' settings (README command lines and code, see docs/METHOD.md).
    "paper": {},
    # Same networks, shorter schedule: a usable result in roughly a fifth of the time.
    # Same networks, a sixth of the paper's counted work (docs/BENCHMARKS.md): 9,000 + 3,500 iterations with
    # each step's learning rate decaying to zero. Its quality against `paper` is still to be measured on a GPU.
    "fast": {"step1_iterations": 9_000, "step2_iterations": 3_500, "lr_schedule": "cosine"},
    # Finishes both steps on a 2-core CPU in under 10 minutes (the demo).
    "demo": {
        "image_size": 64, "kp_input_scale": 0.5, "kp_blocks": 3, "kp_base_channels": 16,
        "kp_max_channels": 128, "gen_channels": 16, "gen_blocks": 3, "num_keypoints": 10,
        "step1_iterations": 900, "step2_iterations": 400, "step1_batch": 8, "step2_batch": 6,
        "lr": 4e-4, "perceptual": "ssim", "checkpoint_every": 100, "preview_every": 150,
    },
    # Trains both steps end to end on a CPU in well under 2 minutes; used by the tests.
    "tiny": {
        "image_size": 64, "kp_input_scale": 0.5, "kp_blocks": 3, "kp_base_channels": 8,
        "kp_max_channels": 64, "gen_channels": 8, "gen_blocks": 2, "num_keypoints": 6,
        "disc_hidden": (64, 32), "step1_iterations": 150, "step2_iterations": 60,
        "step1_batch": 4, "step2_batch": 4, "lr": 5e-4, "perceptual": "ssim",
        "checkpoint_every": 50, "checkpoint_minutes": 0.0, "preview_every": 100, "progress_every": 5,
    },
}


def preset_config(name: str) -> Config:
    if name not in PRESETS:
        raise JokrError(f"unknown preset {name!r}", f"choose one of: {', '.join(PRESETS)}")
    config = Config(**PRESETS[name])
    config.validate()
    return config
