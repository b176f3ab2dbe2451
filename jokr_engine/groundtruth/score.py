"""Scoring retargeted frames against a pair's exact truth (docs/QUALITY.md, "Ground-truth benchmark").

Every row (the job's output, the ceiling and the two baselines) is an RGBA stack (N, H, W, 4) uint8 in
the driver's full frame, as `render` writes it, and is scored by the same code:

* `iou`: silhouette IoU, output alpha > 0.5 vs the truth mask, mean over frames;
* `psnr`: PSNR in dB inside the true silhouette (the output composited over mid-grey), capped at 100;
* `lpips`: LPIPS-Alex on the truth silhouette's bounding box, the pixels outside the silhouette set to
  mid-grey in both pictures, squashed to 128×128; None when the network or its weights are missing;
* `pose_following`: the share of frames whose silhouette has a higher IoU with its own truth frame than
  with every frame of the look clip (each placed as the output is placed);
* `phase_error`: the output's gait phase, estimated as the phase whose rendering of the look animal in the
  driver's gait, at the truth's placement, is nearest (L1 of premultiplied RGBA) on a grid of `phases`
  steps, vs the driver's true phase: mean circular error in cycles, 0…0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import JokrError
from ..framing import _resample, crop_boxes, model_frames, paste_back
from ..metrics import PSNR_CAP_DB
from .animal import apply, draw, invert
from .pairs import DIRECTIONS, Pair, paste_boxes

ROWS = ("ceiling", "output", "copy", "retrieve")
METRICS = ("iou", "psnr", "lpips", "pose_following", "phase_error")
DEFAULT_PHASES = 32
LPIPS_SIZE = 128
LPIPS_MARGIN = 4  # pixels around the truth silhouette's bounding box

DEFINITIONS = {
    "iou": "silhouette IoU of output alpha > 0.5 vs the truth mask, mean over frames (1 = perfect)",
    "psnr": "PSNR in dB inside the true silhouette, output composited over mid-grey, capped at 100 dB, mean over "
    "frames",
    "lpips": "LPIPS-Alex on the truth silhouette's bounding box (+4 px), outside the silhouette mid-grey in both, "
    "squashed to 128×128, mean over frames (0 = identical)",
    "pose_following": "share of frames whose silhouette IoU with its own truth frame beats its IoU with every frame "
    "of the look clip placed as the output (1 = follows the driver)",
    "phase_error": "mean circular error (cycles, 0…0.5) of the gait phase estimated by matching the output "
    "against the look animal drawn in the driver's gait at a grid of phases, at the truth's placement",
}
ROW_DEFINITIONS = {
    "ceiling": "the truth through the model's resolution: cut out of the paste box, resampled to S×S and pasted "
    "back as render pastes (the best this image size allows)",
    "output": "the job's render (A's motion with B's look for AB), as `render` writes it",
    "copy": "the look clip's model frame of the same index (modulo its length), pasted as the output is",
    "retrieve": "the look clip's model frame whose silhouette best matches the driver's (IoU in model space), "
    "pasted as the output is",
}


@dataclass
class Geometry:
    """How a job sees a pair: model size S, padding, each clip's crop boxes and model frames."""

    image_size: int
    pad: float
    boxes: dict[str, np.ndarray]
    model_images: dict[str, np.ndarray]  # (N, 3, S, S) uint8
    model_masks: dict[str, np.ndarray]  # (N, 1, S, S) uint8 0/255

    def paste(self, direction: str) -> np.ndarray:
        driver, look = DIRECTIONS[direction]
        return paste_boxes(self.boxes[driver], self.boxes[look])


def pair_geometry(pair: Pair, image_size: int, pad: float = 0.2) -> Geometry:
    """The geometry `prepare_clip` gives the pair's clips for this model size (no job needed)."""
    boxes, images, masks = {}, {}, {}
    for label in ("A", "B"):
        boxes[label] = crop_boxes(pair.masks[label], pair.spec.crop)
        images[label], masks[label] = model_frames(pair.frames[label], pair.masks[label], boxes[label], image_size,
                                                   pad)
    return Geometry(image_size, pad, boxes, images, masks)


def job_geometry(job, pair: Pair, own_boxes: bool = False) -> Geometry:
    """The geometry of a trained job, checked against the pair: same clips, same crop boxes. With `own_boxes`
    the job's boxes may differ (a job trained on other masks, e.g. automatic ones): its render and the rows are
    placed with its own boxes, while the truth stays where the pair's true masks put it, so a misplaced crop
    counts against the job."""
    config = job.config()
    prepared = job.load_prepared()
    for label in ("A", "B"):
        clip, info = prepared[label], pair.meta["clips"][label]
        if clip.frame_count != info["frame_count"] or tuple(clip.frame_size) != tuple(info["frame_size"]):
            raise JokrError(f"job {job.folder}: clip {label} has {clip.frame_count} frames of "
                            f"{clip.frame_size[0]}×{clip.frame_size[1]}, the pair's has {info['frame_count']} of "
                            f"{info['frame_size'][0]}×{info['frame_size'][1]}",
                            "score a job trained on this pair's A/ and B/ folders, whole clips")
        if not own_boxes and not np.allclose(clip.boxes, np.asarray(info["crop_boxes"]), atol=1e-6):
            raise JokrError(f"job {job.folder}: clip {label}'s crop boxes differ from those the truth is placed for: "
                            f"the job was trained on other frames or masks, or with another crop mode than "
                            f"{pair.spec.crop}",
                            f"train on this pair's folders with --crop {pair.spec.crop} (`groundtruth run` does); "
                            f"for a job trained on other masks of these frames, score with --own-boxes")
    return Geometry(config.image_size, config.pad, {k: c.boxes for k, c in prepared.items()},
                    {k: c.images for k, c in prepared.items()}, {k: c.masks for k, c in prepared.items()})


# ---------------------------------------------------------------------------------------------------
# Rows: the ceiling and the baselines


def _rgba(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(3, S, S) and (1, S, S) model frames → (S, S, 4)."""
    return np.concatenate([image, mask]).transpose(1, 2, 0)


def _paste_all(pictures: list[np.ndarray], boxes: np.ndarray, frame_size, pad: float) -> np.ndarray:
    return np.stack([paste_back(p, box, frame_size, pad) for p, box in zip(pictures, boxes)])


def frame_size(pair: Pair, label: str) -> tuple[int, int]:
    width, height = pair.meta["clips"][label]["frame_size"]
    return int(width), int(height)


def ceiling(pair: Pair, geometry: Geometry, direction: str) -> np.ndarray:
    """The truth cut out of the paste boxes at the model's size and pasted back: (N, H, W, 4) uint8."""
    driver, _ = DIRECTIONS[direction]
    boxes = geometry.paste(direction)
    truth = f"truth_{direction}"
    images, masks = model_frames(pair.frames[truth], pair.masks[truth], boxes, geometry.image_size, geometry.pad)
    return _paste_all([_rgba(i, m) for i, m in zip(images, masks)], boxes, frame_size(pair, driver), geometry.pad)


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of 0/1 masks a (N, P) and b (M, P) → (N, M); two empty masks give 1."""
    a, b = a.astype(np.float32, copy=False), b.astype(np.float32, copy=False)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def retrieved_indices(geometry: Geometry, direction: str) -> np.ndarray:
    """For each driver frame, the look frame whose model-space silhouette matches the driver's best."""
    driver, look = DIRECTIONS[direction]
    drv = geometry.model_masks[driver][:, 0].reshape(len(geometry.model_masks[driver]), -1) > 127
    lk = geometry.model_masks[look][:, 0].reshape(len(geometry.model_masks[look]), -1) > 127
    return _iou_matrix(drv, lk).argmax(axis=1)


def baselines(pair: Pair, geometry: Geometry, direction: str) -> dict[str, np.ndarray]:
    """`copy` and `retrieve` (see ROW_DEFINITIONS), (N, H, W, 4) uint8 each."""
    driver, look = DIRECTIONS[direction]
    boxes = geometry.paste(direction)
    count, look_count = len(geometry.boxes[driver]), len(geometry.boxes[look])
    pictures = [_rgba(i, m) for i, m in zip(geometry.model_images[look], geometry.model_masks[look])]
    size = frame_size(pair, driver)
    copy = _paste_all([pictures[n % look_count] for n in range(count)], boxes, size, geometry.pad)
    retrieve = _paste_all([pictures[m] for m in retrieved_indices(geometry, direction)], boxes, size, geometry.pad)
    return {"copy": copy, "retrieve": retrieve}


# ---------------------------------------------------------------------------------------------------
# LPIPS (optional: the weights come from `jokr-engine setup`)


class Lpips:
    """LPIPS-Alex from jokr_engine.lpips_net, or `reason` why it is not available (never a made-up number)."""

    def __init__(self, device="cpu"):
        self.net, self.reason, self.device = None, None, device
        try:
            from ..lpips_net import build_lpips
        except ImportError as error:
            self.reason = f"jokr_engine.lpips_net cannot be imported ({error})"
            return
        try:
            self.net = build_lpips("alex", device)
        except JokrError as error:
            self.reason = f"{error.message} ({error.hint})" if error.hint else error.message
        except Exception as error:  # noqa: BLE001 - any failure to load means: not available, say why
            self.reason = f"{type(error).__name__}: {error}".splitlines()[0]

    @property
    def available(self) -> bool:
        return self.net is not None

    @property
    def description(self) -> str:
        if self.net is None:
            return f"not available: {self.reason}"
        return f"LPIPS-Alex, weights {getattr(self.net, 'source', '?')}"

    def __call__(self, outputs: np.ndarray, truths: np.ndarray, masks: np.ndarray) -> list[float]:
        """Per frame: outputs and truths (N, H, W, 3) float in 0..1, masks (N, H, W) bool."""
        import torch

        pairs = []
        for out, truth, mask in zip(outputs, truths, masks):
            ys, xs = np.nonzero(mask)
            if ys.size == 0:
                pairs.append(None)
                continue
            y0, y1 = max(ys.min() - LPIPS_MARGIN, 0), min(ys.max() + 1 + LPIPS_MARGIN, mask.shape[0])
            x0, x1 = max(xs.min() - LPIPS_MARGIN, 0), min(xs.max() + 1 + LPIPS_MARGIN, mask.shape[1])
            inside = mask[y0:y1, x0:x1, None]
            crops = [np.where(inside, image[y0:y1, x0:x1], 0.5).astype(np.float32) for image in (out, truth)]
            pairs.append([cv2.resize(c, (LPIPS_SIZE, LPIPS_SIZE), interpolation=cv2.INTER_AREA) for c in crops])
        valid = [p for p in pairs if p is not None]
        values = []
        with torch.no_grad():
            for start in range(0, len(valid), 16):
                chunk = valid[start : start + 16]
                a = torch.from_numpy(np.stack([p[0] for p in chunk])).permute(0, 3, 1, 2) * 2 - 1
                b = torch.from_numpy(np.stack([p[1] for p in chunk])).permute(0, 3, 1, 2) * 2 - 1
                values += self.net(a.to(self.device), b.to(self.device)).flatten().float().cpu().tolist()
        it = iter(values)
        return [float("nan") if p is None else next(it) for p in pairs]


# ---------------------------------------------------------------------------------------------------
# Scores


def circular_error(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|estimate − truth| on the unit circle of phases (cycles), in 0…0.5."""
    return np.abs((np.asarray(estimate) - np.asarray(truth) + 0.5) % 1.0 - 0.5)


def _over_grey(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    return (rgba[..., :3].astype(np.float32) / 255) * alpha + 0.5 * (1 - alpha)


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the True pixels, or None."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _placed_alphas(masks: np.ndarray, box: np.ndarray, size: tuple[int, int], pad: float) -> np.ndarray:
    """Model masks (M, 1, S, S) placed into the frame as paste_back places a picture's alpha → (H, W, M)
    bool, alpha > 0.5 (paste_back's uint8 alpha > 127 is the resampled value ≥ 127.5)."""
    stack = np.ascontiguousarray(masks[:, 0].transpose(1, 2, 0)).astype(np.float32)
    origin = np.asarray(box[:2], dtype=np.float64) - pad * np.asarray(box[2:], dtype=np.float64)
    scale = stack.shape[0] / ((1 + 2 * pad) * np.asarray(box[2:], dtype=np.float64))
    # OpenCV resamples at most 4 channels at a time when it shrinks (a model larger than the paste box).
    placed = np.concatenate([_resample(stack[:, :, i:i + 4], scale, -origin * scale, (int(size[0]), int(size[1])))
                             .reshape(size[1], size[0], -1) for i in range(0, stack.shape[2], 4)], axis=2)
    return placed >= 127.5


class _PhaseCanvas:
    """The look animal in the driver's gait at every phase of the grid, drawn once on a canvas in the
    truth's placement of one frame; an output of frame n is warped onto that canvas by the affine between
    the two frames' truth placements (they differ by the crop box's motion) and matched there."""

    EXTENT = np.array([[-2.2, -1.8], [2.2, -1.8], [2.2, 2.0], [-2.2, 2.0]])  # body units: any pose fits

    def __init__(self, look_spec, driver_spec, placements: np.ndarray, grid: np.ndarray):
        self.grid, self.placements = grid, placements
        reference = placements[len(placements) // 2].copy()
        corners = apply(reference, self.EXTENT) - reference[:2, 2]
        low = corners.min(axis=0) - 2
        width, height = (np.ceil(corners.max(axis=0) - low) + 2).astype(int)
        reference[:2, 2] = -low  # the body origin sits inside the canvas
        self.reference, self.size = reference, (int(width), int(height))
        drawn = [draw(look_spec.look, driver_spec.gait, float(p), reference, self.size) for p in grid]
        self.candidates = np.stack([np.concatenate([c, a[..., None]], axis=-1) for c, a in drawn])
        self.drawn_region = _bounds(self.candidates[..., 3].max(axis=0) > 0)

    def estimate(self, rgba: np.ndarray, n: int) -> float:
        """The grid phase whose drawing is nearest (L1 of premultiplied RGBA) to the output `rgba`."""
        picture = rgba.astype(np.float32) / 255
        picture = np.concatenate([picture[..., :3] * picture[..., 3:], picture[..., 3:]], axis=-1)
        to_canvas = self.reference @ invert(self.placements[n])  # frame pixels → canvas pixels (continuous)
        shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])  # OpenCV index → continuous
        matrix = (np.linalg.inv(shift) @ to_canvas @ shift)[:2]
        warped = cv2.warpAffine(picture, matrix, self.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0)
        # Outside both the drawings and the output everything is 0: only the union of their boxes counts.
        y0, y1, x0, x1 = self.drawn_region
        found = _bounds(warped[..., 3] > 0)
        if found is not None:
            y0, y1, x0, x1 = min(y0, found[0]), max(y1, found[1]), min(x0, found[2]), max(x1, found[3])
        window = self.candidates[:, y0:y1, x0:x1] - warped[None, y0:y1, x0:x1]
        distance = np.abs(window).reshape(len(self.grid), -1).sum(axis=1)
        return float(self.grid[int(distance.argmin())])


def score_direction(pair: Pair, geometry: Geometry, direction: str, rows: dict[str, np.ndarray],
                    phases: int = DEFAULT_PHASES, lpips: Lpips | None = None) -> dict[str, dict]:
    """Scores of each named RGBA stack in `rows` against the truth of `direction` → {row: {metric: value,
    "per_frame": {…}}}. `lpips` None or unavailable gives lpips None."""
    driver, look = DIRECTIONS[direction]
    truth_name = f"truth_{direction}"
    truth_frames, truth_masks = pair.frames[truth_name], pair.masks[truth_name] > 127
    count = len(truth_frames)
    size = frame_size(pair, driver)
    for name, stack in rows.items():
        if stack.shape != (count, size[1], size[0], 4) or stack.dtype != np.uint8:
            raise ValueError(f"row {name!r}: expected uint8 {(count, size[1], size[0], 4)}, got {stack.dtype} "
                             f"{stack.shape}")
    truth01 = truth_frames.astype(np.float32) / 255
    flat_truth = truth_masks.reshape(count, -1)
    look_spec, driver_spec = pair.spec.clip(look), pair.spec.clip(driver)
    true_phases = pair.phases(driver)
    placements = pair.truth_placements(direction)
    grid = np.arange(phases) / phases
    boxes = geometry.paste(direction)
    look_masks = geometry.model_masks[look]

    results = {}
    for name, stack in rows.items():
        alpha = stack[..., 3] > 127
        flat = alpha.reshape(count, -1)
        inter = (flat & flat_truth).sum(1)
        union = (flat | flat_truth).sum(1)
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        grey = _over_grey(stack)
        psnr = []
        for n in range(count):
            inside = truth_masks[n]
            if not inside.any():
                psnr.append(float("nan"))
                continue
            mse = float(((grey[n][inside] - truth01[n][inside]) ** 2).mean())
            psnr.append(PSNR_CAP_DB if mse <= 1e-10 else min(PSNR_CAP_DB, 10 * np.log10(1 / mse)))
        lp = lpips(grey, truth01, truth_masks) if lpips is not None and lpips.available else None
        results[name] = {"iou": iou, "psnr": np.asarray(psnr), "lpips": lp, "alpha": flat, "follows": [],
                         "phase_estimate": []}

    canvas = _PhaseCanvas(look_spec, driver_spec, placements, grid)
    cached_boxes, look_flat = None, None
    for n in range(count):
        # The look clip's frames placed as this frame's output is (reused while the paste box stays the same).
        if cached_boxes is None or not np.array_equal(boxes[n], cached_boxes):
            cached_boxes = boxes[n]
            look_flat = _placed_alphas(look_masks, boxes[n], size, geometry.pad).reshape(-1, len(look_masks)).T
            look_flat = look_flat.astype(np.float32)
        for name, result in results.items():
            own = result["iou"][n]
            others = _iou_matrix(result["alpha"][n : n + 1], look_flat)[0]
            result["follows"].append(bool(own > others.max()))
            result["phase_estimate"].append(canvas.estimate(rows[name][n], n))

    out = {}
    for name, result in results.items():
        estimate = np.asarray(result["phase_estimate"])
        error = circular_error(estimate, true_phases % 1.0)
        lp = result["lpips"]
        lp_valid = [v for v in lp if np.isfinite(v)] if lp is not None else []
        out[name] = {
            "iou": float(result["iou"].mean()),
            "psnr": float(np.nanmean(result["psnr"])),
            "lpips": float(np.mean(lp_valid)) if lp_valid else None,
            "pose_following": float(np.mean(result["follows"])),
            "phase_error": float(error.mean()),
            "per_frame": {"iou": result["iou"].round(5).tolist(), "psnr": np.round(result["psnr"], 3).tolist(),
                          "lpips": None if lp is None else np.round(lp, 5).tolist(),
                          "follows": result["follows"], "phase_estimate": estimate.tolist(),
                          "phase_true": (true_phases % 1.0).round(5).tolist()},
        }
    return out
