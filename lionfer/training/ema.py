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
        """One fused update of every float tensor (torch._foreach_lerp_: a few kernels instead
        of one per tensor), then the integer buffers copied."""
        decay = min(self.decay, (1 + step) / (10 + step))
        live = model.state_dict()
        floats, live_floats, ints, live_ints = [], [], [], []
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                floats.append(value)
                live_floats.append(live[name].to(value.dtype))
            else:
                ints.append(value)
                live_ints.append(live[name])
        if floats:
            torch._foreach_lerp_(floats, live_floats, 1.0 - decay)
        if ints:
            torch._foreach_copy_(ints, live_ints)
