"""Reading finished runs for reports: find run folders (any folder holding summary.json) under the
paths given, label them with the method and column a sweep gave them (sweep.json), and load each
one's summary, config, evaluation and training events and relabels, and order them as reports
show them. A run that cannot be read is skipped and counted, never fatal; a path that does not
exist, or holds no run, is an error."""

from __future__ import annotations

import csv
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lionfer import run_names
from lionfer.errors import MissingInputError
from lionfer.reporting.tables import column_key
from lionfer.run_names import method_name


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
    def class_names(self) -> list[str]:
        return list(self.summary.get("class_names", []))


@dataclass
class Collection:
    runs: list[Run]
    skipped: list[tuple[Path, str]]  # folder, why
    methods: list[str]  # method order: the sweeps' order, then first appearance
    notes: list[str] = field(default_factory=list)


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
            listed = json.loads(file.read_text())["points"]
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
        found = [path] if (path / "summary.json").is_file() else []
        found += sorted(p.parent for p in path.rglob("*/summary.json"))
        if not found:
            raise MissingInputError(
                f"no finished run under {path}: a run writes summary.json when it finishes "
                "(an unfinished one continues with lionfer train --resume --out RUN)"
            )
        folders += [f.resolve() for f in found]
    return list(dict.fromkeys(folders))


def read_events(path: Path, kinds: tuple[str, ...] = ("eval", "train")) -> dict[str, list[dict]]:
    """{kind: the events of that kind in metrics.jsonl, in order} ([] where the file is absent)."""
    events: dict[str, list[dict]] = {kind: [] for kind in kinds}
    if not path.is_file():
        return events
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash; the others still count
        if isinstance(record, dict) and record.get("event") in events:
            events[record["event"]].append(record)
    return events


def read_relabels(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    needed = ("index", "given_label", "current_label")
    return [r for r in rows if all(str(r.get(k) or "").strip().isdigit() for k in needed)]


def load_run(folder: Path, point: dict | None) -> Run:
    """Raises ValueError/OSError with the reason when the run cannot be used."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except ValueError as error:
        raise ValueError(f"summary.json is not valid JSON ({error})") from error
    missing = [k for k in ("algorithm", "seed", "test_acc") if k not in summary]
    if missing:
        raise ValueError(f"summary.json lacks {', '.join(missing)}")
    if not isinstance(summary["test_acc"], int | float):
        raise ValueError(f"summary.json has test_acc {summary['test_acc']!r}, not a number")
    config = {}
    if (folder / "config.toml").is_file():
        try:
            config = tomllib.loads((folder / "config.toml").read_text())
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"config.toml is not valid TOML ({error})") from error
    events = read_events(folder / "metrics.jsonl")
    return Run(
        path=folder,
        method=point["label"] if point else method_name(summary),
        column=point.get("column", column_name(summary, config))
        if point
        else column_name(summary, config),
        seed=int(summary["seed"]),
        summary=summary,
        config=config,
        evals=events["eval"],
        trains=events["train"],
        relabels=read_relabels(folder / "relabels.csv"),
    )


def tell_settings_apart(runs: list[Run]) -> list[str]:
    """Runs named by their algorithm alone (no sweep label) whose algorithm settings differ get
    the differing settings in their method name, `lion:evidence (relabel_margin=2.0)`, so that
    no table pools runs of different settings as one method's seeds. Only settings that every
    run of the method records are compared (a run from an older lionfer may lack a newer key).
    Returns a note for each method so split."""
    by_method: dict[str, list[Run]] = {}
    for run in runs:
        by_method.setdefault(run.method, []).append(run)
    notes = []
    for method, group in by_method.items():
        recorded = set.intersection(*(set(run.params) for run in group))
        differ = sorted(k for k in recorded if len({repr(run.params[k]) for run in group}) > 1)
        if not differ:
            continue
        for run in group:
            settings = ", ".join(f"{k}={run.params[k]}" for k in differ)
            run.method = f"{method} ({settings})"
        notes.append(
            f"{method} runs differ in algorithm.{', algorithm.'.join(differ)}: each setting is "
            "shown as a method of its own"
        )
    return notes


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
    notes = tell_settings_apart([r for r in runs if r.path not in points])
    methods = [m for m in order if any(r.method == m for r in runs)]
    methods += list(dict.fromkeys(r.method for r in runs if r.method not in methods))
    seen: dict[tuple, list[Path]] = {}
    for run in runs:
        seen.setdefault((run.method, run.column, run.seed), []).append(run.path)
    for (method, column, seed), where in seen.items():
        if len(where) > 1:
            notes.append(
                f"{method} on {column}, seed {seed}, appears in {len(where)} runs "
                f"({', '.join(str(p) for p in where)}); each is counted"
            )
    return Collection(runs, skipped, methods, notes)


def shown_path(path: Path) -> str:
    """A run folder as the report shows it: relative to the working directory where it lies
    below it."""
    try:
        return str(path.relative_to(Path.cwd()))
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
            build_section(DataConfig, raw, "data."), run.config.get("seed", 0), recheck=False
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
