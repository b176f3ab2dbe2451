"""Build the bundled demo clips (demo/data/cat, demo/data/fox) from the full-size sample data.

    python scripts/make_demo_data.py [--data ../shared/data] [--out demo/data]

Each clip is downscaled to height 160 (aspect kept, even width): frames as JPEG quality 90, masks
resized by area and thresholded back to 0/255 PNGs. info.json is copied and updated.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

HEIGHT = 160
CLIPS = {"cat": 80, "fox": 80}  # clip → number of frames kept (from the first)
JPEG_QUALITY = 90


def demo_size(width: int, height: int) -> tuple[int, int]:
    return 2 * round(width * HEIGHT / height / 2), HEIGHT


def make_clip(source: Path, target: Path, count: int) -> None:
    frame_files = sorted((source / "frames").glob("*.jpg"))[:count]
    mask_files = sorted((source / "masks").glob("*.png"))[:count]
    assert len(frame_files) == len(mask_files) == count, f"{source} has fewer than {count} frames"
    if target.exists():
        shutil.rmtree(target)
    (target / "frames").mkdir(parents=True)
    (target / "masks").mkdir()
    for i, (frame_file, mask_file) in enumerate(zip(frame_files, mask_files)):
        frame = cv2.imread(str(frame_file))
        mask = cv2.imread(str(mask_file), cv2.IMREAD_GRAYSCALE)
        size = demo_size(frame.shape[1], frame.shape[0])
        small_frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        small_mask = np.where(cv2.resize(mask, size, interpolation=cv2.INTER_AREA) >= 128, 255, 0)
        assert small_mask.any(), f"{mask_file} is empty after downscaling"
        cv2.imwrite(
            str(target / "frames" / f"{i:05d}.jpg"), small_frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        )
        cv2.imwrite(str(target / "masks" / f"{i:05d}.png"), small_mask.astype(np.uint8))

    info = json.loads((source / "info.json").read_text())
    original = info.get("resolution", f"{frame.shape[1]}x{frame.shape[0]}")
    info.update(
        n_frames=count,
        n_masks=count,
        resolution=f"{size[0]}x{size[1]}",
        demo=(
            f"bundled demo copy: frames 0..{count - 1} of the {original} sample clip, downscaled to height "
            f"{HEIGHT} (area filter; frames JPEG quality {JPEG_QUALITY}; masks thresholded at 50% back to "
            "0/255) by scripts/make_demo_data.py"
        ),
    )
    (target / "info.json").write_text(json.dumps(info, indent=1) + "\n")


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=root / "demo" / "data")
    args = parser.parse_args()
    for name, count in CLIPS.items():
        make_clip(args.data / name, args.out / name, count)
        print(f"{args.out / name}: {count} frames")


if __name__ == "__main__":
    main()
