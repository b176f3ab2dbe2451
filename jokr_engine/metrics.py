"""Quality metrics for a trained JOKR job; pure functions on torch tensors (CPU or GPU).

Conventions (docs/QUALITY.md defines every metric in full):

- images: float (N, 3, H, W) in [-1, 1]; the background of a masked frame is 0 (mid-grey);
- silhouettes / masks: float (N, 1, H, W) in [0, 1]; "inside" means value > threshold;
- keypoints: (N, K, 2) in model coordinates u, v in [-1, 1], x first (docs/FORMATS.md).

Keypoint distances are reported in *normalised image units*: the image side is 1, so a model-coordinate
distance is divided by 2 (the model image spans 2 units from the first to the last pixel centre).
"""

import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0
"""Largest per-frame PSNR reported: identical frames (MSE 0) and any frame with MSE <= 1e-10 get this."""


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def _check_keypoints(kp: torch.Tensor, what: str) -> None:
    if kp.dim() != 3 or kp.shape[-1] != 2:
        raise ValueError(f"{what}: keypoints must be (N, K, 2), got {tuple(kp.shape)}")


def _check_masks(m: torch.Tensor, what: str) -> None:
    if m.dim() != 4 or m.shape[1] != 1:
        raise ValueError(f"{what}: masks must be (N, 1, H, W), got {tuple(m.shape)}")


def l1(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute error in [0, 1] intensity units.

    Both images are mapped from [-1, 1] to [0, 1] (x -> (x + 1) / 2), so
    ``l1 = mean over all frames, channels and pixels of |pred - target| / 2``.
    0 is a perfect match, 1 the largest possible error.
    """
    _check_same_shape(pred, target, "l1")
    return ((pred.float() - target.float()).abs().mean() / 2).item()


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over frames of the per-frame peak signal-to-noise ratio, in dB, on [0, 1] images.

    Per frame n: ``MSE_n = mean over channels and pixels of ((pred - target) / 2) ** 2`` (the [0, 1]
    images' squared error) and ``PSNR_n = 10 * log10(1 / MSE_n)``, capped at ``PSNR_CAP_DB`` = 100 dB so
    that identical frames (MSE 0) give 100 instead of infinity and one exact frame cannot make the
    mean infinite. The result is the plain mean of the PSNR_n. Higher is better.
    """
    _check_same_shape(pred, target, "psnr")
    diff = (pred.float() - target.float()) / 2
    mse = diff.pow(2).flatten(1).mean(dim=1)
    per_frame = (10 * torch.log10(1 / mse)).clamp(max=PSNR_CAP_DB)  # 1/0 = inf -> capped
    return per_frame.mean().item()


def _binary_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-frame IoU of two boolean (N, P) sets; both empty -> 1."""
    inter = (pred & target).sum(dim=1).float()
    union = (pred | target).sum(dim=1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def silhouette_iou(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> float:
    """Mean over frames of the intersection-over-union of the thresholded masks.

    A pixel is inside when its value is > ``threshold``. Per frame ``IoU = |P & T| / |P | T|``; a frame
    where both masks are empty counts as 1 (they agree perfectly). 1 is a perfect match.
    """
    _check_masks(pred, "silhouette_iou")
    _check_same_shape(pred, target, "silhouette_iou")
    p = (pred > threshold).flatten(1)
    t = (target > threshold).flatten(1)
    return _binary_iou(p, t).mean().item()


def keypoint_jitter(kp: torch.Tensor) -> float:
    """Mean distance a keypoint moves between adjacent frames, in normalised image units.

    ``jitter = mean over t in [0, N-2] and k of ||kp[t+1, k] - kp[t, k]|| / 2``: the Euclidean distance
    in model coordinates divided by 2, so that the image side is 1 (the paper's "mean normalised
    distance of the same keypoints across adjacent frames": 0.0023 with the temporal loss, 0.0055
    without). It measures real motion plus noise, so compare it between runs on the same clip. Needs
    at least two frames.
    """
    _check_keypoints(kp, "keypoint_jitter")
    if kp.shape[0] < 2:
        raise ValueError("keypoint_jitter: needs at least two frames")
    steps = (kp[1:].float() - kp[:-1].float()).norm(dim=-1)
    return (steps.mean() / 2).item()


def keypoint_cycle_error(driving_kp: torch.Tensor, reextracted_kp: torch.Tensor) -> float:
    """Mean distance between the keypoints that drove a render and those re-extracted from it.

    ``cycle = mean over frames and k of ||reextracted[n, k] - driving[n, k]|| / 2`` in normalised image
    units (image side 1). 0 means the keypoint detector reads back exactly the pose the generator drew.
    """
    _check_keypoints(driving_kp, "keypoint_cycle_error")
    _check_same_shape(driving_kp, reextracted_kp, "keypoint_cycle_error")
    d = (reextracted_kp.float() - driving_kp.float()).norm(dim=-1)
    return (d.mean() / 2).item()


def nearest_silhouette_iou(
    generated: torch.Tensor, real: torch.Tensor, threshold: float = 0.5, chunk: int = 64
) -> tuple[float, torch.Tensor]:
    """Shape realism: for each generated silhouette, the best IoU with any real silhouette of the clip.

    ``per_frame[n] = max over m of IoU(generated[n] > threshold, real[m] > threshold)`` (two empty masks
    have IoU 1) and the mean is the plain mean of ``per_frame``. Returns ``(mean, per_frame)`` with
    ``per_frame`` a float tensor (N,) on the input's device. 1 means every generated shape occurs in
    the real clip. Intersections are computed as a matrix product of the flattened 0/1 masks,
    ``chunk`` generated frames at a time, so memory stays at ``chunk x M`` entries.
    """
    _check_masks(generated, "nearest_silhouette_iou")
    _check_masks(real, "nearest_silhouette_iou")
    if generated.shape[2:] != real.shape[2:]:
        raise ValueError(
            f"nearest_silhouette_iou: mask sizes differ, {tuple(generated.shape[2:])} vs {tuple(real.shape[2:])}"
        )
    if real.shape[0] == 0 or generated.shape[0] == 0:
        raise ValueError("nearest_silhouette_iou: needs at least one generated and one real mask")
    # float32 holds pixel counts exactly up to 2**24, and 0/1 products stay exact even under TF32.
    r = (real > threshold).flatten(1).float()
    r_area = r.sum(dim=1)
    best = []
    for start in range(0, generated.shape[0], chunk):
        g = (generated[start:start + chunk] > threshold).flatten(1).float()
        inter = g @ r.T
        union = g.sum(dim=1, keepdim=True) + r_area[None, :] - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        best.append(iou.max(dim=1).values)
    per_frame = torch.cat(best)
    return per_frame.mean().item(), per_frame


def keypoint_spread(kp: torch.Tensor) -> float:
    """Mean pairwise distance between the keypoints of a frame, averaged over frames; normalised units.

    ``spread = mean over n and pairs j < k of ||kp[n, j] - kp[n, k]|| / 2``. Keypoints that collapse onto
    one spot (a known failure of unsupervised keypoints) drive it towards 0; for keypoints spread over an
    animal that fills the image it is a sizeable fraction of 1. Needs K >= 2.
    """
    _check_keypoints(kp, "keypoint_spread")
    k = kp.shape[1]
    if k < 2:
        raise ValueError("keypoint_spread: needs at least two keypoints")
    dist = torch.cdist(kp.float(), kp.float())  # (N, K, K), zero diagonal
    pairs = k * (k - 1)  # ordered pairs; each unordered pair is counted twice, as is its distance
    return (dist.sum(dim=(1, 2)) / pairs).mean().item() / 2


def keypoint_mask_hit_rate(kp: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> float:
    """Fraction of keypoints that fall inside the animal's mask of their frame.

    The mask of frame n is sampled at each keypoint by bilinear interpolation
    (``grid_sample``, ``align_corners=True``, the model-coordinate convention; outside the image reads
    0); a keypoint hits when the sampled value is > ``threshold``. Result in [0, 1]: the mean of hits
    over frames and keypoints. Keypoints on the background (low rate) track nothing of the animal.
    """
    _check_keypoints(kp, "keypoint_mask_hit_rate")
    _check_masks(masks, "keypoint_mask_hit_rate")
    if kp.shape[0] != masks.shape[0]:
        raise ValueError(f"keypoint_mask_hit_rate: {kp.shape[0]} keypoint frames but {masks.shape[0]} masks")
    grid = kp.float()[:, :, None, :]  # (N, K, 1, 2): x, y as grid_sample expects
    sampled = F.grid_sample(masks.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return (sampled > threshold).float().mean().item()
