"""Evaluating a finished (or interrupted) run's model on its test set."""

from __future__ import annotations

import os
from pathlib import Path

from lionfer.algorithms.base import Algorithm
from lionfer.config import load_config
from lionfer.data.pipeline import load_dataset
from lionfer.device import resolve_device
from lionfer.errors import CheckpointError, InputError, MissingInputError
from lionfer.metrics import accuracy
from lionfer.registry import ALGORITHMS
from lionfer.training.checkpoint import checkpoint_model, load_checkpoint, restore_algorithm
from lionfer.training.evaluation import confusion_on, feature_probe
from lionfer.training.finished_run import finished_run_data, run_data_context
from lionfer.training.setup import build_algorithm
from lionfer.training.summary import final_figures


def evaluate_run(run: Path, checkpoint: str = "last", device: str = "auto") -> dict:
    """The run's test figures of its checkpoint's EMA model; only the test images are read (and
    checked, as in training)."""
    from lionfer.inference.model_file import check_finite, checkpoint_file

    run = Path(os.path.expanduser(run))  # "~/runs/x", as a shell reads it
    if not run.exists():
        raise MissingInputError(f"run folder not found: {run}")
    if not (run.is_dir() and (run / "config.toml").is_file()):
        raise InputError(
            f"evaluate needs a run folder made by `lionfer train` (with config.toml and "
            f"checkpoints/), got {run}; for a checkpoint or an exported file alone, use "
            "`lionfer audit MODEL [CONFIG] [key=value ...]` on a labeled dataset"
        )
    cfg = load_config(run / "config.toml")
    path = checkpoint_file(run, checkpoint)
    state = load_checkpoint(path)
    model = checkpoint_model(state, path)
    check_finite(model, path)  # NaN weights would predict the first class everywhere
    model = model.to(resolve_device(device))
    with run_data_context(run):
        data = load_dataset(cfg.data, cfg.seed, check=("test",))
    if list(data.class_names) != list(state["class_names"]):
        raise CheckpointError(
            f"{run}: the checkpoint was trained on the classes {list(state['class_names'])}, but "
            f"the run's data now has {list(data.class_names)}; restore the data of the run"
        )
    device = next(model.parameters()).device
    trained = state.get("trained_classes") or data.class_names  # saved before it: all
    trained_ids = [c for c, name in enumerate(data.class_names) if name in trained]
    cm = confusion_on(model, data.test, data.num_classes, cfg, device, trained_ids)
    return {
        "run": str(run),
        "checkpoint": checkpoint,
        "step": state["step"],
        "test_acc": accuracy(cm),
        **final_figures(cm, list(data.class_names)),
        **label_figures(run, cfg, state, path, device),
    }


def label_figures(run: Path, cfg, state: dict, path: Path, device) -> dict:
    """The relabel and label-quality figures of a run whose algorithm changes labels, from the
    algorithm state and live model of its checkpoint (at path) ({} for the other algorithms)."""
    if ALGORITHMS.get(cfg.algorithm.name).diagnostics is Algorithm.diagnostics:
        return {}
    with run_data_context(run):
        run_data = finished_run_data(run, cfg, state)
    live = checkpoint_model(state, path, weights="model").to(device)
    algorithm = build_algorithm(cfg, run_data, live).to(device)
    restore_algorithm(algorithm, state)
    figures = algorithm.diagnostics(feature_probe(live, run_data, cfg, device))
    by_class = algorithm.summary(run_data.labeled.true_labels).get("evidence_by_class")
    if by_class is not None:  # the evidence rule's agreement by class, as in summary.json
        figures["evidence_by_class"] = by_class
    return {"num_labels": len(run_data.labeled), **figures}


__all__ = ["evaluate_run"]
