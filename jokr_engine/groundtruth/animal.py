"""Procedural side-view quadrupeds: one shared skeleton, a *look* (proportions, colours, texture) and a
*gait* (joint angles as periodic functions of a gait phase), drawn with numpy + OpenCV.

Coordinates. *Body units*: the animal's own frame, x forward (the animal faces +x), y down, origin at the
middle of the torso; lengths are fractions of a reference torso (the look's `torso_length` is about 1).
A *placement* is a 2×3 affine map from body units to frame pixels in the continuous convention of
docs/FORMATS.md (pixel i covers [i, i+1], its centre at i + 0.5); any affine works, so a truth pasted
through an anisotropic crop box is drawn exactly, not approximated.

Drawing. Every part (torso, neck, head, ear, two tail segments, three segments per leg) is a tapered
capsule (the convex hull of two circles) or a triangle in its own local frame (u along the part, v across,
body units). Its outline goes through the placement to frame pixels, where each pixel's coverage comes
from its signed distance to the outline (`coverage`: unbiased at any scale); the part's colour is
evaluated per pixel in the part's local coordinates, so spots and stripes move with the body. Parts are
composited back to front (far legs, tail, torso, neck, ear, head, near legs) as premultiplied colour;
the silhouette is the accumulated coverage > 0.5.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

TAU = 2 * math.pi
LEGS = ("far_hind", "far_fore", "near_hind", "near_fore")
_FAR_SHADE = 0.68  # the far legs are in the body's shadow
_CIRCLE_POINTS = 28


class Record:
    """A dataclass written to and read from pair.json (JSON turns tuples into lists)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class Look(Record):
    """Proportions (body units), colours (RGB 0..255) and texture of one animal."""

    name: str = "animal"
    torso_length: float = 1.0
    hind_radius: float = 0.2  # torso radius at the hips
    chest_radius: float = 0.22  # torso radius at the chest
    neck_length: float = 0.36
    neck_radius: float = 0.09
    head_length: float = 0.3
    head_radius: float = 0.115
    snout_radius: float = 0.065
    ear_size: float = 0.1
    tail_length: float = 0.5
    tail_radius: float = 0.045
    tail_tip: float = 1.0  # radius factor at the tail's end (bushy > 1)
    leg_lengths: tuple[float, float, float] = (0.3, 0.28, 0.1)  # thigh/upper arm, shank/forearm, foot
    leg_radius: float = 0.075
    body_colour: tuple[int, int, int] = (150, 110, 75)
    pattern_colour: tuple[int, int, int] = (60, 45, 35)
    belly_colour: tuple[int, int, int] = (225, 205, 175)
    foot_colour: tuple[int, int, int] = (80, 60, 45)
    tail_tip_colour: tuple[int, int, int] | None = None
    pattern: str = "plain"  # plain | spots | patches | stripes | saddle
    pattern_scale: float = 0.07  # spot radius / stripe period, body units
    pattern_seed: int = 0



@dataclass(frozen=True)
class Gait(Record):
    """Joint angles as periodic functions of the gait phase φ (cycles). Angles in degrees.

    Leg i swings with ψ = 2π(φ + offsets[i]): the upper segment's angle from the vertical (+ = forward) is
    its mean angle + swing·sin ψ, and the knee flexes by knee·max(0, cos ψ) while the leg swings forward.
    The torso bobs twice per cycle; pitch, neck, head and tail swing once per cycle, so a silhouette at
    phase φ differs from the one at φ + ½ (the left and right legs alone would look the same)."""

    name: str = "walk"
    offsets: tuple[float, float, float, float] = (0.0, 0.25, 0.5, 0.75)  # far hind, far fore, near hind, near fore
    swing: float = 20.0
    hind_angle: float = 6.0
    fore_angle: float = -4.0
    knee: float = 35.0
    bob: float = 0.02  # body units
    pitch: float = 1.5
    neck_angle: float = -48.0  # from the torso axis; negative = up
    neck_swing: float = 5.0
    head_angle: float = 30.0  # head direction from the torso axis; positive = down
    head_swing: float = 6.0
    tail_angle: float = 150.0  # 180 = straight back, less = drooping, more = raised
    tail_swing: float = 14.0



@dataclass(frozen=True)
class Part:
    name: str
    kind: str  # torso | neck | head | ear | tail | leg1 | leg2 | leg3
    matrix: np.ndarray  # 3×3: part-local (u, v) → body units
    length: float = 0.0  # capsule: circle centres at u = 0 and u = length
    r0: float = 0.0
    r1: float = 0.0
    far: bool = False
    outline: np.ndarray | None = None  # (K, 2) local polygon for non-capsules


# ---------------------------------------------------------------------------------------------------
# Affine helpers (3×3 homogeneous matrices)


def affine(angle: float = 0.0, origin=(0.0, 0.0), scale: float = 1.0) -> np.ndarray:
    """3×3 matrix: rotate by `angle` (radians; y down, so positive turns +x towards +y), scale, then
    translate to `origin`."""
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, origin[0]], [s, c, origin[1]], [0.0, 0.0, 1.0]])


def placement(position, scale: float, tilt_deg: float) -> np.ndarray:
    """Body units → frame pixels: `scale` pixels per body unit, tilted by `tilt_deg` (positive = nose
    down), body origin at `position` (continuous frame pixels)."""
    return affine(math.radians(tilt_deg), position, scale)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 3×3 affine matrix (last row 0, 0, 1)."""
    (a, b, tx), (c, d, ty) = matrix[0], matrix[1]
    det = a * d - b * c
    return np.array([[d / det, -b / det, (b * ty - d * tx) / det], [-c / det, a / det, (c * tx - a * ty) / det],
                     [0.0, 0.0, 1.0]])


def _down(angle_deg: float) -> float:
    """Rotation of a local u axis that points at `angle_deg` from the vertical (+ = forward)."""
    return math.pi / 2 - math.radians(angle_deg)


# ---------------------------------------------------------------------------------------------------
# Skeleton


def pose_parts(look: Look, gait: Gait, phase: float) -> list[Part]:
    """The parts of `look` in the pose `gait` takes at `phase`, in drawing order (back to front)."""
    wave = TAU * phase
    torso = affine(math.radians(gait.pitch * math.sin(wave)), (0.0, -gait.bob * math.cos(2 * wave)))
    half = look.torso_length / 2
    hr, cr = look.hind_radius, look.chest_radius
    body_part = Part("torso", "torso", torso @ affine(0.0, (-half + hr, 0.0)), look.torso_length - hr - cr, hr, cr)

    legs = {}
    for index, leg in enumerate(LEGS):
        psi = TAU * (phase + gait.offsets[index])
        lift = gait.knee * max(0.0, math.cos(psi))
        hind = leg.endswith("hind")
        far = leg.startswith("far")
        top = gait.hind_angle if hind else gait.fore_angle
        a1 = top + gait.swing * math.sin(psi)
        if hind:  # stifle forward, hock back: the shank points back, the cannon forward again
            angles = (a1, a1 - 32.0 - 0.5 * lift, a1 + 4.0 + 0.4 * lift)
            joint = (-half + hr * 0.95, hr * 0.2)
        else:  # the knee (carpus) folds back while the leg swings forward
            angles = (a1, a1 + 6.0 - 0.9 * lift, a1 + 6.0 - 1.6 * lift)
            joint = (half - cr * 0.95, cr * 0.25)
        if far:  # the far legs show a little behind and above the near ones
            joint = (joint[0] + 0.035, joint[1] - 0.03)
        radii = (look.leg_radius * (1.45 if hind else 1.3), look.leg_radius, look.leg_radius * 0.82,
                 look.leg_radius * 0.78)
        frame = torso @ affine(_down(angles[0]), joint)
        segments = []
        for k, (length, angle) in enumerate(zip(look.leg_lengths, angles)):
            if k > 0:
                end = apply(frame, np.array([[look.leg_lengths[k - 1], 0.0]]))[0]
                frame = torso @ affine(_down(angle), (0.0, 0.0))
                frame[:2, 2] = end
            segments.append(Part(f"{leg}_{k + 1}", f"leg{k + 1}", frame.copy(), length, radii[k], radii[k + 1], far))
        legs[leg] = segments

    tail_frame = torso @ affine(math.radians(gait.tail_angle + gait.tail_swing * math.sin(wave + 2.0)),
                                (-half + hr * 0.35, -hr * 0.6))
    t_half = look.tail_length / 2
    tail1 = Part("tail_1", "tail", tail_frame, t_half, look.tail_radius, look.tail_radius * (1 + look.tail_tip) / 2)
    tail2_frame = tail_frame @ affine(math.radians(0.8 * gait.tail_swing * math.sin(wave + 2.8)), (t_half, 0.0))
    tail2 = Part("tail_2", "tail2", tail2_frame, t_half, tail1.r1, look.tail_radius * look.tail_tip)

    neck_frame = torso @ affine(math.radians(gait.neck_angle + gait.neck_swing * math.sin(wave + 0.7)),
                                (half - cr * 0.7, -cr * 0.35))
    neck = Part("neck", "neck", neck_frame, look.neck_length, look.neck_radius * 1.35, look.neck_radius)
    neck_end = apply(neck_frame, np.array([[look.neck_length, 0.0]]))[0]
    head_frame = torso @ affine(math.radians(gait.head_angle + gait.head_swing * math.sin(wave + 1.3)))
    head_frame[:2, 2] = neck_end
    head = Part("head", "head", head_frame, look.head_length, look.head_radius, look.snout_radius)
    e, r = look.ear_size, look.head_radius
    ear_outline = np.array([[-0.02, -0.6 * r], [0.1 * r + 0.06, -0.6 * r], [-0.04 - 0.3 * e, -0.6 * r - e]])
    ear = Part("ear", "ear", head_frame, outline=ear_outline)

    return (legs["far_hind"] + legs["far_fore"] + [tail1, tail2, body_part, neck, ear, head]
            + legs["near_hind"] + legs["near_fore"])


@lru_cache(maxsize=64)
def _circle(count: int) -> np.ndarray:
    angles = np.arange(count) * TAU / count
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


@lru_cache(maxsize=256)
def _capsule(length: float, r0: float, r1: float) -> np.ndarray:
    """Outline (K, 2) of the convex hull of circle (0, 0, r0) and circle (length, 0, r1)."""
    circle = _circle(_CIRCLE_POINTS)
    points = np.concatenate([circle * r0, circle * r1 + [length, 0.0]]).astype(np.float32)
    return cv2.convexHull(points)[:, 0, :].astype(np.float64)


def _outline(part: Part) -> np.ndarray:
    return part.outline if part.outline is not None else _capsule(part.length, part.r0, part.r1)


# ---------------------------------------------------------------------------------------------------
# Texture


def _smooth(x: np.ndarray, edge0: float, edge1: float) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


@lru_cache(maxsize=64)
def _spots(look: Look) -> np.ndarray:
    """(K, 3) spots (u, v, radius) in the torso's local units; fixed by the look's pattern seed."""
    rng = np.random.default_rng(look.pattern_seed)
    length = look.torso_length - look.hind_radius - look.chest_radius
    if look.pattern == "patches":
        count, size = 7, (1.6, 2.6)
    else:
        count, size = 22, (0.6, 1.1)
    u = rng.uniform(-look.hind_radius * 0.6, length + look.chest_radius * 0.6, count)
    v = rng.uniform(-1.0, 0.45, count) * (look.hind_radius + look.chest_radius) / 2
    radius = rng.uniform(*size, count) * look.pattern_scale
    return np.stack([u, v, radius], axis=1)


def _mix(base: np.ndarray, other, weight: np.ndarray) -> np.ndarray:
    return base + (np.asarray(other, dtype=np.float64) - base) * weight[:, None]


def part_colour(look: Look, part: Part, u: np.ndarray, v: np.ndarray, pixel: float) -> np.ndarray:
    """RGB 0..255 (P, 3) of `part` at local points (u, v); `pixel` = one frame pixel in body units (for
    anti-aliased pattern edges)."""
    count = len(u)
    colour = np.tile(np.asarray(look.body_colour, dtype=np.float64), (count, 1))
    radius = part.r0 + (part.r1 - part.r0) * np.clip(u / max(part.length, 1e-9), 0, 1) if part.length else 1.0
    across = np.clip(v / radius, -1.0, 1.0) if part.kind != "ear" else np.zeros(count)
    edge = max(pixel, 1e-6)
    if part.kind in ("torso", "neck"):
        colour = _mix(colour, look.belly_colour, _smooth(across, 0.35, 0.65))
    if look.pattern in ("spots", "patches") and part.kind in ("torso", "leg1") and not part.far:
        spots = _spots(look)
        if part.kind == "leg1":  # a few spots on the thighs too, in the leg's own frame
            spots = spots[:6] * [0.35, 0.5, 0.8] + [0.06, 0.0, 0.0]
        distance = np.sqrt((u[:, None] - spots[:, 0]) ** 2 + (v[:, None] - spots[:, 1]) ** 2) - spots[:, 2]
        colour = _mix(colour, look.pattern_colour, np.clip(0.5 - distance.min(axis=1) / edge, 0, 1))
    elif look.pattern == "stripes" and part.kind in ("torso", "neck", "leg1", "leg2", "tail"):
        period = look.pattern_scale * 2.2
        wave = np.sin(TAU * u / period + (1.3 * v if part.kind == "torso" else 0.0))
        width = TAU / period * edge  # the wave's change per pixel
        colour = _mix(colour, look.pattern_colour, np.clip((wave - 0.15) / max(width, 1e-6) + 0.5, 0, 1))
    elif look.pattern == "saddle" and part.kind in ("torso", "neck"):
        colour = _mix(colour, look.pattern_colour, _smooth(-across, 0.05, 0.35))
    if part.kind == "leg3":
        colour[:] = look.foot_colour
    elif part.kind == "leg2" and look.pattern == "plain":  # socks darken towards the foot
        colour = _mix(colour, look.foot_colour, _smooth(u / max(part.length, 1e-9), 0.3, 1.0))
    if part.kind == "tail2" and look.tail_tip_colour is not None:
        colour = _mix(colour, look.tail_tip_colour, _smooth(u / max(part.length, 1e-9), 0.45, 0.8))
    if part.kind == "ear":
        colour = _mix(colour, look.pattern_colour, np.full(count, 0.6))
    if part.kind == "head":
        eye = np.sqrt((u - part.length * 0.35) ** 2 + (v + part.r0 * 0.3) ** 2) - part.r0 * 0.2
        nose = np.sqrt((u - part.length - part.r1 * 0.55) ** 2 + (v + part.r1 * 0.1) ** 2) - part.r1 * 0.5
        dark = np.clip(0.5 - np.minimum(eye, nose) / edge, 0, 1)
        colour = _mix(colour, (25, 20, 18), dark)
    shade = 1.04 - 0.22 * across**2 - 0.06 * across  # round body, light from above
    if part.far:
        shade = shade * _FAR_SHADE
    return colour * shade[:, None]


# ---------------------------------------------------------------------------------------------------
# Drawing


def coverage(polygon: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage (P,) float32 of the pixels centred at `centres` (P, 2) by a convex `polygon`
    (K, 2), both in frame pixels: clip(0.5 − d, 0, 1) with d the signed distance (pixels, negative inside)
    from the pixel centre to the outline. The ramp is unbiased: coverage sums to the polygon's area and
    coverage > 0.5 is exactly "the pixel centre is inside", at any scale. (cv2.fillPoly fills every pixel
    an edge touches, about half a pixel too much all round, so a shape drawn small and enlarged would
    come out fatter than the same shape drawn large.)"""
    edges = np.roll(polygon, -1, axis=0) - polygon
    length = np.hypot(edges[:, 0], edges[:, 1])
    keep = length > 1e-9
    start, edges, length = polygon[keep], edges[keep], length[keep]
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) / length[:, None]
    if ((polygon.mean(axis=0) - start) * normals).sum(axis=1).max() > 0:  # make the normals point outwards
        normals = -normals
    offsets = (start * normals).sum(axis=1)
    distance = (centres @ normals.T - offsets).max(axis=1)
    return np.clip(0.5 - distance, 0.0, 1.0).astype(np.float32)


def draw(look: Look, gait: Gait, phase: float, place: np.ndarray,
         size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The animal at `phase`, placed by the 3×3 body → frame-pixel matrix `place`, on a (W, H) frame:
    (premultiplied colour float32 (H, W, 3) in 0..1, coverage float32 (H, W) in 0..1)."""
    width, height = size
    colour = np.zeros((height, width, 3), dtype=np.float32)
    alpha = np.zeros((height, width), dtype=np.float32)
    pixel = 1.0 / math.sqrt(abs(np.linalg.det(place[:2, :2])))
    for part in pose_parts(look, gait, phase):
        to_frame = place @ part.matrix
        points = apply(to_frame, _outline(part))
        x0, y0 = np.floor(points.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        rows, cols = np.mgrid[0 : y1 - y0, 0 : x1 - x0]
        rows, cols = rows.ravel(), cols.ravel()
        centres = np.stack([cols + x0 + 0.5, rows + y0 + 0.5], axis=1).astype(np.float64)
        cover = coverage(points, centres)
        inside = cover > 0
        if not inside.any():
            continue
        rows, cols, centres, cover = rows[inside], cols[inside], centres[inside], cover[inside]
        local = apply(invert(to_frame), centres)
        rgb = np.clip(part_colour(look, part, local[:, 0], local[:, 1], pixel), 0, 255).astype(np.float32) / 255
        keep = 1.0 - cover
        colour_window, alpha_window = colour[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
        colour_window[rows, cols] = colour_window[rows, cols] * keep[:, None] + rgb * cover[:, None]
        alpha_window[rows, cols] = alpha_window[rows, cols] * keep + cover
    return colour, alpha


def composite(colour: np.ndarray, alpha: np.ndarray, plate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied animal over an RGB uint8 plate → (RGB uint8 frame, uint8 mask 0/255 of coverage > 0.5)."""
    frame = colour * 255.0 + plate.astype(np.float32) * (1.0 - alpha[:, :, None])
    return np.clip(np.round(frame), 0, 255).astype(np.uint8), np.where(alpha > 0.5, 255, 0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Background plates


def _noise(rng: np.random.Generator, height: int, width: int, blur: float) -> np.ndarray:
    field = rng.standard_normal((height, width)).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), blur, borderType=cv2.BORDER_REFLECT)
    return field / max(float(np.abs(field).max()), 1e-6)


def plate(size: tuple[int, int], seed: int, horizon: float = 0.6, bushes: int = 0) -> np.ndarray:
    """A background plate (H, W, 3) uint8: sky gradient, textured ground from `horizon` (fraction of the
    height) down, and optionally blurred bushes on the horizon. Deterministic for a seed."""
    width, height = size
    rng = np.random.default_rng(seed)
    sky_top = np.array([120, 160, 215]) + rng.uniform(-15, 15, 3)
    sky_low = np.array([205, 220, 235]) + rng.uniform(-10, 10, 3)
    ground_far = np.array([150, 160, 95]) + rng.uniform(-20, 20, 3)
    ground_near = np.array([95, 120, 60]) + rng.uniform(-20, 20, 3)
    y = (np.arange(height) + 0.5)[:, None] / height
    line = horizon + 0.02 * _noise(rng, 1, width, 12)[0][None, :]
    sky_t = np.clip(y / horizon, 0, 1)[:, :, None]
    sky = sky_top * (1 - sky_t) + sky_low * sky_t
    ground_t = np.clip((y - line) / (1 - horizon), 0, 1)[:, :, None]
    ground = ground_far * (1 - ground_t) + ground_near * ground_t
    ground = ground * (1 + 0.12 * _noise(rng, height, width, 1.2)[:, :, None]
                       + 0.1 * _noise(rng, height, width, 6)[:, :, None])
    image = np.where((y >= line)[:, :, None], ground, sky)
    if bushes:
        layer = np.zeros((height, width), dtype=np.float32)
        tint = np.array([55, 85, 45]) + rng.uniform(-15, 15, 3)
        for _ in range(bushes):
            cx, r = rng.uniform(0, width), rng.uniform(0.05, 0.12) * height
            cv2.ellipse(layer, (int(cx), int(horizon * height)), (int(r * 1.6), int(r)), 0, 180, 360, 1.0, -1,
                        cv2.LINE_AA)
        layer = cv2.GaussianBlur(layer, (0, 0), 2.0)[:, :, None]
        shade = 1 + 0.15 * _noise(rng, height, width, 2)[:, :, None]
        image = image * (1 - layer) + tint * shade * layer
    return np.clip(np.round(image), 0, 255).astype(np.uint8)
