"""Sweeps: a grid of `lionfer train` runs (methods × label budgets × seeds) from one TOML file.

Every grid point gets a stable folder DIR/<dataset>@<labels>/<method>/s<seed>; DIR/sweep.json
lists the points (label, overrides, folder) for `lionfer report`. Finished runs are skipped,
unfinished ones resumed, the rest started (by lionfer.experiments.launch: N at a time as local
subprocesses, one per GPU where GPUs are visible, without a loader worker each where they share
the CPU cores, or as cluster jobs through submitit). Reading the sweep file and expanding its grid
is lionfer.experiments.sweep_file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import socket
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lionfer.config import PATH_KEYS, Config, load_config
from lionfer.config_text import parse_value
from lionfer.errors import ConfigError
from lionfer.experiments.launch import (
    Job,
    Result,
    run_local,
    run_submitit,
    submitit_module,
    visible_gpus,
)
from lionfer.experiments.sweep_file import Point, Sweep, expand, load_sweep
from lionfer.training.runfolder import BEST, LAST, best_to_resume, foreign_entries, is_run_folder
from lionfer.unread import check_inputs, check_new_run

LOCK = "sweep.lock"
# change no result: a finished or resumed run of other values of these is the run asked for
EXECUTION_KEYS = ("train.device", "data.num_workers", "train.tensorboard")
EXECUTION_KEYS += ("train.eval_batch_size", "train.log_every", "train.checkpoint_every")
# Runs that share the CPU cores make their views in their own process: a loader worker each would
# only compete with the other runs for the cores (the views are the same either way). The sweep's
# and the command line's overrides come after it, and win.
SHARED_CORES = ("data.num_workers=0",)
FROM_BEST = "from its best.pt"  # the reason of a resume from checkpoints/best.pt


@dataclass(frozen=True)
class Action:
    """What the sweep does with a point: start, resume, restart, skip, or conflict (not run)."""

    point: Point
    kind: str
    reason: str = ""
    note: str = ""  # what the user should know before it runs (printed with the plan)


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


def summary_damage(path: Path) -> str:
    """Why a run's summary.json cannot be read as one (cut short by a kill, emptied), or ""."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return str(error)
    return "" if isinstance(summary, dict) else "not a JSON object"


def plan(points: list[tuple[Point, Config]], out: Path) -> list[Action]:
    """Decide each point's action from its folder: summary.json = finished (skip),
    checkpoints/last.pt = unfinished (resume), a run of the same config without last.pt but with
    a readable best.pt (stopped after an evaluation and before its first last.pt: resume from
    best.pt, copied over last.pt when the sweep runs, FROM_BEST), a run of the same config
    without a checkpoint (restart), a run's files without a config (a run killed as it began:
    restart), nothing (start); a folder holding anything else is a conflict and is left alone.
    A summary.json that cannot be read is not a finished run: the run is finished again from
    its last checkpoint, or, without one, left alone as a conflict."""
    actions = []
    for point, cfg in points:
        folder = out / point.folder
        if not folder.exists() or not any(folder.iterdir()):
            actions.append(Action(point, "start"))
            continue
        saved = folder / "config.toml"
        if not saved.is_file() and is_run_folder(folder) and not foreign_entries(folder):
            # killed between its first log line and its config: nothing of it to keep
            actions.append(Action(point, "restart", "stopped before its config was written"))
            continue
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
            actions.append(_finished(point, folder))
        elif (folder / LAST).is_file():
            actions.append(Action(point, "resume", "unfinished"))
        elif (best := best_to_resume(folder)) is not None:
            note = f"it stopped before its first {LAST.as_posix()}, but {best}: continuing from it"
            actions.append(Action(point, "resume", FROM_BEST, note=note))
        else:
            actions.append(Action(point, "restart", "stopped before its first checkpoint"))
    return actions


def resume_from_best(actions: list[Action], out: Path) -> None:
    """For each run to resume from its best.pt (FROM_BEST), best.pt copied over last.pt, which
    the run then continues from; best.pt is kept."""
    from_best = [a for a in actions if a.reason == FROM_BEST]
    if not from_best:
        return
    from lionfer.training.checkpoint import copy_checkpoint  # torch, only for such a run

    for action in from_best:
        folder = out / action.point.folder
        copy_checkpoint(folder / BEST, folder / LAST)


def _finished(point: Point, folder: Path) -> Action:
    damage = summary_damage(folder / "summary.json")
    if not damage:
        return Action(point, "skip", "finished")
    if (folder / "checkpoints" / "last.pt").is_file():
        note = f"its summary.json is damaged ({damage}): finishing it again from its checkpoint"
        return Action(point, "resume", "unfinished", note)
    reason = (
        f"{folder}'s summary.json is damaged ({damage}) and there is no checkpoint to finish it "
        "from; move the folder away to run it again"
    )
    return Action(point, "conflict", reason)


def train_argv(action: Action, sweep: Sweep, out: Path, shared: bool = False) -> list[str]:
    """The `lionfer train` arguments that carry out an action; `shared`: the runs share the CPU
    cores (SHARED_CORES goes first)."""
    folder = str((out / action.point.folder).resolve())
    if action.kind == "resume":
        return ["train", "--resume", "--out", folder, "--no-progress"]
    execution = SHARED_CORES if shared else ()
    argv = ["train", str(sweep.config), *execution, *action.point.overrides]
    argv += ["--out", folder, "--no-progress"]
    return argv + (["--overwrite"] if action.kind == "restart" else [])


def shares_cores(launcher: str, jobs: int | None, gpus: list[str] | None) -> bool:
    """Whether local runs share the CPU cores: more than one at a time and no GPU for them."""
    if launcher != "local" or (jobs or 1) < 2:
        return False
    return not (visible_gpus() if gpus is None else gpus)


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
        holder = lock.read_text(encoding="utf-8", errors="replace").strip()
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
            earlier = json.loads(path.read_text(encoding="utf-8"))["points"]
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
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def check_new_runs(
    points: list[tuple[Point, Config]], actions: list[Action], out: Path, local: bool = True
) -> None:
    """The runs the sweep would start (or start again) pass lionfer train's checks of a new
    run (check_new_run), and give a data.root and a model.pretrained file that are there
    (check_inputs, what each run would refuse once it reads them; for runs on this machine only,
    `local`: a cluster's nodes may see other files): else a ConfigError naming the first that
    does not and how many, before any run starts. Finished runs are skipped and resumed ones
    continue with their own config: neither is checked."""
    starting = {a.point.folder for a in actions if a.kind in ("start", "restart")}
    refused = []
    for point, cfg in points:
        if point.folder in starting:
            try:
                check_new_run(cfg, out / point.folder)
                check_inputs(cfg, paths=local)
            except ConfigError as error:
                refused.append((point, error))
    if refused:
        point, error = refused[0]
        others = f" (and {len(refused) - 1} more of its runs)" if len(refused) > 1 else ""
        raise ConfigError(f"the sweep's run {point.folder}{others}: {error}")


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
    again: str = "the same command",
) -> int:
    """`lionfer sweep`: 0 when every point finished (now or before), 1 when any did not.
    `again`: the command that continues the sweep, named when it is interrupted."""
    select = [i for i in items if i.startswith("sweep.")]
    overrides = [i for i in items if not i.startswith("sweep.")]
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    sweep = load_sweep(name, select)
    parameters = slurm_parameters(sweep, slurm)  # checked before the plan, as the rest
    if launcher == "slurm":
        submitit_module()
    out = Path(out)
    points = expand(sweep, overrides)
    check_out_dir(out)
    shared = shares_cores(launcher, jobs, gpus)
    actions = plan(points, out)
    check_new_runs(points, actions, out, local=launcher == "local")  # before anything is written
    if dry_run:
        return _dry_run(sweep, actions, out, echo, shared)
    with sweep_lock(out, echo):
        actions = plan(points, out)  # again, under the lock
        conflicts = _announce(sweep, actions, out, echo)
        # a conflicting folder holds a run of other settings, left as it is, and so is its record
        kept = [p for p, _ in points if p.folder not in conflicts]
        if kept or not (out / "sweep.json").is_file():
            write_sweep_json(out, sweep, kept)
        resume_from_best(actions, out)
        jobs_to_run = _jobs(actions, sweep, out, shared)
        try:
            results = _launch(jobs_to_run, out, jobs, launcher, parameters, echo, cluster, gpus)
        except KeyboardInterrupt:
            echo(f"interrupted: run {again} again to continue the sweep")
            raise
    failed = [r.name for r in results if not r.ok]
    skipped = sum(a.kind == "skip" for a in actions)
    echo(
        f"sweep {sweep.name}: {sum(r.ok for r in results)} finished now, {skipped} "
        f"finished before, {len(failed)} failed"
        + (f": {', '.join(failed)}" if failed else "")
        + (
            f", {len(conflicts)} in conflict, left as they are: {', '.join(conflicts)}"
            if conflicts
            else ""
        )
    )
    if not failed and not conflicts:
        echo(f"report with: lionfer report {shlex.join([str(out), '--out', str(out / 'report')])}")
    return 1 if failed or conflicts else 0


def _jobs(actions: list[Action], sweep: Sweep, out: Path, shared: bool) -> list[Job]:
    return [
        Job(
            n,
            len(actions),
            a.point.folder,
            a.kind,
            train_argv(a, sweep, out, shared),
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
        elif action.note:
            echo(f"[{n}/{len(actions)}] {action.kind} {action.point.folder}: {action.note}")
        elif action.kind == "conflict":
            echo(f"[{n}/{len(actions)}] CONFLICT {action.point.folder}: {action.reason}")
            conflicts.append(action.point.folder)
    return conflicts


def _dry_run(sweep: Sweep, actions: list[Action], out: Path, echo, shared: bool) -> int:
    conflicts = _announce(sweep, actions, out, echo)
    for job in _jobs(actions, sweep, out, shared):
        echo(job.line(f"would {job.kind}: lionfer {shlex.join(job.argv)}"))
    echo("dry run: nothing was started or written")
    return 1 if conflicts else 0


def slurm_parameters(sweep: Sweep, slurm: list[str] | tuple) -> dict[str, Any]:
    """The submitit parameters: the sweep file's [slurm] table, then each --slurm KEY=VALUE (a
    ConfigError where one does not look like that)."""
    parameters = dict(sweep.slurm)
    for assignment in slurm:
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--slurm {assignment!r} must look like KEY=VALUE, e.g. --slurm timeout_min=60"
            )
        parameters[key.strip()] = parse_value(text.strip())
    return parameters


def _launch(jobs_to_run, out, slots, launcher, parameters, echo, cluster, gpus) -> list[Result]:
    if not jobs_to_run:
        return []
    if launcher == "slurm":
        return run_submitit(jobs_to_run, out / "slurm", parameters, echo, cluster=cluster)
    gpus = visible_gpus() if gpus is None else gpus
    return run_local(jobs_to_run, slots or max(len(gpus), 1), gpus, echo)
