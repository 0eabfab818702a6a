"""A run's own files: config.toml, split.json and meta.json at the start; summary.json,
relabels.csv and confusion.csv at the end, written from explicit values (the run's data, its
algorithm, its last evaluation). Each is written atomically (lionfer.atomic)."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from lionfer.algorithms.lion_report import relabel_table
from lionfer.atomic import write_csv_atomic, write_text_atomic
from lionfer.config import Config, save_config
from lionfer.metrics import (
    macro_f1,
    mean_class_accuracy,
    per_class_accuracy,
)
from lionfer.training.runfolder import source_revision
from lionfer.version import __version__


def write_start(
    out: Path, cfg: Config, split, device: torch.device, command: str, processes: int = 1
) -> None:
    """A new run's files besides metrics.jsonl: config.toml, split.json and meta.json."""
    save_config(cfg, out / "config.toml")
    split.save(out / "split.json")
    write_meta(out, cfg, device, command, processes)


def write_meta(
    out: Path, cfg: Config, device: torch.device, command: str, processes: int = 1
) -> None:
    meta = {
        "lionfer": __version__,
        "git": source_revision(),  # None unless run from a lionfer checkout
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "processes": processes,
        "command": command or " ".join(sys.argv),
    }
    write_text_atomic(out / "meta.json", json.dumps(meta, indent=2) + "\n")


def _nan_to_none(values) -> list:
    return [None if np.isnan(v) else float(v) for v in values]


def final_figures(cm: np.ndarray, class_names) -> dict:
    per_class = _nan_to_none(per_class_accuracy(cm))
    return {
        "mean_class_acc": float(mean_class_accuracy(cm)),
        "macro_f1": float(macro_f1(cm)),
        "per_class_acc": dict(zip(class_names, per_class, strict=True)),
        "confusion_matrix": cm.astype(int).tolist(),
    }


FINAL_FILES = ("summary.json", "relabels.csv", "confusion.csv")  # summary.json first: finished


def unfinish_run(out: Path) -> None:
    """A finished run that trains on (train.steps raised): its final files are removed, so that
    while it trains it reads as unfinished (sweeps resume it, reports list it as not finished);
    finish_run writes them again. Their figures stay in metrics.jsonl's eval records."""
    for name in FINAL_FILES:
        (out / name).unlink(missing_ok=True)


def finish_run(
    out: Path, cfg: Config, run_data, algorithm, last_eval: dict, steps: int, best: dict
) -> dict:
    """Write summary.json, relabels.csv and confusion.csv of a finished run: its data and
    algorithm, its last eval record (with test_confusion), its steps and best evaluation."""
    rd, last = run_data, last_eval
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    cm = np.asarray(last["test_confusion"])
    names = list(rd.data.class_names)
    trains = [r for r in records if r.get("event") == "train"]
    summary = {
        "algorithm": cfg.algorithm.name,
        "dataset": cfg.data.dataset,
        "model": cfg.model.name,
        "num_labels": len(rd.labeled),
        "num_unlabeled": len(rd.unlabeled),
        "seed": cfg.seed,
        "steps": steps,
        "class_names": names,
        "test_acc": last["test_acc"],
        "test_acc_raw": last["test_acc_raw"],
        **final_figures(cm, names),
        "best": best,
        "steps_per_s": float(np.mean([r["steps_per_s"] for r in trains])) if trains else None,
        "notes": rd.data.notes,
    }
    if "val_acc" in last:
        summary["val_acc"] = last["val_acc"]
    for key in ("mask_rate", "pseudo_label_acc"):
        if key in last:
            summary[key] = last[key]
    true_labeled = rd.labeled.true_labels
    summary.update(last.get("labels", {}))  # relabel and label_quality figures
    summary.update(algorithm.summary(true_labeled, rd.unlabeled.true_labels))
    write_relabels(out / "relabels.csv", algorithm, rd.labeled, names)
    write_confusion(out / "confusion.csv", cm, names)
    # last, and whole or not at all: summary.json marks the run finished (sweeps skip it)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def write_relabels(path: Path, algorithm, labeled, names) -> None:
    """relabels.csv from the algorithm's state: the relabel table (lion_report.relabel_table),
    empty for an algorithm that changes no labels."""
    header, rows = relabel_table(algorithm.state_dict(), labeled, names)
    write_csv_atomic(path, [header, *rows])


def write_confusion(path: Path, cm: np.ndarray, names) -> None:
    table = [["true\\predicted", *names]]
    table += [[name, *row] for name, row in zip(names, cm.astype(int).tolist(), strict=True)]
    write_csv_atomic(path, table)
