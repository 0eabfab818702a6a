"""Procedural faces with the seven expressions: the built-in default dataset (no download).

An expression is facial geometry (PARAM_NAMES); pose, skin, hair, light, background and occluders
vary per face. A fraction of faces blend two expressions. Simulated annotators
(lionfer.data.annotators, chosen by data.annotator) label the training faces from the geometry as
drawn, so given labels are noisy the way FER labels are: ambiguous where the face shows two
expressions, slips elsewhere. Test labels are the truth. Rendering is vectorised over the batch:
signed distances on a coordinate grid (the drawing itself: synthetic_drawing.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lionfer.data import annotators
from lionfer.data.base import FERData, ImageSet
from lionfer.data.datasets.synthetic_drawing import draw_faces, sample_appearance
from lionfer.errors import ConfigError
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
        out[sl] = draw_faces(app, size, sl, g, rng)
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
    if not MIN_SIZE <= cfg.image_size <= MAX_SIZE:
        raise ConfigError(
            f"data.image_size: the synthetic faces are drawn at {MIN_SIZE} to {MAX_SIZE} px, got "
            f"{cfg.image_size}; set data.image_size in that range"
        )
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
