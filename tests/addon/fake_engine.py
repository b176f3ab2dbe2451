"""A stand-in for `python -m jokr_engine`, fast and scriptable, for testing the add-on's side.

Run as `python fake_engine.py [-m jokr_engine] COMMAND …` (tests wrap it in a fake "python" script).
JOKR_FAKE_MODE picks the behaviour:
  finish (default)  well-behaved: events, CANCEL/SIGTERM → checkpoint + done cancelled
  noise             like finish, with non-event lines on stdout and in events.jsonl
  crash             dies with a traceback on stderr after a few progress events (exit 1)
  missing-torch     fails at import like an engine without torch (exit 1), also for --version
  bad-input         reports an error event with code bad_input (exit 2)
  stubborn          ignores CANCEL and SIGTERM and spawns a grandchild; only a group kill stops it
JOKR_FAKE_ITERATIONS (default 5) and JOKR_FAKE_SLEEP (default 0.05 s) set the pace.
Like the engine, every command on an existing job folder appends its events to <job>/events.jsonl, and
`train` holds the job's lock (the engine's own jokr_engine/job_lock.py) or refuses a job whose lock is live.
A mask source `auto[:MODEL]` makes fake automatic masks before training (auto_masks below).
Keypoints are K = JOKR_FAKE_KEYPOINTS (default 4) points on a circle; `render` draws keypoint 0 as a
white square on transparent frames, so edits of keypoint 0 show in the pixels.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from jokr_engine.errors import JokrError  # noqa: E402
from jokr_engine.job_lock import JobLock  # noqa: E402

SCHEMA = "jokr.events/1"
MODE = os.environ.get("JOKR_FAKE_MODE", "finish")
ITERATIONS = int(os.environ.get("JOKR_FAKE_ITERATIONS", "5"))
SLEEP = float(os.environ.get("JOKR_FAKE_SLEEP", "0.05"))
KEYPOINTS = int(os.environ.get("JOKR_FAKE_KEYPOINTS", "4"))
stop_requested = False


def write_png(path: str, width: int, height: int, rgba: bytes) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + rgba[y * width * 4:(y + 1) * width * 4] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    with open(path, "wb") as stream:
        stream.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


class Emitter:
    def __init__(self, job: str | None, command: str):
        self.job, self.command = job, command

    def emit(self, event: str, **fields) -> None:
        line = json.dumps({"schema": SCHEMA, "event": event, "time": time.time(), "command": self.command,
                           **fields})
        print(line, flush=True)
        if self.job and os.path.isdir(self.job):
            with open(os.path.join(self.job, "events.jsonl"), "a") as stream:
                stream.write(line + "\n")
                if MODE == "noise":
                    stream.write("a line that is not an event\n")
        if MODE == "noise":
            print("some library printing to stdout", flush=True)


def on_sigterm(signum, frame):
    global stop_requested
    stop_requested = True


def checkpoint(job: str, step: int, iteration: int) -> str:
    folder = os.path.join(job, "checkpoints")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "latest.json")
    with open(path, "w") as stream:
        json.dump({"step": step, "iteration": iteration}, stream)
    return path


def train(args, emit: Emitter) -> int:
    job = args.job
    if args.resume:
        with open(os.path.join(job, "checkpoints", "latest.json")) as stream:
            position = json.load(stream)
        resumed = {"step": position["step"], "iteration": position["iteration"]}
        try:
            os.unlink(os.path.join(job, "CANCEL"))
        except FileNotFoundError:
            pass
    else:
        if MODE == "bad-input":
            emit.emit("error", message=f"clip {args.a} has no frames", hint="pick another clip",
                      code="bad_input")
            return 2
        os.makedirs(job, exist_ok=True)
        specs = {label: {"path": getattr(args, low), "start": getattr(args, f"{low}_start"),
                         "count": getattr(args, f"{low}_count"), "mask": getattr(args, f"{low}_mask")}
                 for label, low in (("A", "a"), ("B", "b"))}
        with open(os.path.join(job, "job.json"), "w") as stream:
            json.dump({"format": "fake", "clips": specs, "preset": args.preset, "argv": sys.argv}, stream)
        resumed = None
        for label, spec in specs.items():
            if (spec["mask"] or "").startswith("auto"):
                auto_masks(job, label, spec, emit)
    plan = [{"step": 1, "iterations": ITERATIONS}, {"step": 2, "iterations": ITERATIONS}]
    emit.emit("started", command="train", job=job, device="cpu", device_name="Fake CPU", preset="tiny",
              plan=plan, resumed_from=resumed)
    if MODE == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(os.path.join(job, "grandchild.pid"), "w") as stream:
            stream.write(str(sleeper.pid))
    start_step, start_iteration = (resumed["step"], resumed["iteration"]) if resumed else (1, 0)
    for step in (1, 2):
        if step < start_step:
            continue
        for iteration in range(start_iteration if step == start_step else 0, ITERATIONS):
            time.sleep(SLEEP)
            if MODE == "stubborn":
                emit.emit("progress", step=step, iteration=iteration + 1, of=ITERATIONS, losses={},
                          its_per_s=1.0, eta_s=1.0)
                while True:
                    time.sleep(0.1)
            if MODE == "crash" and iteration == 2:
                print("Traceback (most recent call last):\n  File \"train.py\"\nRuntimeError: CUDA went away",
                      file=sys.stderr, flush=True)
                return 1
            if stop_requested or os.path.exists(os.path.join(job, "CANCEL")):
                path = checkpoint(job, step, iteration)
                emit.emit("checkpoint", step=step, iteration=iteration, path=path, reason="cancel")
                emit.emit("done", command="train", status="cancelled", outputs={})
                return 0
            emit.emit("progress", step=step, iteration=iteration + 1, of=ITERATIONS,
                      losses={"loss": 1.0 / (iteration + 1), "nan": None}, its_per_s=20.0,
                      eta_s=(ITERATIONS - iteration) * SLEEP)
        preview = os.path.join(job, "previews", "latest.png")
        os.makedirs(os.path.dirname(preview), exist_ok=True)
        write_png(preview, 4, 4, b"\xff\x00\x00\xff" * 16)
        emit.emit("preview", step=step, iteration=ITERATIONS, path=preview)
        path = checkpoint(job, step, ITERATIONS)
        emit.emit("checkpoint", step=step, iteration=ITERATIONS, path=path, reason="step_end")
    emit.emit("done", command="train", status="finished", outputs={"checkpoint": path})
    return 0


def auto_masks(job: str, label: str, spec: dict, emit: Emitter) -> None:
    """Mask source `auto`: each frame copied as its mask into <job>/auto_masks/<label>/<frame name>.png, with
    `masking` events and a `mask_check` calling the range's second frame suspect (area_jump)."""
    model = spec["mask"].partition(":")[2] or "u2netp"
    folder = os.path.join(job, "auto_masks", label)
    os.makedirs(folder, exist_ok=True)
    files = sorted(f for f in os.listdir(spec["path"]) if f.lower().endswith(".png"))
    files = files[spec["start"]:spec["start"] + spec["count"] if spec["count"] else None]
    progress = {"clip": label, "model": model, "of": len(files), "cached": 0, "device": "CPUExecutionProvider"}
    emit.emit("masking", done=0, s_per_frame=None, eta_s=None, **progress)
    for done, name in enumerate(files, start=1):
        with open(os.path.join(spec["path"], name), "rb") as source:
            data = source.read()
        with open(os.path.join(folder, os.path.splitext(name)[0] + ".png"), "wb") as mask:
            mask.write(data)
        emit.emit("masking", done=done, s_per_frame=SLEEP, eta_s=SLEEP * (len(files) - done), **progress)
    suspect = [{"index": 1, "frame": os.path.splitext(files[1])[0], "reasons": ["area_jump"]}] if len(files) > 1 else []
    report = os.path.join(folder, "mask_check.json")
    with open(report, "w") as stream:
        json.dump({"format": "jokr.mask_check", "version": 1, "frames": len(files), "suspect": suspect}, stream)
    emit.emit("mask_check", clip=label, frames=len(files), suspect=suspect, report=report)


def clip_frames(job: str, label: str) -> tuple[int, tuple[int, int], str, int]:
    with open(os.path.join(job, "job.json")) as stream:
        spec = json.load(stream)["clips"][label]
    path = spec["path"]
    files = sorted(f for f in os.listdir(path) if f.lower().endswith((".png", ".jpg")))
    count = spec["count"] or len(files) - spec["start"]
    with open(os.path.join(path, files[0]), "rb") as stream:
        head = stream.read(24)
    width, height = struct.unpack(">II", head[16:24])
    return count, (width, height), path, spec["start"]


def keypoints(args, emit: Emitter) -> int:
    emit.emit("started", command="keypoints", job=args.job, device="cpu", device_name="Fake CPU", preset=None,
              plan=[], resumed_from=None)
    clips = {}
    for label, phase in (("A", 0.0), ("B", 1.0)):
        count, size, path, start = clip_frames(args.job, label)
        angles = [[phase + f * 0.1 + k * 2 * math.pi / KEYPOINTS for k in range(KEYPOINTS)]
                  for f in range(count)]
        points = [[[0.5 + 0.25 * math.cos(a), 0.5 + 0.25 * math.sin(a)] for a in frame] for frame in angles]
        clips[label] = {"source": path, "start": start, "frame_count": count, "frame_size": list(size),
                        "pad": 0.2, "model_size": 64, "crop_boxes": [[0, 0, size[0], size[1]]] * count,
                        "keypoints": points}
    out = args.out or os.path.join(args.job, "keypoints.json")
    with open(out, "w") as stream:
        json.dump({"format": "jokr.keypoints", "version": 1, "num_keypoints": KEYPOINTS,
                   "coordinates": "frame", "affine": [[1, 0, 0], [0, 1, 0]], "clips": clips}, stream)
    emit.emit("done", command="keypoints", status="finished", outputs={"keypoints": out})
    return 0


def render(args, emit: Emitter) -> int:
    emit.emit("started", command="render", job=args.job, device="cpu", device_name="Fake CPU", preset=None,
              plan=[], resumed_from=None)
    driving = "A" if args.look == "B" else "B"
    with open(args.keypoints or os.path.join(args.job, "keypoints.json")) as stream:
        clip = json.load(stream)["clips"][driving]
    width, height = clip["frame_size"]
    first, end = (int(v) for v in args.frames.split(":")) if args.frames else (0, clip["frame_count"])
    os.makedirs(args.out, exist_ok=True)
    for index in range(first, end):
        pixels = bytearray(width * height * 4)
        x, y = clip["keypoints"][index][0]
        cx, cy = int(x * width), int(y * height)
        for py in range(max(cy - 1, 0), min(cy + 2, height)):
            for px in range(max(cx - 1, 0), min(cx + 2, width)):
                pixels[(py * width + px) * 4:(py * width + px) * 4 + 4] = b"\xff\xff\xff\xff"
        write_png(os.path.join(args.out, f"{index:05d}.png"), width, height, bytes(pixels))
    emit.emit("done", command="render", status="finished",
              outputs={"folder": args.out, "frames": end - first, "first": None})
    return 0


def clean_plate(args, emit: Emitter) -> int:
    """A grey frame per clip frame, at the clip's size: the clip without its animal."""
    emit.emit("started", command="clean-plate", job=args.job, plan=[], resumed_from=None)
    count, (width, height), _path, _start = clip_frames(args.job, args.clip)
    os.makedirs(args.out, exist_ok=True)
    for index in range(count):
        write_png(os.path.join(args.out, f"{index:05d}.png"), width, height, b"\x80\x80\x80\xff" * (width * height))
    emit.emit("done", command="clean-plate", status="finished", outputs={"folder": args.out, "frames": count})
    return 0


def main(argv: list[str]) -> int:
    if argv[:2] == ["-m", "jokr_engine"]:
        argv = argv[2:]
    if MODE == "missing-torch":
        print("Traceback (most recent call last):\nModuleNotFoundError: No module named 'torch'",
              file=sys.stderr)
        return 1
    if argv[:1] == ["--version"]:
        print(json.dumps({"engine": "0.0-fake", "python": "3", "torch": "fake", "device": "cpu",
                          "device_name": "Fake CPU"}))
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    for label in ("a", "b"):
        parser.add_argument(f"--{label}")
        parser.add_argument(f"--{label}-start", type=int, default=0)
        parser.add_argument(f"--{label}-count", type=int)
        parser.add_argument(f"--{label}-mask")
    for option in ("--job", "--preset", "--device", "--look", "--out", "--keypoints", "--frames", "--clip"):
        parser.add_argument(option)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    emit = Emitter(args.job, args.command)
    if args.command != "train":
        return {"keypoints": keypoints, "render": render, "clean-plate": clean_plate}[args.command](args, emit)
    lock = JobLock(args.job, "train")
    try:
        lock.acquire()
    except JokrError as error:  # to stdout only: the job's log belongs to the engine that holds it
        Emitter(None, "train").emit("error", message=error.message, hint=error.hint, code=error.code)
        return 1
    try:
        return train(args, emit)
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
