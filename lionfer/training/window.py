"""What the Trainer keeps of each step between two reads, without a host synchronisation per step:
the running sums of the step logs (Window), the pseudo-label counts they add up
(pseudo_counts), and the first non-finite loss (LossWatch).

Both hold device tensors; they are read (one synchronisation) only at log, evaluation and
checkpoint boundaries, every train.log_every steps at most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

PSEUDO = ("pseudo_correct", "pseudo_total")  # counts behind the pseudo-label accuracy


@dataclass
class Window:
    """Running means of the step logs since the last record, plus pseudo-label diagnostics.

    Log values are floats or detached 0-d tensors; the tensors of a step are stacked and summed
    where they live, so adding a step costs two small device operations and no host sync."""

    sums: dict = field(default_factory=dict)
    count: int = 0
    pseudo_total: float = 0
    pseudo_correct: float = 0
    _keys: tuple = field(default=(), repr=False)
    _total: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def empty(cls) -> Window:
        return cls()

    def add(self, logs: dict, pseudo_correct=0, pseudo_total=0) -> None:
        """One step's logs; the pseudo-label counts may be ints or 0-d tensors."""
        values = {**logs, PSEUDO[0]: pseudo_correct, PSEUDO[1]: pseudo_total}
        tensors = {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}
        for key, value in values.items():
            if key not in tensors:
                self._add_float(key, float(value))
        if tensors:
            keys = tuple(tensors)
            stacked = torch.stack([v.detach().float() for v in tensors.values()])
            if keys != self._keys:
                self._flush()
                self._keys, self._total = keys, stacked
            else:
                self._total = self._total + stacked
        self.count += 1

    def _add_float(self, key: str, value: float) -> None:
        if key in PSEUDO:
            setattr(self, key, getattr(self, key) + value)
        else:
            self.sums[key] = self.sums.get(key, 0.0) + value

    def _flush(self) -> None:
        """Move the device sums to the host (one synchronisation)."""
        if self._total is not None:
            for key, value in zip(self._keys, self._total.tolist(), strict=True):
                self._add_float(key, value)
        self._keys, self._total = (), None

    def means(self) -> dict:
        self._flush()
        out = {k: v / max(self.count, 1) for k, v in self.sums.items()}
        if self.pseudo_total:
            out["pseudo_label_acc"] = self.pseudo_correct / self.pseudo_total
        return out

    def state(self) -> dict:
        """For a checkpoint (Window.from_state restores it): plain numbers, and the device sums
        not read yet as they are, so that a resumed run adds them up in the same precision and
        order as an uninterrupted one (and saving changes nothing of what is logged)."""
        state = {
            "sums": dict(self.sums),
            "count": self.count,
            "pseudo_total": self.pseudo_total,
            "pseudo_correct": self.pseudo_correct,
        }
        if self._total is not None:
            state.update(keys=list(self._keys), total=self._total.detach().cpu())
        return state

    @classmethod
    def from_state(cls, state: dict, device: torch.device | str = "cpu") -> Window:
        """The window a checkpoint's state holds, its device sums on `device`."""
        state = dict(state)
        keys, total = tuple(state.pop("keys", ())), state.pop("total", None)
        window = cls(**state)
        if total is not None:
            window._keys, window._total = keys, total.to(device)
        return window


def pseudo_counts(mask, pseudo_labels, truth_ulb, idx_ulb):
    """(correct, total) pseudo-labels of a step among the unlabeled images whose true label is
    known (≥ 0): 0-d tensors, or (0, 0) without a mask or without true labels."""
    if mask is None or truth_ulb is None:
        return 0, 0
    known = truth_ulb[idx_ulb]
    used = mask & (known >= 0)
    return (used & (pseudo_labels == known)).sum(), used.sum()


@dataclass
class LossWatch:
    """The first step whose loss was not finite, and that step's logs, kept on the device.

    record() costs a few small device operations per step; check() reads them (one sync)."""

    keys: tuple = ()
    first_step: torch.Tensor | None = None  # 0-d long, −1 while every loss was finite
    logs: torch.Tensor | None = None  # (len(keys),) the first bad step's tensor logs
    float_logs: dict = field(default_factory=dict)  # step → its float logs, since the last read

    def record(self, step: int, loss: torch.Tensor, logs: dict) -> None:
        tensors = {k: v for k, v in logs.items() if isinstance(v, torch.Tensor)}
        stacked = torch.stack([v.detach().float() for v in tensors.values()])
        if tuple(tensors) != self.keys:  # the first step, or logs that changed
            if self.check() is not None:
                return  # an earlier bad step is the one to report
            self.keys = tuple(tensors)
            self.first_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self.logs = torch.zeros_like(stacked)
        self.float_logs[step] = {k: v for k, v in logs.items() if k not in tensors}
        new = ~torch.isfinite(loss.detach()) & (self.first_step < 0)
        self.first_step = torch.where(new, step, self.first_step)
        self.logs = torch.where(new, stacked, self.logs)

    def seen(self) -> bool:
        """Whether a loss was non-finite, or the device cannot tell (it failed itself)."""
        try:
            return self.check() is not None
        except RuntimeError:
            return True

    def check(self) -> tuple[int, dict] | None:
        """(step, logs) of the first non-finite loss so far, or None (one synchronisation)."""
        if self.first_step is None:
            return None
        step = int(self.first_step)
        if step < 0:
            self.float_logs.clear()
            return None
        logs = dict(zip(self.keys, self.logs.tolist(), strict=True))
        return step, {**self.float_logs.get(step, {}), **logs}
