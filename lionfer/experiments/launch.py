"""Carrying out a sweep's runs (`lionfer train` jobs): N at a time as local subprocesses (one GPU
per slot where GPUs are visible, a share of the CPU cores each), or as cluster jobs through
submitit. A job that fails is reported with the end of its log; the others go on. A sweep stopped
by Ctrl-C or SIGTERM asks its local runs to save and stop, and waits for them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lionfer.errors import ConfigError, Interrupted

# How a local run is started. -P: without the current folder on the import path, which `-m`
# puts there, so that a user's own grp.py or torch.py there is not imported in place of Python's
# (lionfer itself is found installed, or through the PYTHONPATH that with_lionfer sets).
LIONFER = (sys.executable, "-P", "-m", "lionfer.cli")


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


def with_lionfer(env: dict[str, str]) -> dict[str, str]:
    """The environment with this lionfer on the import path where it is a source checkout (its
    code, not an installed copy)."""
    env = dict(env)
    root = Path(__file__).resolve().parents[2]  # lionfer/experiments/launch.py → the checkout
    if (root / "pyproject.toml").is_file():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def child_env(slot: int, gpus: list[str], threads: int) -> dict[str, str]:
    """A run's environment: this lionfer on the path, one GPU per slot, a share of the cores."""
    env = with_lionfer(os.environ)
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


class SweepStopped(Interrupted):
    """The sweep got SIGTERM; its runs were asked to save their checkpoints and stop. An
    Interrupted, so that the command line exits 128 + N, with the sweep's own message."""

    def __init__(self, signum: int):
        KeyboardInterrupt.__init__(self, f"the sweep was stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (kill, a scheduler) ends the sweep the way Ctrl-C does, through the code that
    stops its runs, rather than at once, which would leave them running on their own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SweepStopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_runs(running: dict, timeout_s: float = 60.0) -> None:
    """Ask every running run to save its checkpoint and stop (SIGTERM: Ctrl-C reaches them by
    the terminal, a signal sent to the sweep alone does not, and a run already stopping ignores
    it), then wait for them; a run that does not stop in time is killed."""
    for _job, process, _log, _started in running.values():
        if process.poll() is None:
            process.terminate()
    for _job, process, log, _started in running.values():
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _start(job: Job, slot: int, gpus: list[str], threads: int, echo) -> tuple:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    log = job.log.open("a")
    process = subprocess.Popen(
        [*LIONFER, *job.argv],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env(slot, gpus, threads),
    )
    device = f" on GPU {gpus[slot % len(gpus)]}" if gpus else ""
    echo(job.line(f"{job.kind} {job.name}{device}"))
    return job, process, log, time.monotonic()


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
    with stop_on_sigterm():
        try:
            while pending or running:
                while pending and free:
                    slot = free.pop(0)
                    running[slot] = _start(pending.pop(0), slot, gpus, threads, echo)
                time.sleep(poll_s)
                for slot, (job, process, log, started) in list(running.items()):
                    if process.poll() is None:
                        continue
                    log.close()
                    del running[slot]
                    free.append(slot)
                    seconds = time.monotonic() - started
                    results.append(
                        _report(outcome(job, process.returncode, seconds, job.log), job, echo)
                    )
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as SweepStopped
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one: let them stop
            stop_runs(running)
            raise
    return results


def run_in_process(argv: list[str], cwd: str) -> int:
    """A cluster job: `lionfer ...` on the node, its output in the job's log; raises when the
    run fails."""
    code = subprocess.run([*LIONFER, *argv], cwd=cwd, env=with_lionfer(os.environ)).returncode
    if code != 0:
        raise RuntimeError(f"lionfer {' '.join(argv)} exited with {code}")
    return code


def submitit_module():
    """The submitit package, or a ConfigError saying how to install it (before anything of a
    sweep is written, and where it submits)."""
    try:
        import submitit
    except ImportError as error:
        raise ConfigError(
            "--launcher slurm needs the submitit package: pip install 'lionfer[slurm]'"
        ) from error
    return submitit


def _executor(folder: Path, parameters: dict, cluster: str):
    submitit = submitit_module()
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
