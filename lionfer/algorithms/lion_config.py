"""LION's configuration: its hyperparameters and rules (LionConfig, with the paper's symbol beside
each field), the choices of each rule (LION_RULE_CHOICES) and its recipes side by side
(LION_RECIPES: paper, released, robust, evidence, with a line on each in LION_RECIPE_NOTES).
Free of torch, like the other methods' configs in hparams.py, which re-exports everything here;
the algorithm itself is lionfer/algorithms/lion.py.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from lionfer.errors import ConfigError, check, did_you_mean

LION_RULE_CHOICES = {
    "start_rule": ("fraction", "fitted"),
    "ambiguity_rule": ("confidence", "margin"),
    "candidate_rule": ("threshold", "prediction_given", "threshold_given"),
    "weight_init": ("probs", "normalised", "uniform"),
    "similarity": ("cosine", "softmax"),
    "weight_update": ("ema", "mean"),
    "reliable_loss_norm": ("reliable", "batch"),
    "ambiguous_loss": ("none", "candidates", "label"),
    "disambiguation": ("prototypes", "evidence"),
    "evidence_agreement": ("none", "prototype"),
    "evidence_heads": ("out_of_fold", "in_sample"),
    "elr_target": ("own", "evidence", "calibrated"),
    "elr_form": ("log", "soft"),
}


def audit_read_point(reads: int, start: float) -> float:
    """The fraction of the steps at which the audit's read after `reads` reads falls: every
    evidence_start (start) of the steps (rounded, so that 3 · 0.1 is 0.3)."""
    return round((reads + 1) * start, 9)


@dataclass(frozen=True, init=False)
class LionConfig:
    """LION's hyperparameters and rules. The field defaults are the paper's equations; every
    LionConfig is built from a recipe (LION_RECIPES, DEFAULT_RECIPE unless one is named):
    LionConfig(recipe, **fields) is the field defaults, under the recipe's fields, under `fields`.
    A loaded config is built the same way, so LionConfig() is what a config without a recipe
    gets."""

    RECIPES: ClassVar[dict[str, dict]]  # LION_RECIPES, set below
    RECIPE_NOTES: ClassVar[dict[str, str]]  # one line per recipe, for `lionfer list algorithms`
    DEFAULT_RECIPE: ClassVar[str] = "evidence"  # the one default recipe

    recipe: str = DEFAULT_RECIPE  # paper | released | robust | evidence (see LION_RECIPES)
    clear_threshold: float = 0.80  # τ, Eq. 1
    reliable_threshold: float = 0.83  # γ, Eq. 7
    reliable_threshold_step: float = 0.0  # γ + this · epoch (epoch from 1; released: 0.01)
    # L_Re averages over the reliable images (Eq. 8) or over the whole unlabeled batch (the
    # released code, FixMatch).
    reliable_loss_norm: str = "reliable"
    complementary_threshold: float = 0.05  # δ, Eq. 9
    bank_keep: int = 1  # classes always left out of an image's complementary label bank
    candidate_threshold: float = 0.30  # μ, Eq. 4
    ema_momentum: float = 0.99  # φ, Eqs. 3 and 5
    lambda_supervised: float = 1.0  # weight of L_S (released: 1.6)
    lambda_reliable: float = 0.85  # λ1, Eq. 12
    lambda_negative: float = 0.45  # λ2, Eq. 12
    lambda_consistency: float = 0.06  # λ3, Eq. 12
    negative_decay: float = 0.0  # λ2 falls by this every epoch_steps, λ3 in proportion
    epoch_steps: int = 800  # an "epoch" of the per-epoch schedules (the released codes' 800)
    # When disambiguation begins (before it every labeled image trains on its label):
    # "fraction" after disambiguation_start of the steps; "fitted" once the running fraction of
    # labeled images predicted as their label with confidence ≥ τ reaches fit_threshold.
    start_rule: str = "fraction"
    disambiguation_start: float = 0.3
    fit_threshold: float = 0.9
    # Which labeled images are ambiguous: "confidence" (Eq. 1: not max p ≥ τ with argmax = label)
    # or "margin" (max p − p_label > ambiguity_margin, the released code's rule).
    ambiguity_rule: str = "confidence"
    ambiguity_margin: float = 0.5
    # False (paper): Eq. 1 is re-decided on every visit and candidates are set afresh each time
    # an image turns ambiguous. True: an ambiguous image stays so, keeping its candidates and
    # weights, until its weights resolve it (released code, robust recipe).
    ambiguity_persists: bool = False
    # Candidates: "threshold" (Eq. 4: argmax ∪ {p_c ≥ μ}), "prediction_given" ({argmax, given
    # label}), "threshold_given" (Eq. 4 ∪ {given label}).
    candidate_rule: str = "threshold"
    # Initial weights: "probs" (Eq. 4: w = p), "normalised" (p renormalised over the
    # candidates), "uniform" (1 / number of candidates).
    weight_init: str = "probs"
    # d(q, S_c) of Eq. 5: "cosine", or "softmax" over the candidates of cos / T.
    similarity: str = "cosine"
    similarity_temperature: float = 0.1  # T for similarity = "softmax"
    # "ema" (Eq. 5: w ← φ w + (1 − φ) d, φ = ema_momentum) or "mean": w is the mean of d over
    # the visits since the image turned ambiguous, whatever the schedule's length.
    weight_update: str = "ema"
    min_visits: int = 1  # visits as ambiguous before Eq. 6 may resolve or relabel the image
    resolve_threshold: float = 0.80  # max weight ≥ this ends the ambiguity (Eq. 6: τ)
    relabel_threshold: float = 0.80  # ... and changes the label to that class (Eq. 6: τ)
    # > 0: the classifier must also predict the new class, with at least this probability.
    relabel_confidence: float = 0.0
    protected_classes: tuple = ()  # class names never relabeled to or from (released: neutral)
    # "none" (paper): an ambiguous sample gets no loss until it is resolved; "candidates": soft
    # cross-entropy toward its normalised candidate weights; "label": it keeps training on its
    # label (L_S) while the evidence for another class gathers.
    ambiguous_loss: str = "none"
    # True (the paper's text): a relabeled image is judged by Eq. 1 again on later visits, like any
    # other; False: it stays clear for good (released code, robust).
    reexamine_relabeled: bool = False
    # What decides relabels: "prototypes" (Eqs. 1-6, candidate weights from class prototypes) or
    # "evidence" (out-of-fold predictions of cross-fitted heads, self-calibrated thresholds, three
    # outcomes: relabel, demote to unlabeled, keep; see lion_evidence.py).
    disambiguation: str = "prototypes"
    folds: int = 5  # K cross-fitted heads; head k never trains on fold k, which it judges
    evidence_scale: float = 10.0  # s: the heads' logits are s · cos(q, w_c)
    evidence_momentum: float = 0.8  # an image's evidence: EMA over its visits of its head's p
    evidence_start: float = 0.1  # fraction of the steps before the first decision
    # Evidence against the given label y: e_y < against_ratio · t_y, t_y the mean evidence for y
    # over the images labeled y (Confident Learning's per-class threshold).
    against_ratio: float = 0.5
    # A relabel to j also needs e_j ≥ relabel_margin · e_k for every class k but the label and j,
    # else a demotion (evidence split between two other classes names neither). 1: j need only
    # be the most likely other class; 2 makes fewer, surer relabels (docs/results.md).
    relabel_margin: float = 1.0
    # "prototype": a relabel also needs the nearest class prototype (Eq. 3) to be the new class.
    evidence_agreement: str = "none"
    # Whose p is an image's evidence: its fold's head, which never trained on it ("out_of_fold"),
    # or another head, which did ("in_sample": an ablation of the cross-fitting).
    evidence_heads: str = "out_of_fold"
    demote: bool = True  # False: evidence against a label but for no class keeps the label
    # The audit: this fraction of each class's labeled images trains as unlabeled until the first
    # decision (evidence_start). Where the evidence then names the other labeled images' given
    # labels far more often than the audit's (one-sided z above audit_z), the features have
    # learnt the labels, and no label is changed in the run. Either way the audit then trains on
    # its labels. It leaves two images of every class to judge; where no class has three, it
    # cannot be made and no label is changed. 0: no audit.
    evidence_audit: float = 0.0
    audit_z: float = 3.0
    # A z above audit_wait_z but not above audit_z is inconclusive: the audit keeps its images
    # and is read again after another evidence_start of the steps, with no decision meanwhile,
    # up to audit_reads reads in all (1: one read, held to audit_z alone; with evidence_start 0,
    # on successive steps).
    audit_wait_z: float = 1.645
    audit_reads: int = 1
    # The noise check (lion_noise.py): once the audit lets decisions go on, the given labels
    # are fitted by the evidence and a floor under every class at a rate ρ (about the share of
    # labels the evidence rules out) every 1% of the steps; while the fitted ρ is below
    # noise_min with a one-sided z above noise_z, the labels look nearly right and no decision
    # is made. noise_min 0: no check.
    noise_min: float = 0.0
    noise_z: float = 1.645
    lambda_elr: float = 0.0  # ELR's weight: λ log(1 − ⟨p, t⟩) keeps p near its early targets t
    elr_momentum: float = 0.7  # β of ELR's per-image targets t ← β t + (1 − β) p
    # What ELR pulls p toward: "own", the image's running average of its own predictions (ELR's
    # early-learning targets), or "evidence", its out-of-fold evidence (what the heads that never
    # trained on it predict), so that a network from scratch is not held to its own early guesses,
    # or "calibrated", that evidence read against the class thresholds (e_j / t_j, renormalised).
    elr_target: str = "own"
    # ELR's term: "log", ELR's λ log(1 − ⟨p, t⟩), which pulls p toward agreeing with t (alone:
    # p on t's most likely class); or "soft", λ times the cross-entropy toward t, −Σ t log p,
    # which pulls p toward t itself (beside λ_s L_S: p = (λ_s y + λ t) / (λ_s + λ)).
    elr_form: str = "log"
    use_disambiguation: bool = True
    use_negative_learning: bool = True
    use_negative_consistency: bool = True

    def __init__(self, recipe: str = DEFAULT_RECIPE, **given: Any) -> None:
        if recipe not in LION_RECIPES:
            hint = did_you_mean(str(recipe), LION_RECIPES)
            raise ConfigError(
                f"algorithm.recipe: unknown recipe {recipe!r}.{hint} "
                f"Recipes: {', '.join(LION_RECIPES)}"
            )
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name != "recipe"}
        unknown = sorted(given.keys() - defaults.keys())
        if unknown:
            raise TypeError(f"LionConfig() got an unexpected keyword argument {unknown[0]!r}")
        for name, value in {**defaults, **LION_RECIPES[recipe], **given, "recipe": recipe}.items():
            object.__setattr__(self, name, value)
        self.__post_init__()

    def __post_init__(self) -> None:
        self._check_numbers()
        self._check_evidence_rule()
        self._check_rules()

    def _check_numbers(self) -> None:
        """The shares, weights and counts of every rule in their ranges."""
        for name in (
            "clear_threshold",
            "reliable_threshold",
            "complementary_threshold",
            "candidate_threshold",
            "ema_momentum",
            "disambiguation_start",
            "fit_threshold",
            "ambiguity_margin",
            "resolve_threshold",
            "relabel_threshold",
            "relabel_confidence",
            "evidence_momentum",
            "evidence_start",
            "against_ratio",
            "elr_momentum",
        ):
            check(0.0 <= getattr(self, name) <= 1.0, f"algorithm.{name}", "must lie in [0, 1]")
        for name in (
            "lambda_supervised",
            "lambda_reliable",
            "lambda_negative",
            "lambda_consistency",
            "negative_decay",
            "reliable_threshold_step",
            "lambda_elr",
        ):
            check(
                0 <= getattr(self, name) < math.inf, f"algorithm.{name}", "must be >= 0 and finite"
            )
        check(
            1 <= self.relabel_margin < math.inf,
            "algorithm.relabel_margin",
            "must be a number >= 1 (1: the most likely other class alone)",
        )
        check(self.epoch_steps > 0, "algorithm.epoch_steps", "must be positive")
        check(self.min_visits >= 1, "algorithm.min_visits", "must be >= 1")
        check(
            self.bank_keep >= 1,
            "algorithm.bank_keep",
            "must be >= 1 (the bank never holds every class)",
        )
        check(
            0 < self.similarity_temperature < math.inf,
            "algorithm.similarity_temperature",
            "must be > 0 and finite",
        )

    def _check_evidence_rule(self) -> None:
        """The evidence rule's folds, heads, audit and noise check."""
        check(
            self.folds >= 2, "algorithm.folds", "must be >= 2 (a head per fold, each judging one)"
        )
        check(
            0 < self.evidence_scale < math.inf, "algorithm.evidence_scale", "must be > 0 and finite"
        )
        check(
            0.0 <= self.evidence_audit < 0.5,
            "algorithm.evidence_audit",
            "must lie in [0, 0.5) (the share of each class's labels held out as the audit)",
        )
        check(self.audit_z > 0, "algorithm.audit_z", "must be > 0")
        check(
            self.audit_reads == 1 or self.audit_wait_z <= self.audit_z,
            "algorithm.audit_wait_z",
            "must be at most algorithm.audit_z where algorithm.audit_reads > 1 (a z between "
            "the two is inconclusive)",
        )
        check(self.audit_reads >= 1, "algorithm.audit_reads", "must be >= 1")
        check(
            0.0 <= self.noise_min < 1.0,
            "algorithm.noise_min",
            "must lie in [0, 1) (0: no noise check)",
        )
        check(0 <= self.noise_z < math.inf, "algorithm.noise_z", "must be >= 0 and finite")
        check(
            self.audit_reads == 1
            or self.evidence_audit == 0
            or audit_read_point(self.audit_reads - 1, self.evidence_start) < 1,
            "algorithm.audit_reads",
            "times algorithm.evidence_start must be under 1: the audit is read every "
            "evidence_start of the steps, and every read must fall within the run",
        )

    def _check_rules(self) -> None:
        """Eqs. 1-6's settings that contradict each other, the protected classes' names and
        the rules named."""
        check(
            self.weight_update == "ema" or self.weight_init == "probs",
            "algorithm.weight_init",
            'has no effect under weight_update="mean" (the first visit sets the weights); '
            'remove it or use weight_update="ema"',
        )
        check(
            self.relabel_threshold >= self.resolve_threshold,
            "algorithm.relabel_threshold",
            "must be >= algorithm.resolve_threshold (a relabel also resolves the ambiguity)",
        )
        _check_class_names(self.protected_classes)
        for name, choices in LION_RULE_CHOICES.items():
            value = getattr(self, name)
            check(
                value in choices,
                f"algorithm.{name}",
                f"must be one of {', '.join(choices)}, got {value!r}",
            )


def _check_class_names(names: tuple) -> None:
    """protected_classes holds class names (a class id is refused: ids name different classes
    in different datasets)."""
    for name in names:
        check(
            isinstance(name, str),
            "algorithm.protected_classes",
            f'give class names, e.g. ["neutral"]; got {name!r}',
        )


# Recipes: the fields each one sets over the dataclass defaults (a field given explicitly wins).
# `paper` is the dataclass defaults, with relabeled images re-examined as the paper's text has it.
# `released` follows the authors' released code without its bugs. `robust` and `evidence` are
# lionfer's own; `evidence` is the default (LionConfig.DEFAULT_RECIPE; docs/lion.md).
LION_RECIPES: dict[str, dict] = {
    "paper": {"reexamine_relabeled": True},
    "released": {
        "reliable_threshold": 0.80,  # γ = 0.8 + 0.01 · epoch, epoch counted from 1
        "reliable_threshold_step": 0.01,
        "complementary_threshold": 0.01,
        "lambda_supervised": 1.6,
        "lambda_reliable": 1.2,
        "reliable_loss_norm": "batch",
        "lambda_negative": 0.24,
        "lambda_consistency": 0.24 / 6.5,
        "negative_decay": 0.015,
        "disambiguation_start": 0.3,  # epoch 10 of 30
        "ambiguity_rule": "margin",
        "ambiguity_margin": 0.5,
        "ambiguity_persists": True,
        "candidate_rule": "prediction_given",
        "weight_init": "normalised",
        "similarity": "softmax",
        "similarity_temperature": 0.1,
        "resolve_threshold": 0.985,
        "relabel_threshold": 0.996,
        "protected_classes": ("neutral",),
    },
    "robust": {
        "reliable_threshold": 0.95,
        "reliable_loss_norm": "batch",
        "lambda_reliable": 1.0,
        "start_rule": "fitted",
        "fit_threshold": 0.9,
        "ambiguity_rule": "margin",
        "ambiguity_margin": 0.5,
        "ambiguity_persists": True,
        "candidate_rule": "threshold_given",
        "similarity": "softmax",
        "similarity_temperature": 0.1,
        "weight_update": "mean",
        "min_visits": 5,
        "resolve_threshold": 0.9,
        "relabel_threshold": 0.9,
        "relabel_confidence": 0.9,
        "ambiguous_loss": "label",
    },
    "evidence": {
        # the unlabeled side as in robust
        "reliable_threshold": 0.95,
        "reliable_loss_norm": "batch",
        "lambda_reliable": 1.0,
        # the labeled side: decisions from out-of-fold evidence, ELR against memorising
        "disambiguation": "evidence",
        "min_visits": 5,
        "lambda_elr": 3.0,
        # ELR toward the out-of-fold evidence: toward the image's own early predictions ("own"),
        # it held a class the network learns late to those guesses (docs/lion.md)
        "elr_target": "evidence",
        "evidence_agreement": "prototype",  # a relabel the prototypes contradict is a demotion
        "evidence_audit": 0.1,  # no decision where the features have learnt the labels
        # an inconclusive read (z in (1.645, 3]) waits and reads again, at 20% and 30% of the run
        "audit_reads": 3,
        # no decision while the labels look nearly right: under 3.5% of them ruled out, about
        # where the rule's own mistakes at 700 labels (0.7-1.6% of correct labels broken) match
        # the slips it fixes (about half), docs/results.md#the-noise-check
        "noise_min": 0.035,
    },
}
LION_RECIPE_NOTES = {
    "paper": "the paper's equations as written (reproduction; the paper-scale configs)",
    "released": "the authors' released code's rules, without its bugs",
    "robust": "relabels only where the classifier agrees with the prototypes (rarely does)",
    "evidence": "lionfer's own: relabels or demotes from out-of-fold evidence (the default)",
}
LionConfig.RECIPES = LION_RECIPES
LionConfig.RECIPE_NOTES = LION_RECIPE_NOTES


# The settings only the evidence rule reads (disambiguation = "evidence"); the prototypes' rule
# reads none of them.
EVIDENCE_SETTINGS = (
    "folds",
    "evidence_scale",
    "evidence_momentum",
    "evidence_start",
    "against_ratio",
    "relabel_margin",
    "evidence_agreement",
    "evidence_heads",
    "demote",
    "evidence_audit",
    "audit_z",
    "audit_wait_z",
    "audit_reads",
    "noise_min",
    "noise_z",
    "lambda_elr",
    "elr_momentum",
    "elr_target",
    "elr_form",
)


# The settings only the prototypes' rule reads (Eqs. 1-6, disambiguation = "prototypes"); the
# evidence rule reads none of them (its prototype check is a plain cosine).
PROTOTYPE_SETTINGS = (
    "start_rule",
    "disambiguation_start",
    "fit_threshold",
    "clear_threshold",
    "ambiguity_rule",
    "ambiguity_margin",
    "ambiguity_persists",
    "candidate_rule",
    "candidate_threshold",
    "weight_init",
    "similarity",
    "similarity_temperature",
    "weight_update",
    "resolve_threshold",
    "relabel_threshold",
    "relabel_confidence",
    "ambiguous_loss",
    "reexamine_relabeled",
)


def unread_settings(cfg: LionConfig) -> list[str]:
    """The settings of the other rule than cfg's (EVIDENCE_SETTINGS where it decides by
    prototypes, PROTOTYPE_SETTINGS where it decides from evidence) that `cfg` moves from its
    recipe's values: its rule reads none of them."""
    other = EVIDENCE_SETTINGS if cfg.disambiguation == "prototypes" else PROTOTYPE_SETTINGS
    recipe = LionConfig(cfg.recipe)
    return [name for name in other if getattr(cfg, name) != getattr(recipe, name)]


def lion_config(recipe: str = LionConfig.DEFAULT_RECIPE, **fields) -> LionConfig:
    """LionConfig(recipe, **fields): a recipe with `fields` set on top."""
    return LionConfig(recipe, **fields)
