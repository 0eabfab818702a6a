"""The numeric core of reports: pure functions from runs (lionfer.reporting.runs.Run) to tables
of mean ± sample std (ddof=1) over seeds, with the number of seeds. Accuracies are given in percent.

Rows are methods, columns are dataset@labels. Nothing here reads files or draws.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from lionfer import run_names
from lionfer.run_names import split_column

SWITCHES = ("use_disambiguation", "use_negative_learning", "use_negative_consistency")
SWITCH_NAMES = ("LD", "L_NL", "L_NC")


@dataclass(frozen=True)
class Cell:
    """Mean and sample standard deviation (None for a single value) of n values."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Cell:
        values = np.asarray(list(values), dtype=np.float64)
        if values.size == 0:
            raise ValueError("a table cell needs at least one value")
        std = float(np.std(values, ddof=1)) if values.size > 1 else None
        return cls(float(np.mean(values)), std, int(values.size))

    def text(self, digits: int = 2) -> str:
        """'67.83 ± 0.64 (n=3)'; '67.83 (n=1)' for one seed."""
        spread = "" if self.std is None else f" ± {self.std:.{digits}f}"
        return f"{self.mean:.{digits}f}{spread} (n={self.n})"


@dataclass
class Grid:
    """A methods × columns table of cells (absent where a method has no run in a column)."""

    methods: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]

    def rows(self) -> list[list[str]]:
        return [
            [m, *(self.cells[m, c].text() if (m, c) in self.cells else "–" for c in self.columns)]
            for m in self.methods
        ]


def column_key(column: str) -> tuple:
    """dataset@labels sorts by dataset, then by budget, 'all' last."""
    dataset, labels = split_column(column)
    return (dataset, 0, int(labels), "") if labels.isdigit() else (dataset, 1, 0, labels)


def order_columns(runs) -> list[str]:
    return sorted({r.column for r in runs}, key=column_key)


def order_methods(runs, preferred: list[str] | None = None) -> list[str]:
    present = list(dict.fromkeys(r.method for r in runs))
    ranked = [m for m in (preferred or []) if m in present]
    return ranked + [m for m in present if m not in ranked]


def grid(runs, value: Callable, scale: float = 100.0, methods: list[str] | None = None) -> Grid:
    """value(run) → a number or None (the run then does not count) for every run, grouped by
    (method, column); a cell holds the mean ± std of value × scale over its runs."""
    groups: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        v = value(run)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            groups.setdefault((run.method, run.column), []).append(scale * float(v))
    counted = [r for r in runs if (r.method, r.column) in groups]
    return Grid(
        order_methods(counted, methods),
        order_columns(counted),
        {key: Cell.of(values) for key, values in groups.items()},
    )


# ---- what a cell measures ----


def final_test_acc(run) -> float | None:
    return run.summary.get("test_acc")


def best_on_val(run) -> float | None:
    """Test accuracy of the evaluation chosen on the validation split (None without one)."""
    best = run.summary.get("best") or {}
    return best.get("test_acc") if best.get("selected_on") == "val_acc" else None


def best_on_test(run) -> float | None:
    """The highest test accuracy of any evaluation: optimistic, selected on the test set."""
    accs = [e["test_acc"] for e in run.evals if isinstance(e.get("test_acc"), int | float)]
    if accs:
        return max(accs)
    best = run.summary.get("best") or {}
    return best.get("acc") if best.get("selected_on") == "test_acc" else None


def mean_class_acc(run) -> float | None:
    return run.summary.get("mean_class_acc")


def dig(node, *keys: str):
    """node[k1][k2]..., None where a level is absent or not a dict."""
    for key in keys:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return node


def nested(*keys: str) -> Callable:
    """value(run) = run.summary[k1][k2]..., None where absent."""
    return lambda run: dig(run.summary, *keys)


# ---- LION's ablation (Table 2) and sensitivity (Fig. 4) ----


def _mode(values: list) -> object:
    return Counter(repr(v) for v in values).most_common(1)[0][0]


def column_modes(runs) -> dict[str, dict[str, str]]:
    """{column: {setting: repr of its most common value}} of the [data], [model] and [train]
    settings (Run.settings) that every run of the column records (they may rightly differ from
    one dataset to another)."""
    by_column: dict[str, list] = {}
    for run in runs:
        by_column.setdefault(run.column, []).append(run)
    return {
        column: {
            k: _mode([r.settings[k] for r in group])
            for k in sorted(set.intersection(*(set(r.settings) for r in group)))
        }
        for column, group in by_column.items()
    }


def setting_differences(run, modes: dict[str, dict[str, str]]) -> str:
    """The run's settings that differ from the most common ones of its column, `train.lr=0.01`."""
    common = modes.get(run.column, {})
    shown = {k: '""' if v == "" else v for k, v in run.settings.items()}
    return ", ".join(f"{k}={shown[k]}" for k in common if repr(run.settings[k]) != common[k])


def held_fixed(runs, vary: Iterable[str]) -> list:
    """The runs whose algorithm hyperparameters, apart from `vary`, all equal their most common
    value among the runs (so one sweep's variants can be read apart from another's), and whose
    other settings are the most common ones of their column."""
    vary = set(vary)
    keys = sorted({k for r in runs for k in r.params} - vary)
    modes = {k: _mode([r.params.get(k) for r in runs]) for k in keys}
    settings = column_modes(runs)
    return [
        r
        for r in runs
        if all(repr(r.params.get(k)) == modes[k] for k in keys)
        and not setting_differences(r, settings)
    ]


def lion_runs(runs) -> list:
    return [r for r in runs if r.algorithm == "lion"]


@dataclass
class AblationRow:
    switches: tuple[bool, bool, bool]  # LD, L_NL, L_NC
    note: str  # other hyperparameters where they differ from the most common ones
    cells: dict[str, Cell]  # column → test accuracy in %


def _differences(params: dict, modes: dict) -> str:
    return ", ".join(
        f"{k}={params.get(k)}" for k in sorted(modes) if repr(params.get(k)) != modes[k]
    )


def ablation(runs) -> tuple[list[str], list[AblationRow]]:
    """LION runs grouped by the three switches (missing = on, the default); runs that differ in
    other hyperparameters, or in other settings from the most common ones of their column, form
    rows of their own, noted. Rows in the paper's order."""
    runs = lion_runs(runs)
    if not runs:
        return [], []
    others = sorted({k for r in runs for k in r.params} - set(SWITCHES))
    modes = {k: _mode([r.params.get(k) for r in runs]) for k in others}
    settings = column_modes(runs)
    groups: dict[tuple, dict[str, list[float]]] = {}
    for run in runs:
        switches = tuple(bool(run.params.get(s, True)) for s in SWITCHES)
        note = [_differences(run.params, modes), setting_differences(run, settings)]
        key = (switches, ", ".join(n for n in note if n))
        groups.setdefault(key, {}).setdefault(run.column, []).append(100 * run.summary["test_acc"])
    rows = [
        AblationRow(sw, note, {c: Cell.of(v) for c, v in by_column.items()})
        for (sw, note), by_column in groups.items()
    ]
    rows.sort(key=lambda r: (sum(r.switches), [not s for s in r.switches], r.note))
    return order_columns(runs), rows


def recipe_of(run) -> str:
    """The run's algorithm and LION recipe, `lion:paper` (the algorithm alone where the run
    records no recipe)."""
    recipe = run.params.get("recipe", run.summary.get("recipe"))
    return f"{run.algorithm}:{recipe}" if recipe else run.algorithm


def by_recipe(runs) -> dict[str, list]:
    """The runs grouped by recipe_of, in the order first met."""
    groups: dict[str, list] = {}
    for run in runs:
        groups.setdefault(recipe_of(run), []).append(run)
    return groups


def _values(runs, key: str) -> set[str]:
    return {repr(run.params.get(key)) for run in runs}


def moved_with(runs, key: str) -> list[str]:
    """The other hyperparameters a sweep moves with `key`, within one recipe: over the runs of
    each recipe (by_recipe) where `key` takes at least two values, those that take one value
    wherever `key` takes one, and another wherever `key` takes another (fig4-rafdb sets τ in
    Eq. 1 and Eq. 6 together: clear_threshold, resolve_threshold and relabel_threshold). A
    setting that keeps one value over several of `key`'s (LD off at τ 0.8 beside LD on at 0.6
    and 0.7) is no part of the sweep of `key`, and LION's switches (SWITCHES) and the recipe
    never are: a switch turns a component off, which is an ablation, not a point of a curve,
    and a recipe sets a dozen hyperparameters at once, so runs of two recipes (or algorithms)
    are no points of one sweep, whatever their values of `key`."""
    groups = [g for g in by_recipe(runs).values() if len(_values(g, key)) > 1]
    others = sorted({k for g in groups for r in g for k in r.params} - {key, "recipe", *SWITCHES})
    return [other for other in others if all(_moves(g, key, other) for g in groups)]


def _moves(runs, key: str, other: str) -> bool:
    """Whether `other` takes one value at each value of `key` over the runs, a different one at
    each (one to one)."""
    by_value: dict[str, set[str]] = {}
    for run in runs:
        by_value.setdefault(repr(run.params.get(key)), set()).add(repr(run.params.get(other)))
    single = all(len(values) == 1 for values in by_value.values())
    return single and len(set().union(*by_value.values())) == len(by_value)


Points = list[tuple[float, Cell]]


def sensitivity_curves(runs, key: str) -> dict[str, tuple[str, Points]]:
    """Test accuracy (%) against one LION hyperparameter (e.g. clear_threshold), per column:
    (recipe, [(value, cell)] sorted by value). A curve keeps to one recipe (recipe_of): over its
    runs whose other hyperparameters are held fixed (held_fixed, among that recipe's runs) but
    for those moved with `key` (moved_with). Where runs of several recipes hold `key` in a
    column, the curve is the recipe's with the most values of it there (then the most runs, then
    the first recipe by name): one recipe's default beside another's is no curve."""
    candidates: dict[str, dict[str, Points]] = {}
    for recipe, group in sorted(by_recipe(lion_runs(runs)).items()):
        kept = held_fixed(group, [key, *moved_with(group, key)])
        by_column: dict[str, dict[float, list[float]]] = {}
        for run in kept:
            if run.params.get(key) is not None:
                by_value = by_column.setdefault(run.column, {})
                by_value.setdefault(float(run.params[key]), []).append(
                    100 * run.summary["test_acc"]
                )
        for column, by_value in by_column.items():
            points = sorted((x, Cell.of(v)) for x, v in by_value.items())
            candidates.setdefault(column, {})[recipe] = points
    return {
        column: max(
            by_recipe_points.items(),
            key=lambda item: (len(item[1]), sum(cell.n for _, cell in item[1])),
        )
        for column, by_recipe_points in sorted(
            candidates.items(), key=lambda item: column_key(item[0])
        )
    }


def sensitivity(runs, key: str) -> dict[str, Points]:
    """{column: [(value, cell)]} of sensitivity_curves, without the recipe."""
    return {column: points for column, (_, points) in sensitivity_curves(runs, key).items()}


# ---- curves, matrices, per-class figures ----


def curves(runs, value: Callable[[dict], float | None], scale: float = 100.0) -> dict:
    """{(column, method): [(step, cell)]} of value(eval event) over the seeds at each step."""
    groups: dict[tuple[str, str], dict[int, list[float]]] = {}
    for run in runs:
        for event in run.evals:
            v = value(event)
            if v is not None and "step" in event:
                by_step = groups.setdefault((run.column, run.method), {})
                by_step.setdefault(int(event["step"]), []).append(scale * float(v))
    return {key: sorted((s, Cell.of(v)) for s, v in steps.items()) for key, steps in groups.items()}


def eval_value(*keys: str) -> Callable[[dict], float | None]:
    def value(event: dict):
        for key in keys:
            if not isinstance(event, dict) or event.get(key) is None:
                return None
            event = event[key]
        return event if isinstance(event, int | float) else None

    return value


def row_normalise(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (a row without samples stays zero)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


def mean_confusion(runs) -> dict[tuple[str, str], tuple[list[str], np.ndarray, int]]:
    """{(method, column): (class names, row-normalised mean confusion matrix, seeds)}."""
    groups: dict[tuple[str, str], list] = {}
    for run in runs:
        cm = run.summary.get("confusion_matrix")
        if cm is not None:
            groups.setdefault((run.method, run.column), []).append(run)
    out = {}
    for key, members in groups.items():
        matrices = [np.asarray(r.summary["confusion_matrix"], float) for r in members]
        same = [m for m in matrices if m.shape == matrices[0].shape]  # 7 and 8 classes never mix
        names = members[0].class_names or [str(i) for i in range(len(matrices[0]))]
        out[key] = (names, row_normalise(np.mean(same, axis=0)), len(same))
    return out


def per_class(runs) -> dict[tuple[str, str], dict[str, Cell]]:
    """{(method, column): {class name: cell of its accuracy in %}} over seeds."""
    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    for run in runs:
        for name, acc in (run.summary.get("per_class_acc") or {}).items():
            if acc is not None:
                groups.setdefault((run.method, run.column), {}).setdefault(name, []).append(
                    100 * acc
                )
    return {key: {n: Cell.of(v) for n, v in by_class.items()} for key, by_class in groups.items()}


# ---- relabeling ----


def share(numerator: tuple[str, ...], denominator: tuple[str, ...]) -> Callable:
    """value(run) = summary[numerator] / summary[denominator]; None where either is absent or the
    denominator is 0."""

    def value(run):
        top, bottom = nested(*numerator)(run), nested(*denominator)(run)
        return None if top is None or not bottom else top / bottom

    return value


def _type_share(kind: str) -> Callable:
    keys = ("relabel", "by_error_type", kind)
    return share((*keys, "fixed"), (*keys, "wrong_given"))


def _figure(title: str, keys: tuple[str, ...], scale: float) -> tuple:
    return (title, ".".join(("relabel", *keys)), nested("relabel", *keys), scale)


# (title, figure name in relabel.csv, value(run), scale): counts as they are, fractions in %.
RELABEL_FIGURES = (
    _figure("relabeled", ("count",), 1.0),
    _figure("precision %", ("precision",), 100.0),
    _figure("recall %", ("recall",), 100.0),
    _figure("given labels correct %", ("given_accuracy",), 100.0),
    _figure("current labels correct %", ("current_accuracy",), 100.0),
    _figure("gain (points)", ("accuracy_gain",), 100.0),
)
# Figures by error type and of demoted images: columns only where some run has them.
LABEL_TYPE_FIGURES = (
    ("slips fixed %", "relabel.by_error_type.slip.fixed_share", _type_share("slip"), 100.0),
    (
        "ambiguity fixed %",
        "relabel.by_error_type.ambiguity.fixed_share",
        _type_share("ambiguity"),
        100.0,
    ),
    _figure("broken", ("broken",), 1.0),
    _figure("demoted", ("demoted", "count"), 1.0),
    (
        "demoted wrong %",
        "relabel.demoted.wrong_share",
        share(("relabel", "demoted", "wrong_given"), ("relabel", "demoted", "count")),
        100.0,
    ),
)


def flat_numbers(value, name: str) -> dict:
    """{dotted name: number} of every number in a nested dict (a run's relabel figures: counts by
    error type, broken, demoted), for runs.csv; {} for anything else."""
    if isinstance(value, bool) or value is None:
        return {}
    if isinstance(value, int | float):
        return {name: value}
    if not isinstance(value, dict):
        return {}
    return {
        k: v for key, item in value.items() for k, v in flat_numbers(item, f"{name}.{key}").items()
    }


def relabel_figures(runs) -> tuple:
    """The figures of relabel_table for these runs: RELABEL_FIGURES, then each of
    LABEL_TYPE_FIGURES that some run has."""
    runs = [r for r in runs if isinstance(r.summary.get("relabel"), dict)]
    extra = tuple(f for f in LABEL_TYPE_FIGURES if any(f[2](r) is not None for r in runs))
    return RELABEL_FIGURES + extra


def relabel_table(runs, methods: list[str] | None = None) -> tuple[list[str], list[list]]:
    """Rows (method, column, n, then a cell per relabel_figures entry) for the runs of methods
    that change labels (their summary holds "relabel")."""
    runs = [r for r in runs if isinstance(r.summary.get("relabel"), dict)]
    figures = relabel_figures(runs)
    header = ["method", "column", "seeds", *(title for title, _, _, _ in figures)]
    rows = []
    for method in order_methods(runs, methods):
        for column in order_columns(runs):
            group = [r for r in runs if r.method == method and r.column == column]
            if not group:
                continue
            row: list = [method, column, len(group)]
            for _, _, value, scale in figures:
                values = [value(r) for r in group]
                values = [scale * v for v in values if v is not None]
                row.append(Cell.of(values) if values else None)
            rows.append(row)
    return header, rows


def slug(text: str) -> str:
    """A file name for a figure's label (run_names.slug), `x` where it would be empty."""
    return run_names.slug(text) or "x"
