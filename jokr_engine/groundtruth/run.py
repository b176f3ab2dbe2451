"""`groundtruth score` (a trained job vs its pair's truth) and `groundtruth run` (generate, train, score)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from ..errors import JokrError
from ..events import Emitter
from .pairs import DIRECTIONS, PAIR_NAMES, Pair, generate, read_pair
from .report import picture_rows, write_outputs, write_picture
from .score import DEFAULT_PHASES, Lpips, baselines, ceiling, job_geometry, score_direction


def read_rgba(folder: Path, count: int) -> np.ndarray:
    """`render`'s RGBA PNGs 00000.png … of `folder` → (N, H, W, 4) uint8."""
    frames = []
    for index in range(count):
        path = Path(folder) / f"{index:05d}.png"
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None or image.ndim != 3 or image.shape[2] != 4:
            raise JokrError(f"{path} is missing or not an RGBA PNG", "render the job again", code="internal")
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))
    return np.stack(frames)


def _job_conditions(job, config, meta: dict) -> dict:
    return {"job": str(job.folder), "preset": job.read().get("preset"),
            "iterations": f"{config.step1_iterations} + {config.step2_iterations}",
            "trained": f"step {meta.get('step')} iteration {meta.get('iteration')} (finished: {meta.get('finished')})",
            "image_size": config.image_size, "crop": config.crop}


def score_pair_job(job, pair: Pair, out: Path, device, phases: int = DEFAULT_PHASES,
                   lpips: Lpips | None = None, own_boxes: bool = False) -> tuple[dict, dict, dict]:
    """Renders both directions of a trained job into `out`/render_AB|BA and scores them with the ceiling and
    the baselines → ({direction: {row: scores}}, {direction: {row: RGBA stack}} for the picture, the job's
    conditions)."""
    from ..render import render

    geometry = job_geometry(job, pair, own_boxes)
    results, stacks = {}, {}
    for direction, (driver, look) in DIRECTIONS.items():
        folder = Path(out) / f"render_{direction}"
        render(job, device, look, folder)
        rows = {"ceiling": ceiling(pair, geometry, direction),
                "output": read_rgba(folder, len(pair.frames[driver])), **baselines(pair, geometry, direction)}
        results[direction] = score_direction(pair, geometry, direction, rows, phases, lpips)
        stacks[direction] = rows
    conditions = _job_conditions(job, job.config(), _checkpoint_meta(job))
    if own_boxes:
        conditions["crop boxes"] = "the job's own (--own-boxes: trained on other masks than the pair's)"
    return results, stacks, conditions


def score_job(job, pair_dir: Path, out: Path, device, phases: int = DEFAULT_PHASES, own_boxes: bool = False) -> dict:
    """The `groundtruth score` command: report.md, scores.json and groundtruth.png in `out`."""
    from ..job import device_name

    pair = read_pair(pair_dir)
    lpips = Lpips(device)
    results, stacks, conditions = score_pair_job(job, pair, out, device, phases, lpips, own_boxes)
    entry = {"description": pair.spec.description, "results": results, "conditions": conditions}
    md, js = write_outputs(out, {pair.name: entry},
                           {"pair_dir": str(Path(pair_dir).resolve()), "seed": pair.meta["seed"],
                            "phase_grid": phases, "device": device_name(device)},
                           lpips.description, lpips.available)
    picture = write_picture(Path(out) / "groundtruth.png", picture_rows(pair, stacks))
    return {"report": str(md), "json": str(js), "picture": str(picture),
            "scores": {d: {r: {m: s[m] for m in s if m != "per_frame"} for r, s in rows.items()}
                       for d, rows in results.items()}}


def _checkpoint_meta(job) -> dict:
    """The last checkpoint's metadata (its small JSON file; the weights are not read)."""
    try:
        return json.loads((job.checkpoints / "latest.json").read_text())
    except (OSError, ValueError):
        return {}


def _finished(job) -> bool:
    """Whether the job's last checkpoint says training is complete."""
    return bool(_checkpoint_meta(job).get("finished"))


def _names(pairs: list[str] | None) -> list[str]:
    names = [n for item in (pairs or PAIR_NAMES) for n in item.split(",") if n]
    unknown = [n for n in names if n not in PAIR_NAMES]
    if unknown:
        raise JokrError(f"unknown ground-truth pair(s): {', '.join(unknown)}", f"choose from {', '.join(PAIR_NAMES)}")
    return names


def run_benchmark(out: Path, preset: str, pairs: list[str] | None, overrides: list[str], device,
                  emitter: Emitter, seed: int = 0, phases: int = DEFAULT_PHASES) -> dict:
    """Generates the pairs into `out`/pairs, trains one job per pair in `out`/jobs (an existing job there is
    resumed, a finished one reused), scores each and writes report.md, scores.json, groundtruth.png."""
    from ..clips import ClipSpec
    from ..config import preset_config
    from ..job import Job, device_name, prepare_clip
    from ..train import train

    out = Path(out)
    names = _names(pairs)
    folders = generate(out / "pairs", names, seed)
    lpips = Lpips(device)
    entries, picture = {}, []
    for name in names:
        pair = read_pair(folders[name])
        job = Job(out / "jobs" / name)
        resume = (job.folder / "job.json").is_file()
        started = time.monotonic()
        if resume:
            config, clips, job_preset = job.config(), job.load_prepared(), job.read()["preset"]
        else:
            config = preset_config(preset).override(overrides)
            if any(o.split("=", 1)[0].strip().replace("-", "_") == "crop" for o in overrides):
                raise JokrError("groundtruth run: --set crop=… would not match the truth",
                                "leave crop out; each pair sets the crop mode its truth is placed for")
            config = config.override([f"crop={pair.spec.crop}"])
            specs = {label: ClipSpec(path=str((folders[name] / label).resolve())) for label in ("A", "B")}
            clips = {label: prepare_clip(spec, config, label) for label, spec in specs.items()}
            job.create(specs, config, preset)
            job.save_prepared(clips)
            job_preset = preset
        status, reused = "finished", resume and _finished(job)
        if not reused:
            emitter.log_path = job.folder / "events.jsonl"
            status = train(job, config, clips, device, emitter, job_preset, resume, None)
            emitter.log_path = None
        trained_s = time.monotonic() - started
        if status != "finished":
            return {"status": status, "outputs": {"job": str(job.folder)}}
        results, stacks, conditions = score_pair_job(job, pair, out / "scores" / name, device, phases, lpips)
        conditions["training"] = ("already trained, reused" if reused else
                                  f"{trained_s:.1f} s wall{' (resumed)' if resume else ''}")
        entries[name] = {"description": pair.spec.description, "results": results, "conditions": conditions}
        picture += picture_rows(pair, stacks, scale=0.5 if len(names) > 1 else 1.0)
    md, js = write_outputs(out, entries, {"preset": preset, "overrides": " ".join(overrides) or "none",
                                          "seed": seed, "phase_grid": phases, "device": device_name(device)},
                           lpips.description, lpips.available)
    sheet = write_picture(out / "groundtruth.png", picture)
    return {"status": "finished",
            "outputs": {"report": str(md), "json": str(js), "picture": str(sheet),
                        "jobs": {n: str(out / "jobs" / n) for n in names}}}
