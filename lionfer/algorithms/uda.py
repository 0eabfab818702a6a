"""UDA, Unsupervised Data Augmentation (Xie et al., NeurIPS 2020).

- Consistency: the prediction on a strongly augmented (RandAugment) view is pulled toward the
  sharpened prediction on the weak view, q̂ = softmax(z_w / τ), by KL(q̂ ‖ p(x_s)).
- Confidence masking: only images whose weak-view confidence max p(x_w) exceeds β count; the
  loss is averaged over the whole unlabeled batch.
- Training-signal annealing (TSA): a labeled image whose correct-class probability already
  exceeds η_t = a_t(1 − 1/C) + 1/C leaves the supervised loss, with a_t = t/T (linear),
  exp(5(t/T − 1)) (exp) or 1 − exp(−5t/T) (log), so the few labels are not memorised early.
- L = Σ_b m_b CE_b / max(Σ_b m_b, 1) + λ · mean_b 1[max p_w,b > β] · KL(q̂_b ‖ p_s,b).

Reference: Q. Xie, Z. Dai, E. Hovy, M.-T. Luong, Q. V. Le, "Unsupervised Data Augmentation for
Consistency Training", NeurIPS 2020. lionfer follows the paper and the authors' code where USB
differs. The target is softmax(z_w / τ) as in the authors' code, where USB's UDA never applies τ
(its target is the weak view's plain softmax). TSA tests the correct-class probability
and divides by the images kept, as the paper and its code do (USB tests the maximum probability
and divides by the batch). The authors' image runs switch TSA off, which is lionfer's default
(`tsa = "none"`). One concatenated pass carries the labeled, weak and strong images and BatchNorm
records its statistics, as in the authors' code and USB (its image configs' `use_cat`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lionfer.algorithms.base import Algorithm, Batch, Progress, StepOutput, forward_views
from lionfer.algorithms.hparams import UDAConfig


def tsa_threshold(schedule: str, fraction: float, num_classes: int) -> float:
    """η_t = a_t (1 − 1/C) + 1/C for the training fraction t/T; "none" keeps every image (1)."""
    if schedule == "none":
        return 1.0
    if schedule == "linear":
        a = fraction
    elif schedule == "exp":
        a = math.exp(5.0 * (fraction - 1.0))
    elif schedule == "log":
        a = 1.0 - math.exp(-5.0 * fraction)
    else:
        raise ValueError(f"unknown TSA schedule {schedule!r}; use none, linear, exp or log")
    return a * (1.0 - 1.0 / num_classes) + 1.0 / num_classes


def annealed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, threshold: float):
    """TSA: CE over the images whose correct-class probability is ≤ η_t, divided by their count
    (at least 1). Returns (loss, (B,) bool kept)."""
    per_sample = F.cross_entropy(logits, labels, reduction="none")  # (B,)
    correct_prob = logits.detach().float().softmax(dim=1).gather(1, labels[:, None])[:, 0]
    kept = correct_prob <= threshold
    return (per_sample * kept).sum() / kept.sum().clamp(min=1), kept


def consistency_loss(logits_w, logits_s, threshold: float, temperature: float):
    """mean_b 1[max p_w,b > β] · KL(softmax(z_w,b / τ) ‖ p_s,b); returns (loss, mask)."""
    logits_w = logits_w.detach().float()
    mask = logits_w.softmax(dim=1).max(dim=1).values > threshold
    targets = (logits_w / temperature).softmax(dim=1)
    kl = F.kl_div(logits_s.float().log_softmax(dim=1), targets, reduction="none").sum(dim=1)
    return (kl * mask).mean(), mask


class UDA(Algorithm):
    config_class = UDAConfig
    views = ("weak", "strong")

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        cfg = self.cfg
        (logits_lb, _), (logits_ulb_w, _), (logits_ulb_s, _) = forward_views(
            model, batch.x_lb, batch.x_ulb_w, batch.x_ulb_s, comm=self.comm
        )
        eta = tsa_threshold(cfg.tsa, progress.fraction, self.info.num_classes)
        loss_sup, kept = annealed_cross_entropy(logits_lb, batch.y_lb, eta)
        loss_unsup, mask = consistency_loss(
            logits_ulb_w, logits_ulb_s, cfg.threshold, cfg.temperature
        )
        logs = {
            "loss_sup": loss_sup.detach(),
            "loss_unsup": loss_unsup.detach(),
            "mask_rate": mask.float().mean(),
            "tsa_kept": kept.float().mean(),
        }
        pseudo_labels = logits_ulb_w.detach().argmax(dim=1)
        return StepOutput(loss_sup + cfg.lambda_u * loss_unsup, logs, pseudo_labels, mask)
