"""Run outputs: meta.json at the start; summary.json, relabels.csv and confusion.csv at the end;
and the tables that compare runs (mean ± std over seeds)."""

from __future__ import annotations

import csv
import json
import platform
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

import lionfer

# RELABEL_COLUMNS stays importable from here: lionfer.inference.audit's table extends it
from lionfer.algorithms.lion_report import RELABEL_COLUMNS, relabel_table  # noqa: F401
from lionfer.config import Config
from lionfer.metrics import (
    format_mean_std,
    macro_f1,
    mean_class_accuracy,
    per_class_accuracy,
)
from lionfer.reporting.tables import LABEL_TYPE_FIGURES
from lionfer.training.runfolder import source_revision


def write_meta(
    out: Path, cfg: Config, device: torch.device, command: str, processes: int = 1
) -> None:
    meta = {
        "lionfer": lionfer.__version__,
        "git": source_revision(),  # None unless run from a lionfer checkout
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "processes": processes,
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
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_relabels(out / "relabels.csv", algorithm, rd.labeled, names)
    write_confusion(out / "confusion.csv", cm, names)
    return summary


def write_relabels(path: Path, algorithm, labeled, names) -> None:
    """relabels.csv from the algorithm's state: the relabel table (lion_report.relabel_table),
    empty for an algorithm that changes no labels."""
    header, rows = relabel_table(algorithm.state_dict(), labeled, names)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_confusion(path: Path, cm: np.ndarray, names) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\predicted", *names])
        for name, row in zip(names, cm.astype(int).tolist(), strict=True):
            writer.writerow([name, *row])


def load_summaries(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def method_name(summary: dict) -> str:
    """The algorithm, with its recipe where it has one (lion:robust)."""
    recipe = summary.get("recipe")
    return f"{summary['algorithm']}:{recipe}" if recipe else summary["algorithm"]


def _column(runs: list[dict], key: str, sub: str | None = None, scale: float = 100.0) -> str:
    """mean±std over the runs that have the figure; the mean alone for one run."""
    values = [(r[key].get(sub) if sub else r[key]) for r in runs if r.get(key) is not None]
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0] * scale:.2f}"
    return format_mean_std(values, scale=scale)


class _Run(NamedTuple):
    """A summary where the report's figures expect a run (they read run.summary)."""

    summary: dict


# Columns of comparison_table shown only where some run has the figure: the report's figures by
# error type and of demoted images (lionfer.reporting.tables), under shorter titles; values in
# display units.
_SHORT_TITLES = {"ambiguity fixed %": "ambig. fixed %"}
TYPE_COLUMNS = tuple(
    (_SHORT_TITLES.get(title, title), lambda s, v=value, k=scale: _scaled(v(_Run(s)), k))
    for title, _, value, scale in LABEL_TYPE_FIGURES
)


def _scaled(value, scale: float):
    return None if value is None else value * scale


def _figure_column(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return format_mean_std(values, scale=1.0)


def comparison_table(summaries: list[dict]) -> str:
    """Rows per method: accuracy, mean class accuracy, and for methods that change labels the
    relabel figures and the accuracy of the labeled set's labels (given → current, where the
    truth is known); mean±std over seeds."""
    groups: dict[str, list[dict]] = {}
    for s in summaries:
        groups.setdefault(method_name(s), []).append(s)
    header = [
        "method",
        "seeds",
        "test acc %",
        "mean class acc %",
        "mask rate",
        "relabeled",
        "precision %",
        "recall %",
        "label acc given %",
        "label acc now %",
    ]
    rows = [header]
    for method, runs in groups.items():
        rows.append(
            [
                method,
                str(len(runs)),
                _column(runs, "test_acc"),
                _column(runs, "mean_class_acc"),
                _column(runs, "mask_rate", scale=1.0),
                _column(runs, "relabel", "count", scale=1.0),
                _column(runs, "relabel", "precision"),
                _column(runs, "relabel", "recall"),
                _column(runs, "relabel", "given_accuracy"),
                _column(runs, "relabel", "current_accuracy"),
            ]
        )
    extra = [
        (title, value)
        for title, value in TYPE_COLUMNS
        if any(value(s) is not None for s in summaries)
    ]
    header += [title for title, _ in extra]
    for row, runs in zip(rows[1:], groups.values(), strict=True):
        for _, value in extra:
            row.append(_figure_column([value(r) for r in runs]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def label_quality_lines(summary: dict) -> list[str]:
    """The printed account of an algorithm that changes labels (empty for the others)."""
    relabel, quality = summary.get("relabel"), summary.get("label_quality")
    if not relabel:
        return []
    lines = [f"relabeled {relabel['count']} of {summary['num_labels']} labeled images"]
    if relabel.get("given_accuracy") is not None:
        lines[0] += (
            f": precision {_percent(relabel['precision'])}, recall {_percent(relabel['recall'])};"
            f" labels right {_percent(relabel['given_accuracy'])} as given, "
            f"{_percent(relabel['current_accuracy'])} now"
        )
    types = error_type_line(relabel)
    if types:
        lines.append(types)
    if quality:
        parts = [f"ambiguous now {_percent(quality.get('ambiguous_fraction'))}"]
        if quality.get("start_step", -1) >= 0:
            parts.append(f"disambiguation began at step {quality['start_step']}")
        if quality.get("prototype_acc") is not None:
            parts.append(f"nearest-prototype test accuracy {_percent(quality['prototype_acc'])}")
            parts.append(
                f"similarity own/other class {quality['similarity_own']:.2f}/"
                f"{quality['similarity_other']:.2f}"
            )
        lines.append("; ".join(parts))
    return lines


def error_type_line(relabel: dict) -> str:
    """'wrong labels fixed: slips 5 of 12, ambiguous 3 of 20; correct labels broken: 1; demoted
    8 (5 of them wrongly labeled)', from the parts of relabel_metrics that are there."""
    parts = []
    by_type = relabel.get("by_error_type")
    if by_type:
        fixed = [
            f"{name} {by_type[key]['fixed']} of {by_type[key]['wrong_given']}"
            for key, name in (("slip", "slips"), ("ambiguity", "ambiguous"))
            if key in by_type
        ]
        parts.append("wrong labels fixed: " + ", ".join(fixed))
    if relabel.get("broken") is not None:
        parts.append(f"correct labels broken: {relabel['broken']}")
    demoted = relabel.get("demoted")
    if demoted:
        text = f"demoted to unlabeled: {demoted['count']}"
        if demoted.get("wrong_given") is not None:
            text += f" ({demoted['wrong_given']} of them wrongly labeled)"
        parts.append(text)
    return "; ".join(parts)


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
