"""FlexMatch, curriculum pseudo-labeling (Zhang et al., NeurIPS 2021).

- FixMatch with one threshold per class, scaled by how well the model is learning that class.
- Learning effect: σ(c) counts the unlabeled images whose latest confident (≥ τ) prediction is
  c; each image keeps its last confident class (ŷ_n, −1 until it has one).
- β(c) = σ(c) / max(max_c σ, N − Σ_c σ) with the warm-up (unused images count while they are
  the majority), then T(c) = M(β(c)) · τ with the convex mapping M(x) = x / (2 − x).
- L = L_s + λ_u · mean_b 1[max q_b ≥ T(argmax q_b)] · CE(p_s,b, argmax q_b).

Reference: B. Zhang, Y. Wang, W. Hou, H. Wu, J. Wang, M. Okumura, T. Shinozaki, "FlexMatch:
Boosting Semi-Supervised Learning with Curriculum Pseudo Labeling", NeurIPS 2021. Paper and code
agree; the per-image record is updated with the fixed τ after the mask is taken (so T(c) reflects
earlier steps), and at the start every β is 0, so every pseudo-label is used, by design. The code
skips the update while all records are equal; lionfer evaluates the paper's formula every step.
An image that a batch holds twice (an unlabeled set smaller than a batch is cycled) keeps the
first row's record, on every device alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lionfer.algorithms.base import (
    Algorithm,
    Batch,
    Progress,
    StepOutput,
    first_occurrence,
    forward_views,
)
from lionfer.algorithms.hparams import FlexMatchConfig
from lionfer.losses import masked_cross_entropy

MAPPINGS = {
    "convex": lambda x: x / (2.0 - x),
    "linear": lambda x: x,
    "concave": lambda x: torch.log1p(x) / math.log(2.0),
}


def learning_effect(selected: torch.Tensor, num_classes: int, warmup: bool) -> torch.Tensor:
    """β(c), (C,): the count σ(c) of images whose recorded class is c over max_c σ, or over
    max(max_c σ, #unrecorded) with warm-up; selected is (N,) long with −1 for unrecorded."""
    counts = torch.zeros(num_classes + 1, device=selected.device)
    counts.index_add_(0, selected + 1, torch.ones_like(selected, dtype=counts.dtype))
    sigma, unused = counts[1:], counts[0]
    denominator = torch.maximum(sigma.max(), unused) if warmup else sigma.max()
    return sigma / denominator.clamp(min=1)


def flexible_thresholds(beta: torch.Tensor, tau: float, mapping: str) -> torch.Tensor:
    """T(c) = M(β(c)) · τ, (C,)."""
    return MAPPINGS[mapping](beta) * tau


class FlexMatch(Algorithm):
    config_class = FlexMatchConfig
    views = ("weak", "strong")

    def __init__(self, cfg: FlexMatchConfig, info):
        super().__init__(cfg, info)
        self.selected_label = torch.full((info.num_unlabeled,), -1, dtype=torch.long)  # ŷ_n

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"selected_label": self.selected_label}

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        cfg = self.cfg
        (logits_lb, _), (logits_ulb_w, _), (logits_ulb_s, _) = forward_views(
            model, batch.x_lb, batch.x_ulb_w, batch.x_ulb_s, comm=self.comm
        )
        loss_sup = F.cross_entropy(logits_lb, batch.y_lb)
        confidence, pseudo_labels = logits_ulb_w.detach().float().softmax(dim=1).max(dim=1)
        beta = learning_effect(self.selected_label, self.info.num_classes, cfg.warmup)
        thresholds = flexible_thresholds(beta, cfg.threshold, cfg.mapping)
        mask = confidence >= thresholds[pseudo_labels]
        loss_unsup = masked_cross_entropy(logits_ulb_s, pseudo_labels, mask, normalise="all")
        confident = confidence >= cfg.threshold
        recorded = self.selected_label[batch.idx_ulb]
        first = first_occurrence(batch.idx_ulb, len(self.selected_label))  # one write an image
        self.selected_label[batch.idx_ulb] = torch.where(confident, pseudo_labels, recorded)[first]
        logs = {
            "loss_sup": loss_sup.detach(),
            "loss_unsup": loss_unsup.detach(),
            "mask_rate": mask.float().mean(),
            "threshold_mean": thresholds.mean(),
        }
        return StepOutput(loss_sup + cfg.lambda_u * loss_unsup, logs, pseudo_labels, mask)
