"""Which forward passes of a step moved BatchNorm's running statistics: record the inputs of
every pass, then replay chosen ones on a copy of the model as it was before the step."""

import copy
from contextlib import contextmanager

import torch

from lionfer.config_sections import ModelConfig
from lionfer.models import build_model

STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def bn_model(num_classes: int = 3):
    """The tiny CNN (four BatchNorm layers), in train mode, without dropout's random draws."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="cnn_small", pretrained="", dropout=0.0), num_classes)
    return model.train()


def statistics(model) -> dict[str, torch.Tensor]:
    """Every BatchNorm running statistic and counter of the model, copied."""
    return {k: v.clone() for k, v in model.state_dict().items() if k.endswith(STATISTICS)}


@contextmanager
def recorded_passes(model):
    """A list that fills with the input of every forward pass of `model`, in order."""
    passes = []
    handle = model.register_forward_pre_hook(lambda _, args: passes.append(args[0].detach()))
    try:
        yield passes
    finally:
        handle.remove()


def statistics_after(model, inputs) -> dict[str, torch.Tensor]:
    """The statistics a copy of `model` has after train-mode forward passes of `inputs`."""
    replay = copy.deepcopy(model).train()
    with torch.no_grad():
        for x in inputs:
            replay(x)
    return statistics(replay)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
