"""Every algorithm's hyperparameters: one frozen dataclass per method, the paper's symbol beside
each field. Kept free of torch so that `lionfer config show` and config validation are instant;
the methods themselves live one per file beside this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from lionfer.errors import check


@dataclass(frozen=True)
class SupervisedConfig:
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class FixMatchConfig:
    threshold: float = 0.95  # τ, pseudo-label confidence
    lambda_u: float = 1.0  # λ_u, unlabeled loss weight

    def __post_init__(self) -> None:
        check(0.0 <= self.threshold <= 1.0, "algorithm.threshold", "must lie in [0, 1]")


@dataclass(frozen=True)
class LionConfig:
    clear_threshold: float = 0.80  # τ, Eq. 1 and Eq. 6
    reliable_threshold: float = 0.83  # γ, Eq. 7
    complementary_threshold: float = 0.05  # δ, Eq. 9
    candidate_threshold: float = 0.30  # μ, Eq. 4
    ema_momentum: float = 0.99  # φ, Eq. 3 and Eq. 5
    lambda_reliable: float = 0.85  # λ1
    lambda_negative: float = 0.45  # λ2
    lambda_consistency: float = 0.06  # λ3
    disambiguation_start: float = 0.3  # fraction of steps trained on all given labels first
    use_disambiguation: bool = True
    use_negative_learning: bool = True
    use_negative_consistency: bool = True
    # "none" (paper): an ambiguous sample gets no loss until it is relabeled; "candidates"
    # (extension): soft CE toward its normalised candidate weights.
    ambiguous_loss: str = "none"

    def __post_init__(self) -> None:
        for name in (
            "clear_threshold",
            "reliable_threshold",
            "complementary_threshold",
            "candidate_threshold",
            "ema_momentum",
            "disambiguation_start",
        ):
            check(0.0 <= getattr(self, name) <= 1.0, f"algorithm.{name}", "must lie in [0, 1]")
        check(
            self.ambiguous_loss in ("none", "candidates"),
            "algorithm.ambiguous_loss",
            f"must be none or candidates, got {self.ambiguous_loss!r}",
        )
