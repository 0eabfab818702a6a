"""Simulated annotators of the procedural faces: they judge the face as drawn, not its hidden blend.

Pure numpy functions with seeded generators; lionfer.data.datasets.synthetic calls them with its own
geometry model (FaceModel). The parts:

- class_posterior: P(true class | rendered geometry), exact up to a quadrature over the blend
  weight: each class is a mixture of a clear face N(prototype, JITTER²) and blends with every
  other class at α ∈ BLEND_ALPHA, weighted as the generator draws them; parameters clipped to the
  generator's bounds count with the probability mass beyond the bound (a censored Gaussian).
- perceived: what an annotator sees, the posterior flattened by a temperature (p^(1/T)) and
  optionally tilted toward Neutral and Happiness (crowds lean to those two classes).
- a vote: a class drawn from the perceived distribution; with probability 1 - reliability of the
  annotator who casts it, a slip replaces it: uniform over the other classes half the time, the
  class's usual FER confusion (FER_CONFUSION) otherwise.
- the given label per mode (MODES): `single` one vote (AffectNet, FER2013); `crowd10` ten votes
  and the FERPlus majority rule (ferplus_majority); `crowd40` forty votes and their plurality
  (RAF-DB-like; ties broken at random).
- error_types: how each given label came about, from the image alone (ERROR_TYPES codes):
  `none` where given = truth; `ambiguity` where given ≠ truth and the face shows the given class
  with posterior probability at least AMBIGUITY_SUPPORT (0.25), as its dominant or its blended-in
  expression (geometry_posteriors' presence); `slip` where given ≠ truth otherwise. The same rule
  types the `legacy` labels.

Run `python -m lionfer.data.calibration` for the calibration table (agreement of two independent
annotators per class, error-type shares and the share of wrong labels per mode).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import log_ndtr, logsumexp

from lionfer.labels import ERROR_TYPES

NONE, SLIP, AMBIGUITY = (ERROR_TYPES.index(name) for name in ("none", "slip", "ambiguity"))
UNKNOWN = -1  # a given label that is no label: a crowd without a FERPlus majority

# The usual confusion of each canonical class in FER data (each class's most confusable
# neighbour): Surprise↔Fear, Disgust↔Anger, Happiness→Neutral, Sadness↔Neutral. It agrees with
# lionfer.data.noise.FER_CONFUSIONS on the classes that map names (Fear, Disgust, Sadness).
FER_CONFUSION = np.array([1, 0, 5, 6, 6, 2, 4])
# Calibrated so two independent `single` annotators agree on about 60-65% of the faces at the
# default ambiguity (0.35); `python -m lionfer.data.calibration` prints the figures.
TEMPERATURE = 2.5  # perceived ∝ posterior^(1/T): T > 1 flattens what an annotator sees
RELIABILITY = (0.90, 1.00)  # each annotator's P(no slip), uniform over this range
CLASS_BIAS = {3: 1.25, 6: 1.5}  # Happiness, Neutral: prior weight of the two favoured classes
SLIP_UNIFORM = 0.5  # share of slips that go to a uniformly chosen other class
AMBIGUITY_SUPPORT = 0.25  # presence of the given class from which a wrong label is `ambiguity`
QUADRATURE = 8  # points of the midpoint rule over the blend weight α


class FaceModel(NamedTuple):
    """The generator's geometry model (see lionfer.data.datasets.synthetic)."""

    prototypes: np.ndarray  # (C, P)
    jitter: np.ndarray  # (P,) std of each parameter around its mean
    lower: np.ndarray  # (P,) clip bounds
    upper: np.ndarray  # (P,)
    first_partner: np.ndarray  # (C,) the class a blend most often mixes in
    partner_blend: float  # P(the blended-in class is the first partner)
    blend_alpha: tuple[float, float]  # range of the dominant class's weight in a blend


class Mode(NamedTuple):
    votes: int  # votes per face
    pool: int  # annotators the votes of a face are drawn from (without replacement)
    rule: str  # single | ferplus | plurality


MODES: dict[str, Mode] = {
    "single": Mode(votes=1, pool=12, rule="single"),
    "crowd10": Mode(votes=10, pool=40, rule="ferplus"),
    "crowd40": Mode(votes=40, pool=100, rule="plurality"),
}
ANNOTATORS: tuple[str, ...] = ("single", "crowd10", "crowd40", "legacy", "truth")


class Annotation(NamedTuple):
    labels: np.ndarray  # (N,) int64 given labels, -1 where a crowd reached no majority
    votes: np.ndarray  # (N, C) int64 votes per class (sums to the mode's votes per face)
    error_types: np.ndarray  # (N,) int8 ERROR_TYPES codes, -1 where the label is unknown
    posterior: np.ndarray  # (N, C) P(true class | geometry)
    presence: np.ndarray  # (N, C) P(class shown as dominant or blended in | geometry)


def _log_likelihood(x: np.ndarray, mean: np.ndarray, model: FaceModel) -> np.ndarray:
    """log p(x | mean) of the clipped Gaussian: x (N, P), mean (K, P) → (N, K)."""
    sigma = model.jitter
    z = (x[:, None, :] - mean[None]) / sigma  # (N, K, P)
    log_pdf = -0.5 * z * z - np.log(sigma * np.sqrt(2 * np.pi))
    below = x <= model.lower  # clipped up to the lower bound: all the mass under it
    above = x >= model.upper
    low_mass = log_ndtr((model.lower[None, None] - mean[None]) / sigma)
    high_mass = log_ndtr((mean[None] - model.upper[None, None]) / sigma)
    log_p = np.where(below[:, None, :], low_mass, np.where(above[:, None, :], high_mass, log_pdf))
    return log_p.sum(-1)


def geometry_posteriors(
    geometry: np.ndarray, ambiguity: float, model: FaceModel
) -> tuple[np.ndarray, np.ndarray]:
    """(posterior, presence), both (N, C), under the generator's own model (uniform class prior).

    posterior[i, c] = P(true class c | geometry i), the dominant expression;
    presence[i, c] = P(c is the dominant or the blended-in expression of face i | geometry i).
    """
    x = np.atleast_2d(np.asarray(geometry, dtype=np.float64))
    protos = np.asarray(model.prototypes, dtype=np.float64)
    num_classes = len(protos)
    low, high = model.blend_alpha
    alphas = low + (np.arange(QUADRATURE) + 0.5) / QUADRATURE * (high - low)
    means, log_prior, dominant, mixed_in = [], [], [], []
    for a in range(num_classes):  # components: clear faces, then blends over (b, α)
        if ambiguity < 1:
            means.append(protos[a : a + 1])
            log_prior.append(np.log1p(-ambiguity) - np.log(num_classes) + np.zeros(1))
            dominant.append([a])
            mixed_in.append([a])
        if ambiguity > 0:
            others = np.array([b for b in range(num_classes) if b != a])
            weight = np.full(len(others), (1 - model.partner_blend) / (num_classes - 1))
            weight[others == model.first_partner[a]] += model.partner_blend
            means.append(
                (
                    alphas[None, :, None] * protos[a]
                    + (1 - alphas[None, :, None]) * protos[others][:, None, :]
                ).reshape(-1, protos.shape[1])
            )
            log_prior.append(
                np.log(ambiguity) - np.log(num_classes) + np.repeat(np.log(weight), QUADRATURE)
                - np.log(QUADRATURE)
            )  # fmt: skip
            dominant.append(np.full(len(others) * QUADRATURE, a))
            mixed_in.append(np.repeat(others, QUADRATURE))
    means, log_prior = np.concatenate(means), np.concatenate(log_prior)
    dominant, mixed_in = np.concatenate(dominant), np.concatenate(mixed_in)
    one_hot = np.eye(num_classes)
    shows = np.clip(one_hot[dominant] + one_hot[mixed_in], 0, 1)
    posterior, presence = np.empty((len(x), num_classes)), np.empty((len(x), num_classes))
    for start in range(0, len(x), 1024):  # bounds memory: (rows × components × P) floats
        rows = slice(start, start + 1024)
        log_joint = _log_likelihood(x[rows], means, model) + log_prior
        weights = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))  # (n, K)
        posterior[rows], presence[rows] = weights @ one_hot[dominant], weights @ shows
    return posterior, presence


def class_posterior(geometry: np.ndarray, ambiguity: float, model: FaceModel) -> np.ndarray:
    """P(true class | geometry) (N, C); see geometry_posteriors."""
    return geometry_posteriors(geometry, ambiguity, model)[0]


def perceived(
    posterior: np.ndarray,
    temperature: float | None = None,
    class_bias: dict[int, float] | None = None,
) -> np.ndarray:
    """What an annotator sees: posterior^(1/T) times the class bias, renormalised (N, C);
    None takes TEMPERATURE and CLASS_BIAS."""
    temperature = TEMPERATURE if temperature is None else temperature
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.log(np.clip(posterior, 1e-300, None)) / temperature
    bias = np.ones(posterior.shape[1])
    for c, weight in (CLASS_BIAS if class_bias is None else class_bias).items():
        bias[c] = weight
    logits = logits + np.log(bias)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _draw(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Categorical draws: p (N, C), u (N, V) uniforms → (N, V) class ids."""
    cumulative = np.cumsum(p, axis=1)
    cumulative[:, -1] = 1.0
    return (u[:, :, None] >= cumulative[:, None, :]).sum(-1)


def cast_votes(
    seen: np.ndarray,
    reliability: np.ndarray,
    rng: np.random.Generator,
    confusion: np.ndarray = FER_CONFUSION,
    slip_uniform: float = SLIP_UNIFORM,
) -> np.ndarray:
    """One vote per (face, annotator): seen (N, C) perceived distributions, reliability (N, V)
    of the annotator casting each vote → (N, V) class ids. A vote is a draw from `seen`; with
    probability 1 - reliability it slips to a uniformly chosen other class (share slip_uniform)
    or to confusion[class]."""
    n, v = reliability.shape
    num_classes = seen.shape[1]
    vote = _draw(seen, rng.random((n, v)))
    slips = rng.random((n, v)) >= reliability
    uniform = rng.random((n, v)) < slip_uniform
    other = (vote + rng.integers(1, num_classes, (n, v))) % num_classes
    slipped = np.where(uniform, other, np.asarray(confusion)[vote])
    return np.where(slips, slipped, vote)


def count_votes(votes: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, V) class ids → (N, C) counts."""
    n = len(votes)
    counts = np.zeros((n, num_classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), votes.shape[1]), votes.reshape(-1)), 1)
    return counts


def ferplus_majority(counts: np.ndarray) -> np.ndarray:
    """FERPlus's majority rule on (N, C) vote counts → (N,) class, or -1 without a majority.

    As FERPlus processes its ten tags per image: a class with a single vote is dropped as an
    outlier; the top class wins only with strictly more than half of the remaining votes, so
    ties, exact halves and faces where every class got one vote have no label (-1)."""
    kept = np.where(counts > 1, counts, 0)
    top = kept.max(axis=1)
    return np.where((top > 0) & (2 * top > kept.sum(axis=1)), kept.argmax(axis=1), UNKNOWN)


def plurality(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The most voted class per face; ties broken uniformly at random (seeded)."""
    top = counts == counts.max(axis=1, keepdims=True)
    return np.argmax(top * rng.random(counts.shape), axis=1)


def error_types(given: np.ndarray, truth: np.ndarray, presence: np.ndarray) -> np.ndarray:
    """ERROR_TYPES codes (N,) int8 of given labels: none where given = truth; where they differ,
    ambiguity if presence[given] ≥ AMBIGUITY_SUPPORT (the face shows the given class too, as its
    dominant or blended-in expression: see geometry_posteriors), else slip; -1 where the given
    label is unknown (< 0)."""
    given, truth = np.asarray(given), np.asarray(truth)
    known = given >= 0
    support = presence[np.arange(len(given)), np.where(known, given, 0)]
    codes = np.where(given == truth, NONE, np.where(support >= AMBIGUITY_SUPPORT, AMBIGUITY, SLIP))
    return np.where(known, codes, UNKNOWN).astype(np.int8)


def pool_reliability(pool: int, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(*RELIABILITY, pool)


def choose_annotators(n: int, mode: Mode, rng: np.random.Generator) -> np.ndarray:
    """(N, V) distinct annotator ids per face, drawn from the mode's pool."""
    return np.argsort(rng.random((n, mode.pool)), axis=1)[:, : mode.votes]


def annotate(
    geometry: np.ndarray,
    truth: np.ndarray,
    ambiguity: float,
    mode: str,
    rng: np.random.Generator,
    model: FaceModel,
    confusion: np.ndarray = FER_CONFUSION,
    class_bias: dict[int, float] | None = None,
) -> Annotation:
    """Given labels, votes and error types of faces with this geometry under an annotator mode
    (confusion and class_bias: see cast_votes and perceived)."""
    if mode not in MODES:
        raise ValueError(f"unknown annotator mode {mode!r}; use one of {', '.join(MODES)}")
    spec = MODES[mode]
    posterior, presence = geometry_posteriors(geometry, ambiguity, model)
    num_classes = posterior.shape[1]
    reliability = pool_reliability(spec.pool, rng)
    who = choose_annotators(len(truth), spec, rng)
    votes = cast_votes(perceived(posterior, None, class_bias), reliability[who], rng, confusion)
    counts = count_votes(votes, num_classes)
    if spec.rule == "single":
        labels = votes[:, 0]
    elif spec.rule == "ferplus":
        labels = ferplus_majority(counts)
    else:
        labels = plurality(counts, rng)
    labels = labels.astype(np.int64)
    return Annotation(labels, counts, error_types(labels, truth, presence), posterior, presence)


def two_annotator_agreement(
    posterior: np.ndarray, rng: np.random.Generator, pool: int = MODES["single"].pool
) -> np.ndarray:
    """(N,) bool: did two distinct annotators of the pool, voting independently, agree."""
    reliability = pool_reliability(pool, rng)
    who = choose_annotators(len(posterior), Mode(2, pool, "single"), rng)
    votes = cast_votes(perceived(posterior), reliability[who], rng)
    return votes[:, 0] == votes[:, 1]
