"""Checkpoints: all tensors in one safetensors file, everything else in a JSON beside it.

Both files are written atomically (temporary file, fsync, rename); the tensors file is replaced first
and the JSON records its SHA-256, so a crash between the two renames is detected on load instead of
pairing new weights with old metadata. Loading never unpickles anything. Training writes them in the
background (CheckpointWriter)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .atomic import atomic_write_bytes, atomic_write_json  # noqa: F401 - atomic_write_bytes re-exported
from .errors import JokrError

CHECKPOINT_FORMAT = "jokr.checkpoint"
CHECKPOINT_VERSION = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def flatten_optimizer(name: str, optimizer: torch.optim.Optimizer, tensors: dict) -> dict:
    """Put the optimiser's per-parameter tensors into `tensors` (the live tensors, not copies); return the
    JSON-able rest."""
    state = optimizer.state_dict()
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optim.{name}.{index}.{key}"] = torch.as_tensor(value)
    return {"param_groups": state["param_groups"]}


def restore_optimizer(name: str, optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    prefix = f"optim.{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, field = key[len(prefix):].split(".", 1)
            state.setdefault(int(index), {})[field] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: Path, stem: str, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{stem}.safetensors"
    tmp = folder / f".{stem}.safetensors.tmp-{os.getpid()}"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    digest = sha256_file(tmp)
    os.replace(tmp, weights)
    atomic_write_json(folder / f"{stem}.json",
                      {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "sha256": digest, **meta})
    return weights


def host_copy(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A contiguous copy of every tensor in host memory: the state as it is now, whatever the caller
    changes next. (From a GPU the copy waits for the queued kernels: one sync.)"""
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True) for k, v in tensors.items()}


class CheckpointWriter:
    """Writes checkpoints in a background thread, so that training does not wait for the hashing,
    writing and fsync (≈ 1.3 s a checkpoint at the paper preset's size). `save` copies every tensor to
    host memory first, so the files hold the state of the iteration it was called at. One write at a
    time: a checkpoint due while the previous one is still being written waits for it, so none is
    dropped and at most one copy sits in host memory."""

    def __init__(self):
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: tuple[Future, Callable[[Path], None] | None] | None = None

    def save(self, folder: Path, stem: str, tensors: dict[str, torch.Tensor], meta: dict,
             written: Callable[[Path], None] | None = None) -> None:
        """Start writing; `written(path)` runs on the caller's thread, in poll() or wait(), once it is done."""
        self.wait()
        snapshot = host_copy(tensors)
        self._pending = (self._thread.submit(save_checkpoint, folder, stem, snapshot, meta), written)

    def poll(self) -> None:
        """Finish the write in flight if it is done (its callback, or its error)."""
        if self._pending is not None and self._pending[0].done():
            self.wait()

    def wait(self) -> None:
        """Block until the write in flight is in place and run its callback; a failed write raises here."""
        if self._pending is None:
            return
        (future, written), self._pending = self._pending, None
        path = future.result()
        if written is not None:
            written(path)


def load_checkpoint(folder: Path, stem: str = "latest") -> tuple[dict[str, torch.Tensor], dict]:
    weights, meta_path = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    if not weights.is_file() or not meta_path.is_file():
        raise JokrError(f"no checkpoint in {folder} ({weights.name} / {meta_path.name} missing)",
                        "train the job first (jokr-engine train …)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise JokrError(f"checkpoint metadata {meta_path} is not valid JSON ({error})",
                        "the file is damaged; restore it or start a new job", code="incompatible_job") from None
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
        raise JokrError(
            f"{meta_path} is a {meta.get('format')!r} version {meta.get('version')!r} checkpoint; "
            f"this engine reads {CHECKPOINT_FORMAT} version {CHECKPOINT_VERSION}",
            "use the engine version that wrote the job, or start a new job", code="incompatible_job")
    if sha256_file(weights) != meta.get("sha256"):
        raise JokrError(f"{weights} does not match {meta_path.name} (interrupted write or edited file)",
                        "restore the pair from a backup or start a new job", code="incompatible_job")
    return load_file(str(weights)), meta
