"""Evaluating a finished (or interrupted) run's model on its test set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lionfer.checkpoint import load_checkpoint
from lionfer.config import load_config
from lionfer.data.pipeline import load_dataset
from lionfer.errors import CheckpointError
from lionfer.metrics import accuracy
from lionfer.models import build_model
from lionfer.report import final_figures
from lionfer.trainer import confusion_on, resolve_device


def load_run_model(run: Path, checkpoint: str = "last", device: str = "cpu"):
    """(config, EMA model in eval mode) from a run folder."""
    cfg = load_config(run / "config.toml")
    path = run / "checkpoints" / f"{checkpoint}.pt"
    state = load_checkpoint(path)
    num_classes = len(state["class_names"])
    model = build_model(dataclasses.replace(cfg.model, pretrained=""), num_classes)
    try:
        model.load_state_dict(state["ema"])
    except RuntimeError as error:  # torch lists the missing and mis-shaped tensors
        raise CheckpointError(
            f"{path} does not fit the run's model {cfg.model.name}: "
            f"{str(error).splitlines()[0]}; it belongs to another run"
        ) from error
    return cfg, model.to(resolve_device(device)).eval(), state


def evaluate_run(run: Path, checkpoint: str = "last", device: str = "auto") -> dict:
    """The run's test figures; only the test images are read (and checked, as in training)."""
    cfg, model, state = load_run_model(run, checkpoint, device)
    data = load_dataset(cfg.data, cfg.seed, check=("test",))
    if list(data.class_names) != list(state["class_names"]):
        raise CheckpointError(
            f"{run}: the checkpoint was trained on the classes {list(state['class_names'])}, but "
            f"the run's data now has {list(data.class_names)}; restore the data of the run"
        )
    cm = confusion_on(model, data.test, data.num_classes, cfg, next(model.parameters()).device)
    return {
        "run": str(run),
        "checkpoint": checkpoint,
        "step": state["step"],
        "test_acc": accuracy(cm),
        **final_figures(cm, list(data.class_names)),
    }


__all__ = ["evaluate_run", "load_run_model"]
