"""The `bench` command: training and rendering speed of a preset on this machine.

Clips are synthetic (a moving ellipse): speed does not depend on what the frames show, and the bench
then needs no data. Timings synchronise the device before reading the clock. Beside the timings it counts
the work of one iteration (FLOPs, operators), which does not depend on the machine: with it a rate
becomes an achieved TFLOP/s, and a time target becomes the TFLOP/s it needs. `compare_settings` times
the layout, compile and cuDNN settings off and on, side by side."""

from __future__ import annotations

import dataclasses
import gc
import io
import itertools
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from .config import preset_config
from .errors import JokrError
from .events import Emitter
from .infer import extract_keypoints, generate
from .job import Job, PreparedClip, device_name, pick_device
from .lpips_net import LPIPS
from .perceptual import LpipsLoss
from .train import Trainer


def synthetic_clip(frames: int, size: int, seed: int) -> PreparedClip:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.empty((frames, 3, size, size), np.uint8)
    masks = np.empty((frames, 1, size, size), np.uint8)
    for i in range(frames):
        cx, cy = 0.5 + 0.2 * np.sin(i / 5), 0.5 + 0.1 * np.cos(i / 7)
        inside = ((xx - cx) / 0.3) ** 2 + ((yy - cy) / 0.18) ** 2 < 1
        masks[i, 0] = inside * 255
        images[i] = rng.integers(0, 255, (3, size, size), dtype=np.uint8) * inside
    boxes = np.tile([0.0, 0.0, size, size], (frames, 1))
    return PreparedClip(f"synthetic{seed}", "synthetic", 0, 25.0, (size, size), boxes, images, masks)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


WARMUP_ITERATIONS = 3


def _warm_up(run_once, device: torch.device) -> float:
    """Seconds for the first few iterations, where torch.compile compiles and cuDNN searches."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(WARMUP_ITERATIONS):
        run_once()
    _sync(device)
    return time.perf_counter() - start


def _timed_rate(run_once, iterations: int, device: torch.device, warmup: int = WARMUP_ITERATIONS) -> float:
    for _ in range(warmup):
        run_once()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        run_once()
    _sync(device)
    return iterations / (time.perf_counter() - start)


def memory_layout(tensor) -> str | None:
    """"nchw" or "channels_last" for a 4-D tensor laid out one way only, else None (not 4-D, or a shape
    such as (N, C, 1, 1) that is both at once)."""
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4:
        return None
    nchw, last = tensor.is_contiguous(), tensor.is_contiguous(memory_format=torch.channels_last)
    return None if nchw == last else "nchw" if nchw else "channels_last"


class _OperatorCounter(TorchDispatchMode):
    """Counts the aten operators a call dispatches, views apart: on a GPU each non-view operator is
    at least one kernel launch, so the count is the launch (and Python) overhead an iteration pays.
    `layout_conversions` counts the 4-D inputs of an operator laid out otherwise than its 4-D output:
    each is a copy between NCHW and channels-last, a `clone` we see or one inside a convolution."""

    def __init__(self):
        super().__init__()
        self.kernels = 0
        self.layout_conversions = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.kernels += not func.is_view
        produced = {memory_layout(t) for t in tree_leaves(out)} - {None}
        if len(produced) == 1:
            self.layout_conversions += sum(
                layout not in (None, *produced) for layout in map(memory_layout, tree_leaves((args, kwargs))))
        return out


@torch.compiler.set_stance("force_eager")  # the operators of the eager networks, also when they are compiled
def count_work(run_once) -> dict:
    """FLOPs of one call's matrix products and convolutions, forward and backward (torch's
    FlopCounterMode; element-wise work is not counted), its non-view operators and its layout conversions."""
    with FlopCounterMode(display=False) as flops, _OperatorCounter() as operators:
        run_once()
    return {"gflop": flops.get_total_flops() / 1e9, "operators": operators.kernels,
            "layout_conversions": operators.layout_conversions}


def count_compiled(run_once) -> dict:
    """Graphs dynamo captures and kernels inductor generates in one call of compiled networks (their
    first call compiles; later calls that compile anything are recompiling)."""
    from torch._dynamo.utils import counters
    from torch._inductor import metrics

    graphs, kernels = counters["stats"]["unique_graphs"], metrics.generated_kernel_count
    run_once()
    return {"graphs": counters["stats"]["unique_graphs"] - graphs,
            "kernels": metrics.generated_kernel_count - kernels}


PROFILED_ITERATIONS = 3


def _profile_table(run_once, device: torch.device) -> str:
    """torch.profiler's operator table for a few iterations, the most expensive first."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for _ in range(PROFILED_ITERATIONS):
            run_once()
        _sync(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=sort_by, row_limit=30)


def _peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def _bench_trainer(job: Job, config, clips: dict, device: torch.device, random_lpips: bool):
    """(trainer, the perceptual loss it runs, in words)."""
    emitter = Emitter(stream=io.StringIO(), terminal=io.StringIO())
    if not random_lpips:
        return Trainer(job, config, clips, device, emitter), config.perceptual
    # The trainer would load the real weights: give it none, then the random network.
    trainer = Trainer(job, dataclasses.replace(config, perceptual="none"), clips, device, emitter)
    trainer.perceptual = LpipsLoss(trainer.acceleration.prepare(LPIPS("vgg").requires_grad_(False).eval().to(device)))
    return trainer, "lpips (random weights: timings and counts only)"


def count_schedule(preset: str, overrides: list[str], device_choice: str, random_lpips: bool = False) -> dict:
    """The work of one iteration of each step and of the whole schedule, without timing anything: a count
    is the same on every machine, so the paper preset can be counted on a CPU in minutes. With compiled
    networks, also the graphs and kernels their first (compiling) iteration makes."""
    config = preset_config(preset).override(overrides)
    device = pick_device(device_choice)
    clips = {"A": synthetic_clip(8, config.image_size, 1), "B": synthetic_clip(8, config.image_size, 2)}
    with tempfile.TemporaryDirectory() as folder:
        trainer, perceptual = _bench_trainer(Job(folder), config, clips, device, random_lpips)
        figures = {"preset": preset, "overrides": overrides, "image_size": config.image_size,
                   "batch": [config.step1_batch, config.step2_batch], "perceptual": perceptual,
                   "schedule": [config.step1_iterations, config.step2_iterations],
                   "acceleration": trainer.acceleration.describe()}
        for step, run_once in ((1, trainer.step1_iteration), (2, trainer.step2_iteration)):
            trainer.step = step
            trainer.set_phase()
            work = count_work(run_once)
            figures[f"step{step}_gflop_per_it"] = work["gflop"]
            figures[f"step{step}_operators_per_it"] = work["operators"]
            figures[f"step{step}_layout_conversions_per_it"] = work["layout_conversions"]
            if trainer.acceleration.compile:
                compiled = count_compiled(run_once)
                figures[f"step{step}_compiled_graphs"] = compiled["graphs"]
                figures[f"step{step}_inductor_kernels"] = compiled["kernels"]
    figures["schedule_pflop"] = (config.step1_iterations * figures["step1_gflop_per_it"]
                                 + config.step2_iterations * figures["step2_gflop_per_it"]) / 1e6
    return figures


@torch.compiler.set_stance("force_eager")  # rendering runs the eager networks (render.load_models)
def _render_figures(models, clip: PreparedClip, config, device: torch.device, iterations: int) -> dict:
    models = models.eval()
    keypoints = extract_keypoints(models, clip, device, list(range(16)))

    def render_batch():
        generate(models, keypoints, "B", config.image_size, config.heatmap_scale, batch=16)

    figures = {"render_batched_fps": 16 * _timed_rate(render_batch, max(2, iterations // 4), device),
               "render_gflop_per_frame": count_work(render_batch)["gflop"] / 16}
    latencies = []
    for i in range(max(5, iterations // 2)):
        _sync(device)
        start = time.perf_counter()
        k = extract_keypoints(models, clip, device, [i % clip.frame_count])
        generate(models, k, "B", config.image_size, config.heatmap_scale, batch=1)
        _sync(device)
        latencies.append(time.perf_counter() - start)
    figures["render_single_frame_ms"] = 1000 * statistics.median(latencies[2:])
    return figures


def run_benchmark(preset: str, overrides: list[str], device_choice: str, iterations: int,
                  profile_path=None, random_lpips: bool = False) -> dict:
    """Time both steps and rendering; with `profile_path`, also write torch.profiler's tables there.
    `random_lpips`: LPIPS-VGG with random weights where its real weights are not at hand (the same work,
    so the same timings and counts; the figures say so)."""
    config = preset_config(preset).override(overrides)
    if random_lpips and config.perceptual != "lpips":
        raise JokrError(f"--random-lpips: preset {preset} uses perceptual={config.perceptual}, not lpips",
                        "drop --random-lpips, or add --set perceptual=lpips")
    device = pick_device(device_choice)
    clips = {"A": synthetic_clip(64, config.image_size, 1), "B": synthetic_clip(64, config.image_size, 2)}
    with tempfile.TemporaryDirectory() as folder:
        trainer, perceptual = _bench_trainer(Job(folder), config, clips, device, random_lpips)
        figures = {"preset": preset, "device": device_name(device), "torch": torch.__version__,
                   "image_size": config.image_size, "num_keypoints": config.num_keypoints,
                   "batch": [config.step1_batch, config.step2_batch], "perceptual": perceptual,
                   "precision": trainer.precision, "acceleration": trainer.acceleration.describe(),
                   "timed_iterations": iterations}
        tables = []
        for step, run_once in ((1, trainer.step1_iteration), (2, trainer.step2_iteration)):
            trainer.step = step
            trainer.set_phase()
            figures[f"step{step}_warmup_s"] = _warm_up(run_once, device)
            figures[f"step{step}_its_per_s"] = _timed_rate(run_once, iterations, device, warmup=0)
            work = count_work(run_once)
            figures[f"step{step}_gflop_per_it"] = work["gflop"]
            figures[f"step{step}_operators_per_it"] = work["operators"]
            figures[f"step{step}_layout_conversions_per_it"] = work["layout_conversions"]
            figures[f"step{step}_achieved_tflop_per_s"] = work["gflop"] * figures[f"step{step}_its_per_s"] / 1000
            if profile_path is not None:
                tables.append(f"step {step}, {PROFILED_ITERATIONS} iterations\n{_profile_table(run_once, device)}")

        figures |= _render_figures(trainer.models, clips["A"], config, device, iterations)
        figures["peak_memory_gib"] = _peak_memory_gib(device)
        seconds = config.step1_iterations / figures["step1_its_per_s"] + config.step2_iterations / figures[
            "step2_its_per_s"]
        figures["projected_schedule_min"] = seconds / 60
        figures["schedule"] = [config.step1_iterations, config.step2_iterations]
        schedule_pflop = (config.step1_iterations * figures["step1_gflop_per_it"]
                          + config.step2_iterations * figures["step2_gflop_per_it"]) / 1e6
        figures["schedule_pflop"] = schedule_pflop
        figures["tflop_per_s_for_30_min"] = schedule_pflop * 1000 / (30 * 60)
    if profile_path is not None:
        header = (f"torch.profiler, preset {preset} {' '.join(overrides)}, {figures['device']}, "
                  f"precision {figures['precision']}, torch {torch.__version__}\n\n")
        Path(profile_path).write_text(header + "\n\n".join(tables) + "\n")
    return figures


COMPARABLE = ("channels_last", "compile", "cudnn_benchmark")


def compare_settings(preset: str, overrides: list[str], device_choice: str, iterations: int, settings: list[str],
                     random_lpips: bool = False) -> dict:
    """Time both training steps with each of `settings` off and on (all combinations), side by side:
    the measurement that decides the layout and compilation defaults. Each variant reports its warm-up
    (compiling happens there) apart from its rate, and a projected schedule that includes it."""
    unknown = sorted(set(settings) - set(COMPARABLE))
    if not settings or unknown:
        raise JokrError(f"--compare {','.join(settings)}: can compare {', '.join(COMPARABLE)}",
                        "e.g. --compare channels_last,compile")
    base = preset_config(preset).override(overrides)
    device = pick_device(device_choice)
    clips = {"A": synthetic_clip(64, base.image_size, 1), "B": synthetic_clip(64, base.image_size, 2)}
    figures = {"preset": preset, "overrides": overrides, "device": device_name(device), "torch": torch.__version__,
               "image_size": base.image_size, "batch": [base.step1_batch, base.step2_batch],
               "timed_iterations": iterations, "compared": settings, "variants": []}
    for values in itertools.product(("off", "on"), repeat=len(settings)):
        chosen = dict(zip(settings, values))
        config = base.override([f"{key}={value}" for key, value in chosen.items()])
        torch._dynamo.reset()  # each variant compiles afresh, and none fills the others' recompile limit
        with tempfile.TemporaryDirectory() as folder:
            trainer, perceptual = _bench_trainer(Job(folder), config, clips, device, random_lpips)
            variant = {"settings": chosen, "acceleration": trainer.acceleration.describe()}
            for step, run_once in ((1, trainer.step1_iteration), (2, trainer.step2_iteration)):
                trainer.step = step
                trainer.set_phase()
                variant[f"step{step}_warmup_s"] = _warm_up(run_once, device)
                variant[f"step{step}_its_per_s"] = _timed_rate(run_once, iterations, device, warmup=0)
            seconds = (variant["step1_warmup_s"] + variant["step2_warmup_s"]
                       + config.step1_iterations / variant["step1_its_per_s"]
                       + config.step2_iterations / variant["step2_its_per_s"])
            variant["projected_schedule_min"] = seconds / 60
            figures |= {"perceptual": perceptual, "precision": trainer.precision}
            figures["variants"].append(variant)
        del trainer
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    figures["fastest"] = min(figures["variants"], key=lambda v: v["projected_schedule_min"])["settings"]
    return figures


def record_markdown(path, figures: dict) -> None:
    """Append one section with the conditions (device, date, commit) and the figures (of `run_benchmark`
    or of `compare_settings`)."""
    import datetime
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if "variants" in figures:
        lines = _comparison_lines(figures, date, commit)
    else:
        lines = _benchmark_lines(figures, date, commit)
    with open(path, "a") as handle:
        handle.write("\n".join(lines))


def _benchmark_lines(figures: dict, date: str, commit: str) -> list[str]:
    rows = [
        ("step 1 iterations/s", f"{figures['step1_its_per_s']:.2f}"),
        ("step 2 iterations/s", f"{figures['step2_its_per_s']:.2f}"),
        ("step 1 / step 2 warm-up, first 3 iterations (s)", f"{figures['step1_warmup_s']:.1f} / "
                                                            f"{figures['step2_warmup_s']:.1f}"),
        ("step 1 / step 2 GFLOP per iteration", f"{figures['step1_gflop_per_it']:.1f} / "
                                                f"{figures['step2_gflop_per_it']:.1f}"),
        ("step 1 / step 2 achieved TFLOP/s", f"{figures['step1_achieved_tflop_per_s']:.3g} / "
                                             f"{figures['step2_achieved_tflop_per_s']:.3g}"),
        ("step 1 / step 2 operators per iteration (eager)", f"{figures['step1_operators_per_it']} / "
                                                           f"{figures['step2_operators_per_it']}"),
        ("step 1 / step 2 layout conversions per iteration (eager)",
         f"{figures['step1_layout_conversions_per_it']} / {figures['step2_layout_conversions_per_it']}"),
        ("render, batched (frames/s)", f"{figures['render_batched_fps']:.1f}"),
        ("render, one frame (ms)", f"{figures['render_single_frame_ms']:.1f}"),
        ("render GFLOP per frame", f"{figures['render_gflop_per_frame']:.1f}"),
        ("peak memory (GiB)", f"{figures['peak_memory_gib']:.2f}"),
        (f"projected schedule {figures['schedule'][0]} + {figures['schedule'][1]} it (min)",
         f"{figures['projected_schedule_min']:.1f}"),
        ("whole schedule (PFLOP)", f"{figures['schedule_pflop']:.3g}"),
        ("TFLOP/s needed for the schedule in 30 min", f"{figures['tflop_per_s_for_30_min']:.3g}"),
    ]
    return [f"\n### `{figures['preset']}` on {figures['device']} — {date}, commit {commit}\n",
            f"torch {figures['torch']}, {figures['image_size']}², K={figures['num_keypoints']}, "
            f"batch {figures['batch'][0]}/{figures['batch'][1]}, perceptual {figures['perceptual']}, "
            f"precision {figures['precision']}, {figures['acceleration']}, "
            f"{figures['timed_iterations']} timed iterations per step.\n",
            "| figure | value |", "|---|---|", *[f"| {name} | {value} |" for name, value in rows], ""]


def _comparison_lines(figures: dict, date: str, commit: str) -> list[str]:
    compared = figures["compared"]
    fastest = ", ".join(f"{k}={v}" for k, v in figures["fastest"].items())
    lines = [f"\n### `{figures['preset']}` on {figures['device']}, {' × '.join(compared)} compared — {date}, "
             f"commit {commit}\n",
             f"torch {figures['torch']}, {figures['image_size']}², batch {figures['batch'][0]}/{figures['batch'][1]}, "
             f"perceptual {figures['perceptual']}, precision {figures['precision']}, "
             f"{figures['timed_iterations']} timed iterations per step after 3 of warm-up. Fastest: **{fastest}**.\n",
             f"| {' | '.join(compared)} | step 1 it/s | step 2 it/s | warm-up s (step 1 / 2) | projected schedule, "
             "warm-up included (min) |",
             "|" + "---|" * (len(compared) + 4)]
    for v in figures["variants"]:
        lines.append(f"| {' | '.join(v['settings'][k] for k in compared)} | {v['step1_its_per_s']:.2f} | "
                     f"{v['step2_its_per_s']:.2f} | {v['step1_warmup_s']:.1f} / {v['step2_warmup_s']:.1f} | "
                     f"{v['projected_schedule_min']:.1f} |")
    return [*lines, ""]
