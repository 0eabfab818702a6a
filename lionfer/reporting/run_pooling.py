"""Which runs a report pools as one method's seeds: runs of one column trained on other numbers of
classes become columns of their own, runs named by their algorithm whose settings differ (the
algorithm's, [data], [model] and [train], their length) methods of their own, and a seed run
twice with settings that do not tell the runs apart is counted once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lionfer import run_names
from lionfer.reporting.runs import Run


def class_count(run: Run) -> int | None:
    """The number of classes the run was trained on, from its summary (else its config)."""
    if run.summary.get("class_names"):
        return len(run.summary["class_names"])
    if run.summary.get("confusion_matrix"):
        return len(run.summary["confusion_matrix"])
    return run.config.get("data", {}).get("num_classes")


def tell_class_counts_apart(runs: list[Run]) -> list[str]:
    """Runs of one column trained on different numbers of classes (7, or 8 with Contempt) are
    not pooled: their columns name the count, `affectnet (8 classes)@2000`. Returns a note for
    each column so split."""
    by_column: dict[str, list[Run]] = {}
    for run in runs:
        by_column.setdefault(run.column, []).append(run)
    notes = []
    for column, group in by_column.items():
        counts = {class_count(run) for run in group}
        if len(counts) < 2:
            continue
        dataset, labels = run_names.split_column(column)
        for run in group:
            count = class_count(run)
            named = f"{dataset} ({count} classes)" if count else f"{dataset} (classes unknown)"
            run.column = run_names.column(named, labels)
        shown = " and ".join(str(c) for c in sorted(counts, key=lambda c: c or 0))
        notes.append(f"runs on {column} have {shown} classes: each count is a column of its own")
    return notes


def _length(run: Run) -> dict:
    steps = run.summary.get("steps")
    return {} if steps is None else {"steps": steps}


def _params(run: Run) -> dict:
    return run.params


def _settings(run: Run) -> dict:
    """Run.settings but its length (compared as _length, from the summary)."""
    return {k: v for k, v in run.settings.items() if k != "train.steps"}


def _all_settings(run: Run) -> dict:
    return {**run.params, **_settings(run)}


def _shown(value) -> str:
    return '""' if value == "" else str(value)


def _key(name: str) -> str:
    """A setting's name in config.toml (_params' keys are [algorithm]'s, _length's the steps)."""
    if "." in name:
        return name
    return "train.steps" if name == "steps" else f"algorithm.{name}"


def tell_settings_apart(
    runs: list[Run], settings_of: Callable = _params, by_column: bool = False, every: bool = False
) -> list[str]:
    """Runs named by their algorithm alone (no sweep label) whose algorithm settings differ get
    the differing settings in their method name, `lion:evidence (relabel_margin=2.0)`, so that
    no table pools runs of different settings as one method's seeds. Only settings that every
    run of the method records are compared (a run from an older lionfer may lack a newer key).
    Returns a note for each method so split. `settings_of(run)`: the settings compared (_length:
    the run's steps, `fixmatch (steps=300)`; _settings: those of [data], [model] and [train],
    `fixmatch (model.pretrained="")`); by_column: compare runs of a method within each column
    only (a method may rightly run longer, or on larger images, on another dataset); every:
    compare the settings that any run records, a run without one showing it as None."""
    by_method: dict[tuple, list[Run]] = {}
    for run in runs:
        by_method.setdefault((run.method, run.column if by_column else ""), []).append(run)
    notes = []
    for (method, column), group in by_method.items():
        settings = [settings_of(run) for run in group]
        recorded = (set.union if every else set.intersection)(*(set(s) for s in settings))
        differ = sorted(k for k in recorded if len({repr(s.get(k)) for s in settings}) > 1)
        if not differ:
            continue
        for run, setting in zip(group, settings, strict=True):
            shown = ", ".join(f"{k}={_shown(setting.get(k))}" for k in differ)
            run.method = f"{method} ({shown})"
        keys = ", ".join(_key(k) for k in differ)
        where = f" on {column}" if column else ""
        notes.append(
            f"{method} runs{where} differ in {keys}: each setting is shown as a method of its own"
        )
    return notes


def _by_seed(runs: list[Run]) -> dict[tuple, list[Run]]:
    """The runs of each method, column and seed (with the embedded data's own seed)."""
    seen: dict[tuple, list[Run]] = {}
    for run in runs:
        data_seed = (run.config.get("data") or {}).get("data_seed")
        seen.setdefault((run.method, run.column, run.seed, data_seed), []).append(run)
    return seen


def drop_repeated_seeds(runs: list[Run]) -> tuple[list[Run], list[tuple[Path, str]]]:
    """A mean over seeds counts each seed once: of the runs of one method, column and seed (a
    run trained again, or copied, with settings the report does not tell apart) the first is
    kept. Returns the runs kept and (folder, why) for each run left out."""
    dropped = []
    for (method, column, seed, _), group in _by_seed(runs).items():
        kept = group[0].path
        dropped += [
            (
                run.path,
                f"repeats seed {seed} of {method} on {column} with settings the report does not "
                f"tell apart from {kept}, which is counted in its place (a mean over seeds counts "
                "each seed once); train another seed=N for one more seed",
            )
            for run in group[1:]
        ]
    left_out = {path for path, _ in dropped}
    return [run for run in runs if run.path not in left_out], dropped


def tell_runs_apart(
    runs: list[Run], points: dict[Path, dict]
) -> tuple[list[Run], list[str], list[tuple[Path, str]]]:
    """Runs that must not pool as one method's seeds told apart (other class counts, algorithm
    settings, other settings on one dataset, another length, the settings of a seed run twice),
    then a seed repeated with settings that do not tell it apart counted once. `points`: the
    folders a sweep labels (their label names them whatever their settings). Returns the runs
    kept, a note for each split, and (folder, why) for each run left out."""
    notes = tell_class_counts_apart(runs)
    outside = [r for r in runs if r.path not in points]
    notes += tell_settings_apart(outside)
    # other settings may rightly differ from one dataset to another (data.image_size, train.lr)
    notes += tell_settings_apart(outside, _settings, by_column=True)
    # a sweep's label names its points whatever their settings, but no run pools with one of
    # another length in its column, nor with one of its own seed
    notes += tell_settings_apart(runs, _length, by_column=True)
    repeated = [r for group in _by_seed(runs).values() if len(group) > 1 for r in group]
    cells = {(r.method, r.column) for r in repeated}
    twice = [r for r in runs if (r.method, r.column) in cells]
    notes += tell_settings_apart(twice, _all_settings, by_column=True, every=True)
    runs, repeats = drop_repeated_seeds(runs)
    return runs, notes, repeats
