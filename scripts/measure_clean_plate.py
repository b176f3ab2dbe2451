"""Hold-out measurement of the clean plate (docs/QUALITY.md, "Clean plate").

A phantom animal — the clip's own masks shifted by a fixed offset, so it moves exactly as the animal
does — is added to every frame's mask. At each scored frame t the offset puts the phantom on background,
so frame t's real pixels under it are the truth: the plate fills the phantom's region from the other
frames as it would an animal's, and is compared with those pixels (and so is a plain cv2.inpaint).

    python scripts/measure_clean_plate.py [--clips cows bear dog] [--frames 8] [--picture FILE]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jokr_engine.cleanplate import (  # noqa: E402
    NEIGHBOURS,
    SPACING,
    Aligner,
    auto_dilation,
    dilate,
    fill_frame,
    inpaint,
    neighbour_frames,
)
from jokr_engine.clips import ClipSpec, load_clip  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def phantom_offset(mask: np.ndarray, dilation: int, most_overlap: float = 0.25) -> tuple[int, int] | None:
    """The smallest shift (on a 16 px grid) that puts `mask` wholly inside the frame with at most
    `most_overlap` of it on the (dilated) animal, or None."""
    height, width = mask.shape
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    grown = dilate(mask, dilation)
    best = None
    for dy in range(-y, height - (y + h) + 1, 16):
        for dx in range(-x, width - (x + w) + 1, 16):
            if best is not None and math.hypot(dx, dy) >= math.hypot(*best):
                continue
            moved = shifted(mask[None], dx, dy)[0]
            if (moved & grown).sum() <= most_overlap * mask.sum():
                best = (dx, dy)
    return best


def shifted(masks: np.ndarray, dx: int, dy: int) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    height, width = masks.shape[1:]
    return np.stack([cv2.warpAffine(m.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST)
                     for m in masks]) > 0


def errors(result: np.ndarray, truth: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """(MAE in 0..255, PSNR in dB) over `region`."""
    difference = result[region].astype(np.float64) - truth[region].astype(np.float64)
    mse = float(np.mean(difference**2))
    return float(np.mean(np.abs(difference))), 10 * math.log10(255**2 / mse) if mse > 0 else float("inf")


def score_clip(name: str, frame_count: int, neighbours: int, spacing: int) -> tuple[list[dict], dict]:
    clip = load_clip(ClipSpec(str(DATA / name)))
    frames, real = clip.frames, clip.masks > 0
    count, (height, width) = len(frames), frames.shape[1:3]
    dilation = auto_dilation(width, height)
    rows, example = [], None
    for t in np.linspace(0, count - 1, frame_count).round().astype(int):
        offset = phantom_offset(dilate(real[t], dilation), dilation)
        if offset is None:
            continue
        phantom = shifted(real, *offset)
        holes = np.stack([dilate(m, dilation) for m in real | phantom])
        region = dilate(phantom[t], dilation) & ~dilate(real[t], dilation)
        plate, stats = fill_frame(frames, holes, int(t), Aligner(frames, ~holes),
                                  neighbour_frames(int(t), count, neighbours, spacing))
        baseline = inpaint(frames[t], holes[t])
        seen = region if stats.inpainted is None else region & ~stats.inpainted  # filled from other frames
        row = {"clip": name, "frame": int(t), "region_px": int(region.sum()),
               "filled": seen.sum() / region.sum(), "failed": stats.alignments["failed"]}
        row["mae"], row["psnr"] = errors(plate, frames[t], region)
        row["mae_inpaint"], row["psnr_inpaint"] = errors(baseline, frames[t], region)
        # The part the plate took from other frames, alone: what the fill adds over inpainting.
        row["mae_seen"], _ = errors(plate, frames[t], seen) if seen.any() else (math.nan, None)
        row["mae_seen_inpaint"], _ = errors(baseline, frames[t], seen) if seen.any() else (math.nan, None)
        rows.append(row)
        if example is None or seen.sum() > example["seen"]:
            example = {"clip": name, "frame": int(t), "truth": frames[t], "plate": plate, "baseline": baseline,
                       "region": region, "seen": int(seen.sum())}
    # The same frame's real animal removed, for the picture.
    holes = np.stack([dilate(m, dilation) for m in real])
    example["real_plate"], _ = fill_frame(frames, holes, example["frame"], Aligner(frames, ~holes),
                                          neighbour_frames(example["frame"], count, neighbours, spacing))
    example["real_baseline"] = inpaint(frames[example["frame"]], holes[example["frame"]])
    example["real_region"] = holes[example["frame"]]
    return rows, example


def crop_around(images: list[np.ndarray], region: np.ndarray, margin: int = 30) -> list[np.ndarray]:
    x, y, w, h = cv2.boundingRect(region.astype(np.uint8))
    height, width = region.shape
    x0, y0 = max(0, x - margin), max(0, y - margin)
    x1, y1 = min(width, x + w + margin), min(height, y + h + margin)
    return [image[y0:y1, x0:x1] for image in images]


def outline(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.drawContours(image.copy(), contours, -1, (255, 255, 0), 1)


def labelled_row(images: list[np.ndarray], labels: list[str], height: int = 200) -> np.ndarray:
    tiles = []
    for image, label in zip(images, labels):
        tile = cv2.resize(image, (round(image.shape[1] * height / image.shape[0]), height),
                          interpolation=cv2.INTER_AREA)
        cv2.putText(tile, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
        tiles.append(np.full((height, 4, 3), 255, np.uint8))
    return np.hstack(tiles[:-1])


def picture(examples: list[dict], path: Path) -> None:
    rows = []
    for ex in examples:
        tag = f"{ex['clip']} {ex['frame']}"
        real = crop_around([outline(ex["truth"], ex["real_region"]), ex["real_plate"], ex["real_baseline"]],
                           ex["real_region"])
        held = crop_around([outline(ex["truth"], ex["region"]), ex["plate"], ex["baseline"]], ex["region"])
        rows.append(labelled_row(real + held, [f"{tag}: animal", "clean plate", "inpaint only",
                                               "held-out truth", "clean plate", "inpaint only"]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 80])
    path.write_bytes(data.tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", default=["cows", "bear", "dog"])
    parser.add_argument("--frames", type=int, default=8, help="scored frames per clip, evenly spaced")
    parser.add_argument("--neighbours", type=int, default=NEIGHBOURS)
    parser.add_argument("--spacing", type=int, default=SPACING)
    parser.add_argument("--picture", type=Path, help="write the example picture (JPEG) here")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"neighbours {args.neighbours}, spacing {args.spacing}\n")
    print("| clip | frames scored | region px (mean) | filled from other frames | MAE plate | MAE inpaint | "
          "PSNR plate | PSNR inpaint | MAE plate, filled part | MAE inpaint, filled part |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    examples, everything = [], []
    for name in args.clips:
        rows, example = score_clip(name, args.frames, args.neighbours, args.spacing)
        everything += rows
        examples.append(example)
        print(summary(name, rows))
    print(summary("all", everything))
    for row in everything:
        print(f"  {row['clip']} {row['frame']}: filled {row['filled']:.2f}, failed pairs {row['failed']}, "
              f"MAE {row['mae']:.1f} vs {row['mae_inpaint']:.1f}, PSNR {row['psnr']:.1f} vs {row['psnr_inpaint']:.1f}")
    if args.picture:
        picture(examples, args.picture)
        print(f"\npicture: {args.picture} ({args.picture.stat().st_size // 1024} KB)")


def summary(name: str, rows: list[dict]) -> str:
    mean = {k: np.nanmean([r[k] for r in rows]) for k in ("region_px", "filled", "mae", "mae_inpaint", "psnr",
                                                           "psnr_inpaint", "mae_seen", "mae_seen_inpaint")}
    return (f"| {name} | {len(rows)} | {mean['region_px']:.0f} | {mean['filled']:.0%} | {mean['mae']:.1f} | "
            f"{mean['mae_inpaint']:.1f} | {mean['psnr']:.1f} | {mean['psnr_inpaint']:.1f} | "
            f"{mean['mae_seen']:.1f} | {mean['mae_seen_inpaint']:.1f} |")


if __name__ == "__main__":
    main()
