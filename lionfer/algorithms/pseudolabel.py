"""Pseudo-Label (Lee, ICML 2013 Workshop on Challenges in Representation Learning).

- Labeled images: cross-entropy on a weak view.
- Unlabeled images: the class the network currently predicts is taken as the image's label
  (a "pseudo-label") and trained with cross-entropy on the same view: entropy minimisation.
- Its weight α(t) is 0 until T1, rises linearly to α_f at T2 and stays there, so early
  (mostly wrong) guesses do not steer the network.
- L = L_s + α(t) · mean_b[mask_b · CE(p_b, ŷ_b)]; mask_b = 1 for every image in the paper.

Reference: D.-H. Lee, "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for
Deep Neural Networks", 2013. Paper and later codes differ: USB keeps only pseudo-labels with
confidence ≥ 0.95 and ramps a weight of 1 over 40% of training; lionfer follows the paper
(threshold 0, α_f = 3) with the threshold as a knob. The paper's T1 = 100 and T2 = 600 are epochs of
a schedule whose length it does not give; lionfer takes them as fractions 0.1 and 0.6 of the run.
The paper's dropout and denoising-autoencoder pre-training are the backbone's business here. The
paper's network has no BatchNorm; as in USB and the MixMatch authors' re-implementation, labeled
and unlabeled images go through separate forward passes, each normalised with its own batch's
statistics, and only the labeled pass updates BatchNorm's running statistics.
"""

from __future__ import annotations

import torch.nn.functional as F

from lionfer.algorithms.base import (
    Algorithm,
    Batch,
    Progress,
    StepOutput,
    forward_views,
    frozen_bn_statistics,
)
from lionfer.algorithms.hparams import PseudoLabelConfig
from lionfer.losses import masked_cross_entropy


def unlabeled_weight(fraction: float, start: float, end: float, final: float) -> float:
    """α(t): 0 before `start`, linear to `final` at `end`, then `final` (fractions of the run)."""
    if fraction < start:
        return 0.0
    if fraction >= end:
        return final
    return final * (fraction - start) / (end - start)


class PseudoLabel(Algorithm):
    config_class = PseudoLabelConfig
    views = ("weak",)

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        (logits_lb, _) = forward_views(model, batch.x_lb, comm=self.comm)[0]
        with frozen_bn_statistics(model):  # its own BatchNorm batch, statistics not recorded
            (logits_ulb_w, _) = forward_views(model, batch.x_ulb_w, comm=self.comm)[0]
        loss_sup = F.cross_entropy(logits_lb, batch.y_lb)
        probs_ulb_w = logits_ulb_w.detach().float().softmax(dim=1)
        confidence, pseudo_labels = probs_ulb_w.max(dim=1)
        mask = confidence >= self.cfg.threshold
        # The target is the detached argmax; the prediction keeps its gradient (same view).
        loss_unsup = masked_cross_entropy(logits_ulb_w, pseudo_labels, mask, normalise="all")
        weight = unlabeled_weight(
            progress.fraction, self.cfg.ramp_start, self.cfg.ramp_end, self.cfg.lambda_u
        )
        logs = {
            "loss_sup": loss_sup.detach(),
            "loss_unsup": loss_unsup.detach(),
            "mask_rate": mask.float().mean(),
            "weight_unsup": weight,
        }
        return StepOutput(loss_sup + weight * loss_unsup, logs, pseudo_labels, mask)
