"""FixMatch (Sohn et al., NeurIPS 2020).

- Labeled images: cross-entropy on a weak view.
- Unlabeled images: the weak view's argmax is a pseudo-label when its probability ≥ threshold.
- The strong view is trained toward that pseudo-label (consistency regularisation).
- L = L_s + λ_u · mean_b[mask_b · CE(p_s,b, ŷ_b)] over the whole unlabeled batch.
"""

from __future__ import annotations

import torch.nn.functional as F

from lionfer.algorithms.base import Algorithm, Batch, Progress, StepOutput, forward_views
from lionfer.algorithms.hparams import FixMatchConfig
from lionfer.losses import masked_cross_entropy


class FixMatch(Algorithm):
    config_class = FixMatchConfig
    views = ("weak", "strong")

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        (logits_lb, _), (logits_ulb_w, _), (logits_ulb_s, _) = forward_views(
            model, batch.x_lb, batch.x_ulb_w, batch.x_ulb_s, comm=self.comm
        )
        loss_sup = F.cross_entropy(logits_lb, batch.y_lb)
        probs_ulb_w = logits_ulb_w.detach().float().softmax(dim=1)
        confidence, pseudo_labels = probs_ulb_w.max(dim=1)
        mask = confidence >= self.cfg.threshold
        loss_unsup = masked_cross_entropy(logits_ulb_s, pseudo_labels, mask, normalise="all")
        loss = loss_sup + self.cfg.lambda_u * loss_unsup
        logs = {
            "loss_sup": loss_sup.detach(),
            "loss_unsup": loss_unsup.detach(),
            "mask_rate": mask.float().mean(),
        }
        return StepOutput(loss, logs, pseudo_labels, mask)
