"""The report's sections on labels: the relabeling figures of the methods that change labels
(mean ± std over seeds), the classes their wrong relabels went between, each run's own account
of its labels (the lines `lionfer train` prints at its end, with its warnings), and the relabeled
faces (the paper's Fig. 5)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lionfer.reporting import plots
from lionfer.reporting import tables as T
from lionfer.reporting.document import Output, Section, Table, plain
from lionfer.reporting.gallery import GALLERY_COLUMNS, class_name, gallery_items, relabeled_rows
from lionfer.reporting.run_summary import label_quality_lines
from lionfer.reporting.runs import Collection, ordered_runs, shown_path

RELABEL = "Relabeling"  # the title of the relabeling figures' section


@dataclass(frozen=True)
class RunLabels:
    """A run's account of its labels, as `lionfer train` printed it when the run finished."""

    method: str
    column: str
    seed: int
    relabels: Path  # the run's relabels.csv
    lines: tuple[str, ...]  # label-quality lines, then "warning: ..." lines


def run_labels(c: Collection) -> list[RunLabels]:
    """The account of every run that changes labels or left a warning, in the report's order."""
    accounts = []
    for run in ordered_runs(c):
        warnings = [f"warning: {w}" for w in run.summary.get("warnings", [])]
        lines = (*readable_lines(run.summary), *warnings)
        if lines:
            accounts.append(
                RunLabels(run.method, run.column, run.seed, run.path / "relabels.csv", lines)
            )
    return accounts


def readable_lines(summary: dict) -> list[str]:
    """label_quality_lines, or one line saying why they cannot be read from a summary.json
    edited by hand or written by another lionfer (a figure missing or of another shape)."""
    try:
        return label_quality_lines(summary)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        reason = f"{type(error).__name__}: {error}"
        return [f"the account of its labels cannot be read from its summary.json ({reason})"]


def run_labels_sections(accounts: list[RunLabels], out: Path) -> list[Section]:
    if not accounts:
        return []
    text = (
        "Each run's account of its labels, as `lionfer train` printed it when the run finished: "
        "the labels it changed (precision, recall, and the labeled set's accuracy as given and "
        "now, where true labels are known), the wrong given labels it fixed by error type, the "
        "correct ones it broke and the images it demoted to unlabeled, LION's ambiguous images, "
        "when its disambiguation began and its prototypes, and the run's warnings."
    )
    rows = [
        [a.method, a.column, str(a.seed), " · ".join(a.lines), shown_path(a.relabels, out)]
        for a in accounts
    ]
    table = Table(["method", "column", "seed", "labels", "relabels"], rows)
    return [Section("Labels of each run").add(text, table)]


def relabel_sections(c: Collection, out: Output) -> list[Section]:
    header, rows = T.relabel_table(c.runs, c.methods)
    if not rows:
        return []
    shown = [[*row[:3], *(cell.text() if cell else "–" for cell in row[3:])] for row in rows]
    tidy = []
    for row in rows:
        for (_title, figure, _, _), cell in zip(T.relabel_figures(c.runs), row[3:], strict=True):
            if cell is not None:
                tidy.append([row[0], row[1], figure, cell.n, cell.mean, cell.std])
    out.csv("relabel.csv", ["method", "column", "figure", "seeds", "mean", "std"], tidy)
    text = (
        "Methods that change labels. precision: of the changed labels, the share now right; "
        "recall: of the wrong given labels, the share now right; labels correct: the labeled "
        "set's accuracy against the true labels before (given) and after (current) training. "
        "Figures that need true labels (synthetic data, injected noise) show – without them. "
        "Where runs know how each given label came about: slips / ambiguity fixed, of the wrong "
        "given labels of that type (a slip is a mistake the face does not explain, an ambiguous "
        "label one the face supports too), the share now right; broken, correct given labels "
        "changed; demoted, labeled images training set aside as unlabeled, and the share of them "
        "whose given label was wrong. Mean ± std over seeds, with n."
    )
    return [Section(RELABEL).add(text, Table(header, shown), "CSV: `relabel.csv`.")]


PAIR_COLUMNS = ("method", "column", "given", "new", "true", "relabels", "runs")
PAIR_CELLS = ("given_label", "current_label", "true_label")  # relabels.csv's, for a triple
PAIRS_SHOWN = 3  # the most frequent wrong (true → new) pairs a row of the section names


def relabel_pairs(c: Collection) -> list[list]:
    """Every (given, new, true) class triple of the relabels of each method and column, pooled
    over its runs: [method, column, given, new, true ("" where unknown), relabels, runs with
    one], by method and column in the report's order, then most frequent first."""
    counts: dict[tuple[str, str], Counter] = {}
    runs: dict[tuple[str, str], Counter] = {}
    for run in ordered_runs(c):
        names = run.class_names
        triples = Counter(
            tuple(class_name(r.get(cell), names) for cell in PAIR_CELLS)
            for r in relabeled_rows(run)
        )
        key = (run.method, run.column)
        counts.setdefault(key, Counter()).update(triples)
        runs.setdefault(key, Counter()).update(triples.keys())
    rows = []
    for (method, column), triples in counts.items():
        seen_in = runs[method, column]
        for triple, n in sorted(triples.items(), key=lambda t: (-t[1], t[0])):
            rows.append([method, column, *triple, n, seen_in[triple]])
    return rows


def wrong_relabel_line(pairs: list[list]) -> tuple[int, int, int, str] | None:
    """(relabels with a known truth, wrong ones, correct labels broken, the most frequent wrong
    true → new pairs) of one method and column's relabel_pairs rows; None without a known truth."""
    known = [p for p in pairs if p[4]]
    if not known:
        return None
    wrong = Counter()
    for _, _, _, new, true, n, _ in known:
        if new != true:
            wrong[true, new] += n
    broken = sum(p[5] for p in known if p[2] == p[4])
    top = sorted(wrong.items(), key=lambda t: (-t[1], t[0]))[:PAIRS_SHOWN]
    named = ", ".join(f"{true} → {new} {n}" for (true, new), n in top)
    return sum(p[5] for p in known), sum(wrong.values()), broken, named


def relabel_pair_sections(c: Collection, out: Output) -> list[Section]:
    pairs = relabel_pairs(c)
    if not pairs:
        return []
    out.csv("relabel_pairs.csv", list(PAIR_COLUMNS), pairs)
    rows = []
    for method in c.methods:
        for column in dict.fromkeys(p[1] for p in pairs if p[0] == method):
            line = wrong_relabel_line([p for p in pairs if p[:2] == [method, column]])
            if line is not None:
                known, wrong, broken, named = line
                rows.append([method, column, str(known), str(wrong), str(broken), named or "–"])
    text = (
        "Where the relabels went, pooled over each method's runs (where true labels are known): "
        "the relabels, the wrong ones (the new label is not the true one), the correct given "
        f"labels among them that were broken, and the {PAIRS_SHOWN} most frequent wrong ones as "
        "true class → new label, with how many. Every (given, new, true) triple, with the runs "
        "it came up in, is in the CSV."
    )
    header = ["method", "column", "relabels", "wrong", "broken", "most frequent wrong"]
    table = Table(header, rows)
    return [Section("Wrong relabels by class").add(text, table, "CSV: `relabel_pairs.csv`.")]


def gallery_sections(c: Collection, out: Output, limit: int) -> list[Section]:
    if limit <= 0:
        return []
    section = Section("Relabeled faces").add(
        "As in the paper's Fig. 5: each face with its given label (blue), the label training "
        "changed it to (red), the true label where known, and the candidate weights at the "
        f"change (the class that crossed τ in red). The first {limit} changes (by step) of one "
        "run per method: the first column's lowest seed."
    )
    items, classes = [], {}
    for method in c.methods:
        runs = [r for r in c.runs if r.method == method and relabeled_rows(r)]
        if not runs:
            continue
        run = min(runs, key=lambda r: (T.column_key(r.column), r.seed))
        faces, note = gallery_items(run, limit)
        if note:
            section.add(plain(note))
        png = plots.gallery_figure(faces, run.class_names, method)
        caption = f"{method}: relabeled faces of {run.column}, seed {run.seed}"
        section.add(out.image(f"gallery_{T.slug(method)}.png", png, caption))
        items += [{**item, "column": run.column} for item in faces]
        classes.update(dict.fromkeys(run.class_names))
    if not items:
        return []
    # a column per class, as relabels.csv has: class names may hold spaces, "=" or ","
    weights = [f"w_{name.lower()}" for name in classes]
    rows = [
        [*(item[k] for k in GALLERY_COLUMNS), *(item["weights"].get(n) for n in classes)]
        for item in items
    ]
    out.csv("gallery.csv", [*GALLERY_COLUMNS, *weights], rows)
    cells = [
        [*(str(item[k]) for k in GALLERY_COLUMNS), weights_text(item["weights"])] for item in items
    ]
    table = Table([*GALLERY_COLUMNS, "weights"], cells)
    return [section.add(table, "CSV: `gallery.csv`.")]


def weights_text(weights: dict[str, float]) -> str:
    """A face's candidate weights for the report's table: 'Happiness: 0.81 · Sadness: 0.19'."""
    return " · ".join(f"{name}: {value:.2f}" for name, value in weights.items())
