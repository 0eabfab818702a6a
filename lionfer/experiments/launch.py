"""Carrying out a sweep's runs (`lionfer train` jobs): N at a time as local subprocesses (one GPU
per slot where GPUs are visible, a share of the CPU cores each), or as cluster jobs through
submitit. A job that fails is reported with the end of its log; the others go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lionfer.errors import ConfigError

LIONFER = (sys.executable, "-m", "lionfer.cli")  # how a local run is started


@dataclass
class Job:
    """One `lionfer train` run to carry out."""

    number: int  # 1-based position in the sweep, for progress lines
    total: int  # runs in the sweep
    name: str  # the run folder relative to the sweep folder
    kind: str  # start, resume or restart
    argv: list[str]  # `lionfer` arguments
    run: Path  # the run folder, whose summary.json says how it went
    log: Path  # the run's output

    def line(self, text: str) -> str:
        return f"[{self.number}/{self.total}] {text}"


@dataclass
class Result:
    name: str
    ok: bool
    message: str


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [d.strip() for d in listed.split(",") if d.strip()]
        return [] if not ids or ids[0] == "-1" else ids
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def child_env(slot: int, gpus: list[str], threads: int) -> dict[str, str]:
    """A run's environment: this lionfer on the path, one GPU per slot, a share of the cores."""
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[2]  # lionfer/experiments/launch.py → the checkout
    if (root / "pyproject.toml").is_file():  # a source checkout: its code, not an installed copy
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    env.setdefault("OMP_NUM_THREADS", str(threads))
    return env


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def outcome(job: Job, code: int, seconds: float, log: Path) -> Result:
    """How a job ended, as its progress line tells it."""
    if code == 0:
        try:
            acc = json.loads((job.run / "summary.json").read_text()).get("test_acc")
        except (OSError, ValueError):
            acc = None
        shown = f"test_acc {100 * acc:.2f}%" if isinstance(acc, float) else "finished"
        return Result(job.name, True, f"{shown} in {seconds:.0f} s")
    message = f"exit {code} after {seconds:.0f} s: {_last_line(log)} (log: {log})"
    return Result(job.name, False, message)


def _report(result: Result, job: Job, echo: Callable[[str], None]) -> Result:
    echo(job.line(f"{'done' if result.ok else 'FAILED'} {result.name}: {result.message}"))
    return result


def run_local(
    jobs: list[Job],
    slots: int,
    gpus: list[str],
    echo: Callable[[str], None],
    poll_s: float = 0.2,
) -> list[Result]:
    """Carry out the jobs as `python -m lionfer.cli` subprocesses, `slots` at a time."""
    threads = max(1, (os.cpu_count() or 1) // slots)
    pending, running, results, free = list(jobs), {}, [], list(range(slots))
    try:
        while pending or running:
            while pending and free:
                job, slot = pending.pop(0), free.pop(0)
                job.log.parent.mkdir(parents=True, exist_ok=True)
                log = job.log.open("a")
                process = subprocess.Popen(
                    [*LIONFER, *job.argv],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=child_env(slot, gpus, threads),
                )
                running[slot] = (job, process, log, time.monotonic())
                device = f" on GPU {gpus[slot % len(gpus)]}" if gpus else ""
                echo(job.line(f"{job.kind} {job.name}{device}"))
            time.sleep(poll_s)
            for slot, (job, process, log, started) in list(running.items()):
                if process.poll() is None:
                    continue
                log.close()
                del running[slot]
                free.append(slot)
                result = outcome(job, process.returncode, time.monotonic() - started, job.log)
                results.append(_report(result, job, echo))
    except KeyboardInterrupt:
        # The runs got the same Ctrl-C and save their checkpoints; wait for them to do so.
        for _job, process, log, _started in running.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
        raise
    return results


def run_in_process(argv: list[str], cwd: str) -> int:
    """A cluster job: `lionfer ...` on the node, its output in the job's log; raises when the
    run fails."""
    code = subprocess.run([*LIONFER, *argv], cwd=cwd).returncode
    if code != 0:
        raise RuntimeError(f"lionfer {' '.join(argv)} exited with {code}")
    return code


def _executor(folder: Path, parameters: dict, cluster: str):
    try:
        import submitit
    except ImportError as error:
        raise ConfigError(
            "--launcher slurm needs the submitit package: pip install 'lionfer[slurm]'"
        ) from error
    try:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
        executor.update_parameters(**{"name": "lionfer", **parameters})
    except RuntimeError as error:
        raise ConfigError(f"--launcher slurm: {error}; use --launcher local") from error
    except (NameError, ValueError, TypeError) as error:
        raise ConfigError(f"submitit parameters ([slurm] or --slurm KEY=VALUE): {error}") from error
    return executor


def run_submitit(
    jobs: list[Job],
    folder: Path,
    parameters: dict,
    echo: Callable[[str], None],
    cluster: str = "slurm",
    poll_s: float = 1.0,
) -> list[Result]:
    """Submit the jobs through submitit (Slurm; cluster="local" runs them on this machine),
    record the job ids in FOLDER/jobs.tsv, and wait for them."""
    executor = _executor(folder, parameters, cluster)
    submitted, results = [], []
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "jobs.tsv").open("a") as ledger:
        for job in jobs:
            handle = executor.submit(run_in_process, job.argv, os.getcwd())
            submitted.append((job, handle, time.monotonic()))
            ledger.write(f"{handle.job_id}\t{job.name}\n")
            echo(job.line(f"submitted {job.name} as job {handle.job_id}"))
    try:
        while submitted:
            time.sleep(poll_s)
            for entry in [e for e in submitted if e[1].done()]:
                submitted.remove(entry)
                job, handle, started = entry
                try:
                    handle.result()
                    code = 0
                except Exception:  # the job's own log says why; the sweep goes on
                    code = 1
                log = Path(handle.paths.stdout if code == 0 else handle.paths.stderr)
                result = outcome(job, code, time.monotonic() - started, log)
                results.append(_report(result, job, echo))
    except KeyboardInterrupt:
        echo(
            f"the submitted jobs keep running (ids in {folder / 'jobs.tsv'}); wait for them or "
            "cancel them before running the sweep again"
        )
        raise
    return results
