"""Every algorithm's hyperparameters: one frozen dataclass per method, the paper's symbol beside
each field. Kept free of torch so that `lionfer config show` and config validation are instant;
the methods themselves live one per file beside this one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lionfer.algorithms.lion_config import LION_RECIPES, LION_RULE_CHOICES, LionConfig, lion_config  # noqa: F401
from lionfer.errors import check


@dataclass(frozen=True)
class SupervisedConfig:
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        _check_range(self, ("label_smoothing",))


@dataclass(frozen=True)
class FixMatchConfig:
    threshold: float = 0.95  # τ, pseudo-label confidence
    lambda_u: float = 1.0  # λ_u, unlabeled loss weight

    def __post_init__(self) -> None:
        check(0.0 <= self.threshold <= 1.0, "algorithm.threshold", "must lie in [0, 1]")
        _check_weights(self, ("lambda_u",))


def _check_range(config, names: tuple[str, ...], low: float = 0.0, high: float = 1.0) -> None:
    for name in names:
        check(
            low <= getattr(config, name) <= high,
            f"algorithm.{name}",
            f"must lie in [{low}, {high}]",
        )


def _check_positive(config, names: tuple[str, ...]) -> None:
    """Temperatures, mixup α, step counts: positive and finite (inf and NaN are refused)."""
    for name in names:
        check(
            0 < getattr(config, name) < math.inf, f"algorithm.{name}", "must be positive and finite"
        )


def _check_weights(config, names: tuple[str, ...]) -> None:
    """Loss weights: >= 0 and finite (an infinite weight makes the loss inf or NaN)."""
    for name in names:
        check(0 <= getattr(config, name) < math.inf, f"algorithm.{name}", "must be >= 0 and finite")


@dataclass(frozen=True)
class FullySupervisedConfig:
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        _check_range(self, ("label_smoothing",))


@dataclass(frozen=True)
class PseudoLabelConfig:
    threshold: float = 0.0  # confidence a pseudo-label needs (paper: none, 0; USB 0.95)
    lambda_u: float = 3.0  # α_f, the final unlabeled weight
    # α(t) is 0 until T1, then rises linearly to α_f at T2. The paper gives T1 = 100 and
    # T2 = 600 epochs of a schedule whose length it leaves open; lionfer reads them as fractions.
    ramp_start: float = 0.1  # T1
    ramp_end: float = 0.6  # T2

    def __post_init__(self) -> None:
        _check_range(self, ("threshold", "ramp_start", "ramp_end"))
        _check_weights(self, ("lambda_u",))
        check(
            self.ramp_start <= self.ramp_end,
            "algorithm.ramp_end",
            f"must be >= ramp_start ({self.ramp_start})",
        )


@dataclass(frozen=True)
class MixMatchConfig:
    temperature: float = 0.5  # T, sharpening
    alpha: float = 0.75  # α, mixup λ ~ Beta(α, α)
    lambda_u: float = 100.0  # λ_U, weight of the L2 unlabeled loss
    # Fraction of the run over which λ_U rises linearly. The paper ramps over its first 16,000
    # steps, which is the whole of the FER protocol's 16,000-step run (and the PyTorch port's
    # choice); the authors' CIFAR runs are 1M steps long, where that is 1/64.
    rampup: float = 1.0

    def __post_init__(self) -> None:
        _check_positive(self, ("temperature", "alpha"))
        _check_weights(self, ("lambda_u",))
        _check_range(self, ("rampup",))


@dataclass(frozen=True)
class UDAConfig:
    threshold: float = 0.8  # β, confidence mask on the weak view
    temperature: float = 0.4  # τ, softmax temperature that sharpens the target
    lambda_u: float = 1.0  # λ, consistency weight
    tsa: str = "none"  # training-signal annealing: none (the image runs) | linear | exp | log

    def __post_init__(self) -> None:
        _check_range(self, ("threshold",))
        _check_positive(self, ("temperature",))
        _check_weights(self, ("lambda_u",))
        check(
            self.tsa in ("none", "linear", "exp", "log"),
            "algorithm.tsa",
            f"must be none, linear, exp or log, got {self.tsa!r}",
        )


@dataclass(frozen=True)
class ReMixMatchConfig:
    temperature: float = 0.5  # T, sharpening
    alpha: float = 0.75  # α, mixup λ ~ Beta(α, α)
    lambda_u: float = 1.5  # λ_U, mixed unlabeled loss
    lambda_u1: float = 0.5  # λ_Û1, unmixed first strong view
    lambda_rot: float = 0.5  # λ_r, rotation prediction
    # Fraction of the run over which λ_U and λ_Û1 rise linearly: the authors' 1,024 kimg at
    # batch 64 is 16,000 steps, the whole FER protocol run (1/64 of their 1M-step runs).
    rampup: float = 1.0
    history: int = 128  # p_model: mean of the last `history` batch predictions

    def __post_init__(self) -> None:
        _check_positive(self, ("temperature", "alpha", "history"))
        _check_weights(self, ("lambda_u", "lambda_u1", "lambda_rot"))
        _check_range(self, ("rampup",))


@dataclass(frozen=True)
class MarginMixConfig:
    temperature: float = 0.5  # T, sharpening
    alpha: float = 0.75  # α, mixup λ ~ Beta(α, α)
    lambda_u: float = 75.0  # λ_U, weight of the L2 unlabeled loss (its MixMatch base code)
    rampup: float = 1.0  # λ_U rises over the whole run, as in its MixMatch base code
    margin: float = 0.5  # m, additive margin on the target logit (ours)
    centroid_momentum: float = 0.99  # EMA of the labeled class centroids μ_c (ours)
    distance_temperature: float = 0.1  # s_d, softmax(−d(f, μ_c) / s_d) (ours)
    centroid_weight: float = 0.5  # ω, share of the centroid guess in the blended guess (ours)

    def __post_init__(self) -> None:
        _check_positive(self, ("temperature", "alpha", "distance_temperature"))
        _check_weights(self, ("lambda_u", "margin"))
        _check_range(self, ("rampup", "centroid_momentum", "centroid_weight"))


@dataclass(frozen=True)
class AdaCMConfig:
    threshold: float = 0.8  # initial and lowest per-class confidence margin T_c
    beta: float = 0.97  # β, T_c = max(0.8, β · m_c · sigmoid(epoch))
    temperature: float = 0.07  # τ of the NT-Xent contrastive term
    lambda_x: float = 0.5  # weight of the labeled CE
    lambda_u: float = 1.0  # weight of the confident pseudo-label CE
    lambda_c: float = 0.1  # weight of the contrastive term on low-confidence images
    epoch_steps: int = 800  # steps between margin updates (an "epoch" of the released code)

    def __post_init__(self) -> None:
        _check_range(self, ("threshold", "beta"))
        _check_positive(self, ("temperature", "epoch_steps"))
        _check_weights(self, ("lambda_x", "lambda_u", "lambda_c"))


@dataclass(frozen=True)
class FlexMatchConfig:
    threshold: float = 0.95  # τ, the fixed threshold that the class thresholds scale
    lambda_u: float = 1.0  # λ_u
    warmup: bool = True  # threshold warm-up: unused images count in the normaliser
    mapping: str = "convex"  # M(x): convex x/(2−x) (paper) | linear x | concave log2(1+x)

    def __post_init__(self) -> None:
        _check_range(self, ("threshold",))
        _check_weights(self, ("lambda_u",))
        check(
            self.mapping in ("convex", "linear", "concave"),
            "algorithm.mapping",
            f"must be convex, linear or concave, got {self.mapping!r}",
        )


@dataclass(frozen=True)
class FreeMatchConfig:
    ema: float = 0.999  # λ, momentum of τ, p̃ and h̃
    lambda_u: float = 1.0  # w_u
    lambda_f: float = 0.01  # w_f, self-adaptive fairness (its code's freematch_entropy)

    def __post_init__(self) -> None:
        _check_range(self, ("ema",))
        _check_weights(self, ("lambda_u", "lambda_f"))


@dataclass(frozen=True)
class SoftMatchConfig:
    ema: float = 0.999  # m, momentum of μ_t, σ_t² and p̂
    lambda_u: float = 1.0  # λ_max, the weight of a pseudo-label at or above μ_t
    # The weight's σ is σ_t / n_sigma: 2 in the paper's experiments (§4.1, "divide the
    # variance by 4") and both its codes; 1 is Eq. 5 as printed.
    n_sigma: float = 2.0
    uniform_alignment: bool = True  # UA, Eq. 8 (false: the paper's "w/o UA" ablation)

    def __post_init__(self) -> None:
        _check_range(self, ("ema",))
        _check_weights(self, ("lambda_u",))
        _check_positive(self, ("n_sigma",))
