"""Reading finished runs for reports: find run folders (any folder holding summary.json) under the
paths given, label them with the method and column a sweep gave them (sweep.json), and load each
one's summary, config, evaluation and training events and relabels, and order them as reports
show them. A run that cannot be read is skipped and counted, never fatal; a run folder without
summary.json, or a sweep's point without a run, is listed as not finished; a path that does not
exist, or holds no finished run, is an error."""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lionfer import run_names
from lionfer.errors import MissingInputError
from lionfer.reporting.tables import column_key, dig
from lionfer.run_names import method_name

# Settings a column names (dataset@labels, the class count), and settings of how a run was
# carried out, not of what it learns (lionfer.training.checkpoint.RESUME_FREE, and the memory
# layout and compilation), or of where its files lie: neither sets a run apart from the other
# seeds of its method.
COLUMN_KEYS = ("data.dataset", "data.num_labels", "data.num_classes")
HOW_IT_RAN = ("train.device", "data.num_workers", "train.eval_batch_size", "train.eval_every")
HOW_IT_RAN += ("train.log_every", "train.checkpoint_every", "train.tensorboard")
HOW_IT_RAN += ("train.channels_last", "train.compile", "data.allow_outside_root")
HOW_IT_RAN += ("data.split_file", "data.cache_images")
# Where a dataset lies differs from machine to machine, so its folders are compared by name alone:
# runs on my_faces/ and on other_faces/ are not one method's seeds, the same data moved are.
BY_FOLDER_NAME = ("data.root", "data.unlabeled_root")
HOW_IT_RAN += ("data.augment_on", "train.sync_batchnorm")
# the embedded data's own seed: runs that vary it vary their data as seeds do, and pool as seeds
HOW_IT_RAN += ("data.data_seed",)


@dataclass
class Run:
    """One finished run as the report sees it."""

    path: Path
    method: str  # the sweep's label, else algorithm (":" recipe)
    column: str  # dataset@labels
    seed: int
    summary: dict
    config: dict = field(default_factory=dict)  # config.toml as written; {} when absent
    evals: list[dict] = field(default_factory=list)  # "eval" events of metrics.jsonl, in order
    trains: list[dict] = field(default_factory=list)  # "train" events (the step logs), in order
    relabels: list[dict] = field(default_factory=list)  # rows of relabels.csv (strings)

    @property
    def algorithm(self) -> str:
        return self.summary.get("algorithm", "")

    @property
    def params(self) -> dict:
        """The algorithm's hyperparameters from config.toml (without its name)."""
        return {k: v for k, v in self.config.get("algorithm", {}).items() if k != "name"}

    @property
    def settings(self) -> dict:
        """The other settings from config.toml that shape what the run learns and is tested on,
        {"train.lr": 0.01, ...}: [data], [model] and [train], less those its column already
        names and those of how it was carried out (HOW_IT_RAN); where the data lies by name
        (BY_FOLDER_NAME, _by_name)."""
        settings = {
            f"{section}.{key}": value
            for section in ("data", "model", "train")
            for key, value in (self.config.get(section) or {}).items()
            if f"{section}.{key}" not in COLUMN_KEYS + HOW_IT_RAN
        }
        for key in BY_FOLDER_NAME:
            if settings.get(key):
                settings[key] = _by_name(str(settings[key]))
        return settings

    @property
    def class_names(self) -> list[str]:
        return list(self.summary.get("class_names") or [])


def _by_name(path: str) -> str:
    """A data path as runs on other machines name it too: a folder's name (my_faces), a file's
    with its folder's (project/labels.csv, as a manifest is often named alike in every folder)."""
    path = Path(path.rstrip("/\\"))
    return f"{path.parent.name}/{path.name}" if path.suffix else path.name


@dataclass
class Collection:
    runs: list[Run]
    skipped: list[tuple[Path, str]]  # folder, why
    methods: list[str]  # method order: the sweeps' order, then first appearance
    notes: list[str] = field(default_factory=list)
    unfinished: list[tuple[Path, str]] = field(default_factory=list)  # folder, how it stands


def column_name(summary: dict, config: dict) -> str:
    dataset = summary.get("dataset", config.get("data", {}).get("dataset", "?"))
    budget = config.get("data", {}).get("num_labels")
    return run_names.column(dataset, -1 if budget == -1 else summary.get("num_labels", budget))


def _sweep_points(paths: list[Path]) -> tuple[dict[Path, dict], list[str]]:
    """Folder → point of every sweep.json under the paths or above them."""
    files = set()
    for path in paths:
        files.update(path.rglob("sweep.json"))
        files.update(p / "sweep.json" for p in path.parents if (p / "sweep.json").is_file())
    points, order = {}, []
    for file in sorted(files):
        try:
            listed = json.loads(file.read_text(encoding="utf-8"))["points"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged sweep.json only loses its labels
        for point in listed:
            points[(file.parent / point["folder"]).resolve()] = point
            if point["label"] not in order:
                order.append(point["label"])
    return points, order


def find_run_folders(paths: list[Path]) -> list[Path]:
    folders = []
    for path in paths:
        if not path.exists():
            raise MissingInputError(f"{path} does not exist; give run folders or sweep folders")
        if path.is_file():
            in_run = any(
                (path.parent / name).is_file() for name in ("summary.json", "metrics.jsonl")
            )
            hint = (
                f"the run folder that holds it: {path.parent}" if in_run else "run or sweep folders"
            )
            raise MissingInputError(f"{path} is a file; give {hint}")
        found = [path] if (path / "summary.json").is_file() else []
        found += sorted(p.parent for p in path.rglob("*/summary.json"))
        if not found:
            raise MissingInputError(
                f"no finished run under {path}: a run writes summary.json when it finishes "
                "(one that stopped with a checkpoints/last.pt continues with lionfer train "
                "--resume --out RUN; one that failed names why in its metrics.jsonl)"
            )
        folders += [f.resolve() for f in found]
    return list(dict.fromkeys(folders))


def _step(record: dict) -> bool:
    """Whether a record's step, where it has one, is an integer (a damaged line's may not be)."""
    step = record.get("step", 0)
    return isinstance(step, int) and not isinstance(step, bool)


def read_events(path: Path, kinds: tuple[str, ...] = ("eval", "train")) -> dict[str, list[dict]]:
    """{kind: the events of that kind in metrics.jsonl, in order} ([] where the file is absent).
    Lines that are not such an event (cut short by a crash, damaged) are left out."""
    events: dict[str, list[dict]] = {kind: [] for kind in kinds}
    if not path.is_file():
        return events
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash; the others still count
        if isinstance(record, dict) and record.get("event") in events and _step(record):
            events[record["event"]].append(record)
    return events


def read_relabels(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    needed = ("index", "given_label", "current_label")
    return [r for r in rows if all(str(r.get(k) or "").strip().isdigit() for k in needed)]


# summary.json's figures that reports read as numbers, tables of numbers or tables, where present
NUMBERS = ("steps", "mean_class_acc", "macro_f1", "mask_rate", "pseudo_label_acc")
NUMBER_TABLES = ("per_class_acc", "relabel")
TABLES = ("best", "label_quality", "evidence_by_class", "clb", "label_quality.evidence_check")
TABLES += ("label_quality.evidence_audit", "label_quality.noise_check")


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path.name} is not UTF-8 text ({error})") from error


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_summary(path: Path) -> dict:
    """A run's summary.json; ValueError naming what is wrong where a report could not use it
    (damaged, edited, or a figure of another shape)."""
    try:
        summary = json.loads(_text(path))
    except ValueError as error:
        raise ValueError(f"summary.json is not valid JSON ({error})") from error
    if not isinstance(summary, dict):
        raise ValueError(f"summary.json holds {type(summary).__name__}, not a JSON object")
    missing = [k for k in ("algorithm", "seed", "test_acc") if k not in summary]
    if missing:
        raise ValueError(f"summary.json lacks {', '.join(missing)}")
    acc, seed = summary["test_acc"], summary["seed"]
    if not _is_number(acc):
        raise ValueError(f"summary.json has test_acc {acc!r}, not a number")
    if not (math.isfinite(acc) and 0 <= acc <= 1):
        raise ValueError(f"summary.json has test_acc {acc!r}, not a fraction in [0, 1]")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"summary.json has seed {seed!r}, not an integer")
    for key in NUMBERS:
        if summary.get(key) is not None and not _is_number(summary[key]):
            raise ValueError(f"summary.json has {key} {summary[key]!r}, not a number")
    for key in NUMBER_TABLES + TABLES:
        table = dig(summary, *key.split("."))
        if table is not None and not isinstance(table, dict):
            raise ValueError(f"summary.json's {key} is a {type(table).__name__}, not a table")
    for key in NUMBER_TABLES:
        wrong = _not_numbers(summary.get(key), key)
        if wrong:
            raise ValueError(f"summary.json has {wrong[0]} {wrong[1]!r}, not a number")
    names = summary.get("class_names")
    if names is not None and not isinstance(names, list):
        raise ValueError(f"summary.json's class_names is a {type(names).__name__}, not a list")
    matrix = summary.get("confusion_matrix")
    if matrix is not None and not _square(matrix):
        raise ValueError("summary.json's confusion_matrix is not a square table of numbers")
    return summary


def _not_numbers(node, name: str) -> tuple:
    """(dotted name, value) of the first leaf of a nested table that is not a number, true,
    false or null; () where there is none."""
    if isinstance(node, dict):
        for key, value in node.items():
            found = _not_numbers(value, f"{name}.{key}")
            if found:
                return found
        return ()
    return () if node is None or isinstance(node, bool) or _is_number(node) else (name, node)


def _square(matrix) -> bool:
    return isinstance(matrix, list) and all(
        isinstance(row, list) and len(row) == len(matrix) and all(map(_is_number, row))
        for row in matrix
    )


def load_run(folder: Path, point: dict | None) -> Run:
    """Raises ValueError/OSError with the reason when the run cannot be used."""
    summary = read_summary(folder / "summary.json")
    config = {}
    if (folder / "config.toml").is_file():
        try:
            config = tomllib.loads(_text(folder / "config.toml"))
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"config.toml is not valid TOML ({error})") from error
    events = read_events(folder / "metrics.jsonl")
    return Run(
        path=folder,
        method=point["label"] if point else method_name(summary),
        column=point.get("column", column_name(summary, config))
        if point
        else column_name(summary, config),
        seed=summary["seed"],
        summary=summary,
        config=config,
        evals=events["eval"],
        trains=events["train"],
        relabels=read_relabels(folder / "relabels.csv"),
    )


def how_it_stands(folder: Path, history: dict[str, list[dict]]) -> str:
    """What a run folder without summary.json tells of its run, from its metrics.jsonl events."""
    ended = sorted(history["error"] + history["interrupted"], key=lambda r: r.get("step", 0))
    steps = [r.get("step", 0) for kind in ("train", "eval") for r in history[kind]]
    if ended and ended[-1].get("step", 0) >= max(steps, default=0):
        last = ended[-1]
        if last["event"] == "error":
            return f"failed at step {last.get('step')}: {last.get('error', 'no reason recorded')}"
        return (
            f"stopped by {last.get('signal', 'a signal')} at step {last.get('step')}; continue it "
            f"with lionfer train --resume --out {shlex.quote(str(folder))}"
        )
    if steps:
        return (
            f"no summary.json; its last record is of step {max(steps)} (still running, or killed)"
        )
    return "no summary.json and no step recorded (still starting, or stopped before its first step)"


def find_unfinished(paths: list[Path], points: dict[Path, dict]) -> list[tuple[Path, str]]:
    """Run folders under the paths without summary.json (their metrics.jsonl opens with
    lionfer's start event), and sweep points below the paths whose folder holds no run, with how
    each stands."""
    found = {}
    kinds = ("start", "train", "eval", "error", "interrupted")
    for path in paths:
        for log in sorted(path.rglob("metrics.jsonl")):
            if not log.is_file() or (log.parent / "summary.json").exists():
                continue
            history = read_events(log, kinds)
            if history["start"]:
                folder = log.parent.resolve()  # its command runs from anywhere
                found[folder] = how_it_stands(folder, history)
    resolved = [p.resolve() for p in paths]
    for folder in points:
        inside = any(folder == p or p in folder.parents for p in resolved)
        if inside and folder not in found and not (folder / "summary.json").exists():
            found[folder] = "listed in sweep.json, not started"
    return sorted(found.items())


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


def load_runs(paths) -> Collection:
    paths = [Path(p) for p in paths]
    folders = find_run_folders(paths)
    points, order = _sweep_points(paths)
    runs, skipped = [], []
    for folder in folders:
        try:
            runs.append(load_run(folder, points.get(folder)))
        except (OSError, ValueError) as error:
            skipped.append((folder, str(error)))
    if not runs:
        reasons = "; ".join(f"{folder}: {why}" for folder, why in skipped[:3])
        raise MissingInputError(f"no readable run among {len(skipped)} folders ({reasons})")
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
    skipped += repeats
    # the sweeps' order, a method split by its settings in its own place; then first appearance
    named = list(dict.fromkeys(r.method for r in runs))
    methods = [m for base in order for m in named if m == base or m.startswith(f"{base} (")]
    methods = list(dict.fromkeys([*methods, *named]))
    return Collection(runs, skipped, methods, notes, find_unfinished(paths, points))


def shown_path(path: Path, base: Path) -> str:
    """A path as a report shows it: relative to `base`, the report's folder, so that it resolves
    from there wherever the report is read (and still does once the report and the runs move
    together); absolute where no relative path leads there (another drive)."""
    path, base = Path(path).resolve(), Path(base).resolve()
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return str(path)


def ordered_runs(c: Collection) -> list[Run]:
    """The runs by column, then in the method order, then by seed."""
    return sorted(c.runs, key=lambda r: (column_key(r.column), c.methods.index(r.method), r.seed))


def labeled_faces(run: Run, rows: list[dict], size: int = 96) -> tuple[dict, str]:
    """{index: (H, W, 3) uint8 thumbnail} of the labeled images named by relabels.csv rows,
    from the run's data rebuilt with its config.toml and split.json; a note instead of faces
    when the data cannot be rebuilt (moved, missing) or no longer matches the run."""
    from lionfer.config import DataConfig, build_section
    from lionfer.data.pipeline import build_run_data

    if not rows:
        return {}, ""
    try:
        raw = dict(run.config.get("data", {}), split_file=str(run.path / "split.json"))
        data = build_run_data(
            build_section(DataConfig, raw, "data."),
            run.config.get("seed", 0),
            recheck=False,
            reread="finished",
        )
    except (OSError, ValueError, KeyError, IndexError) as error:
        return {}, f"The faces of {run.path} could not be loaded: {error}"
    faces, mismatched = {}, []
    labeled = data.labeled
    for row in rows:
        index = int(row["index"])
        if index >= len(labeled) or (row.get("id") and labeled.ids[index] != row["id"]):
            mismatched.append(str(index))
            continue
        image = labeled.load(index)
        image.thumbnail((size, size))
        faces[index] = np.asarray(image)
    note = ""
    if mismatched:
        note = (
            f"The labeled set of {run.path} no longer matches relabels.csv at index "
            f"{', '.join(mismatched)}; those faces are not shown."
        )
    return faces, note


def unfinished_reason(run: Path, step: int | None, steps: int) -> str | None:
    """Why a run folder is not a finished run (no summary.json, or its last checkpoint at `step`
    short of train.steps), for tools that read a run's end state; None where it finished."""
    if (run / "summary.json").is_file() and (step is None or step >= steps):
        return None
    where = f"stopped at step {step} of {steps}" if step is not None else "stopped"
    return f"{run} {where} (no summary.json): not a finished run; leave it out, or let it finish"
