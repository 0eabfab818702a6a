"""Run outputs: meta.json at the start; summary.json, relabels.csv and confusion.csv at the end;
and the tables that compare runs (mean ± std over seeds)."""

from __future__ import annotations

import csv
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import lionfer
from lionfer.config import Config
from lionfer.metrics import (
    format_mean_std,
    macro_f1,
    mean_class_accuracy,
    per_class_accuracy,
)


def _git_sha() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_meta(out: Path, cfg: Config, device: torch.device, command: str) -> None:
    meta = {
        "lionfer": lionfer.__version__,
        "git": _git_sha(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "command": command or " ".join(sys.argv),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


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


def finish_run(trainer) -> dict:
    """Write summary.json, relabels.csv and confusion.csv from a finished Trainer."""
    cfg, rd, out = trainer.cfg, trainer.run_data, trainer.out
    records = [json.loads(line) for line in trainer.metrics_path.read_text().splitlines()]
    last = trainer.last_eval or trainer._evaluate()
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
        "steps": trainer.step,
        "class_names": names,
        "test_acc": last["test_acc"],
        "test_acc_raw": last["test_acc_raw"],
        **final_figures(cm, names),
        "best": trainer.best,
        "steps_per_s": float(np.mean([r["steps_per_s"] for r in trains])) if trains else None,
        "notes": rd.data.notes,
    }
    if "val_acc" in last:
        summary["val_acc"] = last["val_acc"]
    for key in ("mask_rate", "pseudo_label_acc"):
        if key in last:
            summary[key] = last[key]
    true_labeled = rd.labeled.true_labels
    extra = trainer.algorithm.summary(true_labeled, rd.unlabeled.true_labels)
    summary.update(extra)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_relabels(out / "relabels.csv", trainer.algorithm, rd.labeled, names)
    write_confusion(out / "confusion.csv", cm, names)
    return summary


def write_relabels(path: Path, algorithm, labeled, names) -> None:
    """One row per labeled image whose current label differs from the given one."""
    state = algorithm.state_dict()
    given = labeled.labels
    current = state["label"].cpu().numpy() if "label" in state else given
    steps = state["relabel_step"].cpu().numpy() if "relabel_step" in state else None
    weights = state["relabel_weight"].cpu().numpy() if "relabel_weight" in state else None
    truth = labeled.true_labels
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "index",
                "id",
                "given_label",
                "current_label",
                "step",
                "true_label",
                "given_name",
                "current_name",
                "weight",
            ]
        )
        for i in np.flatnonzero(current != given):
            writer.writerow(
                [
                    int(i),
                    labeled.ids[i],
                    int(given[i]),
                    int(current[i]),
                    int(steps[i]) if steps is not None else "",
                    int(truth[i]) if truth is not None else "",
                    names[given[i]],
                    names[current[i]],
                    f"{weights[i]:.4f}" if weights is not None else "",
                ]
            )


def write_confusion(path: Path, cm: np.ndarray, names) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\predicted", *names])
        for name, row in zip(names, cm.astype(int).tolist(), strict=True):
            writer.writerow([name, *row])


def load_summaries(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def _column(runs: list[dict], key: str, sub: str | None = None, scale: float = 100.0) -> str:
    values = [(r[key].get(sub) if sub else r[key]) for r in runs if r.get(key) is not None]
    values = [v for v in values if v is not None]
    return format_mean_std(values, scale=scale) if values else "-"


def comparison_table(summaries: list[dict]) -> str:
    """Rows per algorithm: accuracy, mean class accuracy, relabel figures; mean±std over seeds."""
    groups: dict[str, list[dict]] = {}
    for s in summaries:
        groups.setdefault(s["algorithm"], []).append(s)
    header = [
        "algorithm",
        "seeds",
        "test acc %",
        "mean class acc %",
        "relabeled",
        "relabel precision %",
        "relabel recall %",
        "mask rate",
    ]
    rows = [header]
    for algorithm, runs in groups.items():
        rows.append(
            [
                algorithm,
                str(len(runs)),
                _column(runs, "test_acc"),
                _column(runs, "mean_class_acc"),
                _column(runs, "relabel", "count", scale=1.0),
                _column(runs, "relabel", "precision"),
                _column(runs, "relabel", "recall"),
                _column(runs, "mask_rate", scale=1.0),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
