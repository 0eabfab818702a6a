"""LION (Du et al., IJCAI 2023): label disambiguation + progressive negative learning.

- Labeled: a sample is clear when max p ≥ τ and argmax p = its label (Eq. 1); clear samples train
  with CE (Eq. 2) and update class prototypes (Eq. 3). An ambiguous one gets a candidate set
  (Eq. 4) whose weights move toward cos(q, prototype) (Eq. 5); once a weight reaches τ the sample
  is relabeled to that class and becomes clear (Eq. 6).
- Unlabeled: reliable when max p_w ≥ γ (Eq. 7): FixMatch-style CE on the strong view (Eq. 8) and
  prototype updates. Unreliable: classes with renormalised probability ≤ δ are added, one by one,
  to a per-sample complementary label bank (Eq. 9) trained by L_NL (Eq. 10) and L_NC (Eq. 11).
- L = L_S + λ1 L_Re + λ2 L_NL + λ3 L_NC (Eq. 12). Choices the paper leaves open follow
  lionfer's spec (warm-up, one forward pass, update order); see the README.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from lionfer.algorithms.base import Algorithm, Batch, Progress, StepOutput, forward_views
from lionfer.algorithms.hparams import LionConfig
from lionfer.losses import masked_cross_entropy
from lionfer.metrics import relabel_metrics

LOW_CLEAR_RATE = 0.5


def low_clear_message(rate: float, step: int | None = None) -> str:
    at_step = "" if step is None else f" at step {step}"
    return (
        f"LION began label disambiguation{at_step} with only {100 * rate:.0f}% of labeled "
        "images clear (max p ≥ τ and argmax = label); the others get no loss until relabeled, so "
        "training can collapse. Train longer, raise algorithm.disambiguation_start or train.lr, "
        "or lower algorithm.clear_threshold."
    )


# ---- Equations as pure functions of detached tensors ----


def split_clear(probs: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 1: (B,) true where max p ≥ τ and argmax p equals the current label."""
    confidence, predicted = probs.max(dim=1)
    return (confidence >= tau) & (predicted == labels)


def candidate_set(probs: torch.Tensor, mu: float) -> torch.Tensor:
    """Eq. 4: (B, C) candidates = {argmax p} ∪ {c : p_c ≥ μ}."""
    candidates = probs >= mu
    candidates[torch.arange(len(probs)), probs.argmax(dim=1)] = True
    return candidates


def update_prototypes(
    prototypes: torch.Tensor,
    ready: torch.Tensor,
    features: torch.Tensor,
    classes: torch.Tensor,
    phi: float,
) -> None:
    """Eq. 3, in place and in batch order: first update sets S_c = q, later ones
    S_c ← normalise(φ S_c + (1 − φ) q)."""
    for q, c in zip(features, classes.tolist(), strict=True):
        if ready[c]:
            prototypes[c] = F.normalize(phi * prototypes[c] + (1 - phi) * q, dim=0)
        else:
            prototypes[c] = q
            ready[c] = True


def update_weights(
    weights: torch.Tensor,
    candidates: torch.Tensor,
    features: torch.Tensor,
    prototypes: torch.Tensor,
    ready: torch.Tensor,
    phi: float,
) -> torch.Tensor:
    """Eq. 5: w_c ← φ w_c + (1 − φ) cos(q, S_c) on candidates; a class without a prototype
    contributes 0; weights outside the candidate set stay 0."""
    similarity = F.normalize(features, dim=1) @ F.normalize(prototypes, dim=1).T  # (B, C)
    similarity = similarity * ready.to(similarity.dtype)
    updated = phi * weights + (1 - phi) * similarity
    return torch.where(candidates, updated, torch.zeros_like(updated))


def relabel_decision(weights: torch.Tensor, candidates: torch.Tensor):
    """Eq. 6: (largest candidate weight (B,), its class (B,)); relabel where it reaches τ."""
    return weights.masked_fill(~candidates, float("-inf")).max(dim=1)


def grow_complementary(bank_rows: torch.Tensor, probs: torch.Tensor, delta: float) -> torch.Tensor:
    """Eq. 9, progressive: over the classes not yet in the bank, renormalise p; while the smallest
    renormalised probability is ≤ δ and more than one class remains, add it and repeat.
    Vectorised over the batch: at most C − 1 rounds."""
    rows = bank_rows.clone()
    for _ in range(probs.shape[1] - 1):
        remaining = ~rows
        mass = (probs * remaining).sum(dim=1, keepdim=True).clamp_min(1e-12)
        renormalised = torch.where(remaining, probs / mass, torch.full_like(probs, float("inf")))
        smallest, argmin = renormalised.min(dim=1)
        add = (smallest <= delta) & (remaining.sum(dim=1) > 1)
        if not add.any():
            break
        rows[add.nonzero(as_tuple=True)[0], argmin[add]] = True
    return rows


def negative_learning_loss(bank_rows: torch.Tensor, probs_w: torch.Tensor) -> torch.Tensor:
    """Eq. 10: mean over samples of −Σ_c ȳ_c (1 − p_w,c)."""
    return -(bank_rows.to(probs_w.dtype) * (1 - probs_w)).sum(dim=1).mean()


def negative_consistency_loss(bank_rows: torch.Tensor, probs_s: torch.Tensor) -> torch.Tensor:
    """Eq. 11: mean over samples of −Σ_c ȳ_c log(1 − p_s,c), clamped for stability."""
    log_complement = torch.log((1 - probs_s).clamp_min(1e-6))
    return -(bank_rows.to(probs_s.dtype) * log_complement).sum(dim=1).mean()


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
        self.relabel_weight = torch.zeros(m)  # the candidate weight that triggered Eq. 6
        self.prototypes = torch.zeros(c, info.feature_dim)
        self.prototype_ready = torch.zeros(c, dtype=torch.bool)
        self.bank = torch.zeros(n, c, dtype=torch.bool)  # complementary label bank
        # Running clear rate of labeled batches, and its value when disambiguation began: when
        # few labeled images are clear then, L_S vanishes and the run can collapse.
        self.clear_ema = torch.zeros(())
        self.clear_steps = torch.zeros((), dtype=torch.long)
        self.clear_at_start = torch.full((), -1.0)

    def state_dict(self) -> dict[str, torch.Tensor]:
        names = (
            "label",
            "ambiguous",
            "candidates",
            "weights",
            "relabel_step",
            "relabel_weight",
            "prototypes",
            "prototype_ready",
            "bank",
            "clear_ema",
            "clear_steps",
            "clear_at_start",
        )
        return {name: getattr(self, name) for name in names}

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        cfg = self.cfg
        (logits_lb, q_lb), (logits_w, q_w), (logits_s, _) = forward_views(
            model, batch.x_lb, batch.x_ulb_w, batch.x_ulb_s
        )
        probs_lb = logits_lb.detach().float().softmax(dim=1)
        probs_w = logits_w.float().softmax(dim=1)
        labels = self.label[batch.idx_lb]
        clear = split_clear(probs_lb, labels, cfg.clear_threshold)
        confidence, pseudo_labels = probs_w.detach().max(dim=1)
        reliable = confidence >= cfg.reliable_threshold
        with torch.no_grad():
            update_prototypes(
                self.prototypes,
                self.prototype_ready,
                q_lb.detach().float()[clear],
                labels[clear],
                cfg.ema_momentum,
            )
            update_prototypes(
                self.prototypes,
                self.prototype_ready,
                q_w.detach().float()[reliable],
                pseudo_labels[reliable],
                cfg.ema_momentum,
            )
        logs = {
            "clear_rate": clear.float().mean().item(),
            "mask_rate": reliable.float().mean().item(),
        }
        loss = self._labeled_loss(
            logits_lb, labels, clear, probs_lb, q_lb, batch.idx_lb, progress, logs
        )
        loss_reliable = masked_cross_entropy(logits_s, pseudo_labels, reliable)
        logs["loss_reliable"] = loss_reliable.item()
        loss = loss + cfg.lambda_reliable * loss_reliable
        if (cfg.use_negative_learning or cfg.use_negative_consistency) and not reliable.all():
            loss = loss + self._negative_loss(probs_w, logits_s, ~reliable, batch.idx_ulb, logs)
        return StepOutput(loss, logs, pseudo_labels, reliable)

    def _labeled_loss(self, logits_lb, labels, clear, probs_lb, q_lb, idx, progress, logs):
        """L_S (Eq. 2) after Eqs. 4–6 have updated the state; all labels during warm-up."""
        cfg = self.cfg
        self.clear_ema.lerp_(clear.float().mean().to(self.clear_ema), 0.05)
        self.clear_steps += 1
        if not cfg.use_disambiguation or progress.fraction < cfg.disambiguation_start:
            loss = F.cross_entropy(logits_lb, labels)
            logs["loss_sup"] = loss.item()
            return loss
        if self.clear_at_start < 0:
            rate = self.clear_ema / (1 - 0.95 ** self.clear_steps.float())  # bias-corrected
            self.clear_at_start.copy_(rate)
            if rate < LOW_CLEAR_RATE:
                warnings.warn(low_clear_message(float(rate), progress.step), stacklevel=2)
        self._disambiguate(idx, clear, probs_lb, q_lb.detach().float(), progress.step)
        loss = masked_cross_entropy(logits_lb, labels, clear)
        logs["loss_sup"] = loss.item()
        ambiguous = self.ambiguous[idx] & ~clear
        if cfg.ambiguous_loss == "candidates" and ambiguous.any():
            weights = self.weights[idx][ambiguous].clamp_min(0) * self.candidates[idx][ambiguous]
            target = weights + 1e-8 * self.candidates[idx][ambiguous]  # all-zero rows: uniform
            target = target / target.sum(dim=1, keepdim=True)
            log_probs = logits_lb[ambiguous].float().log_softmax(dim=1)
            loss_ambiguous = -(target * log_probs).sum(dim=1).mean()
            logs["loss_ambiguous"] = loss_ambiguous.item()
            loss = loss + loss_ambiguous
        return loss

    def _negative_loss(self, probs_w, logits_s, unreliable, idx_ulb, logs):
        """Eq. 9 grows the bank rows of this batch's unreliable samples; λ2 L_NL + λ3 L_NC."""
        cfg = self.cfg
        idx = idx_ulb[unreliable]
        rows = grow_complementary(
            self.bank[idx], probs_w.detach()[unreliable], cfg.complementary_threshold
        )
        self.bank[idx] = rows
        loss = probs_w.sum() * 0.0
        if cfg.use_negative_learning:
            loss_nl = negative_learning_loss(rows, probs_w[unreliable])
            logs["loss_nl"] = loss_nl.item()
            loss = loss + cfg.lambda_negative * loss_nl
        if cfg.use_negative_consistency:
            loss_nc = negative_consistency_loss(rows, logits_s.float().softmax(dim=1)[unreliable])
            logs["loss_nc"] = loss_nc.item()
            loss = loss + cfg.lambda_consistency * loss_nc
        return loss

    def _disambiguate(self, idx, clear, probs, features, step: int) -> None:
        """Eqs. 4–6 for this batch's labeled samples (state updates only)."""
        cfg = self.cfg
        ambiguous = ~clear
        newly = ambiguous & ~self.ambiguous[idx]
        candidates = self.candidates[idx]
        weights = self.weights[idx]
        fresh = candidate_set(probs, cfg.candidate_threshold)
        candidates = torch.where(newly[:, None], fresh, candidates)
        weights = torch.where(newly[:, None], probs * fresh, weights)
        updated = update_weights(
            weights, candidates, features, self.prototypes, self.prototype_ready, cfg.ema_momentum
        )
        weights = torch.where(ambiguous[:, None], updated, weights)
        best, new_label = relabel_decision(weights, candidates)
        relabel = ambiguous & (best >= cfg.clear_threshold)
        changed = relabel & (new_label != self.label[idx])
        self.label[idx[relabel]] = new_label[relabel]
        self.relabel_step[idx[changed]] = step
        self.relabel_weight[idx[changed]] = best[changed]
        still_ambiguous = ambiguous & ~relabel
        self.ambiguous[idx] = still_ambiguous
        self.candidates[idx] = candidates & still_ambiguous[:, None]
        self.weights[idx] = weights * still_ambiguous[:, None]

    def summary(self, true_labeled=None, true_unlabeled=None) -> dict:
        given = self.info.given_labels.cpu().numpy()
        current = self.label.cpu().numpy()
        out = {
            "relabel": relabel_metrics(given, current, true_labeled),
            "clear_rate_at_disambiguation": float(self.clear_at_start),
            "ambiguous_now": int(self.ambiguous.sum()),
        }
        sizes = self.bank.sum(dim=1).float()
        clb = {
            "mean_size": float(sizes.mean()) if len(sizes) else 0.0,
            "samples_with_entries": int((sizes > 0).sum()),
        }
        if true_unlabeled is not None:
            truth = torch.as_tensor(true_unlabeled, device=self.bank.device)
            known = (truth >= 0).nonzero(as_tuple=True)[0]
            entries = int(self.bank[known].sum())
            wrong = int(self.bank[known, truth[known]].sum())  # the bank excludes the true class
            clb["correct_fraction"] = 1.0 - wrong / entries if entries else None
        out["clb"] = clb
        start = float(self.clear_at_start)
        if 0 <= start < LOW_CLEAR_RATE:
            out["warnings"] = [low_clear_message(start)]
        return out
