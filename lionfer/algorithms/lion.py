"""LION (Du et al., IJCAI 2023): label disambiguation + progressive negative learning.

- Labeled: a sample is clear when max p ≥ τ and argmax p = its label (Eq. 1); clear samples train
  with CE (Eq. 2) and update class prototypes (Eq. 3). An ambiguous one gets a candidate set
  (Eq. 4) whose weights move toward its similarity to the prototypes (Eq. 5); once a weight
  reaches τ the sample takes that class and becomes clear (Eq. 6).
- Unlabeled: reliable when max p_w ≥ γ (Eq. 7): FixMatch-style CE on the strong view (Eq. 8) and
  prototype updates. Unreliable: classes with renormalised probability ≤ δ join, one by one, a
  per-sample complementary label bank (Eq. 9) trained by L_NL (Eq. 10) and L_NC (Eq. 11).
- L = L_S + λ1 L_Re + λ2 L_NL + λ3 L_NC (Eq. 12), one line of Lion.step.
- Every rule that differs between the paper, the authors' released code and lionfer's own
  recipes is a field of LionConfig (lionfer/algorithms/lion_config.py); `algorithm.recipe` picks
  one set. Each rule is resolved once, when Lion is built (lion_rules.py), to the function
  beside its equation (lion_equations.py; the evidence rule's in lion_evidence.py). The labeled
  images' decisions (clear, ambiguous, candidates) use the head without dropout; the unlabeled
  ones (reliable, bank) use the training forward as FixMatch does. A relabeled sample is clear
  from its next visit on, for good. Its figures and relabel table: lion_report.py.
- The step is tensor ops only: no Python loop over samples and no host synchronisation.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch

from lionfer.algorithms.base import (
    Algorithm,
    Batch,
    Progress,
    StepOutput,
    first_occurrence,
    forward_outputs,
)
from lionfer.algorithms.lion_audit import no_agreement, no_audit, no_trail
from lionfer.algorithms.lion_config import LionConfig
from lionfer.algorithms.lion_equations import (
    candidate_set,
    class_similarity,
    clean_probs,
    disputed_by_margin,
    epoch_of,
    grow_complementary,
    initial_weights,
    masked_mean,
    negative_consistency_loss,
    negative_learning_loss,
    negative_weights,
    relabel_decision,
    split_clear,
    update_prototypes,
    update_weights,
)
from lionfer.algorithms.lion_evidence import EVIDENCE_STATE, EvidenceDisambiguation
from lionfer.algorithms.lion_evidence_rules import (
    DEMOTE,
    KEEP,
    CrossFitHeads,
    class_thresholds,
    elr_loss,
    evidence_verdict,
    stratified_folds,
    streak_update,
)
from lionfer.algorithms.lion_noise import no_noise_read
from lionfer.algorithms.lion_report import (
    LOW_CLEAR_RATE,
    evidence_by_class,
    label_figures,
    low_clear_message,
    mean_or_none,
    never_started_message,
    summary_figures,
)
from lionfer.algorithms.lion_rules import resolve_rules
from lionfer.errors import ConfigError

__all__ = [
    "DEMOTE",
    "EVIDENCE_STATE",
    "KEEP",
    "LOW_CLEAR_RATE",
    "RUNNING",
    "CrossFitHeads",
    "Lion",
    "candidate_set",
    "class_similarity",
    "class_thresholds",
    "clean_probs",
    "disputed_by_margin",
    "elr_loss",
    "epoch_of",
    "evidence_verdict",
    "first_occurrence",
    "grow_complementary",
    "initial_weights",
    "low_clear_message",
    "masked_mean",
    "mean_or_none",
    "negative_consistency_loss",
    "negative_learning_loss",
    "protected_mask",
    "relabel_decision",
    "split_clear",
    "stratified_folds",
    "streak_update",
    "update_prototypes",
    "update_weights",
]

RUNNING = 0.95  # decay of the running clear and fit rates (bias-corrected)
# LION's per-image state (Lion.state_dict), before the evidence rule's own (EVIDENCE_STATE)
LION_STATE = (
    "label",
    "ambiguous",
    "candidates",
    "weights",
    "relabel_step",
    "relabel_weights",
    "visits",
    "prototypes",
    "prototype_ready",
    "bank",
    "running",
    "running_steps",
    "started",
    "start_step",
    "clear_at_start",
)


class PrototypeRows(NamedTuple):
    """A batch's labeled rows under the prototypes rule, for L_S."""

    labels: torch.Tensor  # (B,) the labels they came with this step
    clear: torch.Tensor  # (B,) Eq. 1 (the rest are disputed)
    started: torch.Tensor  # () disambiguation has begun
    weights: torch.Tensor  # (B, C) candidate weights after Eq. 5 (0 for clear rows)


class Lion(EvidenceDisambiguation, Algorithm):
    config_class = LionConfig
    views = ("weak", "strong")
    device_buffers = ("protected",)

    def __init__(self, cfg: LionConfig, info):
        super().__init__(cfg, info)
        m, n, c = info.num_labeled, info.num_unlabeled, info.num_classes
        self.label = info.given_labels.clone().long()  # (M,) current labels
        self.ambiguous = torch.zeros(m, dtype=torch.bool)
        self.candidates = torch.zeros(m, c, dtype=torch.bool)
        self.weights = torch.zeros(m, c)
        self.relabel_step = torch.full((m,), -1, dtype=torch.long)
        self.relabel_weights = torch.zeros(m, c)  # the candidate weights that decided Eq. 6
        self.visits = torch.zeros(m, dtype=torch.long)  # visits since turning ambiguous
        self.prototypes = torch.zeros(c, info.feature_dim)
        self.prototype_ready = torch.zeros(c, dtype=torch.bool)
        self.bank = torch.zeros(n, c, dtype=torch.bool)  # complementary label bank
        # Running clear and fit rates of labeled batches (bias-corrected), the step at which
        # disambiguation began and the clear rate then.
        self.running = torch.zeros(2)  # (clear, fit) EMAs
        self.running_steps = torch.zeros((), dtype=torch.long)
        self.started = torch.zeros((), dtype=torch.bool)
        self.start_step = torch.full((), -1, dtype=torch.long)
        self.clear_at_start = torch.full((), -1.0)
        # a recipe's own protected classes apply where the dataset has them (the released
        # recipe's Neutral on digits does not); a name the user gave must exist
        from_recipe = cfg.protected_classes == LionConfig.RECIPES[cfg.recipe].get(
            "protected_classes", ()
        )
        self.protected = protected_mask(cfg.protected_classes, info.class_names, from_recipe)
        self._warned = False
        self.rules = resolve_rules(cfg)
        # The labeled side's rule (disambiguation), resolved once: which rows are clear now,
        # how their labels change (state) and its term of Eq. 12.
        self._examine, self._disambiguate_labels, self._labeled_loss = {
            "prototypes": (
                self._examine_eq1,
                self._disambiguate_by_prototypes,
                self._loss_on_clear,
            ),
            "evidence": (self._examine_kept, self._disambiguate_by_evidence, self._loss_on_kept),
        }[cfg.disambiguation]
        self._state_names = LION_STATE
        self.heads = None
        if cfg.disambiguation == "evidence":
            self._state_names += EVIDENCE_STATE
            self._init_evidence(cfg, m, c, info.feature_dim)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self._state_names}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """A state saved before the evidence rule had its audit loads as a run without one, and
        one saved before its noise check as a run without one; one saved before the audit kept
        its agreement rates, without them; one saved before it kept its reads, with its one read
        as the first; one that stored the audit's open flag, with the flag derived from its step
        as now."""
        if self.heads is None:
            super().load_state_dict(state)
            return
        # saved while the audit's open flag was stored; it is derived from audit_step now
        state = {key: value for key, value in state.items() if key != "audit_open"}
        if "audit" not in state:
            state = {**state, **no_audit(len(self.label), self.cfg.audit_reads)}
        if "audit_agreement" not in state:
            state = {**state, "audit_agreement": no_agreement()}
        if "audit_trail" not in state:
            first = int(state["audit_step"]), float(state["audit_z"])
            state = {**state, "audit_trail": no_trail(self.cfg.audit_reads, *first)}
        if "noise_reads" not in state:  # saved before the noise check: decides without one
            state = {**state, "noise_reads": torch.tensor([-1, 0]), "noise_read": no_noise_read()}
        super().load_state_dict(state)
        self._mirror_audit()
        self._mirror_noise()

    def modules(self) -> torch.nn.Module | None:
        return self.heads

    # ---- the step ----

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        """Eq. 7 splits the unlabeled images; the labeled side's rule judges its rows (Eq. 1)
        and changes their labels (Eqs. 4-6) after Eq. 3 updates the prototypes; Eq. 9 grows the
        banks; then the losses, which change no state, and their sum (Eq. 12)."""
        cfg, idx_lb = self.cfg, batch.idx_lb
        out_lb, out_w, out_s = forward_outputs(
            model, batch.x_lb, batch.x_ulb_w, batch.x_ulb_s, comm=self.comm
        )
        probs_lb = clean_probs(out_lb)
        probs_w = out_w.logits.float().softmax(dim=1)  # as FixMatch: the train-mode head
        epoch = epoch_of(progress.step, cfg.epoch_steps)
        gamma = cfg.reliable_threshold + cfg.reliable_threshold_step * epoch
        confidence, pseudo_labels = probs_w.detach().max(dim=1)
        reliable = confidence >= gamma  # Eq. 7
        labels = self.label[idx_lb]
        clear, feeds = self._examine(probs_lb, labels, idx_lb)  # Eq. 1 (evidence: not demoted)
        self._update_prototypes(out_lb, out_w, labels, pseudo_labels, feeds, reliable)  # Eq. 3
        rows = self._disambiguate_labels(out_lb, probs_lb, labels, clear, idx_lb, progress, gamma)
        bank_rows = self._grow_bank(probs_w.detach(), ~reliable, batch.idx_ulb)  # Eq. 9
        logs = {"mask_rate": reliable.float().mean()}
        # L_S (Eq. 2) weighted by λ_s, with the labeled side's rule's own terms
        loss_labeled = self._labeled_loss(out_lb, rows, logs)
        loss_re = self.rules.reliable_loss(out_s.logits, pseudo_labels, reliable)  # Eq. 8
        logs["loss_reliable"] = loss_re.detach()
        loss_nl, loss_nc = self._negative_losses(bank_rows, probs_w, out_s, ~reliable, logs)
        lambda_re = cfg.lambda_reliable
        lambda_nl, lambda_nc = negative_weights(
            cfg.lambda_negative, cfg.lambda_consistency, cfg.negative_decay, epoch
        )
        # Eq. 12: L = L_S + λ1 L_Re + λ2 L_NL + λ3 L_NC, the negative learning's terms summed first
        loss = loss_labeled + lambda_re * loss_re + (lambda_nl * loss_nl + lambda_nc * loss_nc)
        return StepOutput(loss, logs, pseudo_labels, reliable)

    def _update_prototypes(self, out_lb, out_w, labels, pseudo_labels, feeds, reliable) -> None:
        """Eq. 3 (c = argmax p): the labeled rows that feed it, then the reliable unlabeled ones."""
        with torch.no_grad():
            self.prototypes, self.prototype_ready = update_prototypes(
                self.prototypes,
                self.prototype_ready,
                torch.cat([out_lb.features, out_w.features]).detach().float(),
                torch.cat([labels, pseudo_labels]),
                torch.cat([feeds, reliable]),
                self.cfg.ema_momentum,
            )

    def _grow_bank(self, probs_w, unreliable, idx_ulb) -> torch.Tensor:
        """Eq. 9 grows the bank rows of this batch's unreliable images (when L_NL or L_NC uses
        them); returns the batch's rows (B, C)."""
        cfg = self.cfg
        if not (cfg.use_negative_learning or cfg.use_negative_consistency):
            return self.bank[idx_ulb]
        grown = grow_complementary(
            self.bank[idx_ulb], probs_w, cfg.complementary_threshold, cfg.bank_keep
        )
        rows = torch.where(unreliable[:, None], grown, self.bank[idx_ulb])
        self.bank[idx_ulb] = rows[first_occurrence(idx_ulb, len(self.bank))]
        return rows

    def _negative_losses(self, bank_rows, probs_w, out_s, unreliable, logs):
        """(L_NL, L_NC) of Eqs. 10 and 11 over the unreliable rows; 0 for one switched off.
        probs_w: the weak view's probabilities with their graph."""
        cfg = self.cfg
        loss_nl = loss_nc = 0.0
        if cfg.use_negative_learning:
            loss_nl = negative_learning_loss(bank_rows, probs_w, unreliable)
            logs["loss_nl"] = loss_nl.detach()
        if cfg.use_negative_consistency:
            probs_s = out_s.logits.float().softmax(dim=1)
            loss_nc = negative_consistency_loss(bank_rows, probs_s, unreliable)
            logs["loss_nc"] = loss_nc.detach()
        return loss_nl, loss_nc

    # ---- the labeled side, disambiguation = "prototypes" (the paper's Eqs. 1, 2, 4-6) ----

    def _examine_eq1(self, probs_lb, labels, idx):
        """(clear, feeds) for this visit, (B,) each. Relabeled samples stay clear unless
        reexamined; with ambiguity_persists an ambiguous sample stays so until its weights
        resolve it. A relabeled image feeds Eq. 3 its new class only when predicted so."""
        cfg = self.cfg
        disputed = self.rules.disputed(probs_lb, labels)
        if not cfg.reexamine_relabeled:
            disputed = disputed & (self.relabel_step[idx] < 0)
        if cfg.ambiguity_persists:
            disputed = disputed | (self.ambiguous[idx] & self.started)
        clear = ~disputed
        predicted = probs_lb.argmax(dim=1) == labels
        return clear, clear & ((self.relabel_step[idx] < 0) | predicted)

    def _disambiguate_by_prototypes(self, out_lb, probs_lb, labels, clear, idx, progress, gamma):
        """The running rates and the start, then Eqs. 4-6 for this batch's disputed rows."""
        self._start(probs_lb, labels, clear, progress)
        features = out_lb.features.detach().float()
        weights = self._relabel_by_prototypes(probs_lb, features, labels, ~clear, idx, progress)
        return PrototypeRows(labels, clear, self.started, weights)

    def _start(self, probs_lb, labels, clear, progress: Progress) -> None:
        """Running rates; disambiguation begins by the start rule (a fraction of the steps or
        once fitted)."""
        fitted = split_clear(probs_lb, labels, self.cfg.clear_threshold)  # confidently its label
        rates = torch.stack([clear.float().mean(), fitted.float().mean()])
        self.running.lerp_(rates.to(self.running), 1 - RUNNING)
        self.running_steps += 1
        corrected = self.corrected_rates()
        if not self.cfg.use_disambiguation:
            return
        start = self.rules.start(progress.fraction, corrected[1])
        just = start & ~self.started
        self.start_step = torch.where(just, progress.step, self.start_step)
        self.clear_at_start = torch.where(
            just, corrected[0].to(self.clear_at_start), self.clear_at_start
        )
        self.started = self.started | start

    def corrected_rates(self) -> torch.Tensor:
        """(2,) the running clear and fit rates, bias-corrected (as of the first step)."""
        return self.running / (1 - RUNNING ** self.running_steps.float().clamp(min=1))

    def _relabel_by_prototypes(self, probs, features, labels, disputed, idx, progress):
        """Eqs. 4-6 for this batch's labeled rows (state updates only, gated on the start);
        returns the rows' candidate weights after Eq. 5 (0 for clear rows)."""
        cfg, rules, started = self.cfg, self.rules, self.started
        ambiguous = disputed & started
        newly = ambiguous & ~self.ambiguous[idx]
        fresh = rules.candidates(probs, labels)  # Eq. 4
        candidates = torch.where(newly[:, None], fresh, self.candidates[idx])
        weights = torch.where(
            newly[:, None], rules.initial_weights(probs, fresh), self.weights[idx]
        )
        similarity = rules.similarity(features, self.prototypes, self.prototype_ready, candidates)
        visits = torch.where(newly, 0, self.visits[idx]) + ambiguous.long()
        phi = rules.weight_momentum(visits, weights.dtype)
        weights = update_weights(weights, candidates, similarity, phi) * ambiguous[:, None]
        best, winner = relabel_decision(weights, candidates & ambiguous[:, None])  # Eq. 6
        best = best.masked_fill(visits < cfg.min_visits, float("-inf"))
        other = winner != labels
        protected = self._protected(labels) | self._protected(winner)
        blocked = rules.blocked(probs, winner, other)
        relabel = ambiguous & (best >= cfg.relabel_threshold) & other & ~protected & ~blocked
        resolved = ambiguous & (best >= cfg.resolve_threshold) & ~blocked
        still = ambiguous & ~resolved
        first = first_occurrence(idx, len(self.label))
        self.label[idx] = torch.where(relabel, winner, labels)[first]
        self.relabel_step[idx] = torch.where(relabel, progress.step, self.relabel_step[idx])[first]
        self.relabel_weights[idx] = torch.where(
            relabel[:, None], weights, self.relabel_weights[idx]
        )[first]
        keep = torch.where(started, still, self.ambiguous[idx])
        self.ambiguous[idx] = keep[first]
        self.candidates[idx] = (candidates & still[:, None])[first]
        self.visits[idx] = (visits * still)[first]
        self.weights[idx] = (weights * still[:, None])[first]
        return weights

    def _loss_on_clear(self, out_lb, rows: PrototypeRows, logs) -> torch.Tensor:
        """λ_s L_S (Eq. 2) by the ambiguous_loss rule: over the clear rows once disambiguation
        has begun (every row before), with the candidates' soft CE where chosen."""
        started, clear = rows.started, rows.clear
        loss = self.rules.supervised_loss(out_lb.logits, rows.labels, clear, started)
        logs["clear_rate"] = torch.where(started, clear.float().mean(), 1.0)
        logs["loss_sup"] = loss.detach()
        logs["ambiguous_rate"] = (~clear & started).float().mean()
        if self.rules.ambiguous_loss is not None:
            loss_ambiguous = self.rules.ambiguous_loss(
                out_lb.logits, rows.weights, ~clear & started
            )
            logs["loss_ambiguous"] = loss_ambiguous.detach()
            loss = loss + loss_ambiguous
        return self.cfg.lambda_supervised * loss

    def _protected(self, classes: torch.Tensor) -> torch.Tensor:
        if not len(self.protected):
            return torch.zeros_like(classes, dtype=torch.bool)
        return self.protected[classes]

    # ---- figures (lion_report.py) ----

    def diagnostics(self, probe) -> dict:
        """Label-quality figures at an evaluation (lion_report.label_figures); a warning, once,
        when disambiguation began with few labeled images clear."""
        figures = label_figures(
            self.state_dict(),
            self.info.given_labels,
            probe,
            self.rules.similarity,
            self.heads,
            self.cfg.audit_z,
            self.cfg.noise_min,
            self.cfg.noise_z,
        )
        start = figures["label_quality"]["clear_rate_at_start"]
        if start is not None and start < LOW_CLEAR_RATE and not self._warned:
            self._warned = True
            warnings.warn(low_clear_message(start, int(self.start_step)), stacklevel=2)
        return figures

    def summary(self, true_labeled=None, true_unlabeled=None) -> dict:
        state = self.state_dict()
        figures = summary_figures(state, self.cfg.recipe, true_unlabeled)
        if self.heads is None and self.cfg.use_disambiguation and not bool(self.started):
            fit = float(self.corrected_rates()[1])
            figures.setdefault("warnings", []).append(never_started_message(self.cfg, fit))
        if self.heads is not None:  # the evidence rule: how far its evidence holds, by class
            given = self.info.given_labels.cpu().numpy()
            names = self.info.class_names or tuple(map(str, range(self.info.num_classes)))
            figures["evidence_by_class"] = evidence_by_class(state, given, names, true_labeled)
        return figures


def protected_mask(names, class_names, skip_unknown: bool = False) -> torch.Tensor:
    """(C,) bool: the classes named in protected_classes (any case); an unknown name is an
    error naming the classes there are, unless skip_unknown."""
    known = {name.lower(): i for i, name in enumerate(class_names)}
    unknown = [name for name in names if name.lower() not in known]
    if unknown and class_names and not skip_unknown:
        raise ConfigError(
            f"algorithm.protected_classes names {', '.join(map(repr, unknown))}, which this "
            f"dataset does not have; its classes are {', '.join(class_names)}"
        )
    wanted = {name.lower() for name in names}
    return torch.tensor([name.lower() in wanted for name in class_names] or [], dtype=torch.bool)
