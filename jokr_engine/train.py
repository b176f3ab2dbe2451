"""The two-step JOKR training loop.

Step 1 trains E, G and T against the six shape losses while D learns to tell A's keypoints from B's;
step 2 freezes E and G and trains the texture refiners R_A and R_B. Whole clips live on the device and
every sample is drawn and augmented there, so the loop runs no per-sample Python and no CPU loader."""

from __future__ import annotations

import contextlib
import math
import signal
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .acceleration import Acceleration
from .augment import PairAugment, random_theta, warp_by_theta
from .checkpoint import CheckpointWriter, flatten_optimizer, load_checkpoint, restore_optimizer
from .config import Config
from .errors import JokrError
from .events import Emitter
from .infer import extract_keypoints, generate, masked_images, to_look_frame
from .job import DOMAINS, Job, JokrModels, PreparedClip, device_name
from .keypoint_detector import draw_keypoint_maps
from .losses import (
    containment_loss,
    discriminator_loss,
    domain_confusion_loss,
    equivariance_loss,
    reconstruction_l1,
    separation_loss,
    silhouette_loss,
    temporal_loss,
)
from .perceptual import build_perceptual_loss

STEP1_LOSSES = ("silhouette", "equivariance", "separation", "domain", "containment", "temporal")


class DeviceClip:
    """A prepared clip resident on the device; draws augmented (t, t+1) pairs there."""

    def __init__(self, clip: PreparedClip, device: torch.device):
        self.images = torch.from_numpy(clip.images).to(device)
        self.masks = torch.from_numpy(clip.masks).to(device)

    def sample(self, batch: int, augment: PairAugment | None, pairs: bool):
        n = self.images.shape[0]
        first = torch.randint(0, n - 1 if pairs else n, (batch,), device=self.images.device)
        picks = [first, first + 1] if pairs else [first]
        stacked = torch.cat([self.images[i].float() for i in picks] + [self.masks[i].float() for i in picks], dim=1)
        if augment is not None:
            stacked = augment(stacked)
        frames = len(picks)
        images = stacked[:, : 3 * frames].clamp(0, 255)
        masks = stacked[:, 3 * frames :]
        out = []
        for f in range(frames):
            out.append(masked_images(images[:, 3 * f : 3 * f + 3], masks[:, f : f + 1]))
        return out  # [(image, mask) per frame]


class Trainer:
    def __init__(self, job: Job, config: Config, clips: dict[str, PreparedClip], device: torch.device,
                 emitter: Emitter):
        self.job, self.config, self.clips, self.device, self.emitter = job, config, clips, device, emitter
        torch.manual_seed(config.seed)
        self.acceleration = Acceleration.for_device(config, device)
        self.acceleration.configure_backends(device)
        self.models = self.acceleration.prepare_models(JokrModels(config).to(device))
        m = self.models
        # Fused Adam updates all parameters in a few kernels; the per-parameter loop dispatched ~800
        # operators per step for E + G + T alone (docs/BENCHMARKS.md, "What limits the speed").
        adam = {"lr": config.lr, "betas": config.betas, "fused": True}
        self.opt_shape = torch.optim.Adam([*m.E.parameters(), *m.G.parameters(), *m.T.parameters()], **adam)
        self.opt_disc = torch.optim.Adam(m.D.parameters(), **adam)
        self.opt_texture = torch.optim.Adam([*m.R_A.parameters(), *m.R_B.parameters()], **adam)
        self.data = {k: DeviceClip(c, device) for k, c in clips.items()}
        self.augment = PairAugment() if config.augment else None  # no state: draws on the clips' device
        use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
        self.precision = "bf16" if use_bf16 else "fp32"  # what runs, for reports
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16
                         else contextlib.nullcontext())
        self.step, self.iteration = 1, 0
        self.stop_reason: str | None = None
        self.writer = CheckpointWriter()
        self.clock = time.monotonic  # for the time-based checkpoints; tests put a fake clock here
        self.last_checkpoint = 0.0
        # Built now, not when step 2 begins: missing LPIPS weights must stop the run before hours of step 1.
        self.perceptual = (build_perceptual_loss(config.perceptual, device, self.acceleration.prepare)
                           if config.step2_iterations > 0 else None)

    # --- one iteration of each step -------------------------------------------------------------
    def step1_iteration(self) -> dict[str, torch.Tensor]:
        c, m = self.config, self.models
        keypoints, masks, terms = {}, {}, {k: 0.0 for k in STEP1_LOSSES}
        with self.autocast:
            for label in DOMAINS:
                (img_t, mask_t), (img_next, _) = self.data[label].sample(c.step1_batch, self.augment, pairs=True)
                theta = random_theta(img_t.shape[0], c.equivariance_std, self.device)
                # A and B go through E in separate calls, and the warped frames in a call of their own:
                # BatchNorm statistics are per domain and never mixed with the warps, as the authors'.
                detected = m.E(torch.cat([img_t, img_next]))
                k_t, k_next = detected["keypoints"].chunk(2)
                heat_t = detected["heatmaps"][: img_t.shape[0]]
                k_warped = m.E(warp_by_theta(img_t, theta))["keypoints"]
                keypoints[label], masks[label] = k_t, mask_t
                terms["equivariance"] = terms["equivariance"] + equivariance_loss(k_t, k_warped, theta)
                terms["separation"] = terms["separation"] + separation_loss(k_t, c.separation_delta)
                terms["containment"] = terms["containment"] + containment_loss(heat_t, m.E.mask_at_heatmap(mask_t))
                terms["temporal"] = terms["temporal"] + temporal_loss(k_t, k_next)
            maps = draw_keypoint_maps(torch.cat([keypoints["A"], keypoints["B"]]), c.image_size, c.heatmap_scale)
            shapes = m.G(maps).float()
            n = keypoints["A"].shape[0]
            terms["silhouette"] = (silhouette_loss(shapes[:n, 0:1], masks["A"])
                                   + silhouette_loss(shapes[n:, 1:2], masks["B"]))
            b_in_a = m.T(keypoints["B"])
            terms["domain"] = domain_confusion_loss(m.D(keypoints["A"]).float(), m.D(b_in_a).float())
            total = (c.w_silhouette * terms["silhouette"] + c.w_equivariance * terms["equivariance"]
                     + c.w_separation * terms["separation"] + c.w_domain * terms["domain"]
                     + c.w_containment * terms["containment"] + c.w_temporal * terms["temporal"])
        self.opt_shape.zero_grad(set_to_none=True)
        total.backward()
        self.opt_shape.step()
        with self.autocast:
            d_loss = discriminator_loss(m.D(keypoints["A"].detach()).float(), m.D(b_in_a.detach()).float())
        self.opt_disc.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_disc.step()
        return {**{k: v.detach() for k, v in terms.items()}, "total": total.detach(), "discriminator": d_loss.detach()}

    def step2_iteration(self) -> dict[str, torch.Tensor]:
        c, m = self.config, self.models
        # On the device: a 0.0 left in place (no perceptual term) was returned as a tensor made on the host.
        zero = torch.zeros((), device=self.device)
        terms = {"l1": zero, "perceptual": zero}
        with self.autocast:
            for label in DOMAINS:
                ((image, _),) = self.data[label].sample(c.step2_batch, self.augment, pairs=False)
                with torch.no_grad():
                    shape = m.G(draw_keypoint_maps(m.E(image)["keypoints"], c.image_size, c.heatmap_scale))
                    channel = 0 if label == "A" else 1
                    silhouette = shape[:, channel : channel + 1].float()
                rebuilt = m.refiner(label)(silhouette.mul(2).sub(1).expand(-1, 3, -1, -1))
                terms["l1"] = terms["l1"] + reconstruction_l1(rebuilt, image)
                if self.perceptual is not None:
                    terms["perceptual"] = terms["perceptual"] + self.perceptual(rebuilt, image)
            total = c.w_l1 * terms["l1"] + c.w_perceptual * terms["perceptual"]
        self.opt_texture.zero_grad(set_to_none=True)
        total.backward()
        self.opt_texture.step()
        return {k: v.detach() for k, v in terms.items()} | {"total": total.detach()}

    # --- state ------------------------------------------------------------------------------------
    def set_phase(self) -> None:
        """Step 1 trains everything but R; step 2 freezes E and G (eval mode: no dropout in G)."""
        m = self.models
        m.train()
        if self.step == 2:
            m.E.requires_grad_(False)
            m.G.requires_grad_(False)
            m.G.eval()
            m.D.requires_grad_(False)
            m.T.requires_grad_(False)

    def state(self, reason: str) -> tuple[dict[str, torch.Tensor], dict]:
        """What a checkpoint holds: the live tensors (not copies) and the JSON metadata."""
        tensors = {f"model.{k}": v for k, v in self.models.state_dict().items()}
        meta = {
            "step": self.step, "iteration": self.iteration, "config": self.config.to_dict(),
            "affine": self.models.T.matrix.detach().cpu().tolist(),
            "engine_version": __version__, "torch_version": torch.__version__,
            "device": str(self.device), "time": time.time(), "reason": reason,
            "finished": self.step == 2 and self.iteration >= self.config.step2_iterations,
            "optimizers": {},
        }
        for name, opt in self.optimizers().items():
            meta["optimizers"][name] = flatten_optimizer(name, opt, tensors)
        tensors["rng.cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return tensors, meta

    def set_learning_rate(self, iterations: int) -> None:
        """The learning rate of this iteration of the current step: constant (the authors'), or a cosine
        from `lr` down to 0 at the step's last iteration. A function of the iteration alone, so a resumed
        run continues the schedule exactly."""
        lr = self.config.lr
        if self.config.lr_schedule == "cosine":
            lr *= 0.5 * (1 + math.cos(math.pi * self.iteration / max(iterations, 1)))
        for opt in ((self.opt_shape, self.opt_disc) if self.step == 1 else (self.opt_texture,)):
            for group in opt.param_groups:
                group["lr"] = lr

    def checkpoint(self, reason: str, stem: str = "latest") -> None:
        """Take the state of this iteration; it is written in the background, and its `checkpoint` event
        is emitted once the files are in place."""
        tensors, meta = self.state(reason)

        def written(path: Path) -> None:
            if stem == "latest":
                self.emitter.emit("checkpoint", step=meta["step"], iteration=meta["iteration"], path=str(path),
                                  reason=reason)

        self.writer.save(self.job.checkpoints, stem, tensors, meta, written)
        self.last_checkpoint = self.clock()

    def checkpoint_due(self) -> bool:
        """Every `checkpoint_minutes` of wall time and, if set, every `checkpoint_every` iterations."""
        c = self.config
        by_time = c.checkpoint_minutes > 0 and self.clock() - self.last_checkpoint >= 60 * c.checkpoint_minutes
        return by_time or (c.checkpoint_every > 0 and self.iteration % c.checkpoint_every == 0)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"shape": self.opt_shape, "disc": self.opt_disc, "texture": self.opt_texture}

    def restore(self, tensors: dict, meta: dict) -> None:
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.models.load_state_dict(state)
        except RuntimeError:
            raise JokrError("the checkpoint's networks do not fit the job's settings",
                            "resume without changing network settings (num_keypoints, image_size, gen_*, kp_*)",
                            code="incompatible_job") from None
        for name, opt in self.optimizers().items():
            restore_optimizer(name, opt, tensors, meta["optimizers"][name])
            for group in opt.param_groups:  # the saved groups carry the old values; --set on resume wins
                group["lr"], group["betas"] = self.config.lr, self.config.betas
        self.step, self.iteration = meta["step"], meta["iteration"]
        torch.set_rng_state(tensors["rng.cpu"])
        if self.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)

    # --- the loop ---------------------------------------------------------------------------------
    def run(self, until: tuple[int, int] | None = None) -> str:
        """Train to the end, to `until` or to a stop request. Every way out, errors included, waits for
        the checkpoint being written; if that write failed, its error is raised."""
        try:
            return self._loop(until)
        finally:
            self.writer.wait()

    def _loop(self, until: tuple[int, int] | None) -> str:
        c = self.config
        plan = {1: c.step1_iterations, 2: c.step2_iterations}
        self._install_signal_handlers()
        window_start, window_iterations = time.perf_counter(), 0
        self.last_checkpoint = self.clock()
        while self.step <= 2:
            if self.iteration >= plan[self.step]:
                if self.step == 1:
                    self.checkpoint("step_end", stem="step1")
                    self.step, self.iteration = 2, 0
                    self.checkpoint("step_end")
                    continue
                break
            self.set_phase()
            self.set_learning_rate(plan[self.step])
            losses = self.step1_iteration() if self.step == 1 else self.step2_iteration()
            self.iteration += 1
            window_iterations += 1
            self.writer.poll()  # the last checkpoint's event, or its error, as soon as it is written
            last = self.iteration >= plan[self.step]
            at_checkpoint = self.checkpoint_due() or last
            if self.iteration % c.progress_every == 0 or at_checkpoint or self.stop_requested():
                values = self._finite_losses(losses)
                now = time.perf_counter()
                rate = window_iterations / max(now - window_start, 1e-9)
                window_start, window_iterations = now, 0
                remaining = plan[self.step] - self.iteration + (plan[2] if self.step == 1 else 0)
                self.emitter.emit("progress", step=self.step, iteration=self.iteration, of=plan[self.step],
                                  losses=values, its_per_s=rate, eta_s=remaining / rate)
            if self.iteration % c.preview_every == 0 or last:
                self.preview()
            if until is not None and (self.step, self.iteration) == until:
                self.checkpoint("until")
                return "paused"
            if self.stop_requested():
                self.checkpoint("cancel")
                return "cancelled"
            if at_checkpoint and not last:
                self.checkpoint("interval")
        self.checkpoint("step_end")
        return "finished"

    def _finite_losses(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        values = dict(zip(losses, torch.stack([v.float() for v in losses.values()]).tolist()))
        bad = [k for k, v in values.items() if not np.isfinite(v)]
        if bad:
            raise JokrError(
                f"loss {bad[0]!r} became {values[bad[0]]} at step {self.step} iteration {self.iteration}; "
                "training stopped and the last good checkpoint is kept",
                "resume with a lower learning rate, e.g. `train --job DIR --resume --set lr=5e-5`",
                code="non_finite_loss")
        return values

    def stop_requested(self) -> bool:
        if self.emitter.lock_lost():  # stop at once, writing nothing: the job belongs to another engine now
            raise JokrError("another engine took over this job while this one was stalled; this one stopped",
                            "nothing to do: the other engine goes on from the last checkpoint", code="job_busy")
        if self.stop_reason is None and self.job.cancel_file.exists():
            self.stop_reason = "CANCEL file"
        return self.stop_reason is not None

    def _install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            self.stop_reason = signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)

    @torch.no_grad()
    @torch.compiler.set_stance("force_eager")  # other batch sizes and modes than training: no compiling
    def preview(self) -> Path:
        from .report import contact_sheet, write_png  # cv2 drawing, only needed here

        m, c = self.models, self.config
        was_training = {name: module.training for name, module in m.named_children()}
        m.eval()
        rows, marks = [], {}
        kps = {}
        for label, clip in self.clips.items():
            picks = np.linspace(0, clip.frame_count - 1, 4).round().astype(int).tolist()
            kps[label] = extract_keypoints(m, clip, self.device, picks)
            rows.append((f"{label} input", clip.images[picks].transpose(0, 2, 3, 1)))
            marks[f"{label} input"] = kps[label].cpu().numpy()
            _, own = generate(m, kps[label], label, c.image_size, c.heatmap_scale, refine=False)
            rows.append((f"{label} silhouette", _gray(own)))
        for driving, look in (("A", "B"), ("B", "A")):
            moved = to_look_frame(m, kps[driving], driving, c.use_affine)
            rgb, shape = generate(m, moved, look, c.image_size, c.heatmap_scale, refine=self.step == 2)
            picture = _gray(shape) if rgb is None else ((rgb.clamp(-1, 1) + 1) * 127.5).round().byte()
            rows.append((f"{driving}{look}", picture if rgb is None else picture.permute(0, 2, 3, 1).cpu().numpy()))
        for name, module in m.named_children():
            module.train(was_training[name])
        sheet = contact_sheet(rows, marks, columns=4)
        self.job.previews.mkdir(parents=True, exist_ok=True)
        path = self.job.previews / f"step{self.step}-{self.iteration:06d}.png"
        write_png(path, sheet)
        write_png(self.job.previews / "latest.png", sheet)
        self.emitter.emit("preview", step=self.step, iteration=self.iteration, path=str(path))
        return path


def _gray(silhouette: torch.Tensor) -> np.ndarray:
    return (silhouette.clamp(0, 1) * 255).round().byte().expand(-1, 3, -1, -1).permute(0, 2, 3, 1).cpu().numpy()


def train(job: Job, config: Config, clips: dict[str, PreparedClip], device: torch.device, emitter: Emitter,
          preset: str, resume: bool, until: tuple[int, int] | None) -> str:
    trainer = Trainer(job, config, clips, device, emitter)
    resumed_from = None
    # A job stopped before its first checkpoint has nothing to resume: it starts at iteration 0 with its
    # saved settings and prepared clips, which is exactly where it was.
    if resume and job.has_checkpoint:
        tensors, meta = load_checkpoint(job.checkpoints)
        trainer.restore(tensors, meta)
        job.save_config(config)
        resumed_from = {"step": trainer.step, "iteration": trainer.iteration}
    job.cancel_file.unlink(missing_ok=True)
    emitter.emit("started", command="train", job=str(job.folder), device=str(device),
                 device_name=device_name(device), preset=preset,
                 plan=[{"step": 1, "iterations": config.step1_iterations},
                       {"step": 2, "iterations": config.step2_iterations}],
                 resumed_from=resumed_from, acceleration=trainer.acceleration.describe())
    try:
        return trainer.run(until)
    except torch.OutOfMemoryError:
        batch = config.step1_batch if trainer.step == 1 else config.step2_batch
        raise JokrError(
            f"the GPU ran out of memory in step {trainer.step} (batch {batch}, image size {config.image_size})",
            f"resume with a smaller batch, e.g. `train --job DIR --resume --set step{trainer.step}_batch="
            f"{max(batch // 2, 2)}`", code="out_of_memory") from None
