"""How the training networks run on the device: memory layout, cuDNN's algorithm search and torch.compile
(the config fields `channels_last`, `cudnn_benchmark` and `compile`; what was measured: docs/BENCHMARKS.md).

- Channels-last suits a GPU's tensor cores, but InstanceNorm works on an (1, N·C, H, W) reshape of its
  input, which copies a channels-last tensor back to NCHW, and the next convolution copies it back to
  channels-last: 46 conversions per ResNet-9 forward (`bench --count-only` counts them). Whether it pays
  is measured on a GPU (`bench --compare channels_last,compile`); `auto` keeps it on CUDA until then.
- torch.compile is applied in place (`nn.Module.compile`), so the state-dict keys, which are the
  checkpoint's tensor names, stay those of the eager networks (`torch.compile(module)` would prefix
  them with `_orig_mod.`), and checkpoints move freely between compiled and eager runs. Shapes are
  static: every network sees one batch size per step, so each compiles once per call site and never
  again (a handful of graphs per network, below dynamo's limit of 8 per forward). Previews run eager
  (other batch sizes and modes), and so does inference (`render.load_models`, NCHW): a render is too
  short to repay compiling. Compiling needs Triton and a C compiler on CUDA (Triton builds its launcher
  with it), a C++ compiler on a CPU: `auto` compiles only where they are (and `describe` says why not
  otherwise); `on` without them is an error at start-up."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import torch
from torch import nn

from .config import Config
from .errors import JokrError


def _resolve(setting: str, device: torch.device) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot build kernels for `device` on this machine, or None when it can."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "Triton is not installed"
        compilers = [os.environ.get("CC"), "clang", "gcc", "cc"]  # Triton's own search order
        if not any(c and shutil.which(c) for c in compilers):
            return "no C compiler (CC, clang, gcc or cc) is installed"
        return None
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception as error:  # noqa: BLE001 - inductor raises its own types; the reason is what matters
        return f"no C++ compiler for inductor ({type(error).__name__})"
    return None


@dataclass(frozen=True)
class Acceleration:
    """The settings as they apply on one device (`auto` resolved)."""

    channels_last: bool
    compile: bool
    cudnn_benchmark: bool
    why_not_compiled: str | None = None  # where `auto` would have compiled but cannot

    @classmethod
    def for_device(cls, config: Config, device: torch.device) -> "Acceleration":
        compile, why_not = _resolve(config.compile, device), None
        if compile and (reason := compile_unavailable(device)) is not None:
            if config.compile == "on":
                raise JokrError(f"--set compile=on: torch.compile cannot run on {device.type} here: {reason}",
                                "install it, or train with --set compile=off")
            compile, why_not = False, reason
        return cls(channels_last=_resolve(config.channels_last, device), compile=compile,
                   cudnn_benchmark=config.cudnn_benchmark and device.type == "cuda", why_not_compiled=why_not)

    def describe(self) -> str:
        compiled = "on" if self.compile else f"off ({self.why_not_compiled})" if self.why_not_compiled else "off"
        return (f"channels_last {'on' if self.channels_last else 'off'}, compile {compiled}"
                f"{', cudnn.benchmark' if self.cudnn_benchmark else ''}")

    def prepare(self, network: nn.Module, compile: bool = True) -> nn.Module:
        """Put `network` in the layout and, with `compile`, compile its forward in place."""
        if self.channels_last:
            network.to(memory_format=torch.channels_last)
        if self.compile and compile:
            network.compile(dynamic=False)
        return network

    def prepare_models(self, models: nn.Module) -> nn.Module:
        """JokrModels: all in the layout; E, G, R_A and R_B compiled (D and T are small MLPs on keypoints)."""
        self.prepare(models, compile=False)
        for network in (models.E, models.G, models.R_A, models.R_B):
            self.prepare(network)
        return models

    def configure_backends(self, device: torch.device) -> None:
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = self.cudnn_benchmark
