"""Ada-CM, adaptive confidence margin (Li et al., CVPR 2022).

- Each class c has its own confidence margin T_c, learned from the labeled data: after every
  epoch, T_c = max(0.8, β · m_c · sigmoid(epoch)), where m_c is the mean confidence of the EMA
  model on the labeled images of class c it classifies correctly (0.8 when it gets none right).
- An unlabeled image's pseudo-label comes from the mean of its two weak views' predictions p̄;
  when max p̄ ≥ T_{argmax p̄} (subset I) it trains the strong view with cross-entropy.
- The low-confidence images (subset II) are not wasted: their two weak views are a positive pair
  of a contrastive (NT-Xent, τ = 0.07) loss on the network's normalised features.
- L = 0.5 · L_x + 1 · L_u + 0.1 · L_c.

Reference: H. Li, N. Wang, X. Yang, X. Wang, X. Gao, "Towards Semi-Supervised Deep Facial
Expression Recognition with An Adaptive Confidence Margin", CVPR 2022, and its released code after
the fix that lets the contrastive term reach the network (the weak forwards keep their gradient).
lionfer follows the released code's weights and schedule: margins start at 0.8 and are updated
every `epoch_steps` (800) steps from the EMA model in eval mode on weak views of the labeled set.
Differences: one concatenated forward pass (the code runs four, so BatchNorm sees 16-image
chunks); the labeled pass covers every labeled image once (the code's shuffled loader drops the
last partial batch); the features are lionfer's, normalised before the dropout (the code after).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lionfer.algorithms.base import (
    Algorithm,
    Batch,
    LabeledProbs,
    Progress,
    StepOutput,
    forward_views,
)
from lionfer.algorithms.hparams import AdaCMConfig
from lionfer.losses import masked_cross_entropy


def adaptive_thresholds(
    probs: torch.Tensor,
    labels: torch.Tensor,
    epoch: torch.Tensor,
    beta: float,
    floor: float,
) -> torch.Tensor:
    """(C,) margins T_c = max(floor, β · m_c · sigmoid(epoch)); m_c = mean max-probability of the
    correctly classified labeled images of class c; floor where class c has none."""
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).to(probs.dtype)
    onehot = F.one_hot(labels, probs.shape[1]).to(probs.dtype) * correct[:, None]  # (M, C)
    counts = onehot.sum(dim=0)
    mean_confidence = (onehot * confidence[:, None]).sum(dim=0) / counts.clamp(min=1)
    scaled = beta * mean_confidence * torch.sigmoid(epoch.to(probs.dtype))
    return torch.where(counts > 0, scaled.clamp(min=floor), torch.full_like(scaled, floor))


def nt_xent(
    features_1: torch.Tensor, features_2: torch.Tensor, keep: torch.Tensor, temperature: float
) -> torch.Tensor:
    """SimCLR's NT-Xent over the images where keep is true (n of them): each of the 2n views is an
    anchor whose positive is the other view of its image and whose denominator holds every other
    kept view; the mean over the 2n anchors, 0 when n = 0 (and when n = 1: no negatives).
    features_* are (B, D), L2-normalised."""
    features = torch.cat([features_1, features_2]).float()  # (2B, D)
    size, half = len(features), len(features_1)
    anchors = torch.cat([keep, keep])  # (2B,)
    rows = torch.arange(size, device=features.device)
    partner = (rows + half) % size
    positive = torch.zeros(size, size, dtype=torch.bool, device=features.device)
    positive[rows, partner] = True
    # Columns in the denominator: kept views other than the anchor. An anchor that is not kept
    # still gets its positive, so its (discarded) row stays finite and has no NaN gradient.
    valid = (anchors[None, :] | positive) & ~torch.eye(size, dtype=torch.bool, device=rows.device)
    logits = (features @ features.T / temperature).masked_fill(~valid, float("-inf"))
    log_prob = logits[rows, partner] - torch.logsumexp(logits, dim=1)  # (2B,)
    return -(log_prob * anchors).sum() / anchors.sum().clamp(min=1)


class AdaCM(Algorithm):
    config_class = AdaCMConfig
    views = ("weak", "weak", "strong")

    def __init__(self, cfg: AdaCMConfig, info):
        super().__init__(cfg, info)
        self.thresholds = torch.full((info.num_classes,), cfg.threshold)  # (C,) T_c
        self.epoch = torch.zeros((), dtype=torch.long)  # completed epochs (margin updates)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"thresholds": self.thresholds, "epoch": self.epoch}

    def period(self) -> int:
        return self.cfg.epoch_steps

    def on_period(self, labeled_probs: LabeledProbs) -> None:
        probs, labels = labeled_probs()
        self.epoch = self.epoch + 1
        device = self.thresholds.device
        self.thresholds = adaptive_thresholds(
            probs.to(device).float(),
            labels.to(device).long(),
            self.epoch,
            self.cfg.beta,
            self.cfg.threshold,
        )

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        cfg = self.cfg
        (logits_lb, _), (logits_w1, features_1), (logits_w2, features_2), (logits_s, _) = (
            forward_views(model, batch.x_lb, *batch.x_ulb, comm=self.comm)
        )
        probs = (logits_w1.detach().float().softmax(1) + logits_w2.detach().float().softmax(1)) / 2
        confidence, pseudo_labels = probs.max(dim=1)
        mask = confidence >= self.thresholds[pseudo_labels]
        loss_sup = F.cross_entropy(logits_lb, batch.y_lb)
        loss_unsup = masked_cross_entropy(logits_s, pseudo_labels, mask, normalise="all")
        loss_contrast = nt_xent(features_1, features_2, ~mask, cfg.temperature)
        loss = cfg.lambda_x * loss_sup + cfg.lambda_u * loss_unsup + cfg.lambda_c * loss_contrast
        logs = {
            "loss_sup": loss_sup.detach(),
            "loss_unsup": loss_unsup.detach(),
            "loss_contrast": loss_contrast.detach(),
            "mask_rate": mask.float().mean(),
            "threshold_mean": self.thresholds.mean(),
        }
        return StepOutput(loss, logs, pseudo_labels, mask)
