"""FreeMatch, self-adaptive thresholding (Wang et al., ICLR 2023).

- A global threshold τ_t follows the model's confidence: an EMA (λ = 0.999) of the mean max
  probability on the weak views, starting at 1/C, so early on nearly every image passes.
- Local thresholds scale it per class by the EMA of the mean prediction p̃:
  τ_t(c) = τ_t · p̃(c) / max_c p̃(c).
- Self-adaptive fairness: over the images that pass, the mean strong-view prediction p̄ divided by
  its argmax histogram h̄ is matched against p̃ / h̃ (h̃ an EMA of the weak argmax histogram):
  L_f = −H(SumNorm(p̃/h̃), SumNorm(p̄/h̄)), which keeps the predictions diverse across classes.
- L = L_s + w_u · mean_b 1[max q_b ≥ τ_t(argmax q_b)] · CE(p_s,b, argmax q_b) + w_f · L_f.

Reference: Y. Wang, H. Chen, Q. Heng, W. Hou, Y. Fan, Z. Wu, J. Wang, M. Savvides, T. Shinozaki,
B. Raj, B. Schiele, X. Xie, "FreeMatch: Self-adaptive Thresholding for Semi-supervised Learning",
ICLR 2023. As in the paper and its code the EMAs take the current batch before the mask is made;
w_f = 0.01 is the value of the code whose results the paper reports (USB's configs use 0.001).
1/h̄ and 1/h̃ are detached and 0 for an empty class; with no image passing, L_f is 0. Where some
classes have no labeled image (a folder of some FER classes), the fairness target p̃/h̃ ranges
over the others: h̃ of a class never predicted fades faster than p̃, and the target would ask the
strong predictions for a class no label taught.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lionfer.algorithms.base import (
    Algorithm,
    Batch,
    Progress,
    StepOutput,
    forward_views,
    labeled_classes,
)
from lionfer.algorithms.hparams import FreeMatchConfig
from lionfer.losses import masked_cross_entropy


def update_estimates(time_p, p_model, label_hist, probs_w: torch.Tensor, momentum: float):
    """EMAs of the mean max probability (τ_t), mean prediction (p̃) and argmax histogram (h̃) of
    the weak views probs_w (B, C); returns the new (τ_t, p̃, h̃)."""
    confidence, predicted = probs_w.max(dim=1)
    histogram = F.one_hot(predicted, probs_w.shape[1]).to(probs_w.dtype).mean(dim=0)
    return (
        momentum * time_p + (1 - momentum) * confidence.mean(),
        momentum * p_model + (1 - momentum) * probs_w.mean(dim=0),
        momentum * label_hist + (1 - momentum) * histogram,
    )


def local_thresholds(time_p: torch.Tensor, p_model: torch.Tensor) -> torch.Tensor:
    """τ_t(c) = τ_t · p̃(c) / max p̃, (C,)."""
    return time_p * p_model / p_model.max()


def _sum_norm(values: torch.Tensor) -> torch.Tensor:
    return values / values.sum().clamp(min=1e-12)


def _inverse(histogram: torch.Tensor) -> torch.Tensor:
    """1/h with 1/0 → 0, detached."""
    histogram = histogram.detach()
    return torch.where(histogram > 0, 1.0 / histogram.clamp(min=1e-12), 0.0)


def fairness_loss(
    logits_s: torch.Tensor,
    mask: torch.Tensor,
    p_model: torch.Tensor,
    label_hist: torch.Tensor,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_f = Σ_c a_c log(b_c), a = SumNorm(p̃/h̃) over `classes` ((C,) bool; all by default),
    b = SumNorm(p̄/h̄) over the masked strong predictions; the gradient flows through p̄ only;
    0 when no image is masked."""
    probs_s = logits_s.float().softmax(dim=1)  # (B, C)
    weights = mask.to(probs_s.dtype)[:, None]
    count = weights.sum().clamp(min=1)
    mean_prob = (probs_s * weights).sum(dim=0) / count  # p̄
    histogram = (F.one_hot(probs_s.argmax(dim=1), probs_s.shape[1]) * weights).sum(dim=0) / count
    target = p_model * _inverse(label_hist)
    a = _sum_norm(target if classes is None else target * classes)
    b = _sum_norm(mean_prob * _inverse(histogram))
    value = (a * torch.log(b + 1e-12)).sum()
    return torch.where(mask.any(), value, torch.zeros_like(value))


class FreeMatch(Algorithm):
    config_class = FreeMatchConfig
    views = ("weak", "strong")
    device_buffers = ("classes",)

    def __init__(self, cfg: FreeMatchConfig, info):
        super().__init__(cfg, info)
        c = info.num_classes
        self.time_p = torch.tensor(1.0 / c)  # τ_t
        self.p_model = torch.full((c,), 1.0 / c)  # p̃
        self.label_hist = torch.full((c,), 1.0 / c)  # h̃
        self.classes = labeled_classes(info)  # those the fairness target ranges over

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"time_p": self.time_p, "p_model": self.p_model, "label_hist": self.label_hist}

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        cfg = self.cfg
        (logits_lb, _), (logits_ulb_w, _), (logits_ulb_s, _) = forward_views(
            model, batch.x_lb, batch.x_ulb_w, batch.x_ulb_s, comm=self.comm
        )
        loss_sup = F.cross_entropy(logits_lb, batch.y_lb)
        probs_w = logits_ulb_w.detach().float().softmax(dim=1)
        self.time_p, self.p_model, self.label_hist = update_estimates(
            self.time_p, self.p_model, self.label_hist, probs_w, cfg.ema
        )
        confidence, pseudo_labels = probs_w.max(dim=1)
        mask = confidence >= local_thresholds(self.time_p, self.p_model)[pseudo_labels]
        loss_unsup = masked_cross_entropy(logits_ulb_s, pseudo_labels, mask, normalise="all")
        loss_fair = fairness_loss(logits_ulb_s, mask, self.p_model, self.label_hist, self.classes)
        loss = loss_sup + cfg.lambda_u * loss_unsup + cfg.lambda_f * loss_fair
        logs = {
            "loss_sup": loss_sup.detach(),
            "loss_unsup": loss_unsup.detach(),
            "loss_fair": loss_fair.detach(),
            "mask_rate": mask.float().mean(),
            "threshold_global": self.time_p,
        }
        return StepOutput(loss, logs, pseudo_labels, mask)
