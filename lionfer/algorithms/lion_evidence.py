"""The evidence rule of LION's labeled side (disambiguation = "evidence", lionfer's own, the
default recipe): K cross-fitted heads give each labeled image a running out-of-fold prediction
(its evidence); Confident Learning's per-class thresholds turn it into a verdict on the image's
label (keep, relabel to a class, or demote the image to unlabeled), carried out once it holds for
min_visits visits in a row; ELR keeps the model near its early predictions meanwhile. Here is
EvidenceDisambiguation, the rule's part of Lion (lion.py), with its per-image state; its pure
pieces are in lion_evidence_rules.py, the audit's in lion_audit.py, the noise check's in
lion_noise.py.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from lionfer.algorithms.base import Progress, first_occurrence
from lionfer.algorithms.lion_audit import (
    NO_Z,
    audit_counts,
    audit_held,
    audit_rows,
    no_agreement,
    no_trail,
)
from lionfer.algorithms.lion_config import audit_read_point
from lionfer.algorithms.lion_equations import grow_complementary, negative_learning_loss
from lionfer.algorithms.lion_evidence_rules import (
    DEMOTE,
    KEEP,
    CrossFitHeads,
    class_thresholds,
    cross_fit_loss,
    evidence_verdict,
    heads_trained,
    judged_probs,
    stratified_folds,
    streak_update,
    training_heads,
    visit_average,
    within_known_classes,
)
from lionfer.algorithms.lion_noise import no_noise_read, noise_floor_fit
from lionfer.losses import masked_cross_entropy
from lionfer.metrics import excess_agreement_z

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
