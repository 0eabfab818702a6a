"""The evidence rule of LION's labeled side (disambiguation = "evidence", lionfer's own, the
default recipe), as pure functions: K cross-fitted heads give each labeled image a running
out-of-fold prediction (its evidence); Confident Learning's per-class thresholds turn it into a
verdict on the image's label (keep, relabel to a class, or demote the image to unlabeled),
carried out once it holds for min_visits visits in a row; ELR keeps the model near its early
predictions meanwhile. The pure pieces first (the audit's in lion_audit.py), then
EvidenceDisambiguation, the rule's part of Lion (lion.py), chosen by disambiguation = "evidence".
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from lionfer.algorithms.base import Progress, first_occurrence
from lionfer.algorithms.lion_audit import (
    NO_Z,
    audit_counts,
    audit_held,
    audit_rows,
    no_agreement,
    no_trail,
    shuffled_by_class,
)
from lionfer.algorithms.lion_config import audit_read_point
from lionfer.algorithms.lion_equations import (
    cosine_to_prototypes,
    grow_complementary,
    masked_mean,
    negative_learning_loss,
)
from lionfer.algorithms.lion_noise import no_noise_read, noise_floor_fit
from lionfer.losses import masked_cross_entropy
from lionfer.metrics import excess_agreement_z

KEEP, DEMOTE = -2, -1  # evidence verdicts that are not a class

# the per-image state of the evidence rule, saved after LION's own (Lion.state_dict)
EVIDENCE_STATE = (
    "fold",
    "evidence",
    "evidence_visits",
    "elr_target",
    "verdict",
    "streak",
    "demoted",
    "bank_lb",
    "audit",
    "audit_step",
    "audit_z",
    "audit_passed",
    "audit_agreement",
    "audit_trail",
    "noise_reads",
    "noise_read",
)
NOISE_READ_SHARE = 0.01  # the noise check is read every 1% of the steps


class CrossFitHeads(torch.nn.Module):
    """K cosine classifiers on the detached feature q: head k trains on every fold but k, so its
    prediction for an image of fold k comes from labels other than that image's own."""

    def __init__(self, folds: int, num_classes: int, feature_dim: int, scale: float):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(folds, num_classes, feature_dim, generator=generator)
        self.weight = torch.nn.Parameter(0.01 * weight)  # (K, C, D)
        self.scale = scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, K, C) logits s · cos(q, w_kc) of every head for every row."""
        q = F.normalize(features, dim=1)
        return self.scale * torch.einsum("bd,kcd->bkc", q, F.normalize(self.weight, dim=2))


def stratified_folds(labels: torch.Tensor, folds: int, seed: int = 0) -> torch.Tensor:
    """(M,) a fold in [0, folds) per image, each class dealt round-robin over the folds in a
    seeded random order, so every fold holds every class alike."""
    order = shuffled_by_class(labels, seed)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return rank % folds


def training_heads(folds: torch.Tensor, num_heads: int, set_aside: torch.Tensor) -> torch.Tensor:
    """(B, K) true where head k trains on the row: every head but its fold's, none for a row set
    aside (demoted)."""
    trains = folds[:, None] != torch.arange(num_heads, device=folds.device)
    return trains & ~set_aside[:, None]


def heads_trained(
    folds: torch.Tensor,
    labels: torch.Tensor,
    trains: torch.Tensor,
    num_heads: int,
    num_classes: int,
) -> torch.Tensor:
    """(K, C) how many images labeled c head k trains on: those that train (trains (M,), not set
    aside) outside fold k (training_heads). A head that trains on none of class c cannot name
    it: its p for c is no evidence for c, and its p against c no evidence against."""
    onehot = F.one_hot(labels, num_classes).float() * trains[:, None]  # (M, C)
    per_fold = torch.zeros(num_heads, num_classes, device=labels.device)
    per_fold.index_add_(0, folds.to(labels.device), onehot)
    return per_fold.sum(dim=0) - per_fold  # (C,) broadcast over the K folds


def cross_fit_loss(logits_heads: torch.Tensor, labels: torch.Tensor, trains: torch.Tensor):
    """Mean CE of the heads (logits (B, K, C)) on the rows each trains on (trains (B, K))."""
    per_head = F.cross_entropy(
        logits_heads.flatten(0, 1),
        labels.repeat_interleave(logits_heads.shape[1]),
        reduction="none",
    ).view_as(trains)
    return (per_head * trains).sum() / trains.sum().clamp_min(1)


# ---- whose prediction is an image's evidence (evidence_heads) ----


def out_of_fold_head(folds: torch.Tensor, num_heads: int) -> torch.Tensor:
    """evidence_heads "out_of_fold": (B,) the head of the row's fold, which never trained on it."""
    return folds


def in_sample_head(folds: torch.Tensor, num_heads: int) -> torch.Tensor:
    """evidence_heads "in_sample" (an ablation of the cross-fitting): (B,) the next fold's head,
    which trained on the row."""
    return (folds + 1) % num_heads


JUDGING_HEADS = {"out_of_fold": out_of_fold_head, "in_sample": in_sample_head}


def judged_probs(logits_heads: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """(B, C) detached p of head heads[i] for row i."""
    rows = torch.arange(len(heads), device=heads.device)
    return logits_heads.detach()[rows, heads].softmax(dim=1)


def visit_average(
    previous: torch.Tensor, current: torch.Tensor, seen: torch.Tensor, momentum: float
) -> torch.Tensor:
    """(B, C) a running average over an image's visits: the current value on its first visit
    (seen (B, 1) false), then momentum · previous + (1 − momentum) · current."""
    return torch.where(seen, momentum * previous + (1 - momentum) * current, current)


def elr_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ELR (Liu et al., NeurIPS 2020): mean over masked rows of log(1 − ⟨p, t⟩), t an image's
    running target. Its gradient pulls p toward t, the model's early predictions, so that fitting
    a label that contradicts them (memorising it) meets resistance."""
    probs = logits.float().softmax(dim=1).clamp(1e-4, 1 - 1e-4)
    probs = probs / probs.sum(dim=1, keepdim=True)
    agreement = (probs * targets).sum(dim=1)
    return masked_mean(torch.log((1 - agreement).clamp_min(1e-4)), mask)


def soft_target_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
    """elr_form "soft": mean over masked rows of the cross-entropy toward t, −Σ t log p. Alone
    its minimum is p = t (elr_loss's: p on t's most likely class); beside λ_s L_S it trains p
    toward (λ_s y + λ t) / (λ_s + λ)."""
    log_probs = logits.float().log_softmax(dim=1)
    return masked_mean(-(targets * log_probs).sum(dim=1), mask)


ELR_FORMS = {"log": elr_loss, "soft": soft_target_loss}


def own_predictions(own, evidence, thresholds) -> torch.Tensor:
    """elr_target "own": (B, C) ELR's early-learning targets, the image's own running p."""
    return own


def out_of_fold_evidence(own, evidence, thresholds) -> torch.Tensor:
    """elr_target "evidence": (B, C) the image's out-of-fold evidence."""
    return evidence


def calibrated_evidence(own, evidence: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """elr_target "calibrated": (B, C) the out-of-fold evidence read against each class's
    threshold (class_thresholds, (C,)) as the verdicts read it, e_j / t_j, renormalised: a class
    the heads find hard weighs in the target as it does in the rule."""
    scaled = evidence / thresholds.clamp_min(1e-6)
    return scaled / scaled.sum(dim=1, keepdim=True)


ELR_TARGETS = {
    "own": own_predictions,
    "evidence": out_of_fold_evidence,
    "calibrated": calibrated_evidence,
}


# ---- the verdicts ----


def class_thresholds(
    evidence: torch.Tensor, labels: torch.Tensor, active: torch.Tensor
) -> torch.Tensor:
    """(C,) Confident Learning's per-class thresholds: t_j = mean evidence for j over the active
    images labeled j (1/C for a class without one)."""
    num_classes = evidence.shape[1]
    onehot = F.one_hot(labels, num_classes).to(evidence.dtype) * active[:, None]  # (M, C)
    count = onehot.sum(dim=0)
    total = (onehot * evidence).sum(dim=0)
    return torch.where(count > 0, total / count.clamp_min(1), 1.0 / num_classes)


def evidence_verdict(
    evidence: torch.Tensor,
    labels: torch.Tensor,
    thresholds: torch.Tensor,
    against_ratio: float,
    margin: float,
) -> torch.Tensor:
    """(B,) each row's verdict on its label: KEEP (-2), DEMOTE (-1) or a class to relabel to.

    Against the label y: e_y < against_ratio · t_y. For class j ≠ y, the most likely other one:
    e_j ≥ t_j and e_j > e_y (Confident Learning's off-diagonal), and e_j ≥ margin · e_k for every
    other class k ∉ {y, j} (one class, not a split between two). Against and for j: relabel to
    j; against and for no class: demote; otherwise keep."""
    own = evidence.gather(1, labels[:, None])[:, 0]
    others = evidence.scatter(1, labels[:, None], float("-inf"))
    best, other = others.max(dim=1)
    runner_up = others.topk(2, dim=1).values[:, 1].clamp_min(0)  # -inf: only the label's column
    against = own < against_ratio * thresholds[labels]
    for_other = (best >= thresholds[other]) & (best > own) & (best >= margin * runner_up)
    return torch.where(against, torch.where(for_other, other, DEMOTE), KEEP)


def within_known_classes(
    verdict: torch.Tensor, labels: torch.Tensor, known: torch.Tensor
) -> torch.Tensor:
    """(B,) the verdicts a row's judging head can give: none (KEEP) where it trains on no image
    of the row's label, whose evidence against the label is then no evidence; a demotion
    instead of a relabel to a class it trains on no image of. known (B, C): the judging head
    of each row trains on some image of class c (heads_trained > 0)."""
    knows_label = known.gather(1, labels[:, None])[:, 0]
    knows_new = known.gather(1, verdict.clamp_min(0)[:, None])[:, 0]
    verdict = torch.where((verdict >= 0) & ~knows_new, DEMOTE, verdict)
    return torch.where(knows_label, verdict, KEEP)


def any_class(verdict, features, prototypes, ready) -> torch.Tensor:
    """evidence_agreement "none": (B,) the verdicts as they are."""
    return verdict


def nearest_prototype_agrees(verdict, features, prototypes, ready) -> torch.Tensor:
    """evidence_agreement "prototype": (B,) a relabel also needs the nearest class prototype
    (Eq. 3) to be the new class; one it does not name becomes a demotion, as does every relabel
    while no class has a prototype (no witness, not class 0's)."""
    similarity = cosine_to_prototypes(features, prototypes, ready)
    nearest = similarity.masked_fill(~ready, float("-inf")).argmax(dim=1)
    agrees = (nearest == verdict) & ready.any()
    return torch.where((verdict >= 0) & ~agrees, DEMOTE, verdict)


AGREEMENTS = {"none": any_class, "prototype": nearest_prototype_agrees}


def streak_update(
    streak: torch.Tensor, previous: torch.Tensor, verdict: torch.Tensor
) -> torch.Tensor:
    """(B,) visits in a row with the same verdict (SELFIE-style consistency): +1 when it repeats,
    1 when it changes."""
    return torch.where(verdict == previous, streak + 1, torch.ones_like(streak))


# ---- the rule's part of Lion ----


class EvidenceRows(NamedTuple):
    """A batch's labeled rows under the evidence rule, for its losses."""

    heads_labels: torch.Tensor  # (B,) the labels before this step's decisions
    logits_heads: torch.Tensor  # (B, K, C) the cross-fitted heads, with their graph
    heads_train: torch.Tensor  # (B, K) the heads that train on each row
    labels: torch.Tensor  # (B,) the labels after the decisions
    kept: torch.Tensor  # (B,) not demoted: trains on its label
    disputed: torch.Tensor  # (B,) a verdict other than keep
    target: torch.Tensor  # (B, C) ELR's running targets
    pseudo_labels: torch.Tensor  # (B,) a demoted row's own prediction
    reliable: torch.Tensor  # (B,) demoted and confident (γ)
    unreliable: torch.Tensor  # (B,) demoted and not confident
    bank_rows: torch.Tensor | None  # (B, C) the demoted rows' banks (with L_NL)


class EvidenceDisambiguation:
    """The evidence rule's steps, a part of Lion (lion.py), whose per-image state they read and
    write: its own (EVIDENCE_STATE, made by _init_evidence), LION's labels (label, relabel_step,
    relabel_weights), prototypes (Eq. 3), protected classes and resolved rules."""

    def _init_evidence(self, cfg, m: int, c: int, feature_dim: int) -> None:
        self.heads = CrossFitHeads(cfg.folds, c, feature_dim, cfg.evidence_scale)
        self.fold = stratified_folds(self.label, cfg.folds)
        self.evidence = torch.zeros(m, c)  # running out-of-fold p per image
        self.evidence_visits = torch.zeros(m, dtype=torch.long)
        self.elr_target = torch.zeros(m, c)  # ELR's running targets t
        self.verdict = torch.full((m,), KEEP, dtype=torch.long)  # the last visit's verdict
        self.streak = torch.zeros(m, dtype=torch.long)  # visits in a row with that verdict
        self.demoted = torch.zeros(m, dtype=torch.bool)  # set aside: trains as unlabeled
        self.bank_lb = torch.zeros(m, c, dtype=torch.bool)  # demoted images' CLB rows
        # the audit: images held out of training on their labels until the first decision,
        # which it tells whether the evidence is evidence or the labels learnt by heart
        fraction = cfg.evidence_audit * cfg.use_disambiguation
        self.audit = audit_rows(self.label, fraction)
        self.audit_step = torch.full((), -1, dtype=torch.long)  # the step it was read at (-1: not)
        self.audit_z = torch.full((), NO_Z)  # its z then (NO_Z: not read, or none seen)
        # false: no decision in this run; so from the start where an audit is asked for but no
        # class has the three labeled images it needs (audit_rows)
        self.audit_passed = torch.tensor(not (fraction > 0 and not self.audit.any()))
        self.audit_agreement = no_agreement()  # its rates then: the judged images', the audit's
        self.audit_trail = no_trail(cfg.audit_reads)  # every read: its step and z
        self._mirror_audit()
        # the noise check (lion_noise.py): its reads, and those that held decisions back (reads
        # -1: no check, in a run resumed from a state saved before it); its last read (step,
        # clean z, rate, temperature; step -1: none)
        self.noise_reads = torch.zeros(2, dtype=torch.long)
        self.noise_read = no_noise_read()
        self._mirror_noise()

    @property
    def audit_open(self) -> torch.Tensor:
        """() bool: the audit holds its images out of training on their labels (not read yet)."""
        return audit_held(self.audit, self.audit_step).any()

    def _mirror_audit(self) -> None:
        """The audit's flags as Python values, so that the step reads them without a sync."""
        self._audit_pending = bool(self.audit_open)
        self._audit_reads = int((self.audit_trail[:, 0] >= 0).sum())
        self._decisions_allowed = bool(self.audit_passed) and not self._audit_pending

    def _mirror_noise(self) -> None:
        """The noise check's flags as Python values, so that the step reads them without a sync:
        whether the run has one, its last read's step, and whether that read held decisions
        back."""
        step, clean_z = self.noise_read[:2].tolist()
        self._noise_last_read = int(step)
        self._noise_holds = step >= 0 and clean_z > self.cfg.noise_z
        self._noise_checks = self.cfg.noise_min > 0 and int(self.noise_reads[0]) >= 0

    def _set_aside(self, idx) -> torch.Tensor:
        """(B,) rows that train as unlabeled images: demoted, or in the audit before its read."""
        return self.demoted[idx] | audit_held(self.audit[idx], self.audit_step)

    def _examine_kept(self, probs_lb, labels, idx):
        """(kept, feeds), (B,) each: an image not demoted trains on its label and feeds Eq. 3
        when predicted as it."""
        kept = ~self._set_aside(idx)
        return kept, kept & (probs_lb.argmax(dim=1) == labels)

    def _disambiguate_by_evidence(self, out_lb, probs_lb, labels, kept, idx, progress, gamma):
        """Each image's evidence (the p of its fold's head, averaged over its visits) and ELR
        target, every visit; the decisions after evidence_start; the demoted rows' banks."""
        cfg = self.cfg
        first = first_occurrence(idx, len(self.label))
        features = out_lb.features.detach().float()
        logits_heads = self.heads(features)  # (B, K, C), a graph into the heads only
        folds, num_heads = self.fold[idx], logits_heads.shape[1]
        heads_train = training_heads(folds, num_heads, ~kept)
        judging = self.rules.judging_head(folds, num_heads)
        oof = judged_probs(logits_heads, judging)
        known = self._heads_know(num_heads, logits_heads.shape[2])[judging]  # (B, C)
        seen = (self.evidence_visits[idx] > 0)[:, None]
        evidence = visit_average(self.evidence[idx], oof, seen, cfg.evidence_momentum)
        target = visit_average(self.elr_target[idx], probs_lb, seen, cfg.elr_momentum)
        self.evidence[idx] = evidence[first]
        self.elr_target[idx] = target[first]
        self.evidence_visits[idx] = (self.evidence_visits[idx] + 1)[first]
        active = ~self.demoted & (self.evidence_visits > 0)
        thresholds = class_thresholds(self.evidence, self.label, active)
        decided = labels
        if (
            cfg.use_disambiguation
            and progress.fraction >= cfg.evidence_start
            and self._audit_passes(progress)
            and self._noise_allows(progress)
        ):
            decided = self._decide(
                evidence, thresholds, known, features, labels, idx, first, progress
            )
        aside = self._set_aside(idx)
        confidence, pseudo_labels = probs_lb.max(dim=1)
        reliable = aside & (confidence >= gamma)  # L_Re's rule for the rows set aside
        unreliable = aside & ~reliable
        bank_rows = None
        if cfg.use_negative_learning:  # Eq. 9 on the demoted rows' own banks
            grown = grow_complementary(
                self.bank_lb[idx], probs_lb, cfg.complementary_threshold, cfg.bank_keep
            )
            bank_rows = torch.where(unreliable[:, None], grown, self.bank_lb[idx])
            self.bank_lb[idx] = bank_rows[first]
        return EvidenceRows(
            heads_labels=labels,
            logits_heads=logits_heads,
            heads_train=heads_train,
            labels=decided,
            kept=~aside,
            disputed=self.verdict[idx] != KEEP,
            # ELR toward evidence only where there is some: its own targets where the judging
            # head trains on no image of the row's label
            target=torch.where(
                known.gather(1, labels[:, None]),
                self.rules.elr_target(target, evidence, thresholds),
                target,
            ),
            pseudo_labels=pseudo_labels,
            reliable=reliable,
            unreliable=unreliable,
            bank_rows=bank_rows,
        )

    def _audit_passes(self, progress: Progress) -> bool:
        """Whether decisions may be made. The audit is read at the first decision: where the
        evidence names the other images' given labels far more often than the audit's (z above
        audit_z), the features have learnt the labels, and no decision is made in this run;
        where it does not (z at most audit_wait_z), decisions go on. A z between the two is
        inconclusive: the audit keeps its images and is read again after another evidence_start
        of the steps, with no decision meanwhile, up to audit_reads reads; the last is held to
        audit_z alone. Once it concludes, the audit trains on its labels like any other image."""
        cfg = self.cfg
        if self._audit_pending and progress.fraction >= audit_read_point(
            self._audit_reads, cfg.evidence_start
        ):
            # the given labels of every visited image: the current labels of the images kept
            # would agree with the evidence by the decisions' making
            visited = self.evidence_visits > 0
            given = self.info.given_labels.to(self.label.device)
            counts = audit_counts(self.evidence, given, ~self.audit & visited, self.audit & visited)
            z = NO_Z if counts is None else excess_agreement_z(*counts)
            self.audit_trail[self._audit_reads] = torch.tensor([float(progress.step), z])
            last = self._audit_reads + 1 >= cfg.audit_reads
            if counts is None or z > cfg.audit_z or z <= cfg.audit_wait_z or last:
                self.audit_step.fill_(progress.step)
                if counts is not None:
                    hits_judged, n_judged, hits_audit, n_audit = counts
                    self.audit_z.fill_(z)
                    self.audit_passed.fill_(z <= cfg.audit_z)
                    rates = torch.tensor([hits_judged / n_judged, hits_audit / n_audit])
                    self.audit_agreement.copy_(rates)
            self._mirror_audit()
        return self._decisions_allowed

    def _noise_allows(self, progress: Progress) -> bool:
        """Whether the noise check (lion_noise.py) lets decisions be made: read from the first
        step they may be made and every NOISE_READ_SHARE of the steps after it, it holds them
        back until its next read where the given labels look nearly right (a floor under
        noise_min, z above noise_z). It reads every visited labeled image's evidence against
        its given label."""
        cfg = self.cfg
        if not self._noise_checks:
            return True
        every = max(1, round(NOISE_READ_SHARE * progress.total))
        if self._noise_last_read < 0 or progress.step - self._noise_last_read >= every:
            visited = self.evidence_visits > 0
            given = self.info.given_labels.to(self.label.device)
            fit = noise_floor_fit(self.evidence[visited], given[visited], cfg.noise_min)
            read = [float(progress.step), fit.clean_z, fit.rate, fit.temperature]
            self.noise_read.copy_(torch.tensor(read))
            self._mirror_noise()  # whether it holds, read from the state as saved
            self.noise_reads[0] += 1
            self.noise_reads[1] += int(self._noise_holds)
        return not self._noise_holds

    def _heads_know(self, num_heads: int, num_classes: int) -> torch.Tensor:
        """(K, C) head k trains on some image labeled c now (heads_trained)."""
        trains = ~self._set_aside(slice(None))
        return heads_trained(self.fold, self.label, trains, num_heads, num_classes) > 0

    def _decide(self, evidence, thresholds, known, features, labels, idx, first, progress):
        """Verdicts on this batch's labeled rows from their evidence, read against the classes'
        thresholds (class_thresholds over the labeled images kept and visited); a verdict held
        for min_visits visits in a row is carried out. Returns the rows' labels after it.
        known (B, C): the classes each row's judging head trains on (within_known_classes).
        first: each row's first occurrence in the batch (first_occurrence), for the writes."""
        cfg = self.cfg
        verdict = evidence_verdict(
            evidence, labels, thresholds, cfg.against_ratio, cfg.relabel_margin
        )
        verdict = within_known_classes(verdict, labels, known)
        verdict = self.rules.agreement(verdict, features, self.prototypes, self.prototype_ready)
        protected = self._protected(labels) | self._protected(verdict.clamp_min(0))
        verdict = torch.where((verdict >= 0) & protected, KEEP, verdict)
        if not cfg.demote:
            verdict = torch.where(verdict == DEMOTE, KEEP, verdict)
        streak = streak_update(self.streak[idx], self.verdict[idx], verdict)
        # a row its head cannot judge is left as it is: kept, or demoted (not restored)
        decided = (streak >= cfg.min_visits) & known.gather(1, labels[:, None])[:, 0]
        relabel = decided & (verdict >= 0) & (verdict != labels)
        demote = decided & (verdict == DEMOTE)
        restore = decided & ((verdict == KEEP) | relabel)
        new_labels = torch.where(relabel, verdict, labels)
        demoted = (self.demoted[idx] | demote) & ~restore
        self.label[idx] = new_labels[first]
        self.relabel_step[idx] = torch.where(relabel, progress.step, self.relabel_step[idx])[first]
        self.relabel_weights[idx] = torch.where(
            relabel[:, None], evidence, self.relabel_weights[idx]
        )[first]
        self.demoted[idx] = demoted[first]
        self.verdict[idx] = verdict[first]
        self.streak[idx] = streak[first]
        return new_labels

    def _loss_on_kept(self, out_lb, rows: EvidenceRows, logs) -> torch.Tensor:
        """The evidence rule's labeled term: the cross-fitted heads' CE (gradient into the heads
        only), λ_s L_S and λ_ELR ELR over the images kept, and the demoted ones as unlabeled."""
        cfg = self.cfg
        logs["clear_rate"] = rows.kept.float().mean()  # kept: trains on its label
        logs["ambiguous_rate"] = rows.disputed.float().mean()  # disputed now
        loss_heads = cross_fit_loss(rows.logits_heads, rows.heads_labels, rows.heads_train)
        loss_sup = masked_cross_entropy(out_lb.logits, rows.labels, rows.kept)
        loss_elr = self.rules.elr(out_lb.logits, rows.target, rows.kept)
        loss_demoted = self._demoted_loss(out_lb, rows, logs)
        logs.update(
            loss_sup=loss_sup.detach(),
            loss_elr=loss_elr.detach(),
            loss_heads=loss_heads.detach(),
        )
        return (
            cfg.lambda_supervised * loss_sup + cfg.lambda_elr * loss_elr + loss_demoted + loss_heads
        )

    def _demoted_loss(self, out_lb, rows: EvidenceRows, logs) -> torch.Tensor:
        """A demoted image trains as an unlabeled one on its (only, weak) view: CE toward its own
        confident prediction (L_Re's rule, γ) and L_NL on a bank row of its own (Eq. 10)."""
        cfg = self.cfg
        loss = cfg.lambda_reliable * masked_cross_entropy(
            out_lb.logits, rows.pseudo_labels, rows.reliable
        )
        if cfg.use_negative_learning:
            probs = out_lb.logits.float().softmax(dim=1)
            loss_nl = negative_learning_loss(rows.bank_rows, probs, rows.unreliable)
            logs["loss_nl_demoted"] = loss_nl.detach()
            loss = loss + cfg.lambda_negative * loss_nl
        return loss
