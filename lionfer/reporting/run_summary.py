"""A finished run's summary as text: the label-quality lines `lionfer train` prints, the
method's name, and `make demo`'s table (mean ± std over seeds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from lionfer.metrics import format_mean_std
from lionfer.reporting.tables import LABEL_TYPE_FIGURES
from lionfer.run_names import method_name


def load_summaries(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


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
