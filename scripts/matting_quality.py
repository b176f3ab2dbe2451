"""IoU of the automatic masks against the true masks of the sample clips, and seconds per frame.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/matting_quality.py [--data ../shared/data] [--frames 12]
        [--models u2netp isnet] [--out matting_quality.json]

Per clip, `--frames` frames evenly spaced over the whole clip (first and last included); each model's
probability map is thresholded at 0.5, and `both` is the average of the two maps (no extra inference).
IoU is averaged over the sampled frames. Seconds per frame: the wall time of one model's call (resize,
inference, resize back), averaged, and the process's CPU time of that call (with one thread, what the call
costs when other programs share the machine); onnxruntime runs with OMP_NUM_THREADS threads. Needs the models from
`jokr-engine setup` (and `--isnet`). Prints a Markdown table (docs/QUALITY.md, "Automatic masks")."""

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from jokr_engine.matting import THRESHOLD, Matting

REPO = Path(__file__).resolve().parents[1]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def measure(data: Path, frames: int, models: list[str]) -> dict:
    sessions = {name: Matting(name) for name in models}
    results = {}
    for clip in sorted(p for p in data.iterdir() if (p / "frames").is_dir() and (p / "masks").is_dir()):
        files = sorted((clip / "frames").iterdir())
        picks = np.unique(np.linspace(0, len(files) - 1, frames).round().astype(int))
        scores = {name: [] for name in [*models, "both"] if name != "both" or len(models) == 2}
        seconds = {name: [] for name in models}
        cpu_seconds = {name: [] for name in models}
        for index in picks:
            frame = cv2.cvtColor(cv2.imread(str(files[index])), cv2.COLOR_BGR2RGB)
            truth = cv2.imread(str(clip / "masks" / f"{files[index].stem}.png"), cv2.IMREAD_GRAYSCALE) > 127
            maps = {}
            for name, matting in sessions.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                maps[name] = matting.probability(frame)
                seconds[name].append(time.perf_counter() - start)
                cpu_seconds[name].append(time.process_time() - cpu_start)
                scores[name].append(iou(maps[name] > THRESHOLD, truth))
            if "both" in scores:
                scores["both"].append(iou(np.mean(list(maps.values()), axis=0) > THRESHOLD, truth))
        results[clip.name] = {"frames": [int(i) for i in picks], "of": len(files),
                              "size": list(frame.shape[1::-1]),
                              "iou": {k: float(np.mean(v)) for k, v in scores.items()},
                              "iou_min": {k: float(np.min(v)) for k, v in scores.items()},
                              "s_per_frame": {k: float(np.mean(v)) for k, v in seconds.items()},
                              "cpu_s_per_frame": {k: float(np.mean(v)) for k, v in cpu_seconds.items()}}
        print(clip.name, json.dumps(results[clip.name]["iou"]), flush=True)
    return results


def markdown(results: dict) -> str:
    names = list(next(iter(results.values()))["iou"])
    timed = list(next(iter(results.values()))["s_per_frame"])
    head = ("| clip | size | frames | " + " | ".join(f"IoU {n} (min)" for n in names) + " | "
            + " | ".join(f"s/frame {n} (CPU s)" for n in timed) + " |")
    lines = [head, "|" + "---|" * (3 + len(names) + len(timed))]
    for clip, r in results.items():
        lines.append(f"| {clip} | {r['size'][0]}×{r['size'][1]} | {len(r['frames'])} of {r['of']} | "
                     + " | ".join(f"{r['iou'][n]:.3f} ({r['iou_min'][n]:.2f})" for n in names) + " | "
                     + " | ".join(f"{r['s_per_frame'][n]:.2f} ({r['cpu_s_per_frame'][n]:.2f})" for n in timed)
                     + " |")
    means = {n: np.mean([r["iou"][n] for r in results.values()]) for n in names}
    speed = {n: np.mean([r["s_per_frame"][n] for r in results.values()]) for n in timed}
    cpu = {n: np.mean([r["cpu_s_per_frame"][n] for r in results.values()]) for n in timed}
    lines.append("| **mean** | | | " + " | ".join(f"**{means[n]:.3f}**" for n in names) + " | "
                 + " | ".join(f"{speed[n]:.2f} ({cpu[n]:.2f})" for n in timed) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--models", nargs="+", default=["u2netp", "isnet"], choices=["u2netp", "isnet"])
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    results = measure(args.data, args.frames, args.models)
    if args.out:
        args.out.write_text(json.dumps({"threads": os.environ.get("OMP_NUM_THREADS"), "clips": results}, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
