"""Sweeps: a grid of `lionfer train` runs (methods × label budgets × seeds) from one TOML file.

Every grid point gets a stable folder DIR/<dataset>@<labels>/<method>/s<seed>; DIR/sweep.json
lists the points (label, overrides, folder) for `lionfer report`. Finished runs are skipped,
unfinished ones resumed, the rest started (by lionfer.experiments.launch: N at a time as local
subprocesses, one per GPU where GPUs are visible, or as cluster jobs through submitit). The file
format is in docs/sweeps.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import socket
import tomllib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lionfer.config import PACKAGED_CONFIGS, Config, load_config, parse_value
from lionfer.errors import ConfigError
from lionfer.experiments.launch import Job, Result, run_local, run_submitit, visible_gpus

PACKAGED_SWEEPS = PACKAGED_CONFIGS / "sweeps"
SWEEP_KEYS = (
    "description",
    "config",
    "dataset_name",
    "overrides",
    "num_labels",
    "seeds",
    "algorithms",
    "variants",
    "slurm",
)
VARIANT_KEYS = ("label", "overrides", "num_labels")
SELECT_KEYS = ("seeds", "num_labels", "only")  # sweep.<key>=... on the command line
LOCK = "sweep.lock"
PATH_KEYS = ("data.root", "data.unlabeled_root", "data.split_file", "data.label_file")
PATH_KEYS += ("model.pretrained",)
EXECUTION_KEYS = ("train.device", "data.num_workers", "train.tensorboard")  # change no result


@dataclass(frozen=True)
class Method:
    """A row of the grid: a label and the overrides that make it (e.g. algorithm.name=fixmatch)."""

    label: str
    overrides: tuple[str, ...]
    num_labels: tuple[int, ...] = ()  # its own budgets (e.g. -1 for full supervision); () = grid's


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    config: Path  # the base config file
    overrides: tuple[str, ...]
    num_labels: tuple[int, ...]
    seeds: tuple[int, ...]
    methods: tuple[Method, ...]
    dataset_name: str = ""  # the dataset's name in folders and report columns; "" = data.dataset
    slurm: tuple[tuple[str, Any], ...] = ()  # submitit parameters
    description: str = ""


@dataclass(frozen=True)
class Point:
    """One run of the grid; `overrides` follow the base config in this order."""

    label: str
    dataset: str
    num_labels: int  # -1 = every training image labeled
    seed: int
    overrides: tuple[str, ...]
    folder: str  # relative to the sweep folder

    @property
    def column(self) -> str:
        return f"{self.dataset}@{budget_name(self.num_labels)}"


@dataclass(frozen=True)
class Action:
    """What the sweep does with a point: start, resume, restart, skip, or conflict (not run)."""

    point: Point
    kind: str
    reason: str = ""


def budget_name(num_labels: int) -> str:
    return "all" if num_labels == -1 else str(num_labels)


def slug(label: str) -> str:
    """A folder name for a label: lower case, runs of other characters become one '-'."""
    name = re.sub(r"[^a-z0-9._]+", "-", label.lower()).strip("-.")
    if not name:
        raise ConfigError(f"variant label {label!r} has no letters or digits to name a folder")
    return name


# ---- reading a sweep file ----


def find_sweep(name: str | Path) -> Path:
    """A sweep file path, or the name of a packaged sweep in lionfer/configs/sweeps/."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = PACKAGED_SWEEPS / f"{str(name).removesuffix('.toml')}.toml"
    if packaged.is_file():
        return packaged
    names = ", ".join(packaged_sweeps())
    raise ConfigError(f"sweep file not found: {name} (packaged sweeps: {names})")


def packaged_sweeps() -> list[str]:
    return sorted(p.stem for p in PACKAGED_SWEEPS.glob("*.toml"))


def _base_config(text: str, near: Path) -> Path:
    """The sweep's base config: a path (relative to the sweep file) or a packaged config name."""
    for candidate in (near / text, PACKAGED_CONFIGS / f"{text.removesuffix('.toml')}.toml"):
        if candidate.is_file():
            return candidate.resolve()
    names = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.toml")))
    raise ConfigError(
        f"config {text!r} of the sweep is neither a file next to the sweep file nor a packaged "
        f"config ({names})"
    )


def _check_keys(table: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Valid keys: {', '.join(allowed)}"
            raise ConfigError(f"unknown key {key!r} in {where}.{hint}")


def _int_list(value: Any, key: str) -> tuple[int, ...]:
    if isinstance(value, str):  # sweep.seeds=0,1 on the command line
        value = [parse_value(v.strip()) for v in value.split(",") if v.strip()]
    values = value if isinstance(value, list | tuple) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{key}: expected a list of integers such as [0, 1, 2], got {value!r}")
    return tuple(values)


def _str_list(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(value)


def _methods(raw: dict, where: str) -> tuple[Method, ...]:
    methods = [
        Method(name, (f"algorithm.name={name}",))
        for name in _str_list(raw.get("algorithms", []), "algorithms")
    ]
    variants = raw.get("variants", [])
    if not isinstance(variants, list):
        raise ConfigError(f"variants in {where}: expected [[variants]] tables")
    for i, variant in enumerate(variants):
        _check_keys(variant, VARIANT_KEYS, f"variant {i + 1} of {where}")
        if not isinstance(variant.get("label"), str):
            raise ConfigError(f'variant {i + 1} of {where} needs a label, e.g. label = "LION"')
        budgets = variant.get("num_labels")
        methods.append(
            Method(
                variant["label"],
                _str_list(variant.get("overrides", []), f"variant {variant['label']!r} overrides"),
                () if budgets is None else _int_list(budgets, f"variant {variant['label']!r}"),
            )
        )
    labels = [m.label for m in methods]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"{where} names these methods twice: {', '.join(repeated)}")
    return tuple(methods)


def load_sweep(name: str | Path, select: list[str] | tuple = ()) -> Sweep:
    """Read a sweep file; `select` holds `sweep.seeds=...`, `sweep.num_labels=...` and
    `sweep.only=LABEL,...` assignments that narrow its grid."""
    path = find_sweep(name)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    _check_keys(raw, SWEEP_KEYS, str(path))
    if not isinstance(raw.get("config"), str):
        raise ConfigError(f'{path} needs a base config, e.g. config = "rafdb-paper"')
    base = _base_config(raw["config"], path.parent)
    methods = _methods(raw, str(path))
    seeds = _int_list(raw.get("seeds", [0]), "seeds")
    budgets = _int_list(raw["num_labels"], "num_labels") if "num_labels" in raw else ()
    for assignment in select:
        key, _, text = assignment.removeprefix("sweep.").partition("=")
        _check_keys({key: None}, SELECT_KEYS, "the sweep's command-line selection (sweep.KEY=...)")
        value = parse_value(text)
        if key == "seeds":
            seeds = _int_list(value, "sweep.seeds")
        elif key == "num_labels":
            budgets = _int_list(value, "sweep.num_labels")
        else:
            methods = _select(methods, _str_list(value, "sweep.only"))
    slurm = raw.get("slurm", {})
    if not isinstance(slurm, dict):
        raise ConfigError(f"slurm in {path}: expected a table of submitit parameters")
    return Sweep(
        name=path.stem,
        path=path.resolve(),
        config=base,
        overrides=_str_list(raw.get("overrides", []), "overrides"),
        num_labels=budgets,
        seeds=seeds,
        methods=methods or (Method("", ()),),
        dataset_name=str(raw.get("dataset_name", "")),
        slurm=tuple(slurm.items()),
        description=str(raw.get("description", "")),
    )


def _select(methods: tuple[Method, ...], labels: tuple[str, ...]) -> tuple[Method, ...]:
    known = [m.label for m in methods]
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise ConfigError(
            f"sweep.only: no method named {', '.join(unknown)}; the sweep has {', '.join(known)}"
        )
    return tuple(m for m in methods if m.label in labels)


# ---- the grid ----


def expand(sweep: Sweep, overrides: list[str] | tuple = ()) -> list[tuple[Point, Config]]:
    """Every grid point with its resolved config (so a typo fails before anything runs), in run
    order: seed by seed, so the first seed of every method finishes first."""
    for assignment in overrides:
        key = assignment.partition("=")[0].strip()
        if key in ("seed", "data.num_labels"):
            option = "seeds" if key == "seed" else "num_labels"
            raise ConfigError(
                f"{key} is set by the sweep's grid; choose values with sweep.{option}=... instead"
            )
    points, folders = [], {}
    for seed in sweep.seeds:
        for method in sweep.methods:
            for budget in method.num_labels or sweep.num_labels or (None,):
                grid = [] if budget is None else [f"data.num_labels={budget}"]
                chosen = (*sweep.overrides, *method.overrides, *grid, f"seed={seed}", *overrides)
                try:
                    cfg = load_config(sweep.config, list(chosen))
                except ConfigError as error:
                    where = f"method {method.label!r}, " if method.label else ""
                    raise ConfigError(f"sweep {sweep.name}, {where}seed {seed}: {error}") from error
                label = method.label or cfg.algorithm.name
                point = Point(
                    label=label,
                    dataset=sweep.dataset_name or cfg.data.dataset,
                    num_labels=cfg.data.num_labels,
                    seed=seed,
                    overrides=tuple(chosen),
                    folder="",
                )
                folder = f"{point.column}/{slug(label)}/s{seed}"
                if folder in folders:
                    raise ConfigError(
                        f"methods {folders[folder]!r} and {label!r} would share the folder "
                        f"{folder}; give them labels that differ in letters or digits"
                    )
                folders[folder] = label
                points.append((dataclasses.replace(point, folder=folder), cfg))
    return points


def flatten(raw: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in raw.items():
        if (
            isinstance(value, dict)
            and key in ("data", "model", "algorithm", "train")
            and not prefix
        ):
            out.update(flatten(value, f"{key}."))
        else:
            out[prefix + key] = value
    return out


def config_differences(saved: dict, wanted: dict) -> list[str]:
    """Keys on which a run folder's config differs from the config its grid point asks for
    (paths compared as absolute paths; device and loader workers ignored)."""
    a, b = flatten(saved), flatten(wanted)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in EXECUTION_KEYS:
            continue
        left, right = a.get(key), b.get(key)
        if key in PATH_KEYS and left and right:
            left, right = os.path.abspath(left), os.path.abspath(right)
        if left != right:
            diffs.append(f"{key} is {left!r} in the run, {right!r} in the sweep")
    return diffs


def plan(points: list[tuple[Point, Config]], out: Path) -> list[Action]:
    """Decide each point's action from its folder: summary.json = finished (skip),
    checkpoints/last.pt = unfinished (resume), a run of the same config without a checkpoint
    (restart), nothing (start); a folder holding anything else is a conflict and is left alone."""
    actions = []
    for point, cfg in points:
        folder = out / point.folder
        if not folder.exists() or not any(folder.iterdir()):
            actions.append(Action(point, "start"))
            continue
        saved = folder / "config.toml"
        if not saved.is_file():
            actions.append(Action(point, "conflict", f"{folder} holds files that are not a run"))
            continue
        try:
            diffs = config_differences(load_config(saved).to_dict(), cfg.to_dict())
        except ConfigError as error:
            diffs = [f"its config.toml cannot be read ({error})"]
        if diffs:
            reason = f"{folder} holds a run of another config: " + "; ".join(diffs[:3])
            actions.append(Action(point, "conflict", reason))
        elif (folder / "summary.json").is_file():
            actions.append(Action(point, "skip", "finished"))
        elif (folder / "checkpoints" / "last.pt").is_file():
            actions.append(Action(point, "resume", "unfinished"))
        else:
            actions.append(Action(point, "restart", "stopped before its first checkpoint"))
    return actions


def train_argv(action: Action, sweep: Sweep, out: Path) -> list[str]:
    """The `lionfer train` arguments that carry out an action."""
    folder = str((out / action.point.folder).resolve())
    if action.kind == "resume":
        return ["train", "--resume", "--out", folder, "--no-progress"]
    argv = ["train", str(sweep.config), *action.point.overrides, "--out", folder, "--no-progress"]
    return argv + (["--overwrite"] if action.kind == "restart" else [])


def log_path(out: Path, point: Point) -> Path:
    return out / "logs" / (point.folder.replace("/", "__") + ".log")


# ---- the sweep folder ----


def check_out_dir(out: Path) -> None:
    """A sweep writes into an empty or new folder, or one of its own (holding sweep.json)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the sweep's runs")
    ours = (out / "sweep.json").is_file() or (out / LOCK).is_file()
    if out.is_dir() and any(out.iterdir()) and not ours:
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ConfigError(
            f"--out {out} holds {len(names)} entries that are not a lionfer sweep ({shown}); "
            "choose an empty or new folder"
        )


@contextmanager
def sweep_lock(out: Path, echo: Callable[[str], None]):
    """One sweep at a time in a folder: DIR/sweep.lock names the running sweep's host and pid.
    A lock left by a process of this host that is gone is removed."""
    out.mkdir(parents=True, exist_ok=True)
    lock, me = out / LOCK, f"{socket.gethostname()} {os.getpid()}"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        holder = lock.read_text().strip()
        if not _gone(holder):
            raise ConfigError(
                f"another sweep is running in {out} ({holder}); wait for it to end, or delete "
                f"{lock} if that process is gone"
            ) from None
        echo(f"removing the lock of a sweep that is gone ({holder})")
        lock.unlink()
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(fd, "w") as f:
        f.write(me + "\n")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _gone(holder: str) -> bool:
    """Whether the process named "host pid" is known to have ended (only this host is known)."""
    host, _, pid = holder.partition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def write_sweep_json(out: Path, sweep: Sweep, points: list[Point]) -> None:
    """List the points in DIR/sweep.json, keeping points of earlier calls in other folders."""
    path = out / "sweep.json"
    new = [dict(dataclasses.asdict(p), column=p.column) for p in points]
    folders = {p["folder"] for p in new}
    kept = []
    if path.is_file():
        try:
            earlier = json.loads(path.read_text())["points"]
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(
                f"{path} is damaged ({error}); move it away (the run folders stay usable)"
            ) from error
        kept = [p for p in earlier if p["folder"] not in folders]
    record = {
        "sweep": sweep.name,
        "file": str(sweep.path),
        "config": str(sweep.config),
        "points": kept + new,
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def run_sweep(
    name: str | Path,
    items: list[str],
    out: str | Path,
    jobs: int | None = None,
    launcher: str = "local",
    dry_run: bool = False,
    slurm: list[str] | tuple = (),
    echo: Callable[[str], None] = print,
    cluster: str = "slurm",
    gpus: list[str] | None = None,
) -> int:
    """`lionfer sweep`: 0 when every point finished (now or before), 1 when any did not."""
    select = [i for i in items if i.startswith("sweep.")]
    overrides = [i for i in items if not i.startswith("sweep.")]
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    sweep = load_sweep(name, select)
    out = Path(out)
    points = expand(sweep, overrides)
    check_out_dir(out)
    if dry_run:
        return _dry_run(sweep, plan(points, out), out, echo)
    with sweep_lock(out, echo):
        actions = plan(points, out)
        write_sweep_json(out, sweep, [p for p, _ in points])
        failed = _announce(sweep, actions, out, echo)
        jobs_to_run = _jobs(actions, sweep, out)
        try:
            results = _launch(jobs_to_run, sweep, out, jobs, launcher, slurm, echo, cluster, gpus)
        except KeyboardInterrupt:
            echo("interrupted: run the same command again to continue the sweep")
            raise
    failed += [r.name for r in results if not r.ok]
    skipped = sum(a.kind == "skip" for a in actions)
    echo(
        f"sweep {sweep.name}: {sum(r.ok for r in results)} finished now, {skipped} "
        f"finished before, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else "")
    )
    if not failed:
        echo(f"report with: lionfer report {out} --out {out / 'report'}")
    return 1 if failed else 0


def _jobs(actions: list[Action], sweep: Sweep, out: Path) -> list[Job]:
    return [
        Job(
            n,
            len(actions),
            a.point.folder,
            a.kind,
            train_argv(a, sweep, out),
            out / a.point.folder,
            log_path(out, a.point),
        )
        for n, a in enumerate(actions, 1)
        if a.kind in ("start", "resume", "restart")
    ]


def _announce(sweep: Sweep, actions: list[Action], out: Path, echo) -> list[str]:
    """Print the plan's counts, the skipped points and the conflicts; return the conflicts."""
    counts = {k: sum(a.kind == k for a in actions) for k in ("start", "resume", "restart", "skip")}
    echo(
        f"sweep {sweep.name}: {len(actions)} runs into {out} ({counts['start']} to start, "
        f"{counts['resume']} to resume, {counts['restart']} to restart, {counts['skip']} finished)"
    )
    conflicts = []
    for n, action in enumerate(actions, 1):
        if action.kind == "skip":
            echo(f"[{n}/{len(actions)}] skip {action.point.folder} (finished)")
        elif action.kind == "conflict":
            echo(f"[{n}/{len(actions)}] CONFLICT {action.point.folder}: {action.reason}")
            conflicts.append(action.point.folder)
    return conflicts


def _dry_run(sweep: Sweep, actions: list[Action], out: Path, echo) -> int:
    conflicts = _announce(sweep, actions, out, echo)
    for job in _jobs(actions, sweep, out):
        echo(job.line(f"would {job.kind}: lionfer {' '.join(job.argv)}"))
    echo("dry run: nothing was started or written")
    return 1 if conflicts else 0


def _launch(jobs_to_run, sweep, out, slots, launcher, slurm, echo, cluster, gpus) -> list[Result]:
    if not jobs_to_run:
        return []
    if launcher == "slurm":
        parameters = dict(sweep.slurm)
        for assignment in slurm:
            key, sep, text = assignment.partition("=")
            if not sep:
                raise ConfigError(f"--slurm {assignment!r} must look like KEY=VALUE")
            parameters[key.strip()] = parse_value(text.strip())
        return run_submitit(jobs_to_run, out / "slurm", parameters, echo, cluster=cluster)
    gpus = visible_gpus() if gpus is None else gpus
    return run_local(jobs_to_run, slots or max(len(gpus), 1), gpus, echo)
