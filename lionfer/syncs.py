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


@contextmanager
def count_syncs(device: torch.device | str = "cpu") -> Iterator[SyncCount]:
    """Count the host synchronisations of the code run inside the block."""
    counted = SyncCount()
    active = [True]  # a wrapper calling another wrapped method counts once
    caught: list = []  # the warnings recorded below (CUDA's sync debug mode among them)
    explained: set[int] = set()  # those raised inside a counted call: counted already

    def wrap(owner, name: str, label: str, when=None):
        original = owner.__dict__.get(name)  # None: inherited, restored by deleting the wrapper
        call = getattr(owner, name)

        @functools.wraps(call)
        def counting(*args, **kwargs):
            if not active[0]:
                return call(*args, **kwargs)
            counts = when is None or when(*args, **kwargs)
            if counts:
                counted.calls.append(label)
            active[0] = False
            first = len(caught)
            try:
                return call(*args, **kwargs)
            finally:
                if counts:
                    explained.update(range(first, len(caught)))
                active[0] = True

        setattr(owner, name, counting)
        return original

    saved = []
    for name in SYNCING_METHODS:
        saved.append((torch.Tensor, name, wrap(torch.Tensor, name, f"Tensor.{name}")))
    for name in SYNCING_FUNCTIONS:
        saved.append((torch, name, wrap(torch, name, f"torch.{name}")))
    saved.append((torch, "where", wrap(torch, "where", "torch.where(cond)", _one_argument)))
    for name in ("__getitem__", "__setitem__"):
        when = _index_argument_is_a_mask
        saved.append((torch.Tensor, name, wrap(torch.Tensor, name, "Tensor[mask]", when)))
    saved.append((torch.cuda, "synchronize", wrap(torch.cuda, "synchronize", "cuda.synchronize")))
    cuda = torch.device(device).type == "cuda"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cuda:
                torch.cuda.set_sync_debug_mode("warn")
            yield counted
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
        for owner, name, original in reversed(saved):
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
    if cuda:  # a sync that no counted call explains (one inside a counted call is counted)
        for i, warning in enumerate(caught):
            if "synchroniz" in str(warning.message) and i not in explained:
                counted.calls.append(f"cuda: {str(warning.message)[:60]}")
    for warning in caught:
        if "synchroniz" not in str(warning.message):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def _one_argument(*args, **kwargs) -> bool:
    return len(args) + len(kwargs) == 1


def _index_argument_is_a_mask(tensor, index, *rest) -> bool:
    return _boolean_index(index)
