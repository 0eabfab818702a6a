"""The model file read for prediction: which file a MODEL argument names (a run folder's
checkpoint or the file itself), the checkpoint's EMA model (read and built by
lionfer.training.checkpoint), and ModelInfo, what a model file says about itself."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lionfer.device import inference_device
from lionfer.errors import CheckpointError, InputError
from lionfer.training.checkpoint import MODEL_KEYS, checkpoint_model, load_checkpoint

# What to pass instead of a file that is not a lionfer checkpoint.
MODEL_FIX = "pass a run folder, its checkpoints/last.pt or best.pt, or an exported .onnx file"


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself: enough to preprocess faces and name its outputs."""

    model_name: str
    class_names: tuple[str, ...]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    path: str
    fingerprint: str  # first 16 hex digits of the file's SHA-256
    # the classes it had a labeled training image of; () where the file does not say: all
    trained_classes: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.trained_classes:
            object.__setattr__(self, "trained_classes", tuple(self.class_names))

    @property
    def untrained_classes(self) -> tuple[str, ...]:
        """The classes it has an output for but never had a training label of."""
        return tuple(n for n in self.class_names if n not in self.trained_classes)


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


CHECKPOINTS = ("last", "best")


def checkpoint_file(model: str | Path, checkpoint: str = "last") -> Path:
    """The checkpoint a MODEL argument names: RUN/checkpoints/<checkpoint>.pt or the file itself.
    A folder that is not a run, a run without that checkpoint (one still starting, or without a
    best.pt) and a missing path are refused with what the folder holds and what to pass; so is
    checkpoint="best" beside a file other than a best.pt (the file is the checkpoint: "best"
    would be ignored), and a MODEL that is no path (None) or an empty one (Path("") is the current
    folder)."""
    if checkpoint not in CHECKPOINTS:
        raise InputError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    if not isinstance(model, str | os.PathLike):
        raise InputError(
            f"MODEL must be a path (a run folder, a .pt checkpoint or a .onnx file), got {model!r}"
        )
    if not str(model).strip():
        raise InputError(
            f"MODEL {str(model)!r} is an empty path; give a run folder, a .pt checkpoint or a "
            ".onnx file (use '.' for the current folder)"
        )
    path = Path(os.path.expanduser(model))  # "~/runs/x", as a shell reads it
    if path.is_dir():
        file = path / "checkpoints" / f"{checkpoint}.pt"
        if not file.is_file():
            raise InputError(missing_checkpoint(path, checkpoint))
        return file
    if not path.is_file():
        raise InputError(
            f"model not found: {path} (a run folder, a .pt checkpoint or a .onnx file)"
        )
    if checkpoint != CHECKPOINTS[0] and path.name != f"{checkpoint}.pt":
        sibling = path.parent / f"{checkpoint}.pt"
        fix = (
            f"pass {sibling}"
            if path.parent.name == "checkpoints" and sibling.is_file()
            else "pass the run folder with it, or the checkpoint file you want alone"
        )
        raise InputError(
            f"--checkpoint {checkpoint} (checkpoint={checkpoint!r} in lionfer.load) picks a run "
            f"folder's checkpoint, but MODEL {path} is a file, which is the model used; {fix}"
        )
    return path


def missing_checkpoint(run: Path, checkpoint: str) -> str:
    """Why RUN/checkpoints/<checkpoint>.pt is not there, and what to pass instead."""
    if run.name == "checkpoints" and (run / f"{checkpoint}.pt").is_file():
        return f"{run} is a run's checkpoints folder: pass the run, {run.parent}, or a file in it"
    saved = sorted((run / "checkpoints").glob("*.pt"))
    if not saved and not (run / "config.toml").is_file():
        return f"{run} is not a lionfer run folder (it has no config.toml); {MODEL_FIX}"
    usable = [p for p in saved if p.name != "error.pt"]  # error.pt: for inspection only
    if saved:
        fix = (
            "pass --checkpoint last (checkpoint='last' in lionfer.load)"
            if (run / "checkpoints" / "last.pt").is_file()
            else f"pass one of its files, e.g. {usable[0]}"
            if usable
            else "it failed before its first checkpoint, and error.pt, the state it failed "
            f"in, is for inspection only: train it again (lionfer train --out {run} "
            "--overwrite, with its settings)"
        )
        return (
            f"{run} is not a finished lionfer run: it has no checkpoints/{checkpoint}.pt (only "
            f"{', '.join(p.name for p in saved)}); {fix}"
        )
    from lionfer.errors import RunExistsError
    from lionfer.run_lock import check_unlocked

    try:
        check_unlocked(run)
    except RunExistsError:  # a run training there now
        return (
            f"{run} is not a finished lionfer run: it has no checkpoint yet: a run saves "
            "checkpoints/last.pt every train.checkpoint_every steps and at its end: wait for "
            "the first"
        )
    return (
        f"{run} is not a finished lionfer run: it stopped before its first checkpoint "
        "(nothing trains there now), so it has no model: train it again (lionfer train "
        f"--out {run} --overwrite, with its settings)"
    )


def check_finite(model: torch.nn.Module, path: Path) -> None:
    """Refuse a model with NaN or infinite weights (the error.pt of a run whose loss went NaN
    may hold them): every prediction would be NaN, its label the first class."""
    weights = dict(model.named_parameters())  # a buffer may hold -inf on purpose (a mask)
    bad = [
        name
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point()
        and (tensor.isnan().any() or (name in weights and tensor.isinf().any()))
    ]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} of the model's weight tensors hold NaN or infinite values "
            f"(first: {bad[0]}), so it has no predictions; {_finite_fix(Path(path))}"
        )


def _finite_fix(path: Path) -> str:
    """What to use instead of a checkpoint of non-finite weights: the run's other checkpoint
    where the file is one of the two and the other is there."""
    again = "train the run again (a lower train.lr)"
    if path.name not in ("last.pt", "best.pt"):
        return (
            "a run whose loss went NaN saves such weights in checkpoints/error.pt, for "
            f"inspection only: use the run's last.pt or best.pt, or {again}"
        )
    other = path.with_name("best.pt" if path.name == "last.pt" else "last.pt")
    if not other.is_file():
        return again
    return f"use the run's {other.name} ({other}; --checkpoint {other.stem}), or {again}"


def torch_model(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, ModelInfo]:
    """(the checkpoint's EMA model in eval mode on device, its ModelInfo)."""
    state = load_checkpoint(path, MODEL_KEYS, MODEL_FIX)
    model = checkpoint_model(state, path)
    check_finite(model, path)
    info = ModelInfo(
        state["model_name"],
        tuple(state["class_names"]),
        int(state["image_size"]),
        tuple(model.mean),
        tuple(model.std),
        str(path),
        file_fingerprint(path),
        tuple(state.get("trained_classes", ())),  # checkpoints saved before it: all classes
    )
    return model.to(inference_device(device)), info
