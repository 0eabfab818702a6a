"""Evaluating a finished (or interrupted) run's model on its test set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lionfer.checkpoint import load_checkpoint
from lionfer.config import load_config
from lionfer.data.pipeline import build_run_data
from lionfer.metrics import accuracy
from lionfer.models import build_model
from lionfer.report import final_figures
from lionfer.trainer import confusion_on, resolve_device


def load_run_model(run: Path, checkpoint: str = "last", device: str = "cpu"):
    """(config, EMA model in eval mode) from a run folder."""
    cfg = load_config(run / "config.toml")
    state = load_checkpoint(run / "checkpoints" / f"{checkpoint}.pt")
    num_classes = len(state["class_names"])
    model = build_model(dataclasses.replace(cfg.model, pretrained=""), num_classes)
    model.load_state_dict(state["ema"])
    return cfg, model.to(resolve_device(device)).eval(), state


def evaluate_run(run: Path, checkpoint: str = "last", device: str = "auto") -> dict:
    cfg, model, state = load_run_model(run, checkpoint, device)
    data_cfg = dataclasses.replace(cfg.data, split_file=str(run / "split.json"))
    rd = build_run_data(data_cfg, cfg.seed)
    cm = confusion_on(model, rd.test, rd.num_classes, cfg, next(model.parameters()).device)
    return {
        "run": str(run),
        "checkpoint": checkpoint,
        "step": state["step"],
        "test_acc": accuracy(cm),
        **final_figures(cm, list(rd.data.class_names)),
    }


__all__ = ["evaluate_run", "load_run_model"]
