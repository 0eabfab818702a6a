"""The report's sections with figures, each writing its CSV: sensitivity to τ and γ (the paper's
Fig. 4), the learning and label-accuracy curves, per-class accuracy and the confusion matrices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lionfer.reporting import plots
from lionfer.reporting import tables as T
from lionfer.reporting.document import Output, Section, Table, code, plain
from lionfer.reporting.runs import Collection
from lionfer.reporting.table_sections import HOW

SENSITIVITY = (("clear_threshold", "τ"), ("reliable_threshold", "γ"))


def sensitivity_sections(c: Collection, out: Output) -> list[Section]:
    sections = []
    for key, symbol in SENSITIVITY:
        curves = {
            col: curve
            for col, curve in T.sensitivity_curves(c.runs, key).items()
            if len(curve[1]) > 1
        }
        if not curves:
            continue
        series = {col: pts for col, (_, pts) in curves.items()}
        recipes = {recipe for recipe, _ in curves.values()}
        within = (
            code(next(iter(recipes)))
            if len(recipes) == 1
            else ", ".join(f"{code(recipe)} on {plain(col)}" for col, (recipe, _) in curves.items())
        )
        name = f"sensitivity_{key}"
        rows = [
            [col, x, cell.n, cell.mean, cell.std] for col, pts in series.items() for x, cell in pts
        ]
        out.csv(f"{name}.csv", ["column", key, "seeds", "mean", "std"], rows)
        table = Table(
            ["column", f"{symbol} ({key})", "test accuracy %"],
            [[col, f"{x:g}", cell.text()] for col, pts in series.items() for x, cell in pts],
        )
        figure = out.image(
            f"{name}.png",
            plots.sensitivity_figure(series, f"{symbol} ({key})"),
            f"Test accuracy against {symbol}, mean ± std over seeds",
        )
        text = (
            f"LION's final test accuracy against {symbol} (`algorithm.{key}`), as in the paper's "
            f"Fig. 4, within one recipe ({within}): each point pools that recipe's runs with that "
            "value whose other hyperparameters are the most common ones (but for those a sweep "
            "moves with it); runs of other recipes are no points of the curve. " + HOW
        )
        sections.append(
            Section(f"Sensitivity to {symbol}").add(text, figure, table, f"CSV: `{name}.csv`.")
        )
    return sections


@dataclass(frozen=True)
class Curve:
    """A figure of a value of the "eval" events against the step."""

    title: str
    keys: tuple[str, ...]  # where the value sits in an eval event
    ylabel: str
    name: str  # file name of the figure and the CSV
    text: str


LEARNING = Curve(
    "Learning curves",
    ("test_acc",),
    "test accuracy (%)",
    "learning_curves",
    "Test accuracy of the EMA model at each evaluation (`eval` events of metrics.jsonl).",
)
LABELS = Curve(
    "Label accuracy during training",
    ("labels", "relabel", "current_accuracy"),
    "labeled set correct (%)",
    "label_accuracy",
    "Accuracy of the labeled set's current labels against the true labels at each evaluation, "
    "for methods that change labels.",
)


def curve_section(c: Collection, out: Output, curve: Curve) -> list[Section]:
    title, name = curve.title, curve.name
    curves = T.curves(c.runs, T.eval_value(*curve.keys))
    if not curves:
        return []
    columns = sorted({col for col, _ in curves}, key=T.column_key)
    rows = [
        [col, m, step, cell.n, cell.mean, cell.std]
        for (col, m), points in curves.items()
        for step, cell in points
    ]
    out.csv(f"{name}.csv", ["column", "method", "step", "seeds", "mean", "std"], rows)
    png = plots.curves_figure(curves, columns, c.methods, curve.ylabel)
    figure = out.image(f"{name}.png", png, f"{title}: mean over seeds, band ± one std")
    return [Section(title).add(curve.text, figure, f"CSV: `{name}.csv`.")]


def per_class_sections(c: Collection, out: Output) -> list[Section]:
    cells = T.per_class(c.runs)
    if not cells:
        return []
    section = Section("Per-class accuracy").add(
        "Accuracy of each class (recall) of the final model on the test set. " + HOW
    )
    tidy = []
    for column in T.order_columns(c.runs):
        methods = [m for m in c.methods if (m, column) in cells]
        if not methods:
            continue
        names = list(cells[methods[0], column])
        rows = [
            [m, *(cells[m, column][n].text() if n in cells[m, column] else "–" for n in names)]
            for m in methods
        ]
        tidy += [
            [m, column, n, cell.n, cell.mean, cell.std]
            for m in methods
            for n, cell in cells[m, column].items()
        ]
        png = plots.per_class_figure(column, methods, names, cells)
        section.add(
            f"**{plain(column)}**",
            Table(["method", *names], rows),
            out.image(f"per_class_{T.slug(column)}.png", png, f"Per-class accuracy on {column}"),
        )
    out.csv("per_class_acc.csv", ["method", "column", "class", "seeds", "mean", "std"], tidy)
    return [section.add("CSV: `per_class_acc.csv`.")]


def confusion_sections(c: Collection, out: Output) -> list[Section]:
    matrices = T.mean_confusion(c.runs)
    if not matrices:
        return []
    section = Section("Confusion matrices").add(
        "Test confusion matrices of the final model (rows: true class), averaged over seeds and "
        "row-normalised."
    )
    tidy = []
    for column in T.order_columns(c.runs):
        panels = [(m, *matrices[m, column]) for m in c.methods if (m, column) in matrices]
        for method, names, matrix, seeds in panels:
            tidy += [
                [method, column, seeds, names[i], names[j], float(matrix[i, j])]
                for i, j in np.ndindex(matrix.shape)
            ]
        if panels:
            png = plots.confusion_figure(panels)
            caption = f"Row-normalised confusion matrices on {column}"
            section.add(out.image(f"confusion_{T.slug(column)}.png", png, caption))
    header = ["method", "column", "seeds", "true", "predicted", "fraction"]
    out.csv("confusion.csv", header, tidy)
    return [section.add("CSV: `confusion.csv`.")]
