"""One finished run as reports see it (Run) and reading it from its folder: summary.json, checked
for what reports read from it, config.toml, the evaluation and training events of metrics.jsonl,
and relabels.csv; a run that cannot be used raises ValueError or OSError with the reason. Also
the Collection of runs a report reads (lionfer.reporting.run_finder), the order reports show
them in, their folders as a report shows them, a run's labeled faces rebuilt from its data, and
why a run folder is not a finished run."""

from __future__ import annotations

import csv
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lionfer import run_names
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
    from lionfer.config import build_section
    from lionfer.config_sections import DataConfig
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
