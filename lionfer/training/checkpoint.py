"""Saving and loading checkpoints: atomic, flushed writes and weights_only loads.

A file that is not a lionfer checkpoint (text, truncated, a pickle that would run code, a plain
state dict) is refused with a one-line CheckpointError; nothing in it is ever executed. A
checkpoint that does not fit the run's data (other classes, per-sample state of another length)
is refused too.
"""

from __future__ import annotations

import errno
import os
import random
import warnings
from pathlib import Path

import torch

from lionfer.atomic import flush_to_disk, replacing
from lionfer.errors import CheckpointError, CheckpointWriteError, MissingInputError

REQUIRED_KEYS = ("step", "model", "ema", "optimizer", "algorithm", "rng", "class_names")


def save_checkpoint(state: dict, path: Path) -> None:
    """Write to `<name>.tmp`, flush it to disk and rename it over `path`, so an interruption or a
    full disk never leaves half a checkpoint: the previous file stays until the new one is whole.
    An OSError becomes CheckpointWriteError naming the file and the reason."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp, open(tmp, "wb") as handle:
            writer = _KeepWriteError(handle)
            try:
                torch.save(state, writer)
            except RuntimeError as error:
                if writer.error is None:
                    raise
                raise writer.error from error  # torch reports a failed write (ENOSPC) vaguely
            flush_to_disk(handle)
    except OSError as error:
        reason = error.strerror or os.strerror(error.errno or errno.EIO) or str(error)
        raise CheckpointWriteError(f"could not write checkpoint {path}: {reason}") from error


class _KeepWriteError:
    """A file for torch.save that keeps the OSError of a failed write: torch itself reports a
    full disk only as 'RuntimeError: [enforce fail at inline_container.cc] unexpected pos'."""

    def __init__(self, handle):
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.handle.flush()


def load_checkpoint(path: Path) -> dict:
    """A lionfer checkpoint as a dict of tensors and plain values (loaded with weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on a foreign pickle; the error says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file; none is executed
        raise CheckpointError(
            f"{path} is not a lionfer checkpoint: it cannot be read as tensors "
            f"({type(error).__name__}: {_first_line(error)}). Use checkpoints/last.pt or "
            "best.pt of a lionfer run"
        ) from error
    missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        what = "a dict" if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path} is not a lionfer checkpoint: it holds {what} without "
            f"{', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} (a plain model state "
            "dict belongs in model.pretrained). Use checkpoints/last.pt or best.pt of a lionfer run"
        )
    return state


def _first_line(error: Exception, limit: int = 160) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():  # as many GPUs as both machines have
        for index, device_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)


def check_state_fits(state: dict, fresh: dict, run_data, path: Path) -> None:
    """A checkpoint must fit the run's data: the same classes, and per-sample algorithm state as
    long as the labeled / unlabeled set it indexes (else it would land on other images)."""
    names = list(run_data.data.class_names)
    if list(state["class_names"]) != names:
        raise CheckpointError(
            f"{path} was trained on the classes {list(state['class_names'])}, but the run's data "
            f"now has {names}; restore the data the run was made with, or start a new run"
        )
    saved = state["algorithm"]
    if set(saved) != set(fresh):
        raise CheckpointError(
            f"{path} holds the algorithm state {sorted(saved)}, but this lionfer expects "
            f"{sorted(fresh)}: it was saved by another version or algorithm; start a new run"
        )
    sets = {"labeled": len(run_data.labeled), "unlabeled": len(run_data.unlabeled)}
    for key, tensor in saved.items():
        if tuple(tensor.shape) == tuple(fresh[key].shape):
            continue
        rows = fresh[key].shape[0] if fresh[key].dim() else None
        which = [name for name, size in sets.items() if size == rows]
        now = f"the {which[0]} set has {rows} images now" if which else "this run differs"
        raise CheckpointError(
            f"{path}: the per-sample state {key!r} has shape {tuple(tensor.shape)}, but {now} "
            f"(expected {tuple(fresh[key].shape)}); the images changed since the checkpoint was "
            "saved, so the state would land on other images. Restore the data the run was made "
            "with, or start a new run"
        )
