"""Exponential moving average of a model's weights: the model lionfer evaluates and exports."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """ema ← d·ema + (1 − d)·live after every step, with d = min(decay, (1 + t)/(10 + t)).

    The warm-up on d keeps short runs from evaluating a model dominated by its random init;
    it reaches 0.99 by step 900 and 0.999 by step 9000.
    Float buffers (BatchNorm statistics) are averaged too; integer buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        live = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.lerp_(live[name].to(value.dtype), 1.0 - decay)
            else:
                value.copy_(live[name])
