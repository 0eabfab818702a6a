"""How the procedural faces of synthetic.py are drawn: their appearance (sample_appearance: pose,
skin, hair, light, background, occluder) and the faces themselves (draw_faces), painted as
soft-edged signed-distance shapes on a coordinate grid, vectorised over a batch.
"""

from __future__ import annotations

import numpy as np

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


def draw_faces(app: dict, size: int, sl: slice, g: dict, rng: np.random.Generator) -> np.ndarray:
    """The faces sl of app (from sample_appearance) with expression geometry g ({param: (n, 1, 1)
    float32}): uint8 (n, size, size, 3), sensor noise drawn from rng."""
    cv = _Canvas(app, size, sl)
    _draw_background(cv)
    _draw_head(cv)
    _draw_eyes(cv, g)
    _draw_brows(cv, g)
    _draw_nose_and_folds(cv, g)
    _draw_mouth(cv, g)
    _draw_occluder(cv)
    return _finish(cv, rng)
