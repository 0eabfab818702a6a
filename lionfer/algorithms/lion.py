"""LION (Du et al., IJCAI 2023): label disambiguation + progressive negative learning.

- Labeled: a sample is clear when max p ≥ τ and argmax p = its label (Eq. 1); clear samples train
  with CE (Eq. 2) and update class prototypes (Eq. 3). An ambiguous one gets a candidate set
  (Eq. 4) whose weights move toward its similarity to the prototypes (Eq. 5); once a weight
  reaches τ the sample takes that class and becomes clear (Eq. 6).
- Unlabeled: reliable when max p_w ≥ γ (Eq. 7): FixMatch-style CE on the strong view (Eq. 8) and
  prototype updates. Unreliable: classes with renormalised probability ≤ δ join, one by one, a
  per-sample complementary label bank (Eq. 9) trained by L_NL (Eq. 10) and L_NC (Eq. 11).
- L = L_S + λ1 L_Re + λ2 L_NL + λ3 L_NC (Eq. 12).
- Every rule that differs between the paper, the authors' released code and lionfer's robust
  recipe is a field of LionConfig (lionfer/algorithms/hparams.py); `algorithm.recipe` picks one
  set. The labeled images' decisions (clear, ambiguous, candidates) use the head without
  dropout; the unlabeled ones (reliable, bank) use the training forward as FixMatch does. A
  relabeled sample is clear from its next visit on, for good.
- Its equations as pure functions: lion_equations.py (the evidence rule's: lion_evidence.py);
  its figures and relabel table: lion_report.py.
- The step is tensor ops only: no Python loop over samples and no host synchronisation.
"""

from __future__ import annotations

import warnings
from functools import partial

import torch
import torch.nn.functional as F

from lionfer.algorithms.base import Algorithm, Batch, Progress, StepOutput, forward_outputs
from lionfer.algorithms.hparams import LionConfig
from lionfer.algorithms.lion_equations import (  # noqa: F401 (importable from here too)
    candidate_set,
    class_similarity,
    clean_probs,
    disputed_by_margin,
    epoch_of,
    first_occurrence,
    grow_complementary,
    initial_weights,
    masked_mean,
    negative_consistency_loss,
    negative_learning_loss,
    relabel_decision,
    split_clear,
    update_prototypes,
    update_weights,
)
from lionfer.algorithms.lion_evidence import (  # noqa: F401 (importable from here too)
    DEMOTE,
    EVIDENCE_STATE,
    KEEP,
    CrossFitHeads,
    class_thresholds,
    elr_loss,
    evidence_verdict,
    stratified_folds,
    streak_update,
)
from lionfer.algorithms.lion_report import (  # noqa: F401 (importable from here too)
    LOW_CLEAR_RATE,
    label_figures,
    low_clear_message,
    mean_or_none,
    summary_figures,
)
from lionfer.errors import ConfigError
from lionfer.losses import masked_cross_entropy

RUNNING = 0.95  # decay of the running clear and fit rates (bias-corrected)


class Lion(Algorithm):
    config_class = LionConfig
    views = ("weak", "strong")

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
        self.heads = None
        if cfg.disambiguation == "evidence":
            self.heads = CrossFitHeads(cfg.folds, c, info.feature_dim, cfg.evidence_scale)
            self.fold = stratified_folds(self.label, cfg.folds)
            self.evidence = torch.zeros(m, c)  # running out-of-fold p per image
            self.evidence_visits = torch.zeros(m, dtype=torch.long)
            self.elr_target = torch.zeros(m, c)  # ELR's running targets t
            self.verdict = torch.full((m,), KEEP, dtype=torch.long)  # the last visit's verdict
            self.streak = torch.zeros(m, dtype=torch.long)  # visits in a row with that verdict
            self.demoted = torch.zeros(m, dtype=torch.bool)  # set aside: trains as unlabeled
            self.bank_lb = torch.zeros(m, c, dtype=torch.bool)  # demoted images' CLB rows

    def state_dict(self) -> dict[str, torch.Tensor]:
        names = (
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
        if self.cfg.disambiguation == "evidence":
            names += EVIDENCE_STATE
        return {name: getattr(self, name) for name in names}

    def modules(self) -> torch.nn.Module | None:
        return self.heads

    def to(self, device: torch.device) -> Lion:
        super().to(device)
        self.protected = self.protected.to(device)
        return self

    # ---- the step ----

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        cfg = self.cfg
        out_lb, out_w, out_s = forward_outputs(
            model, batch.x_lb, batch.x_ulb_w, batch.x_ulb_s, comm=self.comm
        )
        probs_lb = clean_probs(out_lb)
        probs_w = out_w.logits.float().softmax(dim=1)  # as FixMatch: the train-mode head
        epoch = epoch_of(progress.step, cfg.epoch_steps)
        gamma = cfg.reliable_threshold + cfg.reliable_threshold_step * epoch
        confidence, pseudo_labels = probs_w.detach().max(dim=1)
        reliable = confidence >= gamma
        labels = self.label[batch.idx_lb]
        evidence = cfg.disambiguation == "evidence"
        # Eq. 3 (c = argmax p): a relabeled image feeds its new class only when predicted so
        predicted = probs_lb.argmax(dim=1) == labels
        if evidence:
            clear_now = ~self.demoted[batch.idx_lb]
            feeds = clear_now & predicted
        else:
            clear_now, disputed = self._clear_now(probs_lb, labels, batch.idx_lb)
            self._start(probs_lb, labels, clear_now, progress)
            feeds = clear_now & ((self.relabel_step[batch.idx_lb] < 0) | predicted)
        with torch.no_grad():  # Eq. 3: clear labeled rows, then reliable unlabeled rows
            self.prototypes, self.prototype_ready = update_prototypes(
                self.prototypes,
                self.prototype_ready,
                torch.cat([out_lb.features, out_w.features]).detach().float(),
                torch.cat([labels, pseudo_labels]),
                torch.cat([feeds, reliable]),
                cfg.ema_momentum,
            )
        logs = {"mask_rate": reliable.float().mean()}
        if evidence:
            loss = self._evidence_loss(
                out_lb, probs_lb, labels, batch.idx_lb, progress, gamma, logs
            )
        else:
            loss = self._labeled_loss(
                out_lb, probs_lb, labels, clear_now, disputed, batch, progress, logs
            )
        norm = "masked" if cfg.reliable_loss_norm == "reliable" else "all"
        loss_reliable = masked_cross_entropy(out_s.logits, pseudo_labels, reliable, norm)
        logs["loss_reliable"] = loss_reliable.detach()
        loss = loss + cfg.lambda_reliable * loss_reliable
        if cfg.use_negative_learning or cfg.use_negative_consistency:
            loss = loss + self._negative_loss(probs_w, out_s, ~reliable, batch.idx_ulb, epoch, logs)
        return StepOutput(loss, logs, pseudo_labels, reliable)

    def _clear_now(self, probs_lb, labels, idx):
        """(clear, disputed) for this visit. Relabeled samples stay clear; with
        ambiguity_persists an ambiguous sample stays so until its weights resolve it."""
        cfg = self.cfg
        if cfg.ambiguity_rule == "confidence":
            disputed = ~split_clear(probs_lb, labels, cfg.clear_threshold)
        else:
            disputed = disputed_by_margin(probs_lb, labels, cfg.ambiguity_margin)
        if not cfg.reexamine_relabeled:
            disputed = disputed & (self.relabel_step[idx] < 0)
        if cfg.ambiguity_persists:
            disputed = disputed | (self.ambiguous[idx] & self.started)
        return ~disputed, disputed

    def _start(self, probs_lb, labels, clear_now, progress: Progress) -> None:
        """Running rates; disambiguation begins at a fraction of the steps or once fitted."""
        cfg = self.cfg
        fitted = split_clear(probs_lb, labels, cfg.clear_threshold)  # confidently its label
        rates = torch.stack([clear_now.float().mean(), fitted.float().mean()])
        self.running.lerp_(rates.to(self.running), 1 - RUNNING)
        self.running_steps += 1
        corrected = self.running / (1 - RUNNING ** self.running_steps.float())
        if not cfg.use_disambiguation:
            return
        if cfg.start_rule == "fraction":
            start = torch.full_like(self.started, progress.fraction >= cfg.disambiguation_start)
        else:
            start = corrected[1] >= cfg.fit_threshold
        just = start & ~self.started
        self.start_step = torch.where(just, progress.step, self.start_step)
        self.clear_at_start = torch.where(
            just, corrected[0].to(self.clear_at_start), self.clear_at_start
        )
        self.started = self.started | start

    def _labeled_loss(self, out_lb, probs_lb, labels, clear_now, disputed, batch, progress, logs):
        """L_S (Eq. 2) over the clear rows once disambiguation has begun (every row before);
        Eqs. 4–6 update the state of this batch's ambiguous rows."""
        cfg = self.cfg
        started = self.started
        full = F.cross_entropy(out_lb.logits, labels)
        if cfg.ambiguous_loss == "label":  # ambiguity only gathers evidence; every row trains
            loss = full
        else:
            loss = torch.where(
                started, masked_cross_entropy(out_lb.logits, labels, clear_now), full
            )
        logs["clear_rate"] = torch.where(started, clear_now.float().mean(), 1.0)
        logs["loss_sup"] = loss.detach()
        logs["ambiguous_rate"] = (disputed & started).float().mean()
        features = out_lb.features.detach().float()
        weights = self._disambiguate(probs_lb, features, labels, disputed, batch.idx_lb, progress)
        if cfg.ambiguous_loss == "candidates":
            ambiguous = disputed & started
            positive = weights.clamp_min(0)  # cosine similarities can be negative
            target = positive / positive.sum(dim=1, keepdim=True).clamp_min(1e-12)
            log_probs = out_lb.logits.float().log_softmax(dim=1)
            loss_ambiguous = masked_mean(-(target * log_probs).sum(dim=1), ambiguous)
            logs["loss_ambiguous"] = loss_ambiguous.detach()
            loss = loss + loss_ambiguous
        return cfg.lambda_supervised * loss

    def _disambiguate(self, probs, features, labels, disputed, idx, progress) -> torch.Tensor:
        """Eqs. 4–6 for this batch's labeled rows (state updates only, gated on the start);
        returns the rows' candidate weights after Eq. 5 (0 for clear rows)."""
        cfg, started = self.cfg, self.started
        ambiguous = disputed & started
        newly = ambiguous & ~self.ambiguous[idx]
        given = labels if cfg.candidate_rule != "threshold" else None
        mu = cfg.candidate_threshold if cfg.candidate_rule != "prediction_given" else 2.0
        fresh = candidate_set(probs, mu, given)
        candidates = torch.where(newly[:, None], fresh, self.candidates[idx])
        weights = torch.where(
            newly[:, None], initial_weights(probs, fresh, cfg.weight_init), self.weights[idx]
        )
        similarity = class_similarity(
            features,
            self.prototypes,
            self.prototype_ready,
            candidates,
            cfg.similarity,
            cfg.similarity_temperature,
        )
        visits = torch.where(newly, 0, self.visits[idx]) + ambiguous.long()
        if cfg.weight_update == "ema":
            weights = update_weights(weights, candidates, similarity, cfg.ema_momentum)
        else:
            step_size = 1.0 / visits.clamp_min(1).to(weights.dtype)[:, None]
            weights = update_weights(weights, candidates, similarity, 1.0 - step_size)
        weights = weights * ambiguous[:, None]
        best, winner = relabel_decision(weights, candidates & ambiguous[:, None])
        best = best.masked_fill(visits < cfg.min_visits, float("-inf"))
        other = winner != labels
        protected = self._protected(labels) | self._protected(winner)
        if cfg.relabel_confidence > 0:  # the classifier must back the prototypes' choice
            p_winner = probs.gather(1, winner[:, None])[:, 0]
            agree = (probs.argmax(dim=1) == winner) & (p_winner >= cfg.relabel_confidence)
            blocked = other & ~agree
        else:
            blocked = torch.zeros_like(other)
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

    def _evidence_loss(self, out_lb, probs_lb, labels, idx, progress: Progress, gamma, logs):
        """The labeled loss of the evidence rule: the cross-fitted heads' loss and the update of
        each image's evidence (every visit), the decisions (after evidence_start), then L_S and
        ELR over the images kept, and the demoted ones trained as unlabeled."""
        cfg = self.cfg
        first = first_occurrence(idx, len(self.label))
        loss_heads, oof = self._heads_loss(out_lb.features, labels, idx)
        seen = (self.evidence_visits[idx] > 0)[:, None]
        phi, beta = cfg.evidence_momentum, cfg.elr_momentum
        evidence = torch.where(seen, phi * self.evidence[idx] + (1 - phi) * oof, oof)
        target = torch.where(seen, beta * self.elr_target[idx] + (1 - beta) * probs_lb, probs_lb)
        self.evidence[idx] = evidence[first]
        self.elr_target[idx] = target[first]
        self.evidence_visits[idx] = (self.evidence_visits[idx] + 1)[first]
        if cfg.use_disambiguation and progress.fraction >= cfg.evidence_start:
            labels = self._decide(evidence, out_lb.features, labels, idx, first, progress)
        kept = ~self.demoted[idx]
        logs["clear_rate"] = kept.float().mean()  # kept: trains on its label
        logs["ambiguous_rate"] = (self.verdict[idx] != KEEP).float().mean()  # disputed now
        loss_sup = masked_cross_entropy(out_lb.logits, labels, kept)
        loss_elr = elr_loss(out_lb.logits, target, kept)
        loss_demoted = self._demoted_loss(out_lb, probs_lb, ~kept, idx, first, gamma, logs)
        logs.update(
            loss_sup=loss_sup.detach(),
            loss_elr=loss_elr.detach(),
            loss_heads=loss_heads.detach(),
        )
        return (
            cfg.lambda_supervised * loss_sup + cfg.lambda_elr * loss_elr + loss_demoted + loss_heads
        )

    def _heads_loss(self, features, labels, idx):
        """CE of every head on the rows outside its fold (and not demoted), with gradient into
        the heads only; returns it and each row's out-of-fold p (B, C), detached."""
        logits = self.heads(features.detach().float())  # (B, K, C)
        folds = self.fold[idx]
        trains = folds[:, None] != torch.arange(logits.shape[1], device=folds.device)
        trains = trains & ~self.demoted[idx][:, None]  # (B, K)
        per_head = F.cross_entropy(
            logits.flatten(0, 1), labels.repeat_interleave(logits.shape[1]), reduction="none"
        ).view_as(trains)
        loss = (per_head * trains).sum() / trains.sum().clamp_min(1)
        rows = torch.arange(len(idx), device=idx.device)
        if self.cfg.evidence_heads == "in_sample":  # a head that trained on the image
            folds = (folds + 1) % logits.shape[1]
        return loss, logits.detach()[rows, folds].softmax(dim=1)

    def _decide(self, evidence, features, labels, idx, first, progress: Progress):
        """Verdicts on this batch's labeled rows from their evidence; a verdict held for
        min_visits visits in a row is carried out. Returns the rows' labels after it.
        first: each row's first occurrence in the batch (first_occurrence), for the writes."""
        cfg = self.cfg
        active = ~self.demoted & (self.evidence_visits > 0)
        thresholds = class_thresholds(self.evidence, self.label, active)
        verdict = evidence_verdict(evidence, labels, thresholds, cfg.against_ratio)
        if cfg.evidence_agreement == "prototype":  # the nearest prototype must name it too
            similarity = class_similarity(
                features.detach().float(), self.prototypes, self.prototype_ready, None, "cosine", 1
            )
            nearest = similarity.masked_fill(~self.prototype_ready, float("-inf")).argmax(dim=1)
            verdict = torch.where((verdict >= 0) & (nearest != verdict), DEMOTE, verdict)
        protected = self._protected(labels) | self._protected(verdict.clamp_min(0))
        verdict = torch.where((verdict >= 0) & protected, KEEP, verdict)
        if not cfg.demote:
            verdict = torch.where(verdict == DEMOTE, KEEP, verdict)
        streak = streak_update(self.streak[idx], self.verdict[idx], verdict)
        decided = streak >= cfg.min_visits
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

    def _demoted_loss(self, out_lb, probs_lb, demoted, idx, first, gamma, logs):
        """A demoted image trains as an unlabeled one on its (only, weak) view: CE toward its own
        confident prediction (L_Re's rule, γ) and L_NL on a bank row of its own (Eqs. 9, 10)."""
        cfg = self.cfg
        confidence, pseudo_labels = probs_lb.max(dim=1)
        reliable = demoted & (confidence >= gamma)
        loss = cfg.lambda_reliable * masked_cross_entropy(out_lb.logits, pseudo_labels, reliable)
        if cfg.use_negative_learning:
            unreliable = demoted & ~reliable
            grown = grow_complementary(
                self.bank_lb[idx], probs_lb, cfg.complementary_threshold, cfg.bank_keep
            )
            rows = torch.where(unreliable[:, None], grown, self.bank_lb[idx])
            self.bank_lb[idx] = rows[first]
            probs = out_lb.logits.float().softmax(dim=1)
            loss_nl = negative_learning_loss(rows, probs, unreliable)
            logs["loss_nl_demoted"] = loss_nl.detach()
            loss = loss + cfg.lambda_negative * loss_nl
        return loss

    def _protected(self, classes: torch.Tensor) -> torch.Tensor:
        if not len(self.protected):
            return torch.zeros_like(classes, dtype=torch.bool)
        return self.protected[classes]

    def _negative_loss(self, probs_w, out_s, unreliable, idx_ulb, epoch: int, logs):
        """Eq. 9 grows the bank rows of this batch's unreliable samples; λ2 L_NL + λ3 L_NC.
        probs_w: the weak view's probabilities with their graph."""
        cfg = self.cfg
        grown = grow_complementary(
            self.bank[idx_ulb], probs_w.detach(), cfg.complementary_threshold, cfg.bank_keep
        )
        rows = torch.where(unreliable[:, None], grown, self.bank[idx_ulb])
        self.bank[idx_ulb] = rows[first_occurrence(idx_ulb, len(self.bank))]
        scale = 1.0
        if cfg.negative_decay > 0 and cfg.lambda_negative > 0:
            scale = max(0.0, 1 - cfg.negative_decay * epoch / cfg.lambda_negative)
        loss = probs_w.sum() * 0.0
        if cfg.use_negative_learning:
            loss_nl = negative_learning_loss(rows, probs_w, unreliable)
            logs["loss_nl"] = loss_nl.detach()
            loss = loss + scale * cfg.lambda_negative * loss_nl
        if cfg.use_negative_consistency:
            probs_s = out_s.logits.float().softmax(dim=1)
            loss_nc = negative_consistency_loss(rows, probs_s, unreliable)
            logs["loss_nc"] = loss_nc.detach()
            loss = loss + scale * cfg.lambda_consistency * loss_nc
        return loss

    # ---- figures (lion_report.py) ----

    def diagnostics(self, probe) -> dict:
        """Label-quality figures at an evaluation (lion_report.label_figures); a warning, once,
        when disambiguation began with few labeled images clear."""
        cfg = self.cfg
        similarity = partial(
            class_similarity, kind=cfg.similarity, temperature=cfg.similarity_temperature
        )
        figures = label_figures(self.state_dict(), self.info.given_labels, probe, similarity)
        start = figures["label_quality"]["clear_rate_at_start"]
        if start is not None and start < LOW_CLEAR_RATE and not self._warned:
            self._warned = True
            warnings.warn(low_clear_message(start, int(self.start_step)), stacklevel=2)
        return figures

    def summary(self, true_labeled=None, true_unlabeled=None) -> dict:
        return summary_figures(self.state_dict(), self.cfg.recipe, true_unlabeled)


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
