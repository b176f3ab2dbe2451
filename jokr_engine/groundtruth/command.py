"""The `groundtruth` subcommand's options and dispatch (imports nothing heavy until it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

PAIRS_HELP = "pairs to use (default all): similar proportions affine fullframe"


def add_parser(sub, common) -> None:
    parser = sub.add_parser("groundtruth", help="synthetic pairs with an exact truth; score retargeting against it")
    actions = parser.add_subparsers(dest="groundtruth_command", required=True)

    generate = actions.add_parser("generate", help="write the benchmark pairs")
    generate.add_argument("--out", required=True, type=Path, help="folder for <pair>/A, B, truth_AB, truth_BA")
    generate.add_argument("--pairs", nargs="+", metavar="PAIR", help=PAIRS_HELP)
    generate.add_argument("--seed", type=int, default=0, help="varies colours, texture, phases, backgrounds")

    score = actions.add_parser("score", help="score a job trained on one pair against its truth")
    score.add_argument("--job", required=True, type=Path)
    score.add_argument("--pair-dir", required=True, type=Path, help="the pair's folder, e.g. DIR/similar")
    score.add_argument("--out", type=Path, help="default <job>/groundtruth")
    score.add_argument("--phases", type=int, default=32, help="phase grid of the gait-phase estimate")
    score.add_argument("--own-boxes", action="store_true",
                       help="the job was trained on other masks of the pair's frames (e.g. --a-mask auto): place "
                       "its render with its own crop boxes; the truth stays where the true masks put it")
    common(score)

    run = actions.add_parser("run", help="generate the pairs, train a job per pair, score, write the report")
    run.add_argument("--out", required=True, type=Path, help="folder for pairs/, jobs/, scores/ and the report")
    run.add_argument("--preset", default="demo", help="paper, fast, demo or tiny")
    run.add_argument("--pairs", nargs="+", metavar="PAIR", help=PAIRS_HELP)
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--seed", type=int, default=0, help="seed of the generated pairs")
    run.add_argument("--phases", type=int, default=32, help="phase grid of the gait-phase estimate")
    common(run)


def run(args: argparse.Namespace, emitter) -> dict:
    from ..errors import JokrError

    if args.groundtruth_command == "generate":
        from .pairs import generate
        from .run import _names

        folders = generate(args.out, _names(args.pairs), args.seed)
        return {"status": "finished", "outputs": {name: str(path) for name, path in folders.items()}}

    from ..job import Job, device_name, pick_device

    if getattr(args, "phases", 1) < 2:
        raise JokrError(f"--phases {args.phases}: the phase grid needs at least 2 steps", "e.g. --phases 32")
    device = pick_device(args.device)
    emitter.emit("started", command="groundtruth", job=str(getattr(args, "job", None) or args.out),
                 device=str(device), device_name=device_name(device),
                 preset=getattr(args, "preset", None), plan=[], resumed_from=None)
    if args.groundtruth_command == "score":
        from .run import score_job

        job = Job(args.job)
        job.read()  # a clear error when the folder is not a job
        outputs = score_job(job, args.pair_dir, args.out or job.folder / "groundtruth", device, args.phases,
                            args.own_boxes)
        return {"status": "finished", "outputs": outputs}
    from .run import run_benchmark

    return run_benchmark(args.out, args.preset, args.pairs, args.overrides, device, emitter, args.seed, args.phases)
