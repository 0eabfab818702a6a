"""Supervised baseline: cross-entropy on the labeled images only (the paper's "Baseline")."""

from __future__ import annotations

import torch.nn.functional as F

from lionfer.algorithms.base import Algorithm, Batch, Progress, StepOutput, forward_views
from lionfer.algorithms.hparams import SupervisedConfig


class Supervised(Algorithm):
    config_class = SupervisedConfig
    views = ()

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        (logits, _) = forward_views(model, batch.x_lb, comm=self.comm)[0]
        loss = F.cross_entropy(logits, batch.y_lb, label_smoothing=self.cfg.label_smoothing)
        return StepOutput(loss, {"loss_sup": loss.detach()})
