"""The `keypoints` and `render` commands: trained job → keypoint file → RGBA frames in the full frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from .checkpoint import atomic_write_bytes, load_checkpoint
from .config import Config
from .errors import JokrError
from .framing import box_aspect, frame_to_model, look_boxes, model_to_frame, paste_back
from .infer import extract_keypoints, generate, to_look_frame, to_uint8_rgba
from .job import Job, JokrModels, PreparedClip
from .keypoint_file import read_keypoint_file, write_keypoint_file


def load_models(job: Job, device: torch.device) -> tuple[JokrModels, Config, dict]:
    tensors, meta = load_checkpoint(job.checkpoints)
    config = Config.from_dict(meta["config"])
    models = JokrModels(config).to(device)
    models.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    models.eval()  # G and R without dropout; E's BatchNorm uses the statistics of the frame at hand
    return models, config, meta


def export_keypoints(job: Job, device: torch.device, out: Path | None = None) -> Path:
    models, config, _ = load_models(job, device)
    clips = job.load_prepared()
    entries = {}
    for label, clip in clips.items():
        uv = extract_keypoints(models, clip, device).cpu().numpy().astype(np.float64)
        entries[label] = {
            "source": clip.source, "start": clip.start, "frame_size": clip.frame_size, "pad": config.pad,
            "model_size": config.image_size, "crop_boxes": clip.boxes,
            "keypoints": model_to_frame(uv, clip.boxes, clip.frame_size, config.image_size, config.pad),
        }
    path = Path(out) if out else job.folder / "keypoints.json"
    write_keypoint_file(path, entries, models.T.matrix.detach().cpu().tolist(), config.num_keypoints)
    return path


def parse_frames(text: str | None, count: int) -> range:
    if not text:
        return range(count)
    try:
        start, _, end = text.partition(":")
        first, stop = int(start), int(end) if end else int(start) + 1
    except ValueError:
        raise JokrError(f"--frames {text!r} is not START:END", "e.g. --frames 12:13 renders frame 12") from None
    if not 0 <= first < stop <= count:
        raise JokrError(f"--frames {text}: the driving clip has frames 0…{count - 1}", "pick a range inside it")
    return range(first, stop)


def render(job: Job, device: torch.device, look: str, out: Path, keypoint_file: Path | None = None,
           use_affine: bool = True, frames: str | None = None, preview_video: Path | None = None) -> list[Path]:
    if look not in ("A", "B"):
        raise JokrError(f"--look {look!r}: must be A or B", "--look B draws A's motion with B's look")
    driving = "A" if look == "B" else "B"
    models, config, _ = load_models(job, device)
    prepared = job.load_prepared()
    clip, look_aspect = prepared[driving], box_aspect(prepared[look].boxes)
    selected = parse_frames(frames, clip.frame_count)
    if keypoint_file is not None:
        entry = read_keypoint_file(keypoint_file, driving, config.num_keypoints, clip.frame_count)
        if tuple(entry["frame_size"]) != tuple(clip.frame_size):
            raise JokrError(f"keypoint file {keypoint_file}: clip {driving} frame_size {list(entry['frame_size'])} "
                            f"differs from the trained clip's {list(clip.frame_size)}", "use this job's keypoint file",
                            code="bad_keypoints")
        boxes = entry["crop_boxes"]
        uv = frame_to_model(entry["keypoints"], boxes, clip.frame_size, config.image_size, config.pad)
        keypoints = torch.from_numpy(uv[list(selected)]).float().to(device)
    else:
        boxes = clip.boxes
        keypoints = extract_keypoints(models, clip, device, list(selected))
    moved = to_look_frame(models, keypoints, driving, use_affine)
    rgb, silhouette = generate(models, moved, look, config.image_size, config.heatmap_scale)
    pictures = to_uint8_rgba(rgb, silhouette)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    # The picture is in the look's model space: unsquash it with the look's aspect, in the driver's box.
    placed = look_boxes(np.asarray(boxes)[list(selected)], look_aspect)
    for picture, index, box in zip(pictures, selected, placed):
        full = paste_back(picture, box, clip.frame_size, config.pad)
        ok, data = cv2.imencode(".png", cv2.cvtColor(full, cv2.COLOR_RGBA2BGRA))
        if not ok:
            raise JokrError(f"could not encode frame {index} as PNG", "check free disk space", code="internal")
        path = out / f"{index:05d}.png"
        atomic_write_bytes(path, data.tobytes())
        written.append(path)
    if preview_video is not None:
        write_side_by_side(preview_video, clip, [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in written],
                           selected)
    return written


def write_side_by_side(path: Path, clip: PreparedClip, results_bgra: list[np.ndarray], selected: range) -> None:
    """The driving clip's model input above the result composited over grey (the paper's figure layout)."""
    size = 256
    writer = None
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.mp4")
    try:
        for result, index in zip(results_bgra, selected):
            source = cv2.cvtColor(clip.images[index].transpose(1, 2, 0), cv2.COLOR_RGB2BGR)
            alpha = result[..., 3:4].astype(np.float32) / 255.0
            over_grey = (result[..., :3] * alpha + 128 * (1 - alpha)).astype(np.uint8)
            frame = np.concatenate([cv2.resize(source, (size, size)), cv2.resize(over_grey, (size, size))], axis=0)
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), clip.fps or 24.0,
                                         (frame.shape[1], frame.shape[0]))
            writer.write(frame)
    finally:
        if writer is not None:
            writer.release()
    tmp.replace(path)
