"""The algorithm contract: an algorithm computes one step's loss and logs; the Trainer owns the
loop (backward, optimiser, EMA, logging, evaluation, checkpoints)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class AlgorithmInfo:
    """What an algorithm may know about the data when it is built (no I/O)."""

    num_classes: int
    num_labeled: int
    num_unlabeled: int
    feature_dim: int
    given_labels: torch.Tensor  # (num_labeled,) the labels the labeled set came with
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Progress:
    step: int  # 0-based index of the step being computed
    total: int  # steps in the whole run

    @property
    def fraction(self) -> float:
        return self.step / max(self.total, 1)


@dataclass
class Batch:
    """One step's data. idx_* are positions in the labeled / unlabeled sets."""

    x_lb: torch.Tensor  # (B_l, 3, H, W) weak view
    y_lb: torch.Tensor  # (B_l,) given labels
    idx_lb: torch.Tensor  # (B_l,)
    x_ulb_w: torch.Tensor | None = None  # (B_u, 3, H, W)
    x_ulb_s: torch.Tensor | None = None  # (B_u, 3, H, W)
    idx_ulb: torch.Tensor | None = None  # (B_u,)

    def to(self, device: torch.device) -> Batch:
        moved = {
            k: None if v is None else v.to(device, non_blocking=True)
            for k, v in self.__dict__.items()
        }
        return Batch(**moved)


@dataclass
class StepOutput:
    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)
    pseudo_labels: torch.Tensor | None = None  # (B_u,) argmax of the weak view, for diagnostics
    mask: torch.Tensor | None = None  # (B_u,) bool, which pseudo-labels were used


@dataclass
class Probe:
    """What an algorithm's diagnostics may look at during an evaluation: the labeled set's true
    labels where known (-1 where not), and features(part) → (q (N, D), labels (N,)) of the live
    model in eval mode on "labeled" or "test", computed on first use."""

    true_labeled: np.ndarray | None
    features: Callable[[str], tuple[torch.Tensor, np.ndarray]]


class Algorithm:
    config_class: ClassVar[type]
    views: ClassVar[tuple[str, ...]] = ()  # unlabeled views needed: () or ("weak", "strong")

    def __init__(self, cfg, info: AlgorithmInfo):
        self.cfg = cfg
        self.info = info

    def step(self, model: nn.Module, batch: Batch, progress: Progress) -> StepOutput:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Per-sample state to save with a checkpoint (plain tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(
                f"algorithm state has keys {sorted(state)}, expected {sorted(expected)}"
            )
        for key, value in state.items():
            current = getattr(self, key)
            setattr(self, key, value.to(device=current.device, dtype=current.dtype))

    def to(self, device: torch.device) -> Algorithm:
        for key, value in self.state_dict().items():
            setattr(self, key, value.to(device))
        return self

    def diagnostics(self, probe: Probe) -> dict:
        """Figures recorded with every evaluation (an algorithm that changes labels reports
        {"relabel": {...}, "label_quality": {...}}); none by default."""
        return {}

    def summary(self, true_labeled=None, true_unlabeled=None) -> dict:
        """Figures for summary.json (e.g. relabel precision); true labels where known."""
        return {}


def forward_views(model: nn.Module, *views: torch.Tensor):
    """One forward pass over the concatenated views; returns per-view (logits, features)."""
    sizes = [len(v) for v in views]
    out = model(torch.cat(views))
    logits = torch.split(out.logits, sizes)
    features = torch.split(out.features, sizes)
    return list(zip(logits, features, strict=True))


def forward_outputs(model: nn.Module, *views: torch.Tensor) -> list:
    """One forward pass over the concatenated views; returns the model's Output per view
    (logits, features and, where the model gives them, clean_logits)."""
    sizes = [len(v) for v in views]
    out = model(torch.cat(views))
    parts = [torch.split(t, sizes) if t is not None else [None] * len(sizes) for t in out]
    return [type(out)(*fields) for fields in zip(*parts, strict=True)]
