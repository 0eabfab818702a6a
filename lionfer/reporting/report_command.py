"""`lionfer report`: finished runs and sweeps in, one folder out: report.md (figures in figures/),
a self-contained report.html, and a CSV file per table. Reading is lionfer.reporting.runs,
numbers are lionfer.reporting.tables, flags are lionfer.reporting.collapse, figures are
lionfer.reporting.plots; this module puts them in order and writes them."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lionfer.atomic import naming
from lionfer.errors import ConfigError
from lionfer.reporting import collapse, plots
from lionfer.reporting import tables as T
from lionfer.reporting.document import (
    Markup,
    Output,
    Section,
    Table,
    code,
    plain,
    to_html,
    to_markdown,
    write_file,
)
from lionfer.reporting.label_sections import (
    RunLabels,
    gallery_sections,
    relabel_pair_sections,
    relabel_sections,
    run_labels,
    run_labels_sections,
)
from lionfer.reporting.runs import Collection, Run, load_runs, ordered_runs, shown_path
from lionfer.training.runfolder import check_out_folder
from lionfer.words import counted

MARK = "report.json"  # lists the files a report wrote, so that the next one may replace them
SENSITIVITY = (("clear_threshold", "τ"), ("reliable_threshold", "γ"))
MAIN, MASK = "Test accuracy (final model)", "Mask rate (%)"  # section titles (relabeling: RELABEL)
HOW = (
    "Cells are mean ± sample standard deviation (ddof = 1) over seeds, in %, with n the number "
    "of seeds; – where a method has no run."
)


@dataclass
class ReportResult:
    out: Path
    runs: int
    skipped: int
    files: list[str]
    warnings: list[str] = field(default_factory=list)  # one line per flagged method
    sections: list[Section] = field(default_factory=list)  # the report as written
    labels: list[RunLabels] = field(default_factory=list)  # each run's account of its labels
    unfinished: list[tuple[Path, str]] = field(default_factory=list)  # not in the tables

    def __str__(self) -> str:
        left = [f"{self.skipped} skipped"] if self.skipped else []
        left += [f"{len(self.unfinished)} not finished"] if self.unfinished else []
        left_out = f", {' and '.join(left)} (see report.md)" if left else ""
        tables = sum(f.endswith(".csv") for f in self.files)
        done = (
            f"report of {self.runs} run{'s' * (self.runs != 1)}{left_out}: "
            f"{self.out / 'report.md'}, {self.out / 'report.html'} and {tables} CSV "
            f"file{'s' * (tables != 1)}"
        )
        return "\n".join([done, *self.warnings])


def earlier_files(out: Path) -> list[str]:
    """The files an earlier report in `out` wrote (its report.json), which a new one replaces;
    [] for a new or empty folder. Any other content is refused, before the report is made, and
    so is an `out` that cannot be a folder (below a file) or cannot be written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the report")
    check_out_folder(out)
    if not out.is_dir() or not any(out.iterdir()):
        return []
    if not (out / MARK).is_file():
        raise ConfigError(
            f"--out {out} holds files that are not a lionfer report; choose an empty or new folder"
        )
    try:
        files = json.loads((out / MARK).read_text(encoding="utf-8"))["files"]
        if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
            raise TypeError("its files are not a list of names")
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"{out / MARK} is damaged ({error}), so the files of the earlier report are not "
            "known; choose an empty or new folder"
        ) from error
    return files


# Every name a report may write besides report.json: only these are ever replaced or deleted,
# whatever an edited report.json lists. A figure's name ends in a slug (T.slug), maybe with -2.
REPORT_FILES = frozenset(
    {"report.md", "report.html", "table1.csv", "mean_class_acc.csv", "table1_best_val.csv"}
    | {"table1_best_test.csv", "mask_rate.csv", "ablation.csv", "runs.csv", "gallery.csv"}
    | {f"sensitivity_{key}.csv" for key, _ in SENSITIVITY}
    | {"learning_curves.csv", "label_accuracy.csv", "per_class_acc.csv", "confusion.csv"}
    | {"relabel.csv", "relabel_pairs.csv"}
)
FIGURE_FILE = re.compile(
    r"figures/(learning_curves|label_accuracy|(sensitivity|per_class|confusion|gallery)_"
    r"[a-z0-9._-]+)\.png"
)


def report_file(name: str) -> bool:
    """Whether a report may write a file of this name (REPORT_FILES, FIGURE_FILE)."""
    return name in REPORT_FILES or FIGURE_FILE.fullmatch(name) is not None


def check_links(out: Path, names: list[str]) -> None:
    """Refuse, before anything is written, a link where this report writes: a folder of its
    files (figures/) that is a link, or a file's name that links out of `out`. A link at a
    file's name that stays inside `out` is replaced by the file (document.write_file)."""
    inside = out.resolve()
    for name in names:
        path = out / name
        folder = path.parent
        if folder != out and folder.is_symlink():
            raise ConfigError(
                f"--out {out} holds {folder.relative_to(out)}, a link to {folder.resolve()}: the "
                "report writes its figures into a folder of its own, never through a link; "
                "remove the link or choose an empty or new folder"
            )
        if path.is_symlink() and not path.resolve().is_relative_to(inside):
            raise ConfigError(
                f"--out {out} holds {name}, a link to {path.resolve()}, outside {out}, which the "
                "report will neither write through nor replace (it writes nothing outside its "
                "folder); remove the link or choose an empty or new folder"
            )


def save(output: Output, earlier: list[str], record: dict) -> None:
    """Replace the earlier report's files by this one's; refused, before anything is written,
    where a file this report writes is there and is not the earlier report's, or where it would
    write through a link (check_links). Each file is written whole, then its earlier files
    that this report does not write again are deleted, then report.json: a write that fails
    leaves the earlier report in place but for the files written before it, and report.json
    listing both reports' files, so that the same command can run again."""
    out = output.folder
    theirs = [n for n in output.files if (out / n).exists() and n not in earlier]
    if theirs:
        raise ConfigError(
            f"--out {out} holds {', '.join(theirs)}, which the earlier report there did not "
            "write; move it away or choose an empty or new folder"
        )
    unknown = [name for name in output.files if not report_file(name)]
    if unknown:  # a new table or figure: name it in REPORT_FILES or FIGURE_FILE
        raise RuntimeError(f"report files of no known name: {', '.join(unknown)}")
    check_links(out, [*output.files, MARK])
    out.mkdir(parents=True, exist_ok=True)
    both = list(dict.fromkeys([*earlier, *output.files]))
    write_file(out / MARK, record_text({**record, "files": both}))
    output.save()
    for name in earlier:
        path = out / name
        stale = name not in output.files and report_file(name)
        linked = path.parent != out and path.parent.is_symlink()  # figures/ made a link since
        if stale and not linked and (path.is_symlink() or path.is_file()):
            with naming(path):
                path.unlink()  # a link itself, not what it links to
    write_file(out / MARK, record_text(record))


def record_text(record: dict) -> bytes:
    return (json.dumps(record, indent=1) + "\n").encode()


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


def overview(c: Collection, paths, out: Path) -> Section:
    columns = T.order_columns(c.runs)
    read = ", ".join(code(shown_path(Path(p), out)) for p in paths)
    section = Section("Overview").add(
        f"{counted(len(c.runs), 'finished run')} of {counted(len(c.methods), 'method')} on "
        f"{', '.join(plain(col) for col in columns)}, read from {read} (folders in this report are "
        f"relative to its folder). Made by lionfer on {time.strftime('%Y-%m-%d %H:%M')}."
    )
    if c.skipped:
        section.add(f"{counted(len(c.skipped), 'run folder', 'was')} skipped:")
        rows = [[shown_path(p, out), why] for p, why in c.skipped]
        section.add(Table(["folder", "why"], rows))
    if c.unfinished:
        section.add(
            f"{counted(len(c.unfinished), 'run', 'has')} not finished and "
            f"{'is' if len(c.unfinished) == 1 else 'are'} not in the tables:"
        )
        rows = [[shown_path(p, out), how] for p, how in c.unfinished]
        section.add(Table(["folder", "how it stands"], rows))
    for note in c.notes:
        section.add(f"Note: {plain(note)}")
    return section


def make_report(paths, out, best_on_test: bool = False, gallery: int = 8) -> ReportResult:
    """Read the runs under `paths` and write the report into `out`."""
    if isinstance(gallery, bool) or not isinstance(gallery, int) or gallery < 0:
        raise ConfigError(
            f"--gallery is how many relabeled faces to show per method: 0 (none) or more, got "
            f"{gallery!r}"
        )
    out = Path(out)
    earlier = earlier_files(out)
    collection = load_runs(paths)
    output = Output(out)
    flags = {run.path: collapse.run_flags(run) for run in collection.runs}
    groups = collapse.group_flags(collection.runs, flags)
    labels = run_labels(collection)
    sections = [
        overview(collection, paths, out),
        *accuracy_sections(collection, output, best_on_test, groups),
        flags_section(collection, flags, out),
        *ablation_section(collection, output),
        *sensitivity_sections(collection, output),
        *curve_section(collection, output, LEARNING),
        *per_class_sections(collection, output),
        *confusion_sections(collection, output),
        *mask_sections(collection, output),
        *relabel_sections(collection, output),
        *relabel_pair_sections(collection, output),
        *run_labels_sections(labels, out),
        *curve_section(collection, output, LABELS),
        *gallery_sections(collection, output, gallery),
        runs_section(collection, output, flags),
    ]
    title = "lionfer report"
    output.write_text("report.md", to_markdown(title, sections))
    output.write_text("report.html", to_html(title, sections))
    record = {
        "files": output.files,
        "runs": [str(r.path) for r in collection.runs],
        "flags": collapse.records(ordered_runs(collection), flags),
        "skipped": [[str(p), why] for p, why in collection.skipped],
        "unfinished": [[str(p), how] for p, how in collection.unfinished],
    }
    save(output, earlier, record)
    warnings = collapse.warnings(collection.methods, groups, out / "report.md")
    counts = (len(collection.runs), len(collection.skipped), output.files)
    return ReportResult(out, *counts, warnings, sections, labels, collection.unfinished)
