"""The `eval` command: measures a trained job (docs/QUALITY.md defines every metric)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .infer import extract_keypoints, generate, masked_images, to_look_frame
from .job import Job, device_name
from .render import load_models
from .report import contact_sheet, write_png, write_report


def _rgb(images: torch.Tensor) -> np.ndarray:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _gray(silhouettes: torch.Tensor) -> np.ndarray:
    return _rgb(silhouettes.mul(2).sub(1).expand(-1, 3, -1, -1))


def _lpips_alex(device: torch.device):
    """LPIPS-Alex with its real weights, or (None, why not): eval reports "n/a" and the reason, never a
    number from missing or random weights."""
    from .errors import JokrError
    from .lpips_net import build_lpips

    try:
        return build_lpips("alex", device), None
    except JokrError as error:
        return None, f"{error.message} ({error.hint})"


@torch.no_grad()
def evaluate_job(job: Job, device: torch.device, out_dir: Path) -> dict:
    models, config, meta = load_models(job, device)
    clips = job.load_prepared()
    lpips_alex, lpips_missing = _lpips_alex(device)
    size, scale = config.image_size, config.heatmap_scale
    values: dict[str, float] = {}
    real, keypoints, rows, marks = {}, {}, [], {}
    for label, clip in clips.items():
        images, masks = masked_images(torch.from_numpy(clip.images).to(device), torch.from_numpy(clip.masks).to(device))
        real[label] = (images, masks)
        keypoints[label] = extract_keypoints(models, clip, device)
        rebuilt, silhouette = generate(models, keypoints[label], label, size, scale)
        values[f"l1_{label}"] = metrics.l1(rebuilt, images)
        values[f"psnr_{label}"] = metrics.psnr(rebuilt, images)
        values[f"lpips_alex_{label}"] = (None if lpips_alex is None else
                                         torch.cat([lpips_alex(r, i) for r, i in zip(rebuilt.split(16),
                                                                                     images.split(16))]).mean().item())
        values[f"silhouette_iou_{label}"] = metrics.silhouette_iou(silhouette, masks)
        values[f"keypoint_jitter_{label}"] = metrics.keypoint_jitter(keypoints[label])
        values[f"keypoint_spread_{label}"] = metrics.keypoint_spread(keypoints[label])
        values[f"keypoint_mask_hit_rate_{label}"] = metrics.keypoint_mask_hit_rate(keypoints[label], masks)
        rows += [(f"{label} input", _rgb(images)), (f"{label} silhouette", _gray(silhouette))]
        marks[f"{label} input"] = keypoints[label].cpu().numpy()
    for driving, look in (("A", "B"), ("B", "A")):
        name = driving + look
        moved = to_look_frame(models, keypoints[driving], driving, config.use_affine)
        rgb, silhouette = generate(models, moved, look, size, scale)
        values[f"nearest_silhouette_iou_{name}"] = metrics.nearest_silhouette_iou(silhouette, real[look][1])[0]
        # Cycle: E on the render (background at 0, as E was trained) should find the keypoints that drove it.
        again = torch.cat([models.E((rgb[i : i + 1]) * (silhouette[i : i + 1] > 0.5))["keypoints"]
                           for i in range(len(rgb))])
        values[f"keypoint_cycle_error_{name}"] = metrics.keypoint_cycle_error(moved, again)
        rows.append((name, _rgb(rgb * (silhouette > 0.5))))
        marks[name] = moved.cpu().numpy()
    out_dir = Path(out_dir)
    sheet = write_png(out_dir / "contact_sheet.png", contact_sheet(rows, marks, columns=6))
    conditions = {
        "job": str(job.folder), "preset": job.read().get("preset"),
        "clips": {k: f"{c.name} ({c.frame_count} frames, {c.frame_size[0]}×{c.frame_size[1]})"
                  for k, c in clips.items()},
        "trained": f"step {meta['step']} iteration {meta['iteration']} (finished: {meta['finished']})",
        "iterations": f"{config.step1_iterations} + {config.step2_iterations}", "image_size": size,
        "num_keypoints": config.num_keypoints, "device": device_name(device),
        "lpips_alex": lpips_missing or f"weights {lpips_alex.source}",
    }
    json_path, md_path = write_report(out_dir, values, conditions)
    return {"report": str(md_path), "json": str(json_path), "contact_sheet": str(sheet),
            "metrics": json.loads(json_path.read_text())["metrics"]}
