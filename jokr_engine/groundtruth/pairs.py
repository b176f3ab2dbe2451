"""The benchmark's clip pairs and their exact truths (docs/QUALITY.md, "Ground-truth benchmark").

A pair is two procedural clips A and B (look + gait + motion each) and the two truths: `truth_AB` is B's
look in A's pose (A's gait evaluated at A's phases), `truth_BA` the reverse. Where a truth sits is what a
perfect JOKR would output through this engine's pipeline (render.py):

* Each clip's *placement in its model space*: per frame n, p_X[n] = U(box_X[n]) · F_X[n], where F_X[n]
  maps body units to frame pixels and U(box) maps frame pixels to the unit square of the padded crop box
  (the model image up to the fixed map to model coordinates, which cancels below; so does the padding).
* The ideal learned affine T maps the look clip's mean model-space placement onto the driver's:
  T = P̄_drv · P̄_look⁻¹, with P̄ the mean of the clip's p[n] (exact when a clip's placement in its
  model space is constant, as it is without cropping).
* The generator draws the look animal in the look's model space at T⁻¹ · p_drv[n], and render pastes
  that picture into the driver's frame with the box `look_boxes(box_drv[n], box_aspect(boxes_look))`
  (the driver's box centre and area, the look clip's aspect). So the truth's placement in the driver's
  frame is F_truth[n] = U(paste[n])⁻¹ · P̄_look · P̄_drv⁻¹ · U(box_drv[n]) · F_drv[n].

Everything is drawn with the same code (animal.draw) and is deterministic for a seed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import JokrError
from ..framing import box_aspect, crop_boxes, look_boxes
from .animal import Gait, Look, Record, composite, draw, placement, plate

FORMAT = "jokr.groundtruth"
VERSION = 1
PAIR_NAMES = ("similar", "proportions", "affine", "fullframe")
DIRECTIONS = {"AB": ("A", "B"), "BA": ("B", "A")}  # direction → (driver, look)


@dataclass(frozen=True)
class Motion(Record):
    """Where and how fast a clip's animal moves: phase φ(n) = phase0 + speed·n (cycles), placement at
    frame n = `start` + n·`velocity` (frame pixels of the body origin), `scale` px per body unit, `tilt`°."""

    frame_size: tuple[int, int]  # (W, H)
    frames: int
    phase0: float
    speed: float
    start: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    scale: float = 60.0
    tilt: float = 0.0

    def phases(self) -> np.ndarray:
        return self.phase0 + self.speed * np.arange(self.frames, dtype=np.float64)

    def placements(self) -> np.ndarray:
        """(N, 3, 3) body units → frame pixels."""
        return np.stack([placement((self.start[0] + n * self.velocity[0], self.start[1] + n * self.velocity[1]),
                                   self.scale, self.tilt) for n in range(self.frames)])


@dataclass(frozen=True)
class ClipDef:
    look: Look
    gait: Gait
    motion: Motion
    plate_seed: int = 0
    horizon: float = 0.6
    bushes: int = 0

    def to_dict(self) -> dict:
        return {"look": self.look.to_dict(), "gait": self.gait.to_dict(), "motion": self.motion.to_dict(),
                "plate": {"seed": self.plate_seed, "horizon": self.horizon, "bushes": self.bushes}}

    @classmethod
    def from_dict(cls, data: dict) -> "ClipDef":
        return cls(Look.from_dict(data["look"]), Gait.from_dict(data["gait"]), Motion.from_dict(data["motion"]),
                   data["plate"]["seed"], data["plate"]["horizon"], data["plate"]["bushes"])


@dataclass(frozen=True)
class PairSpec:
    name: str
    description: str
    crop: str  # the crop mode the truth is placed for (the job must be trained with it)
    A: ClipDef
    B: ClipDef

    def clip(self, label: str) -> ClipDef:
        return self.A if label == "A" else self.B


@dataclass
class Pair:
    """A generated (or read back) pair: frames (N, H, W, 3) uint8 and masks (N, H, W) 0/255 of `A`, `B`,
    `truth_AB`, `truth_BA`, and the metadata written as pair.json."""

    spec: PairSpec
    meta: dict
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def phases(self, label: str) -> np.ndarray:
        return np.asarray(self.meta["clips"][label]["phases"], dtype=np.float64)

    def truth_placements(self, direction: str) -> np.ndarray:
        rows = np.asarray(self.meta["truths"][direction]["placements"], dtype=np.float64)
        return np.concatenate([rows, np.tile([[[0.0, 0.0, 1.0]]], (len(rows), 1, 1))], axis=1)


# ---------------------------------------------------------------------------------------------------
# The pairs


_WALK = Gait("walk")
_TROT = Gait("trot", offsets=(0.0, 0.5, 0.5, 0.0), swing=30.0, hind_angle=8.0, fore_angle=-2.0, knee=60.0,
             bob=0.035, pitch=2.5, neck_angle=-38.0, neck_swing=9.0, head_angle=18.0, head_swing=11.0,
             tail_angle=205.0, tail_swing=24.0)
_AMBLE = Gait("amble", offsets=(0.0, 0.35, 0.5, 0.85), swing=14.0, hind_angle=3.0, fore_angle=-6.0, knee=22.0,
              bob=0.012, pitch=1.0, neck_angle=-58.0, neck_swing=4.0, head_angle=38.0, head_swing=4.0,
              tail_angle=135.0, tail_swing=9.0)

_HOUND = Look("hound", pattern="saddle")
_COW = Look("cow", torso_length=1.05, chest_radius=0.235, hind_radius=0.21, neck_length=0.34, neck_radius=0.1,
            head_length=0.31, head_radius=0.12, snout_radius=0.075, ear_size=0.08, tail_length=0.48,
            tail_radius=0.035, tail_tip=1.5, leg_lengths=(0.3, 0.28, 0.1), leg_radius=0.08,
            body_colour=(238, 236, 228), pattern_colour=(35, 35, 40), belly_colour=(246, 242, 236),
            foot_colour=(60, 55, 50), tail_tip_colour=(40, 38, 40), pattern="patches", pattern_scale=0.1)
_DEER = Look("deer", torso_length=0.95, hind_radius=0.18, chest_radius=0.2, neck_length=0.46, neck_radius=0.08,
             head_length=0.3, head_radius=0.1, snout_radius=0.055, ear_size=0.13, tail_length=0.18,
             tail_radius=0.05, leg_lengths=(0.38, 0.38, 0.17), leg_radius=0.08, body_colour=(170, 112, 66),
             pattern_colour=(250, 244, 232), belly_colour=(240, 228, 205), foot_colour=(45, 38, 32),
             tail_tip_colour=(245, 240, 230), pattern="spots", pattern_scale=0.045)
_BOAR = Look("boar", torso_length=1.1, hind_radius=0.27, chest_radius=0.3, neck_length=0.2, neck_radius=0.17,
             head_length=0.36, head_radius=0.16, snout_radius=0.085, ear_size=0.09, tail_length=0.22,
             tail_radius=0.03, leg_lengths=(0.21, 0.17, 0.07), leg_radius=0.095, body_colour=(110, 92, 82),
             pattern_colour=(165, 140, 118), belly_colour=(140, 118, 104), foot_colour=(40, 34, 30),
             pattern="stripes", pattern_scale=0.07)
_FOX = Look("fox", torso_length=1.0, hind_radius=0.19, chest_radius=0.21, neck_length=0.33, neck_radius=0.085,
            head_length=0.33, head_radius=0.11, snout_radius=0.05, ear_size=0.14, tail_length=0.64,
            tail_radius=0.07, tail_tip=1.35, leg_lengths=(0.28, 0.27, 0.1), leg_radius=0.085,
            body_colour=(214, 112, 46), pattern_colour=(70, 40, 25), belly_colour=(246, 236, 222),
            foot_colour=(40, 30, 25), tail_tip_colour=(248, 246, 240), pattern="plain")
_ZEBRA = Look("zebra", torso_length=1.05, hind_radius=0.22, chest_radius=0.23, neck_length=0.42, neck_radius=0.11,
              head_length=0.36, head_radius=0.11, snout_radius=0.075, ear_size=0.1, tail_length=0.42,
              tail_radius=0.035, tail_tip=1.4, leg_lengths=(0.33, 0.32, 0.13), leg_radius=0.1,
              body_colour=(242, 242, 236), pattern_colour=(28, 28, 32), belly_colour=(242, 242, 236),
              foot_colour=(30, 30, 30), tail_tip_colour=(30, 30, 30), pattern="stripes", pattern_scale=0.11)


def _jitter_look(look: Look, rng: np.random.Generator) -> Look:
    def colour(c):
        return tuple(int(v) for v in np.clip(np.asarray(c) + rng.integers(-10, 11, 3), 0, 255))

    return dataclasses.replace(look, body_colour=colour(look.body_colour), pattern_colour=colour(look.pattern_colour),
                               belly_colour=colour(look.belly_colour), pattern_seed=int(rng.integers(0, 2**31)))


def pair_spec(name: str, seed: int = 0) -> PairSpec:
    """The definition of one benchmark pair; the seed varies colours, texture layout, starting phases,
    a few pixels of position and the background plates, not the difficulty."""
    if name not in PAIR_NAMES:
        raise JokrError(f"unknown ground-truth pair {name!r}", f"choose from: {', '.join(PAIR_NAMES)}")
    rng = np.random.default_rng([seed, PAIR_NAMES.index(name)])

    def clip(look, gait, plate_bushes=0, horizon=0.6, **motion):
        start = motion.pop("start")
        start = (start[0] + rng.uniform(-3, 3), start[1] + rng.uniform(-2, 2))
        return ClipDef(_jitter_look(look, rng), gait,
                       Motion(phase0=float(rng.uniform(0, 1)), start=start, **motion),
                       int(rng.integers(0, 2**31)), horizon, plate_bushes)

    square = (192, 192)
    if name == "similar":
        return PairSpec(name, "similar shapes and sizes, different colours and texture; A walks, B trots", "auto",
                        clip(_HOUND, _WALK, frame_size=square, frames=48, speed=1 / 24, start=(93, 88), scale=62),
                        clip(_COW, _TROT, frame_size=square, frames=56, speed=1 / 18, start=(95, 88), scale=60))
    if name == "proportions":
        return PairSpec(name, "long-legged deer (A, trotting) vs stocky boar (B, ambling)", "auto",
                        clip(_DEER, _TROT, frame_size=square, frames=50, speed=1 / 20, start=(92, 80), scale=56),
                        clip(_BOAR, _AMBLE, frame_size=square, frames=44, speed=1 / 22, start=(96, 94), scale=60))
    if name == "affine":
        return PairSpec(name, "B is smaller, higher, further left and tilted 14° nose-up in its frame; no cropping, so "
                        "only the learned affine can bring it to A's placement", "off",
                        clip(_FOX, _WALK, frame_size=square, frames=48, speed=1 / 22, start=(105, 94), scale=82),
                        clip(_ZEBRA, _TROT, frame_size=square, frames=52, speed=1 / 19, start=(90, 80), scale=70,
                             tilt=-14.0))
    return PairSpec(name, "full frame 320×192: small animals walk across the picture, so the engine crops them",
                    "auto",
                    clip(_FOX, _TROT, frame_size=(320, 192), frames=52, speed=1 / 16, start=(50, 125),
                         velocity=(4.3, -0.25), scale=34, plate_bushes=7, horizon=0.55),
                    clip(_DEER, _WALK, frame_size=(320, 192), frames=46, speed=1 / 20, start=(62, 108),
                         velocity=(3.9, 0.2), scale=30, plate_bushes=6, horizon=0.5))


# ---------------------------------------------------------------------------------------------------
# Truth placement


def unit_maps(boxes: np.ndarray, pad: float = 0.2) -> np.ndarray:
    """(N, 3, 3): frame pixels → the unit square of each padded crop box."""
    boxes = np.asarray(boxes, dtype=np.float64)
    origin = boxes[:, :2] - pad * boxes[:, 2:]
    extent = (1 + 2 * pad) * boxes[:, 2:]
    maps = np.zeros((len(boxes), 3, 3))
    maps[:, 0, 0], maps[:, 1, 1], maps[:, 2, 2] = 1 / extent[:, 0], 1 / extent[:, 1], 1.0
    maps[:, :2, 2] = -origin / extent
    return maps


def paste_boxes(driver_boxes: np.ndarray, look_clip_boxes: np.ndarray) -> np.ndarray:
    """The boxes render pastes a look-space picture into: the driver's box reshaped to the look's aspect."""
    return look_boxes(driver_boxes, box_aspect(look_clip_boxes))


def truth_placements(drv_place: np.ndarray, drv_boxes: np.ndarray, look_place: np.ndarray,
                     look_clip_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F_truth (N, 3, 3) body units → driver frame pixels, T (3×3) in unit-box coordinates, look → driver)."""
    p_drv = unit_maps(drv_boxes) @ drv_place
    p_look = unit_maps(look_clip_boxes) @ look_place
    mean_drv, mean_look = p_drv.mean(axis=0), p_look.mean(axis=0)
    mean_drv[2], mean_look[2] = (0, 0, 1), (0, 0, 1)
    t_inverse = mean_look @ np.linalg.inv(mean_drv)
    paste = unit_maps(paste_boxes(drv_boxes, look_clip_boxes))
    return np.linalg.inv(paste) @ t_inverse @ p_drv, np.linalg.inv(t_inverse)


# ---------------------------------------------------------------------------------------------------
# Generation, writing, reading


def render_clip(look: Look, gait: Gait, phases: np.ndarray, places: np.ndarray, background: np.ndarray):
    """Frames (N, H, W, 3) uint8 and masks (N, H, W) 0/255 of `look` moving with `gait` over a plate."""
    height, width = background.shape[:2]
    frames, masks = [], []
    for phase, place in zip(phases, places):
        colour, alpha = draw(look, gait, float(phase), place, (width, height))
        frame, mask = composite(colour, alpha, background)
        frames.append(frame)
        masks.append(mask)
    return np.stack(frames), np.stack(masks)


def clip_plate(clip: ClipDef) -> np.ndarray:
    return plate(clip.motion.frame_size, clip.plate_seed, clip.horizon, clip.bushes)


def _rows(matrices: np.ndarray) -> list:
    return [m[:2].tolist() for m in matrices]


def generate_pair(spec: PairSpec, seed: int = 0) -> Pair:
    """Both clips and both truths, in memory."""
    pair = Pair(spec, {})
    plates, places, boxes, phases = {}, {}, {}, {}
    for label in ("A", "B"):
        clip = spec.clip(label)
        plates[label], places[label], phases[label] = clip_plate(clip), clip.motion.placements(), clip.motion.phases()
        pair.frames[label], pair.masks[label] = render_clip(clip.look, clip.gait, phases[label], places[label],
                                                            plates[label])
        boxes[label] = crop_boxes(pair.masks[label], spec.crop)
    truths = {}
    for direction, (driver, look) in DIRECTIONS.items():
        place, affine_t = truth_placements(places[driver], boxes[driver], places[look], boxes[look])
        name = f"truth_{direction}"
        pair.frames[name], pair.masks[name] = render_clip(spec.clip(look).look, spec.clip(driver).gait,
                                                          phases[driver], place, plates[driver])
        truths[direction] = {
            "folder": name, "driver": driver, "look": look,
            "pose": f"clip {driver}'s gait at clip {driver}'s phases", "appearance": f"clip {look}'s look",
            "affine_T_unit_box": affine_t[:2].tolist(),
            "paste_boxes": paste_boxes(boxes[driver], boxes[look]).tolist(),
            "placements": _rows(place),
        }
    pair.meta = {
        "format": FORMAT, "version": VERSION, "pair": spec.name, "description": spec.description, "seed": seed,
        "crop": spec.crop,
        "coordinates": "placements: 2×3 body units → frame pixels, pixel i spans [i, i+1]; phases in cycles",
        "clips": {label: {"folder": label, "frame_size": list(spec.clip(label).motion.frame_size),
                          "frame_count": spec.clip(label).motion.frames, **spec.clip(label).to_dict(),
                          "phases": phases[label].tolist(), "placements": _rows(places[label]),
                          "crop_boxes": boxes[label].tolist()}
                  for label in ("A", "B")},
        "truths": truths,
    }
    return pair


def _png(image: np.ndarray) -> bytes:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise JokrError("could not encode a PNG", "check free disk space", code="internal")
    return data.tobytes()


def write_pair(pair: Pair, folder: Path) -> Path:
    """`folder`/A|B|truth_AB|truth_BA/{frames,masks}/00000.png … and `folder`/pair.json."""
    folder = Path(folder)
    for name in ("A", "B", "truth_AB", "truth_BA"):
        for kind, images in (("frames", pair.frames[name]), ("masks", pair.masks[name])):
            target = folder / name / kind
            target.mkdir(parents=True, exist_ok=True)
            for index, image in enumerate(images):
                (target / f"{index:05d}.png").write_bytes(_png(image))
    (folder / "pair.json").write_text(json.dumps(pair.meta, indent=1) + "\n")
    return folder


def generate(out: Path, names: list[str] | None = None, seed: int = 0) -> dict[str, Path]:
    """Writes each named pair (default: all) into `out`/<pair>/."""
    return {name: write_pair(generate_pair(pair_spec(name, seed), seed), Path(out) / name)
            for name in (names or PAIR_NAMES)}


def spec_from_meta(meta: dict) -> PairSpec:
    return PairSpec(meta["pair"], meta["description"], meta["crop"], ClipDef.from_dict(meta["clips"]["A"]),
                    ClipDef.from_dict(meta["clips"]["B"]))


def read_pair(folder: Path) -> Pair:
    """A pair written by `write_pair`, frames and masks read back."""
    from ..clips import ClipSpec, load_clip

    folder = Path(folder)
    path = folder / "pair.json"
    if not path.is_file():
        raise JokrError(f"{folder} is not a ground-truth pair folder (no pair.json)",
                        "pass a folder written by `jokr-engine groundtruth generate`, e.g. DIR/similar")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise JokrError(f"{path} is not a {FORMAT} version {VERSION} file", "regenerate the pair",
                        code="incompatible_job")
    pair = Pair(spec_from_meta(meta), meta)
    for name in ("A", "B", "truth_AB", "truth_BA"):
        clip = load_clip(ClipSpec(str(folder / name)))
        pair.frames[name], pair.masks[name] = clip.frames, clip.masks
    return pair
