"""ReMixMatch (Berthelot et al., ICLR 2020).

- Distribution alignment: the weak view's prediction p is scaled by p_target / p_model and
  renormalised, where p_target is the labeled class distribution and p_model the running mean of
  the model's unlabeled predictions (last 128 batches); then sharpened with T into the guess q.
- Augmentation anchoring: the guess from the weak view is the target of K strong views.
- MixUp as in MixMatch over [labeled; K strong views; weak view], with cross-entropy (not L2) on
  the mixed unlabeled part, plus an unmixed cross-entropy on the first strong view.
- Self-supervision: a rotation head predicts by how many quarter turns the first strong view was
  rotated. L = H(X') + λ_U(t) H(U') + λ_Û1(t) H(q, p(û_1)) + λ_r CE(r, rot(û_1)).

Reference: D. Berthelot, N. Carlini, E. D. Cubuk, A. Kurakin, K. Sohn, H. Zhang, C. Raffel,
"ReMixMatch: Semi-Supervised Learning with Distribution Alignment and Augmentation Anchoring",
ICLR 2020. Where paper and codes differ lionfer follows the paper: p_model is the mean of the
last 128 batch predictions (USB: an EMA), initialised uniform as in the authors' code; p_target is
the labeled class frequencies (the authors' code: an EMA of labeled one-hots; USB: as here);
each image draws its own rotation (the authors' code rotates batch quarters). The strong view is
lionfer's RandAugment (the paper: CTAugment), K = 2 strong views (USB's FER-scale choice; the
authors use 8). The weak view's guessing pass normalises with its own batch's statistics but
leaves BatchNorm's running statistics as they were (as the authors' code and USB do); one
concatenated pass then carries the mixed pool, the first strong view and its rotation, and
BatchNorm records its statistics. The codes record less: the authors' code only the last of its
interleaved mixed chunks of B_l images, USB only its mixed labeled chunk (USB's labeled, strong
and rotation passes and its other chunks leave the statistics as they were). λ_U and λ_Û1 ramp
up over the authors' 1,024 kimg (16,000 steps at batch 64): the whole run at the FER protocol's
scale (`rampup = 1.0`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lionfer.algorithms.base import (
    Algorithm,
    Batch,
    Progress,
    StepOutput,
    forward_views,
    frozen_bn_statistics,
    step_generator,
    to_device,
)
from lionfer.algorithms.hparams import ReMixMatchConfig
from lionfer.algorithms.mixmatch import mix_pool, sharpen
from lionfer.losses import soft_cross_entropy


def align_distribution(
    probs: torch.Tensor, p_target: torch.Tensor, p_model: torch.Tensor
) -> torch.Tensor:
    """Normalize(p · p_target / p_model) per row, (B, C); 1e-6 keeps empty classes finite."""
    aligned = probs * (p_target + 1e-6) / (p_model + 1e-6)
    return aligned / aligned.sum(dim=1, keepdim=True)


def rotate_quarters(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate each square image x[i] (3, S, S) by turns[i] ∈ {0, 1, 2, 3} quarter turns
    counter-clockwise (torch.rot90 on the spatial dims)."""
    turns = to_device(turns, x.device).view(-1, 1, 1, 1)
    out = x
    for k in (1, 2, 3):
        out = torch.where(turns == k, torch.rot90(x, k, dims=(2, 3)), out)
    return out


class ReMixMatch(Algorithm):
    config_class = ReMixMatchConfig
    views = ("weak", "strong", "strong")  # the anchor, then K = 2 strong views

    def __init__(self, cfg: ReMixMatchConfig, info):
        super().__init__(cfg, info)
        c = info.num_classes
        self.rotation_head = nn.Linear(info.feature_dim, 4)
        counts = torch.bincount(info.given_labels.long(), minlength=c).float()
        self.p_target = counts / counts.sum().clamp(min=1)  # (C,) labeled class distribution
        self.p_model_history = torch.full((cfg.history, c), 1.0 / c)  # (H, C) batch means
        self.p_model_position = torch.zeros((), dtype=torch.long)  # next row to overwrite

    def modules(self) -> nn.Module:
        return self.rotation_head

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "p_target": self.p_target,
            "p_model_history": self.p_model_history,
            "p_model_position": self.p_model_position,
        }

    def _guess(self, logits_w: torch.Tensor) -> torch.Tensor:
        """Aligned, sharpened guess from the weak view; then p_model takes this batch's mean."""
        probs = logits_w.detach().float().softmax(dim=1)
        p_model = self.p_model_history.mean(dim=0)
        guess = sharpen(align_distribution(probs, self.p_target, p_model), self.cfg.temperature)
        row = (self.p_model_position % len(self.p_model_history)).view(1)
        self.p_model_history.index_copy_(0, row, probs.mean(dim=0, keepdim=True))
        self.p_model_position += 1
        return guess

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        cfg, comm, num_labeled = self.cfg, self.comm, len(batch.y_lb)
        with torch.no_grad(), frozen_bn_statistics(model):
            (logits_w, _) = forward_views(model, batch.x_ulb[0], comm=comm)[0]
            targets_ulb = self._guess(logits_w)
        whole = batch.gathered(comm)  # MixUp partners come from the whole global batch
        x_ulb_w, strong = whole.x_ulb[0], whole.x_ulb[1:]
        mixed_x, mixed_y = mix_pool(
            whole, targets_ulb, (*strong, x_ulb_w), self.info.num_classes, cfg.alpha
        )
        turns = torch.randint(4, (len(strong[0]),), generator=step_generator())
        (logits_x, _), (logits_u, _), (logits_u1, _), (_, features_rot) = forward_views(
            model,
            comm.local(mixed_x[:num_labeled]),
            comm.local(mixed_x[num_labeled:]),
            comm.local(strong[0]),
            comm.local(rotate_quarters(strong[0], turns)),
            comm=comm,
        )
        loss_sup = soft_cross_entropy(logits_x, mixed_y[:num_labeled])
        loss_unsup = soft_cross_entropy(logits_u, mixed_y[num_labeled:])
        loss_u1 = soft_cross_entropy(logits_u1, targets_ulb)
        loss_rot = F.cross_entropy(
            self.rotation_head(features_rot).float(), to_device(turns, features_rot.device)
        )
        ramp = progress.ramp(cfg.rampup)
        loss = (
            loss_sup
            + ramp * (cfg.lambda_u * loss_unsup + cfg.lambda_u1 * loss_u1)
            + cfg.lambda_rot * loss_rot
        )
        logs = {
            "loss_sup": loss_sup.detach(),
            "loss_unsup": loss_unsup.detach(),
            "loss_u1": loss_u1.detach(),
            "loss_rot": loss_rot.detach(),
            "weight_unsup": ramp * cfg.lambda_u,  # λ_U as ramped this step
        }
        pseudo_labels = targets_ulb.argmax(dim=1)
        mask = torch.ones_like(pseudo_labels, dtype=torch.bool)  # every guess is used (softly)
        return StepOutput(loss, logs, pseudo_labels, mask)
