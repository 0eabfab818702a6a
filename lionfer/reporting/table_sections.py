"""The report's table sections, each writing its CSV: Table 1 (test and mean class accuracy, with
the flags), the best evaluation on validation (or, optimistic, on test), the mask rate, the flags
and their evidence, the ablation of LION's components (the paper's Table 2) and every run's
figures (runs.csv)."""

from __future__ import annotations

from pathlib import Path

from lionfer.reporting import collapse
from lionfer.reporting import tables as T
from lionfer.reporting.document import Markup, Output, Section, Table, plain
from lionfer.reporting.runs import Collection, Run, ordered_runs, shown_path

MAIN, MASK = "Test accuracy (final model)", "Mask rate (%)"  # section titles (relabeling: RELABEL)
HOW = (
    "Cells are mean ± sample standard deviation (ddof = 1) over seeds, in %, with n the number "
    "of seeds; – where a method has no run."
)


def cell_rows(grid: T.Grid) -> list[list]:
    """A grid as tidy CSV rows: method, column, seeds, mean, std."""
    return [
        [m, c, cell.n, cell.mean, cell.std]
        for m in grid.methods
        for c in grid.columns
        if (cell := grid.cells.get((m, c))) is not None
    ]


CELL_HEADER = ["method", "column", "seeds", "mean", "std"]


def grid_section(title: str, text: str, grid: T.Grid, out: Output, name: str) -> Section:
    out.csv(name, CELL_HEADER, cell_rows(grid))
    table = Table(["method", *grid.columns], grid.rows())
    return Section(title).add(text, table, f"CSV: `{name}`.")


def main_section(c: Collection, out: Output, groups: dict) -> Section:
    """Table 1: test accuracy and mean class accuracy side by side, with the flags."""
    acc = T.grid(c.runs, T.final_test_acc, methods=c.methods)
    mca = T.grid(c.runs, T.mean_class_acc, methods=c.methods)
    out.csv(
        "table1.csv",
        [*CELL_HEADER, "flags"],
        [[*r, groups.get((r[0], r[1]), "")] for r in cell_rows(acc)],
    )
    out.csv("mean_class_acc.csv", CELL_HEADER, cell_rows(mca))
    header = ["method"]
    for column in acc.columns:
        header += [f"{column} test acc %", f"{column} mean class acc %"]
    rows = []
    for m in acc.methods:
        row = [m]
        for column in acc.columns:
            row += [
                g.cells[m, column].text() if (m, column) in g.cells else "–" for g in (acc, mca)
            ]
        rows.append(row + ([collapse.method_text(groups, m, acc.columns)] if groups else []))
    text = (
        "Test accuracy of the final EMA model, as in the paper's Table 1, and its mean class "
        "accuracy (the mean of the per-class accuracies, the confusion matrix's row-normalised "
        "diagonal). " + HOW
    )
    table = Table(header + (["flags"] if groups else []), rows)
    return Section(MAIN).add(
        text, table, "CSV: `table1.csv` (with each cell's flags), `mean_class_acc.csv`."
    )


def accuracy_sections(
    c: Collection, out: Output, best_on_test: bool, groups: dict
) -> list[Section]:
    runs, methods = c.runs, c.methods
    sections = [main_section(c, out, groups)]
    val = T.grid(runs, T.best_on_val, methods=methods)
    if val.cells:
        text = (
            "Test accuracy of the evaluation with the best validation accuracy (runs with a "
            "validation split, `data.val_fraction` > 0). " + HOW
        )
        sections.append(grid_section("Best on validation", text, val, out, "table1_best_val.csv"))
    if not val.cells and not best_on_test:
        sections[0].add(
            "No run has a validation split, so no model selection is shown; "
            "`lionfer report --best-on-test` adds the best evaluation on the test set, labelled "
            "as optimistic, and `data.val_fraction=0.1` gives future runs a validation split."
        )
    if best_on_test:
        text = (
            "**Optimistic: selected on the test set.** The highest test accuracy of any "
            "evaluation during training, as the released codes of Ada-CM and LION report it. " + HOW
        )
        grid = T.grid(runs, T.best_on_test, methods=methods)
        sections.append(
            grid_section("Best on test (optimistic)", text, grid, out, "table1_best_test.csv")
        )
    return sections


def mask_sections(c: Collection, out: Output) -> list[Section]:
    grid = T.grid(c.runs, T.nested("mask_rate"), methods=c.methods)
    if not grid.cells:
        return []
    text = (
        "Of the unlabeled images, the share whose pseudo-label passed the method's mask (its "
        "confidence threshold; LION: its reliable images) over the evaluation interval before the "
        "final evaluation, for methods that mask pseudo-labels. " + HOW
    )
    return [grid_section(MASK, text, grid, out, "mask_rate.csv")]


def flags_section(c: Collection, flags: dict, out: Path) -> Section:
    judged = collapse.judged(c.runs)
    section = Section("Flags").add(
        collapse.EXPLANATION,
        f"Rule (a) judged {judged[collapse.COLLAPSED]} of {len(c.runs)} runs, rule (b) "
        f"{judged[collapse.CHANCE]}, rule (c) {judged[collapse.WORSE]}, rule (d) "
        f"{judged[collapse.MEMORISED]}, rule (e) {judged[collapse.LOST]}.",
    )
    rows = [
        [
            run.method,
            run.column,
            str(run.seed),
            Markup("; ".join(f"**{f.rule}**: {plain(f.evidence)}" for f in found)),
            found[0].term,
            shown_path(run.path, out),
        ]
        for run in ordered_runs(c)
        if (found := flags.get(run.path))
    ]
    if not rows:
        return section.add("No run flagged.")
    header = ["method", "column", "seed", "flags", "schedule term", "folder"]
    return section.add(Table(header, rows), "CSV: the `flags` column of `runs.csv`, `table1.csv`.")


def ablation_section(c: Collection, out: Output) -> list[Section]:
    columns, rows = T.ablation(c.runs)
    if len({r.switches for r in rows}) < 2:
        return []
    mark = {True: "✓", False: ""}
    body, tidy = [], []
    for row in rows:
        cells = [row.cells[col].text() if col in row.cells else "–" for col in columns]
        body.append([*(mark[s] for s in row.switches), row.note, *cells])
        for col, cell in row.cells.items():
            tidy.append([*row.switches, row.note, col, cell.n, cell.mean, cell.std])
    out.csv("ablation.csv", [*T.SWITCH_NAMES, "other", "column", "seeds", "mean", "std"], tidy)
    text = (
        "LION's components as in the paper's Table 2: label disambiguation (LD, "
        "`algorithm.use_disambiguation`), L_NL (`use_negative_learning`) and L_NC "
        "(`use_negative_consistency`), read from each run's config.toml. Runs that differ in other "
        "hyperparameters are rows of their own (column 'other'). Final test accuracy. " + HOW
    )
    table = Table([*T.SWITCH_NAMES, "other", *columns], body)
    return [Section("Ablation of LION's components").add(text, table, "CSV: `ablation.csv`.")]


def run_row(run: Run, flags: list, out: Path) -> dict:
    """A run's figures for runs.csv, its folder as seen from the report folder `out`."""
    summary, best = run.summary, run.summary.get("best") or {}
    row = {"folder": shown_path(run.path, out), "method": run.method, "column": run.column}
    row.update({k: summary.get(k) for k in ("seed", "steps", "test_acc", "mean_class_acc")})
    row.update({k: summary.get(k) for k in ("macro_f1", "mask_rate", "pseudo_label_acc")})
    row.update({f"best_{k}": best.get(k) for k in ("acc", "step", "selected_on", "test_acc")})
    row["flags"] = collapse.run_text(flags)
    row.update(T.flat_numbers(summary.get("relabel"), "relabel"))
    return row


def runs_section(c: Collection, out: Output, flags: dict) -> Section:
    ordered = ordered_runs(c)
    rows = [run_row(run, flags.get(run.path, []), out.folder) for run in ordered]
    columns = list(dict.fromkeys(key for row in rows for key in row))  # relabel ones where present
    out.csv("runs.csv", columns, [[row.get(key) for key in columns] for row in rows])
    keys = ("folder", "method", "column", "seed", "steps")
    shown = [[*(r[k] for k in keys), f"{100 * r['test_acc']:.2f}"] for r in rows]
    header = [*keys, "test acc %"]
    if any(flags.values()):  # a marked row per flagged run
        header.append("flags")
        for row, run in zip(shown, ordered, strict=True):
            row.append(Markup(", ".join(f"**{f.rule}**" for f in flags.get(run.path, []))))
    table = Table(header, shown)
    return Section("Runs").add(table, "CSV (every figure of every run): `runs.csv`.")
