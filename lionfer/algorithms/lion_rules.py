"""LionConfig's rules resolved once, when Lion (lion.py) is built: LionRules holds, for each rule,
the function that implements the choice its config names (beside its equation in
lion_equations.py, the evidence rule's in lion_evidence.py), its parameters bound, so that the
step compares no names.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from lionfer.algorithms.lion_config import LionConfig
from lionfer.algorithms.lion_equations import (
    AMBIGUOUS_LOSSES,
    RELIABLE_LOSSES,
    SIMILARITIES,
    SUPERVISED_LOSSES,
    WEIGHT_INITS,
    constant_momentum,
    disputed_by_confidence,
    disputed_by_margin,
    never_blocked,
    prediction_given_candidates,
    running_mean_momentum,
    start_after_fraction,
    start_when_fitted,
    threshold_candidates,
    threshold_given_candidates,
    unbacked_by_classifier,
)
from lionfer.algorithms.lion_evidence_rules import AGREEMENTS, ELR_FORMS, ELR_TARGETS, JUDGING_HEADS


class LionRules(NamedTuple):
    """LionConfig's rules (LION_RULE_CHOICES), each resolved to the function that implements it,
    its parameters bound. The labeled side's rule (disambiguation) is Lion's own methods."""

    start: Callable  # start_rule: (fraction, fit rate ()) → () start?
    disputed: Callable  # ambiguity_rule: (p, labels) → (B,) not clear, Eq. 1
    candidates: Callable  # candidate_rule: (p, labels) → (B, C), Eq. 4
    initial_weights: Callable  # weight_init: (p, candidates) → (B, C), Eq. 4
    similarity: Callable  # similarity: (q, S, ready, candidates) → d (B, C), Eq. 5
    weight_momentum: Callable  # weight_update: (visits, dtype) → φ, Eq. 5
    blocked: Callable  # relabel_confidence: (p, winner, other) → (B,) relabels not backed
    supervised_loss: Callable  # ambiguous_loss: (logits, labels, clear, started) → L_S, Eq. 2
    ambiguous_loss: Callable | None  # ambiguous_loss: (logits, w, ambiguous) → its own term
    reliable_loss: Callable  # reliable_loss_norm: (logits_s, pseudo-labels, reliable) → Eq. 8
    agreement: Callable  # evidence_agreement: (verdict, q, S, ready) → verdict
    judging_head: Callable  # evidence_heads: (folds, K) → (B,) the head whose p is evidence
    elr_target: Callable  # elr_target: (own targets, evidence (B, C), thresholds (C,)) → targets
    elr: Callable  # elr_form: (logits, targets, mask) → ELR's term


def resolve_rules(cfg: LionConfig) -> LionRules:
    """Each of cfg's rules, chosen by its name once, so that the step compares no names."""
    mu = cfg.candidate_threshold
    return LionRules(
        start={
            "fraction": partial(start_after_fraction, at=cfg.disambiguation_start),
            "fitted": partial(start_when_fitted, threshold=cfg.fit_threshold),
        }[cfg.start_rule],
        disputed={
            "confidence": partial(disputed_by_confidence, tau=cfg.clear_threshold),
            "margin": partial(disputed_by_margin, margin=cfg.ambiguity_margin),
        }[cfg.ambiguity_rule],
        candidates={
            "threshold": partial(threshold_candidates, mu=mu),
            "prediction_given": prediction_given_candidates,
            "threshold_given": partial(threshold_given_candidates, mu=mu),
        }[cfg.candidate_rule],
        initial_weights=WEIGHT_INITS[cfg.weight_init],
        similarity=partial(SIMILARITIES[cfg.similarity], temperature=cfg.similarity_temperature),
        weight_momentum={
            "ema": partial(constant_momentum, phi=cfg.ema_momentum),
            "mean": running_mean_momentum,
        }[cfg.weight_update],
        blocked=(
            partial(unbacked_by_classifier, confidence=cfg.relabel_confidence)
            if cfg.relabel_confidence > 0
            else never_blocked
        ),
        supervised_loss=SUPERVISED_LOSSES[cfg.ambiguous_loss],
        ambiguous_loss=AMBIGUOUS_LOSSES[cfg.ambiguous_loss],
        reliable_loss=RELIABLE_LOSSES[cfg.reliable_loss_norm],
        agreement=AGREEMENTS[cfg.evidence_agreement],
        judging_head=JUDGING_HEADS[cfg.evidence_heads],
        elr_target=ELR_TARGETS[cfg.elr_target],
        elr=ELR_FORMS[cfg.elr_form],
    )
