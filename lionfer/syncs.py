"""Counting host synchronisations: the calls that make the CPU wait for the GPU (`.item()`,
`bool(t)`, `.tolist()`, `.cpu()`, `nonzero`, boolean-mask indexing, `torch.cuda.synchronize`).

On the CPU nothing waits, so these calls are counted by wrapping them while a `count_syncs()`
block runs: a test on the CPU shows what would block a GPU. On CUDA, torch's own sync debug mode
reports the synchronisations it performs: a wrapped call counts once (its own warnings with it),
and a warning raised outside any wrapped call (e.g. a blocking copy) counts once. Used by the
tests of the training step and by benchmarks/throughput.py.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

# Tensor methods that always copy a value to the host.
SYNCING_METHODS = (
    "item",
    "tolist",
    "cpu",
    "numpy",
    "nonzero",
    "masked_select",
    "unique",
    "__bool__",
    "__int__",
    "__float__",
    "__index__",
)
# torch functions that do (masked_select, unique, nonzero: the size of the result is data).
SYNCING_FUNCTIONS = ("nonzero", "masked_select", "unique", "argwhere")


@dataclass
class SyncCount:
    """The synchronising calls seen, in order, by name (e.g. "Tensor.item")."""

    calls: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.calls)

    def __str__(self) -> str:
        return f"{self.count} host syncs" + (f": {', '.join(self.calls)}" if self.calls else "")


def _boolean_index(index) -> bool:
    """x[mask] with a bool tensor: the result's size is data, so CUDA must sync to know it."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool and p.dim() > 0 for p in parts)


@dataclass
class _Watch:
    """What the wrapped calls of one count_syncs block share."""

    counted: SyncCount
    active: bool = True  # a wrapper calling another wrapped method counts once
    caught: list = field(default_factory=list)  # the warnings recorded (CUDA's sync debug mode)
    explained: set[int] = field(default_factory=set)  # raised inside a counted call: counted


@contextmanager
def count_syncs(device: torch.device | str = "cpu") -> Iterator[SyncCount]:
    """Count the host synchronisations of the code run inside the block."""
    watch = _Watch(SyncCount())
    saved = _wrap_syncing_calls(watch)
    cuda = torch.device(device).type == "cuda"
    try:
        with warnings.catch_warnings(record=True) as watch.caught:
            warnings.simplefilter("always")
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            yield watch.counted
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
        for owner, name, original in reversed(saved):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
    if cuda:  # a sync that no counted call explains (one inside a counted call is counted)
        for i, warning in enumerate(watch.caught):
            if "synchroniz" in str(warning.message) and i not in watch.explained:
                watch.counted.calls.append(f"cuda: {str(warning.message)[:60]}")
    for warning in watch.caught:
        if "synchroniz" not in str(warning.message):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def _wrap_syncing_calls(watch: _Watch) -> list[tuple]:
    """Wrap every call that syncs so that it counts in watch; returns (owner, name, the
    original: None where inherited) of each, to restore them."""
    saved = []
    for name in SYNCING_METHODS:
        saved.append((torch.Tensor, name, _wrap(watch, torch.Tensor, name, f"Tensor.{name}")))
    for name in SYNCING_FUNCTIONS:
        saved.append((torch, name, _wrap(watch, torch, name, f"torch.{name}")))
    where = _wrap(watch, torch, "where", "torch.where(cond)", _one_argument)
    saved.append((torch, "where", where))
    for name in ("__getitem__", "__setitem__"):
        when = _index_argument_is_a_mask
        saved.append((torch.Tensor, name, _wrap(watch, torch.Tensor, name, "Tensor[mask]", when)))
    synchronize = _wrap(watch, torch.cuda, "synchronize", "cuda.synchronize")
    saved.append((torch.cuda, "synchronize", synchronize))
    return saved


def _wrap(watch: _Watch, owner, name: str, label: str, when=None):
    """Replace owner.name by a wrapper that counts a call as label in watch (where `when` of its
    arguments holds); returns the original (None: inherited, restored by deleting the wrapper)."""
    original = owner.__dict__.get(name)
    call = getattr(owner, name)

    @functools.wraps(call)
    def counting(*args, **kwargs):
        if not watch.active:
            return call(*args, **kwargs)
        counts = when is None or when(*args, **kwargs)
        if counts:
            watch.counted.calls.append(label)
        watch.active = False
        first = len(watch.caught)
        try:
            return call(*args, **kwargs)
        finally:
            if counts:
                watch.explained.update(range(first, len(watch.caught)))
            watch.active = True

    setattr(owner, name, counting)
    return original


def _one_argument(*args, **kwargs) -> bool:
    return len(args) + len(kwargs) == 1


def _index_argument_is_a_mask(tensor, index, *rest) -> bool:
    return _boolean_index(index)
