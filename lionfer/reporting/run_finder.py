"""The runs a report is given: find run folders (any folder holding summary.json) under the paths
given, label them with the method and column a sweep gave them (sweep.json), load each one
(lionfer.reporting.runs.load_run) and tell apart those that must not pool as one method's seeds
(lionfer.reporting.run_pooling). A run that cannot be read is skipped and counted, never fatal; a
run folder without summary.json, or a sweep's point without a run, is listed as not finished; a
path that does not exist, or holds no finished run, is an error."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from lionfer.errors import MissingInputError
from lionfer.reporting.run_pooling import tell_runs_apart
from lionfer.reporting.runs import Collection, load_run, read_events


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
    runs, notes, repeats = tell_runs_apart(runs, points)
    skipped += repeats
    # the sweeps' order, a method split by its settings in its own place; then first appearance
    named = list(dict.fromkeys(r.method for r in runs))
    methods = [m for base in order for m in named if m == base or m.startswith(f"{base} (")]
    methods = list(dict.fromkeys([*methods, *named]))
    return Collection(runs, skipped, methods, notes, find_unfinished(paths, points))
