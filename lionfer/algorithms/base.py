"""The algorithm contract: an algorithm computes one step's loss and logs; the Trainer owns the
loop (backward, optimiser, EMA, logging, evaluation, checkpoints).

What an algorithm may declare, and the Trainer honours without knowing the method: the unlabeled
views it needs (`views`), trainable parameters of its own (`modules()`), per-sample or per-class
state (`state_dict()`), a periodic update from the EMA model's labeled-set predictions
(`period()` / `on_period()`) and that every training image be labeled (`uses_all_labels`).

In a run of several processes (lionfer.distributed) a step's images are this process's share of
the global batch, while labels and indices are the whole global batch's; forward_views and
forward_outputs, given the algorithm's `comm`, return the outputs of the whole global batch, so a
step computes the one-process loss and state updates on every process alike.

A forward pass inside frozen_bn_statistics normalises with its own batch's statistics but leaves
BatchNorm's running statistics as they were (label guessing, as the methods' codes do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from lionfer.distributed import LOCAL, Comm


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

    def ramp(self, length: float) -> float:
        """Linear ramp-up from 0 to 1 over the first `length` (a fraction) of the run."""
        return 1.0 if length <= 0 else min(1.0, self.fraction / length)


@dataclass
class Batch:
    """One step's data. idx_* are positions in the labeled / unlabeled sets.

    x_ulb holds every unlabeled view in the order of the algorithm's `views`; x_ulb_w and x_ulb_s
    name its first weak and first strong view. Built from x_ulb_w / x_ulb_s alone (the two-view
    form), x_ulb is (x_ulb_w, x_ulb_s). With several processes the images (x_*) are this
    process's share of the global batch and y_lb, idx_lb, idx_ulb the global batch's.
    """

    x_lb: torch.Tensor  # (B_l, 3, H, W) weak view
    y_lb: torch.Tensor  # (B_l,) given labels
    idx_lb: torch.Tensor  # (B_l,)
    x_ulb_w: torch.Tensor | None = None  # (B_u, 3, H, W)
    x_ulb_s: torch.Tensor | None = None  # (B_u, 3, H, W)
    idx_ulb: torch.Tensor | None = None  # (B_u,)
    x_ulb: tuple[torch.Tensor, ...] = ()  # every unlabeled view, each (B_u, 3, H, W)

    def __post_init__(self) -> None:
        if not self.x_ulb:
            self.x_ulb = tuple(v for v in (self.x_ulb_w, self.x_ulb_s) if v is not None)

    @classmethod
    def from_views(
        cls,
        x_lb: torch.Tensor,
        y_lb: torch.Tensor,
        idx_lb: torch.Tensor,
        names: tuple[str, ...],
        x_ulb: tuple[torch.Tensor, ...],
        idx_ulb: torch.Tensor | None,
    ) -> Batch:
        """A batch whose unlabeled views were made by the transforms `names`, in order."""
        if len(names) != len(x_ulb):
            raise ValueError(f"{len(x_ulb)} unlabeled views for the view names {names}")

        def first(name: str) -> torch.Tensor | None:
            return next((x for n, x in zip(names, x_ulb, strict=True) if n == name), None)

        return cls(x_lb, y_lb, idx_lb, first("weak"), first("strong"), idx_ulb, tuple(x_ulb))

    def gathered(self, comm: Comm) -> Batch:
        """The batch with the images of every process (for a step that mixes images across the
        batch before its forward pass, e.g. MixUp); itself in one process."""
        if comm.world_size == 1:
            return self
        x_ulb = tuple(comm.gather(v) for v in self.x_ulb)
        moved = {id(old): new for old, new in zip(self.x_ulb, x_ulb, strict=True)}

        def alias(value):
            return None if value is None else moved[id(value)]

        return Batch(
            comm.gather(self.x_lb),
            self.y_lb,
            self.idx_lb,
            alias(self.x_ulb_w),
            alias(self.x_ulb_s),
            self.idx_ulb,
            x_ulb,
        )

    def to(
        self, device: torch.device, memory_format: torch.memory_format = torch.preserve_format
    ) -> Batch:
        """On `device` (non-blocking copies); images (4-d) in `memory_format`."""

        def move(value):
            if value is None:
                return None
            if value.dim() == 4:
                return value.to(device, non_blocking=True, memory_format=memory_format)
            return value.to(device, non_blocking=True)

        x_ulb = tuple(move(v) for v in self.x_ulb)
        moved = {id(old): new for old, new in zip(self.x_ulb, x_ulb, strict=True)}

        def alias(value):  # x_ulb_w / x_ulb_s are views of x_ulb: move each tensor once
            return moved[id(value)] if id(value) in moved else move(value)

        return Batch(
            move(self.x_lb),
            move(self.y_lb),
            move(self.idx_lb),
            alias(self.x_ulb_w),
            alias(self.x_ulb_s),
            move(self.idx_ulb),
            x_ulb,
        )


@dataclass
class StepOutput:
    loss: torch.Tensor
    logs: dict[str, float | torch.Tensor] = field(default_factory=dict)  # floats or 0-d tensors
    pseudo_labels: torch.Tensor | None = None  # (B_u,) argmax of the weak view, for diagnostics
    mask: torch.Tensor | None = None  # (B_u,) bool, which pseudo-labels were used


LabeledProbs = Callable[[], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Probe:
    """What an algorithm's diagnostics may look at during an evaluation: the labeled set's true
    labels where known (-1 where not), features(part) → (q (N, D), labels (N,)) of the live
    model in eval mode on "labeled" or "test", computed on first use, and the labeled set's error
    types (lionfer.labels.ERROR_TYPES codes, -1 unknown) where the dataset knows them."""

    true_labeled: np.ndarray | None
    features: Callable[[str], tuple[torch.Tensor, np.ndarray]]
    error_types_labeled: np.ndarray | None = None


class Algorithm:
    config_class: ClassVar[type]
    # Transform names (lionfer.data.transforms) applied to each unlabeled image, in order; () for
    # none. The step receives them as batch.x_ulb.
    views: ClassVar[tuple[str, ...]] = ()
    # True: the run's labeled set is every training image (data.num_labels is ignored).
    uses_all_labels: ClassVar[bool] = False
    # How the processes of a run communicate (set by the Trainer); one process: LOCAL.
    comm: Comm = LOCAL
    # Tensors made from the run's data when the algorithm is built (not state: a checkpoint need
    # not hold them) that the step reads on the run's device: to() moves them with the state.
    device_buffers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg, info: AlgorithmInfo):
        self.cfg = cfg
        self.info = info

    def step(self, model: nn.Module, batch: Batch, progress: Progress) -> StepOutput:
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Per-sample state to save with a checkpoint (plain tensors)."""
        return {}

    def modules(self) -> nn.Module | None:
        """Trainable parameters of the algorithm's own (e.g. a rotation head), or None.

        The Trainer moves them to the device, optimises them with the model and saves them in
        checkpoints; they are not part of the evaluated (EMA) model.
        """
        return None

    def period(self) -> int:
        """Steps between calls of on_period(); 0 (the default) never calls it."""
        return 0

    def on_period(self, labeled_probs: LabeledProbs) -> None:
        """Called by the Trainer after every period() steps. labeled_probs() returns the EMA
        model's class probabilities on the whole labeled set, (M, C) on the CPU, in eval mode on
        weak views seeded by the step, with the given labels (M,). Changes go into state_dict().
        """

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
        for key in self.device_buffers:
            setattr(self, key, getattr(self, key).to(device))
        modules = self.modules()
        if modules is not None:
            modules.to(device)
        return self

    def diagnostics(self, probe: Probe) -> dict:
        """Figures recorded with every evaluation (an algorithm that changes labels reports
        {"relabel": {...}, "label_quality": {...}}); none by default."""
        return {}

    def summary(self, true_labeled=None, true_unlabeled=None) -> dict:
        """Figures for summary.json (e.g. relabel precision); true labels where known."""
        return {}


def forward_views(model: nn.Module, *views: torch.Tensor, comm: Comm = LOCAL):
    """One forward pass over the concatenated views; returns per-view (logits, features), each
    view's rows from every process of the run (comm) in global batch order."""
    sizes = [len(v) for v in views]
    out = model(torch.cat(views))
    logits = comm.gather_views(out.logits, sizes)
    features = comm.gather_views(out.features, sizes)
    return list(zip(logits, features, strict=True))


@contextmanager
def frozen_bn_statistics(model: nn.Module) -> Iterator[None]:
    """Forward passes inside normalise with their batch's statistics (train mode) as usual, but
    every BatchNorm layer's running_mean, running_var and num_batches_tracked (also
    SyncBatchNorm's, lionfer.distributed's GlobalBatchNorm's, a DDP-wrapped model's) are as they
    were afterwards: USB's freeze_bn / unfreeze_bn, the authors' codes' skipped update ops.

    The buffers are copied back after the passes. Momentum 0 would not do: the pass would still
    count in num_batches_tracked, and a layer with momentum None averages by that count."""
    buffers = [
        buffer
        for module in model.modules()
        if isinstance(module, _NormBase)
        for buffer in (module.running_mean, module.running_var, module.num_batches_tracked)
        if buffer is not None
    ]
    saved = [buffer.clone() for buffer in buffers]
    try:
        yield
    finally:
        for buffer, value in zip(buffers, saved, strict=True):
            # Through .data: a pass with a gradient saved the running statistics for its
            # backward, which an in-place change of the tensor itself would fail.
            buffer.data.copy_(value)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor a step made (e.g. random draws) moved to `device` without a host
    synchronisation: pinned, then copied without blocking, on a GPU."""
    device = torch.device(device)
    if device.type != "cuda" or tensor.device == device:
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def first_occurrence(idx: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) the batch position of the first row holding the same index as each row (indices in
    [0, size)); writes of per-sample state take every row's value from there, so an index that
    appears twice in a batch is written once, deterministically."""
    positions = torch.arange(len(idx), device=idx.device)
    first = torch.full((size,), len(idx), dtype=torch.long, device=idx.device)
    return first.scatter_reduce(0, idx, positions, "amin")[idx]


def labeled_classes(info: AlgorithmInfo) -> torch.Tensor:
    """(C,) bool: the classes with a labeled image (a folder of some FER classes leaves the
    others without one, and no method can learn to name them)."""
    given = info.given_labels.long()
    return torch.bincount(given, minlength=info.num_classes)[: info.num_classes] > 0


def step_generator() -> torch.Generator:
    """The generator of a step's own random choices (mixup λ and partners, rotations): torch's
    global CPU generator, so they repeat with the seed, resume exactly (the Trainer restores it),
    do not depend on the device and cost no transfer from the GPU."""
    return torch.default_generator


def forward_outputs(model: nn.Module, *views: torch.Tensor, comm: Comm = LOCAL) -> list:
    """One forward pass over the concatenated views; returns the model's Output per view
    (logits, features and, where the model gives them, clean_logits), each view's rows from
    every process of the run (comm) in global batch order."""
    sizes = [len(v) for v in views]
    out = model(torch.cat(views))
    parts, done = [], {}
    for t in out:
        if t is None:
            parts.append([None] * len(sizes))
        else:  # a field that is another field (clean logits without dropout) is gathered once
            done[id(t)] = done.get(id(t)) or comm.gather_views(t, sizes)
            parts.append(done[id(t)])
    return [type(out)(*fields) for fields in zip(*parts, strict=True)]
