"""Procedural faces with the seven expressions: the built-in default dataset (no download).

An expression is facial geometry (PARAM_NAMES); pose, skin, hair, light, background and occluders
vary per face. A fraction of faces blend two expressions. Simulated annotators
(lionfer.data.annotators, chosen by data.annotator) label the training faces from the geometry as
drawn, so given labels are noisy the way FER labels are: ambiguous where the face shows two
expressions, slips elsewhere. Test labels are the truth. Rendering is vectorised over the batch:
signed distances on a coordinate grid.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lionfer.data import annotators
from lionfer.data.base import FERData, ImageSet
from lionfer.labels import CLASS_NAMES

PARAM_NAMES: tuple[str, ...] = (
    "brow_height",  # + raised, − lowered
    "brow_slant",  # + inner ends up (worried), − inner ends down (frown)
    "eye_open",  # 1 relaxed, >1 wide, <1 narrowed
    "mouth_curve",  # + corners up (smile), − corners down
    "mouth_open",  # 0 closed, 1 wide open
    "mouth_width",  # 1 relaxed, <1 rounded or pressed, >1 stretched
    "nose_wrinkle",  # 0 none, 1 strong (also raises the upper lip)
)
# (7 classes, 7 params) in canonical order. Confusable pairs sit close on purpose.
PROTOTYPES = np.array(
    [
        [1.00, 0.00, 1.50, 0.00, 0.90, 0.60, 0.00],  # 0 Surprise: round open mouth
        [0.80, 0.80, 1.45, -0.30, 0.55, 1.25, 0.00],  # 1 Fear: brows in, stretched mouth
        [-0.50, -0.20, 0.60, -0.60, 0.25, 0.95, 1.00],  # 2 Disgust: wrinkle, raised lip
        [0.10, 0.00, 0.80, 1.00, 0.40, 1.30, 0.15],  # 3 Happiness
        [0.15, 0.75, 0.85, -0.55, 0.00, 0.90, 0.00],  # 4 Sadness
        [-0.80, -0.90, 0.70, -0.20, 0.05, 0.85, 0.30],  # 5 Anger
        [0.00, 0.05, 1.00, -0.05, 0.00, 1.00, 0.00],  # 6 Neutral
    ]
)
JITTER = np.array([0.25, 0.30, 0.15, 0.22, 0.12, 0.12, 0.20])  # per-image std of each param
LOWER = np.array([-1.5, -1.5, 0.3, -1.5, 0.0, 0.45, 0.0])
UPPER = np.array([1.5, 1.5, 1.9, 1.5, 1.3, 1.6, 1.5])
# Confusable classes, most confusable first: blend partners and annotators' mistakes.
PARTNERS: dict[int, tuple[int, ...]] = {
    0: (1, 3),
    1: (0, 4),
    2: (5, 4),
    3: (6, 0),
    4: (6, 1),
    5: (2, 6),
    6: (4, 3),
}
CLEAR_AGREEMENT = 0.95  # P(given = true) for a clear face
BLEND_ALPHA = (0.5, 0.8)  # weight of the dominant class A in a blend
SECOND_LABEL = (0.45, 0.35)  # P(given = B) at α = 0.5 and α = 0.8, linear between
PARTNER_BLEND = 0.8  # P(B is A's first partner); otherwise B is any other class
MIN_SIZE, MAX_SIZE = 24, 224
# The geometry model as the simulated annotators (lionfer.data.annotators) judge it.
FACE_MODEL = annotators.FaceModel(
    prototypes=PROTOTYPES,
    jitter=JITTER,
    lower=LOWER,
    upper=UPPER,
    first_partner=np.array([PARTNERS[c][0] for c in range(len(PROTOTYPES))]),
    partner_blend=PARTNER_BLEND,
    blend_alpha=BLEND_ALPHA,
)


class SyntheticFaces(NamedTuple):
    images: np.ndarray  # (N, S, S, 3) uint8
    true_labels: np.ndarray  # (N,) dominant expression
    given_labels: np.ndarray  # (N,) what the simulated annotator said (-1: no crowd majority)
    blended: np.ndarray  # (N,) bool: the face blends two expressions
    second: np.ndarray  # (N,) the blended-in class B (= true label where not blended)
    geometry: np.ndarray  # (N, P) expression parameters actually rendered
    votes: np.ndarray  # (N, C) votes per class behind the given label
    error_types: np.ndarray  # (N,) int8 ERROR_TYPES codes of the given labels (-1: no label)


def prototype(label: int) -> np.ndarray:
    """The expression geometry (P,) of a canonical class id."""
    return PROTOTYPES[label].copy()


def sample_geometry(
    labels: np.ndarray, ambiguity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Jittered geometry (N, P) for true labels; returns geometry, second class, α, blended mask."""
    n, num_classes = len(labels), len(PROTOTYPES)
    blended = rng.random(n) < ambiguity
    first_partner = np.array([PARTNERS[c][0] for c in range(num_classes)])[labels]
    any_other = (labels + rng.integers(1, num_classes, n)) % num_classes
    second = np.where(rng.random(n) < PARTNER_BLEND, first_partner, any_other)
    second = np.where(blended, second, labels)
    alpha = np.where(blended, rng.uniform(*BLEND_ALPHA, n), 1.0)
    mean = alpha[:, None] * PROTOTYPES[labels] + (1 - alpha[:, None]) * PROTOTYPES[second]
    geometry = np.clip(mean + rng.normal(size=mean.shape) * JITTER, LOWER, UPPER)
    return geometry, second, alpha, blended


def annotate(
    labels: np.ndarray, second: np.ndarray, alpha: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The `legacy` annotator: from the hidden blend, not the face as drawn, it names B of a blend
    often, else the truth or (rarely) a partner. Kept unchanged so that data.annotator=legacy
    reproduces the data sets (and figures) made before the annotators of lionfer.data.annotators.
    """
    n = len(labels)
    slope = (SECOND_LABEL[1] - SECOND_LABEL[0]) / (BLEND_ALPHA[1] - BLEND_ALPHA[0])
    p_second = np.where(second != labels, SECOND_LABEL[0] + slope * (alpha - BLEND_ALPHA[0]), 0.0)
    partners = np.array([PARTNERS[c] for c in range(len(PROTOTYPES))])  # (C, 2)
    mistake = partners[labels, rng.integers(0, partners.shape[1], n)]
    says_second, agrees = rng.random(n) < p_second, rng.random(n) < CLEAR_AGREEMENT
    return np.where(says_second, second, np.where(agrees, labels, mistake)).astype(np.int64)


_SKIN_LIGHT, _SKIN_DARK = np.array([0.96, 0.80, 0.68]), np.array([0.34, 0.22, 0.15])
_HAIR = np.array(
    [[0.07, 0.05, 0.04], [0.24, 0.14, 0.08], [0.45, 0.29, 0.15], [0.82, 0.68, 0.40],
     [0.62, 0.62, 0.62], [0.58, 0.24, 0.10]]
)  # fmt: skip
_IRIS = np.array([[0.30, 0.18, 0.08], [0.12, 0.08, 0.05], [0.25, 0.45, 0.65], [0.30, 0.45, 0.25]])


# Appearance of a plain face: frontal, centred, mid skin, dark hair, flat grey, nothing in the way.
_PLAIN = {
    "angle": 0.0, "dx": 0.0, "dy": 0.0, "scale": 0.95, "face_w": 1.0, "face_h": 1.0,
    "eye_dx": 0.26, "mouth_y": 0.42, "brow_r": 0.036, "hairline": -0.55, "hair_volume": 0.1,
    "bg_amp": 0.0, "light": 0.0, "brightness": 1.0, "noise": 0.0, "occluded": False,
    "skin": (_SKIN_LIGHT + _SKIN_DARK) / 2, "hair": _HAIR[1], "bg": 0.6, "iris": _IRIS[0],
}  # fmt: skip


def sample_appearance(n: int, rng: np.random.Generator, plain: bool = False) -> dict:
    """Everything but the expression, per face: pose, colours, light, background, occluder.

    Returns {name: (n,) or (n, k) array}. Every value is drawn even when plain (then overwritten),
    so the draws from rng do not depend on `plain`.
    """

    def u(low: float, high: float, k: int | None = None) -> np.ndarray:
        return rng.uniform(low, high, n if k is None else (n, k))

    app = {
        "angle": u(-0.21, 0.21), "dx": u(-0.08, 0.08), "dy": u(-0.06, 0.08), "scale": u(0.9, 1.12),
        "face_w": u(0.9, 1.08), "face_h": u(0.94, 1.06), "eye_dx": u(0.23, 0.29),
        "mouth_y": u(0.38, 0.46), "brow_r": u(0.028, 0.045),
        "skin": _SKIN_LIGHT + u(0, 1)[:, None] * (_SKIN_DARK - _SKIN_LIGHT) + u(-0.04, 0.04, 3),
        "hair": _HAIR[rng.integers(0, len(_HAIR), n)] * u(0.85, 1.15)[:, None],
        "hairline": u(-0.75, -0.35), "hair_volume": u(0.0, 0.18),
        "iris": _IRIS[rng.integers(0, len(_IRIS), n)], "clothes": u(0.05, 0.95, 3),
        "bg": 0.5 * u(0.05, 0.95, 3) + 0.5 * u(0.1, 0.9)[:, None],  # half grey: muted colours
        "bg_amp": u(0.0, 0.18), "bg_freq": u(1.0, 9.0, 6),
        "bg_phase": u(0, 2 * np.pi, 3), "light_dir": u(0, 2 * np.pi), "light": u(0.0, 0.35),
        "brightness": u(0.8, 1.15), "noise": u(0.0, 0.03),
        "occluded": rng.random(n) < 0.25, "occ_bar": rng.random(n) < 0.5,
        "occ_x": u(-0.45, 0.45), "occ_y": u(-0.35, 0.6), "occ_angle": u(0, np.pi),
        "occ_len": u(0.3, 0.7), "occ_r": u(0.07, 0.2), "occ_colour": u(0.0, 1.0, 3),
    }  # fmt: skip
    if plain:
        for key, value in _PLAIN.items():
            app[key] = np.broadcast_to(np.asarray(value, dtype=app[key].dtype), app[key].shape)
    return app


def _ellipse(x, y, cx, cy, rx, ry):
    """Approximate signed distance to an axis-aligned ellipse (negative inside): f / |grad f|."""
    inv_x, inv_y = 1.0 / rx, 1.0 / ry  # small arrays: saves two full-size divisions
    px, py = (x - cx) * inv_x, (y - cy) * inv_y
    k0 = np.sqrt(px * px + py * py)
    px *= inv_x
    py *= inv_y
    return k0 * (k0 - 1.0) / (np.sqrt(px * px + py * py) + 1e-6)


def _segment(x, y, ax, ay, bx, by, r):
    """Signed distance to a capsule: the segment a→b thickened by r."""
    pax, pay, bax, bay = x - ax, y - ay, bx - ax, by - ay
    h = np.clip((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-9), 0.0, 1.0)
    dx, dy = pax - bax * h, pay - bay * h
    return np.sqrt(dx * dx + dy * dy) - r


class _Canvas:
    """A float image batch (3, n, S, S) and its face-frame grid; paints soft-edged shapes.

    Each part is drawn only inside the image rectangle that its face-frame box can reach in this
    batch (a region), which makes small parts (eyes, brows, mouth) cheap.
    """

    def __init__(self, app: dict, size: int, sl: slice):
        n = len(app["angle"][sl])
        # Per-image scalars as (n, 1, 1) to broadcast over the grid; colours stay (n, 3).
        self.p = {
            k: np.asarray(v[sl], np.float32)[:, None, None] for k, v in app.items() if v.ndim == 1
        }
        self.c = {k: np.asarray(v[sl], np.float32) for k, v in app.items() if v.ndim == 2}
        self.size = size
        t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        self.u, self.v = t[None, None, :], t[None, :, None]  # image coords, v points down
        p = self.p
        self.cos, self.sin = np.cos(p["angle"]), np.sin(p["angle"])
        du, dv = self.u - p["dx"], self.v - p["dy"]
        self.x = (self.cos * du + self.sin * dv) / p["scale"]  # (n, S, S) face coords
        self.y = (-self.sin * du + self.cos * dv) / p["scale"]
        self.pix = 2.0 / size / p["scale"]  # one pixel in face units, (n, 1, 1)
        # Channels first: numpy broadcasts far faster over leading axes than over a last axis of 3.
        self.img = np.broadcast_to(self.c["bg"].T[:, :, None, None], (3, n, size, size)).copy()

    def region(self, x0, y0, x1, y1) -> tuple[slice, slice, slice]:
        """Index of the image rectangle covering the face-frame box [x0, x1] × [y0, y1]."""
        p, us, vs = self.p, [], []
        for cx, cy in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
            us.append(p["dx"] + p["scale"] * (self.cos * cx - self.sin * cy))
            vs.append(p["dy"] + p["scale"] * (self.sin * cx + self.cos * cy))
        bounds = []
        for t in (us, vs):
            low, high = ((np.array([np.min(t), np.max(t)]) + 1.0) / 2.0 * self.size - 0.5).tolist()
            start = int(np.clip(np.floor(low) - 1, 0, self.size))
            bounds.append(slice(start, int(np.clip(np.ceil(high) + 2, start, self.size))))
        return slice(None), bounds[1], bounds[0]

    def grid(self, roi: tuple) -> tuple[np.ndarray, np.ndarray]:
        return self.x[roi], self.y[roi]

    def paint(self, sdf, colour, roi: tuple, strength=1.0) -> None:
        """Blend colour (n, 3) over the region with the shape's coverage times strength."""
        alpha = np.clip(0.5 - sdf / self.pix, 0.0, 1.0)
        if np.ndim(strength) or strength != 1.0:
            alpha = alpha * strength
        colour = np.asarray(colour, dtype=np.float32).T[:, :, None, None]
        target = self.img[(slice(None), *roi)]
        target += alpha * (colour - target)


def _draw_background(cv: _Canvas) -> None:
    p, c = cv.p, cv.c
    f = [c["bg_freq"][:, i, None, None] for i in range(6)]
    ph = [c["bg_phase"][:, i, None, None] for i in range(3)]
    texture = sum(np.sin(f[2 * i] * cv.u + f[2 * i + 1] * cv.v + ph[i]) for i in range(3)) / 3
    cv.img += p["bg_amp"] * texture
    roi = cv.region(-1.1, 0.3, 1.1, 2.3)
    x, y = cv.grid(roi)
    cv.paint(_ellipse(x, y, 0.0, 1.55, 1.1, 0.7), c["clothes"], roi)
    cv.paint(_segment(x, y, 0.0, 0.6, 0.0, 1.2, 0.28), c["skin"] * 0.85, roi)


def _draw_head(cv: _Canvas) -> None:
    p, c = cv.p, cv.c
    rx, ry, vol = 0.62 * p["face_w"], 0.80 * p["face_h"], p["hair_volume"]
    roi = cv.region(-rx - vol - 0.1, -ry - vol - 0.2, rx + vol + 0.1, ry + 0.02)
    x, y = cv.grid(roi)
    cv.paint(_ellipse(x, y, 0, -0.12, rx + vol, ry + 0.06 + vol), c["hair"], roi)
    ears = np.minimum(*(_ellipse(x, y, side * rx * 0.98, 0.02, 0.09, 0.16) for side in (-1, 1)))
    cv.paint(ears, c["skin"] * 0.93, roi)
    cv.paint(_ellipse(x, y, 0, 0, rx, ry), c["skin"], roi)
    # Fringe: hair inside the face above a curved hairline.
    hairline = p["hairline"] + 0.25 * (x / rx) ** 2
    fringe = np.maximum(_ellipse(x, y, 0, -0.02, rx + 0.01, ry + 0.01), y - hairline)
    cv.paint(fringe, c["hair"], roi)


def _draw_eyes(cv: _Canvas, g: dict) -> None:
    p, c, eye_y = cv.p, cv.c, -0.10
    half_h = 0.065 * g["eye_open"]
    reach_x, reach_y = p["eye_dx"] + 0.15, half_h + 0.03
    roi = cv.region(-reach_x, eye_y - reach_y, reach_x, eye_y + reach_y)
    x, y = cv.grid(roi)
    sclera, iris, pupil = [], [], []
    for ex in (-p["eye_dx"], p["eye_dx"]):
        sclera.append(_ellipse(x, y, ex, eye_y, 0.115, half_h))
        iris.append(np.maximum(_ellipse(x, y, ex, eye_y, 0.055, 0.055), sclera[-1]))
        pupil.append(_ellipse(x, y, ex, eye_y, 0.025, 0.025))
    sclera, iris, pupil = (np.minimum(*both) for both in (sclera, iris, pupil))
    cv.paint(sclera - 0.018, c["skin"] * 0.55, roi)  # lash line / eye socket shadow
    cv.paint(sclera, np.full_like(c["skin"], 0.95), roi)
    cv.paint(iris, c["iris"], roi)
    cv.paint(np.maximum(iris, pupil), np.full_like(c["skin"], 0.05), roi)


def _draw_brows(cv: _Canvas, g: dict) -> None:
    p, c = cv.p, cv.c
    brow_y = -0.25 - 0.085 * g["brow_height"] - 0.02 * (g["eye_open"] - 1)
    arch = 0.035 + 0.03 * np.maximum(g["brow_height"], 0)
    inner_y = brow_y - 0.075 * g["brow_slant"]
    outer_y = brow_y + 0.02 * g["brow_slant"]
    mid_y = (inner_y + outer_y) / 2 - arch
    top = np.minimum(np.minimum(inner_y, outer_y), mid_y) - p["brow_r"]
    bottom = np.maximum(np.maximum(inner_y, outer_y), mid_y) + p["brow_r"]
    roi = cv.region(-p["eye_dx"] - 0.2, top, p["eye_dx"] + 0.2, bottom)
    x, y = cv.grid(roi)
    brows = []
    for side in (-1.0, 1.0):
        ex = side * p["eye_dx"]
        inner_x, outer_x, mid_x = ex - side * 0.15, ex + side * 0.16, ex + side * 0.02
        brows.append(_segment(x, y, inner_x, inner_y, mid_x, mid_y, p["brow_r"]))
        brows.append(_segment(x, y, mid_x, mid_y, outer_x, outer_y, p["brow_r"] * 0.8))
    cv.paint(np.min(brows, axis=0), np.minimum(c["hair"] * 0.6, c["skin"] * 0.4), roi)
    # Forehead lines when the brows go up.
    roi = cv.region(-0.26, top - 0.2, 0.26, top)
    x, y = cv.grid(roi)
    lines = [_segment(x, y, -0.25, fy, 0.25, fy, 0.008) for fy in (top - 0.07, top - 0.13)]
    cv.paint(np.minimum(*lines), c["skin"] * 0.6, roi, np.clip(g["brow_height"] - 0.4, 0, 1) * 0.5)


def _draw_nose_and_folds(cv: _Canvas, g: dict) -> None:
    p, c = cv.p, cv.c
    roi = cv.region(-0.1, -0.09, 0.1, 0.23)
    x, y = cv.grid(roi)
    cv.paint(_segment(x, y, 0.03, -0.02, 0.06, 0.15, 0.012), c["skin"] * 0.6, roi, 0.5)
    nostrils = np.minimum(*(_ellipse(x, y, side * 0.055, 0.2, 0.035, 0.02) for side in (-1, 1)))
    cv.paint(nostrils, c["skin"] * 0.35, roi)
    wrinkle = np.clip(g["nose_wrinkle"], 0, 1)
    lines = [
        _segment(x, y, -0.08 + 0.01 * k, wy, 0.08 - 0.01 * k, wy, 0.016)
        for k, wy in enumerate((-0.06, 0.0, 0.06))
    ]
    cv.paint(np.min(lines, axis=0), c["skin"] * 0.4, roi, wrinkle)
    corner_x = 0.2 * g["mouth_width"] + 0.05
    roi = cv.region(-corner_x - 0.02, 0.12, corner_x + 0.02, p["mouth_y"] + 0.01)
    x, y = cv.grid(roi)
    end_y = p["mouth_y"] - 0.01
    folds = np.minimum(
        *(_segment(x, y, side * 0.12, 0.14, side * corner_x, end_y, 0.012) for side in (-1, 1))
    )
    strength = np.clip(0.7 * np.maximum(g["mouth_curve"], 0) + 0.3 * wrinkle, 0, 0.85)
    cv.paint(folds, c["skin"] * 0.55, roi, strength)


def _draw_mouth(cv: _Canvas, g: dict) -> None:
    p, c = cv.p, cv.c
    half_w = 0.2 * g["mouth_width"]
    centre_y = p["mouth_y"] - 0.04 * np.clip(g["nose_wrinkle"], 0, 1)
    reach = 0.09 * np.abs(g["mouth_curve"]) + 0.13 * g["mouth_open"] + 0.05
    roi = cv.region(-half_w - 0.02, centre_y - reach, half_w + 0.02, centre_y + reach)
    x, y = cv.grid(roi)
    mx = np.clip(x / half_w, -1.0, 1.0)
    line_y = centre_y - 0.12 * g["mouth_curve"] * (mx * mx - 0.3)  # corners up when curve > 0
    half_open = 0.13 * g["mouth_open"] * np.sqrt(1.0 - mx * mx)
    gap = np.abs(y - line_y) - half_open
    lips = np.maximum(gap - 0.035 * np.sqrt(1.0 - 0.7 * mx * mx), np.abs(x) - half_w - 0.01)
    cv.paint(lips, c["skin"] * np.array([0.78, 0.5, 0.5], dtype=np.float32), roi)
    cavity = np.maximum(gap, np.abs(x) - half_w)
    cv.paint(cavity, np.full_like(c["skin"], [0.25, 0.05, 0.06]), roi)
    teeth = np.maximum(cavity, y - (line_y - 0.3 * half_open))
    cv.paint(teeth, np.full_like(c["skin"], 0.93), roi, 0.9)


def _draw_occluder(cv: _Canvas) -> None:
    p, c = cv.p, cv.c
    if not p["occluded"].any():
        return
    dx, dy = p["occ_len"] * np.cos(p["occ_angle"]), p["occ_len"] * np.sin(p["occ_angle"])
    reach = p["occ_len"] + 1.5 * p["occ_r"]
    roi = cv.region(p["occ_x"] - reach, p["occ_y"] - reach, p["occ_x"] + reach, p["occ_y"] + reach)
    x, y = cv.grid(roi)
    cx, cy = p["occ_x"], p["occ_y"]
    bar = _segment(x, y, cx - dx, cy - dy, cx + dx, cy + dy, p["occ_r"] * 0.6)
    blob = _ellipse(x, y, cx, cy, p["occ_r"] * 1.4, p["occ_r"])
    cv.paint(np.where(p["occ_bar"] > 0, bar, blob), c["occ_colour"], roi, p["occluded"])


def _finish(cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
    p = cv.p
    ramp = np.cos(p["light_dir"]) * cv.u + np.sin(p["light_dir"]) * cv.v
    img = cv.img * (p["brightness"] * (1.0 + p["light"] * ramp))
    img += rng.standard_normal(img.shape[1:], dtype=np.float32) * p["noise"]  # grey sensor noise
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 3, 0)


def render(
    geometry: np.ndarray,
    size: int,
    rng: np.random.Generator,
    plain: bool = False,
    appearance: dict | None = None,
) -> np.ndarray:
    """Render faces with explicit expression geometry: (N, P) or (P,) → uint8 (N, size, size, 3).

    Appearance is drawn from rng (or given, from sample_appearance); plain=True draws a frontal,
    centred face on a flat background with no occluder, lighting or noise.
    """
    geometry = np.atleast_2d(np.asarray(geometry, dtype=np.float64))
    if geometry.shape[1] != len(PARAM_NAMES):
        raise ValueError(
            f"geometry needs {len(PARAM_NAMES)} columns {PARAM_NAMES}, got {geometry.shape[1]}"
        )
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"synthetic image_size must be in {MIN_SIZE}..{MAX_SIZE}, got {size}")
    n = len(geometry)
    app = sample_appearance(n, rng, plain) if appearance is None else appearance
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    chunk = max(8, 2**18 // (size * size))  # bounds memory: ~2^18 pixels per batch of arrays
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        g = {
            name: col.astype(np.float32)[:, None, None]
            for name, col in zip(PARAM_NAMES, geometry[sl].T, strict=True)
        }
        cv = _Canvas(app, size, sl)
        _draw_background(cv)
        _draw_head(cv)
        _draw_eyes(cv, g)
        _draw_brows(cv, g)
        _draw_nose_and_folds(cv, g)
        _draw_mouth(cv, g)
        _draw_occluder(cv)
        out[sl] = _finish(cv, rng)
    return out


def generate(
    n: int, size: int, ambiguity: float, rng: np.random.Generator, annotator: str = "single"
) -> SyntheticFaces:
    """n faces with balanced true classes, a fraction `ambiguity` blended, and annotator labels.

    annotator: single | crowd10 | crowd40 (lionfer.data.annotators), legacy, or truth (the true
    classes as labels). The images do not depend on it: the legacy labels are always drawn
    before rendering (so legacy reproduces the earlier data bit for bit) and the other
    annotators draw from rng after rendering.
    """
    if not 0.0 <= ambiguity <= 1.0:
        raise ValueError(f"ambiguity is a fraction of faces, in [0, 1]; got {ambiguity}")
    if annotator not in annotators.ANNOTATORS:
        raise ValueError(
            f"unknown annotator {annotator!r}; use one of {', '.join(annotators.ANNOTATORS)}"
        )
    num_classes = len(PROTOTYPES)
    true_labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    geometry, second, alpha, blended = sample_geometry(true_labels, ambiguity, rng)
    given = annotate(true_labels, second, alpha, rng)
    images = render(geometry, size, rng)
    if annotator == "truth":  # clean labels: no vote, no error
        given = true_labels.copy()
        votes = np.eye(num_classes, dtype=np.int64)[given]
        codes = np.full(n, annotators.NONE, dtype=np.int8)
    elif annotator == "legacy":
        presence = annotators.geometry_posteriors(geometry, ambiguity, FACE_MODEL)[1]
        votes = np.eye(num_classes, dtype=np.int64)[given]
        codes = annotators.error_types(given, true_labels, presence)
    else:
        given, votes, codes, _, _ = annotators.annotate(
            geometry, true_labels, ambiguity, annotator, rng, FACE_MODEL
        )
    return SyntheticFaces(
        images, true_labels, given, blended, second.astype(np.int64), geometry, votes, codes
    )


def label_error_note(faces: SyntheticFaces) -> str:
    """How often the given labels differ from the truth, overall and for blended / clear faces,
    and the error types of the wrong ones (slip / ambiguity)."""
    known = faces.given_labels >= 0
    wrong = faces.given_labels != faces.true_labels
    blended, clear = wrong[known & faces.blended], wrong[known & ~faces.blended]
    percent = [100.0 * part.mean() if len(part) else 0.0 for part in (wrong[known], blended, clear)]
    slips = int((faces.error_types[known & wrong] == annotators.SLIP).sum())
    note = (
        f"given labels wrong on {percent[0]:.1f}% of training images "
        f"({percent[1]:.1f}% of {len(blended)} blended faces, {percent[2]:.1f}% of clear ones; "
        f"{slips} slips, {int((known & wrong).sum()) - slips} ambiguous)"
    )
    if not known.all():
        note += f"; {int((~known).sum())} faces without a crowd majority are unlabeled"
    return note


def _faces(cfg, n: int, stream: int) -> SyntheticFaces:
    """The faces of one of cfg.data_seed's streams (0: training, 1: test): separate streams, so
    changing num_test leaves the training set unchanged."""
    rng = np.random.default_rng([cfg.data_seed, stream])
    return generate(n, cfg.image_size, cfg.ambiguity, rng, getattr(cfg, "annotator", "single"))


def training_faces(cfg) -> SyntheticFaces:
    """The training faces that load(cfg) serves, with what load leaves out of its ImageSet:
    the geometry rendered, so that the exact posterior of each face can be computed
    (annotators.class_posterior(faces.geometry, cfg.ambiguity, FACE_MODEL))."""
    return _faces(cfg, cfg.num_train, 0)


def load(cfg, seed: int = 0) -> FERData:
    """Train and test faces from cfg.data_seed; the run seed is ignored, so runs share one set.
    cfg.annotator (default single) says who labels the training faces; test labels are the truth.
    """
    num_classes = getattr(cfg, "num_classes", 7)
    if num_classes != len(CLASS_NAMES):
        raise ValueError(
            f"synthetic faces have 7 classes; set data.num_classes = 7, not {num_classes}"
        )
    train, test = training_faces(cfg), _faces(cfg, cfg.num_test, 1)
    return FERData(
        name="synthetic",
        class_names=CLASS_NAMES,
        train=ImageSet(
            train.images,
            train.given_labels,
            true_labels=train.true_labels,
            error_types=train.error_types,
        ),
        test=ImageSet(test.images, test.true_labels, true_labels=test.true_labels),
        split_rule="balanced",
        notes=[label_error_note(train)],
    )
