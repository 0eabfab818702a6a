"""train(): one run from its config (or, on resume, its run folder) to its summary: the checks
before anything is written, the processes of a torchrun run, the Trainer and its fit; and
build_trainer(), a Trainer made from a config (device, checks, data, parts)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from lionfer.config import WEIGHT_SETS, Config, load_config, replace, resolve_paths
from lionfer.config_sections import SEED_LIMIT
from lionfer.data.pipeline import RunData, build_run_data
from lionfer.device import resolve_device
from lionfer.distributed import LOCAL, Comm, join, leave, process_device
from lionfer.errors import ConfigError, InputError
from lionfer.run_lock import RunLock, check_unlocked
from lionfer.training import setup
from lionfer.training.checkpoint import (
    check_resume_config,
    config_values,
    describe_changes,
    load_checkpoint,
    resume_fix,
)
from lionfer.training.progress import QuietStream
from lionfer.training.runfolder import LAST, check_run_dir, create_run_dir, words_for
from lionfer.training.trainer import Trainer
from lionfer.unread import check_new_run

# One run at a time in a process: runs draw from the process's random generators (torch's,
# Python's), so two at once in two threads would not repeat.
_RUNNING = threading.Lock()


def train(
    cfg: Config | None,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    command: str = "",
    device: str | None = None,
) -> dict | None:
    """Train one run into `out`; on resume the run's saved config is used (cfg may be None, or
    must equal it), on `device` when one is given (e.g. a run begun on a GPU continued on a
    CPU). Started by torchrun, the processes share the run (lionfer.distributed); the main one
    writes the run folder and returns the summary, the others None.

    One run at a time in a process, from any thread (signals stop it gracefully only from the
    main thread); the process's random generators (torch's, Python's, numpy's, and torch's on
    the GPUs where the process had started CUDA) are left as they were found.

    `command` is the command line that started the run (for meta.json): the command line passes
    it, and a refused run folder then names its flags (--resume, --overwrite, --out); called
    without one, the refusal names train()'s arguments (resume=True, overwrite=True, out).

    Raises InputError (bad arguments, config, data or run folder: nothing is written),
    Interrupted (SIGINT or SIGTERM: checkpoints/last.pt saved), or the failure of a step (an
    "error" event and a checkpoint are written first). It trains whatever grad mode the caller
    is in (no_grad, inference_mode), but only with torch's default dtype float32."""
    check_arguments(cfg, out, resume, overwrite, stop_after, progress)
    if not _RUNNING.acquire(blocking=False):
        raise InputError(
            "train() is already running in this process (in another thread): runs share the "
            "process's random generators, so two at once would not repeat; train one after the "
            "other, or in separate processes (lionfer sweep --jobs N runs several at a time)"
        )
    generators = None
    try:
        generators = random_state()
        args = (resume, overwrite, stop_after, progress, command, device)
        with torch.enable_grad(), torch.inference_mode(False):  # under a caller's no_grad too
            result = train_locked(cfg, Path(out).expanduser(), *args)  # "~": as a shell reads it
    except BaseException:
        with contextlib.suppress(Exception):  # a GPU in error may refuse: the run's error stands
            if generators is not None:
                set_random_state(generators)
        raise
    else:
        try:
            set_random_state(generators)
        except Exception as error:  # the run is done and saved: say so, and return it
            message = f"the process's random generators were not restored: {error}"
            warnings.warn(message, stacklevel=2)
        return result
    finally:
        _RUNNING.release()  # whatever happened, the next train() may run


def check_arguments(cfg, out, resume, overwrite, stop_after, progress) -> None:
    """train()'s arguments, refused with ConfigError (an InputError) naming the argument and
    what to pass, before anything is read or written; and torch's default dtype."""
    if cfg is not None and not isinstance(cfg, Config):
        raise ConfigError(
            f"train() takes a Config, not a {type(cfg).__name__}: build one with "
            "lionfer.config.load_config(path, overrides) (a TOML file and 'key=value' strings)"
        )
    if cfg is None and not resume:
        raise ConfigError(
            "train() needs a Config unless it resumes a run (resume=True): "
            "lionfer.config.load_config() builds the default one"
        )
    if cfg is not None and (type(cfg.seed) is not int or not 0 <= cfg.seed < SEED_LIMIT):
        raise ConfigError(
            f"train(): cfg.seed must be an int from 0 to 2**63 - 1, got {cfg.seed!r}: set it with "
            "lionfer.config.replace(cfg, 'seed=1') or dataclasses.replace(cfg, seed=1)"
        )
    if not isinstance(out, str | os.PathLike):
        raise ConfigError(f"train(): out must be a folder path (a str or a Path), got {out!r}")
    flags = {"resume": resume, "overwrite": overwrite, "progress": progress}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"train(): {name} must be True or False, got {value!r}")
    if stop_after is not None and (type(stop_after) is not int or stop_after < 0):
        raise ConfigError(
            f"train(): stop_after must be None (train to train.steps) or a number of steps "
            f"(an int >= 0), got {stop_after!r}"
        )
    if resume and overwrite:
        raise ConfigError("a run is either resumed or overwritten: drop resume or overwrite")
    if torch.get_default_dtype() != torch.float32:
        raise InputError(
            f"train() trains in float32, but torch's default dtype is "
            f"{torch.get_default_dtype()}: call torch.set_default_dtype(torch.float32) "
            "before train() (and set it back after, if you need it)"
        )


def train_locked(cfg, out: Path, resume, overwrite, stop_after, progress, command, device):
    """train()'s work, once it holds the process's run lock and its arguments are checked."""
    progress = progress and sys.stderr is not None  # no bars without a stream to draw them on
    comm = join(resolve_device(joining_device(cfg, out, resume, device)))
    lock = RunLock()  # the main process writes the run folder: no other process at once
    finished = False
    try:
        # the checks before the data are read, in every process; the main process takes the run
        # folder too: where they fail in one process, every process stops (none is left waiting)
        words = words_for(command)  # the refusals name --resume, or resume=True from Python
        checks = (resume, overwrite, device, comm, lock, words)
        cfg = comm.settle(lambda: checked_config(cfg, out, *checks))
        summary = train_here(cfg, out, resume, overwrite, stop_after, progress, command, comm, lock)
        finished = True
        return summary
    finally:
        lock.release()
        # train_here's Trainer is gone by now, and with it the DistributedDataParallel model,
        # which holds the process group: no gloo work outlives the group into the exit
        leave(comm, finished)


def joining_device(cfg, out: Path, resume: bool, device: str | None) -> str:
    """The device that picks the process group's backend, before the checks: on resume the run's
    config's (or `device`), where it can be read (else the checks refuse the run anyway)."""
    if device:
        return device
    if resume:
        try:
            return load_config(out / "config.toml").train.device
        except (ConfigError, OSError):
            return "cpu"
    return cfg.train.device if cfg is not None else "cpu"


def checked_config(
    cfg, out: Path, resume, overwrite, device, comm: Comm, lock: RunLock, words: dict
) -> Config:
    """The run's config, once the run folder can be written as asked (and, resumed, its
    checkpoint continued with it), refused before the data are read; the main process holds a
    resumed run's folder from here on. Warnings are shown by the main process alone."""
    with warnings.catch_warnings():
        if not comm.is_main:
            warnings.simplefilter("ignore")
        if comm.is_main:  # a run training there is refused as such, before what its folder holds
            check_unlocked(out)
        check_run_dir(out, resume, overwrite, words)
        if not resume:
            cfg = resolve_paths(cfg)
            check_new_run(cfg, out)  # settings that would do nothing, a folder inside the data
            return cfg
        try:  # a resumed run continues with its own config
            saved = load_config(out / "config.toml")
        except ConfigError as error:
            raise ConfigError(f"cannot resume {out}: {out / 'config.toml'}: {error}") from error
        if cfg is not None:
            check_same_config(resolve_paths(cfg), saved, out)
        cfg = replace(saved, f"train.device={device}") if device else saved
        check_resume(cfg, out)
    if comm.is_main:
        lock.acquire(out)
    return cfg


def check_resume(cfg: Config, out: Path) -> None:
    """The run's checkpoints/last.pt is readable and was trained with cfg (what may differ:
    lionfer.training.checkpoint.RESUME_FREE, and train.steps, with a warning); refused before
    the data are read. The Trainer reads the checkpoint again to resume from it."""
    state = load_checkpoint(out / LAST, fix=resume_fix(out))
    changed = check_resume_config(state, cfg, out / LAST)
    if "train.steps" in changed:
        then, now = changed["train.steps"]
        warnings.warn(
            f"train.steps is {now} in {out / 'config.toml'}, {then} when the run began: it "
            f"continues to step {now}, and what follows the run's length (warm-ups, schedules) "
            f"follows {now} steps from here on, so it no longer equals an uninterrupted run of "
            "either length",
            stacklevel=7,
        )


def check_same_config(given: Config, saved: Config, out: Path) -> None:
    """On resume, a config passed to train() is the run's own (config.toml) or nothing."""
    theirs, ours = config_values(saved), config_values(given)
    differ = {k: [v, ours.get(k)] for k, v in theirs.items() if ours.get(k) != v}
    if differ:
        raise ConfigError(
            f"resume continues the run in {out} with its own config ({out / 'config.toml'}), "
            f"and the config given differs from it: {describe_changes(differ, 'there', 'given')}; "
            "pass cfg=None to continue the run as it is (device=... for another device), or "
            "train the new config as a new run into another folder"
        )


def random_state() -> tuple:
    """The process's random generators: torch's on the CPU, Python's, numpy's, and torch's on
    each GPU where the process uses CUDA already (reading them would start CUDA otherwise)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), random.getstate(), np.random.get_state(), cuda


def set_random_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    random.setstate(state[1])
    np.random.set_state(state[2])
    if state[3] is not None:
        torch.cuda.set_rng_state_all(state[3])


def train_here(
    cfg, out, resume, overwrite, stop_after, progress, command, comm, lock: RunLock
) -> dict | None:
    """train()'s work in this process, between joining the process group and leaving it."""

    def build() -> Trainer:  # data and model first, so a bad root or weights file leaves no run
        data = None
        if resume:  # every process reads its data itself: none may wait for one that failed
            split = dataclasses.replace(cfg.data, split_file=str(out / "split.json"))
            data = comm.settle(
                lambda: build_run_data(split, cfg.seed, progress and comm.is_main, reread="resume")
            )
        return build_trainer(cfg, out, data, progress, command, comm, pretrained=not resume)

    if command and comm.is_main:  # the command line: the data's notes too, before training
        caught, trainer = [], None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                trainer = build()
        finally:  # the warnings even where building failed
            notes = list(trainer.run_data.data.notes) if trainer else []
            if trainer and not resume and cfg.model.pretrained not in ("", *WEIGHT_SETS):
                notes.append(f"model.pretrained: {trainer.weights_message}")  # a file's
            show_notes(notes, caught)
    else:
        trainer = build()
    if not resume:  # the main process makes the run folder; every process learns how it went
        words = words_for(command)
        comm.settle(lambda: create_run_dir(out, overwrite, lock, words) if comm.is_main else None)
    return trainer.fit(resume=resume, stop_after=stop_after)


def show_notes(notes: list[str], caught: list[warnings.WarningMessage]) -> None:
    """The warnings caught, shown, then the notes that none of them already said."""
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    said = {str(w.message) for w in caught}
    for note in notes:
        if note not in said:
            QuietStream("stderr").print(f"note: {note}")


def build_trainer(
    cfg: Config,
    out: str | Path,
    run_data: RunData | None = None,
    progress: bool = True,
    command: str = "",
    comm: Comm = LOCAL,
    pretrained: bool = True,
) -> Trainer:
    """A Trainer for `cfg` writing into `out`: this process's device, the batch and label checks,
    the run's data (read from cfg.data unless given) and its parts, seeded by cfg.seed;
    pretrained=False: without reading model.pretrained (a resumed run's checkpoint has the
    weights)."""
    device = process_device(resolve_device(cfg.train.device), comm)
    comm.settle(lambda: setup.check_batch_sizes(cfg, comm))  # the main process says it

    def checked_data() -> RunData:
        data = run_data
        if data is None:
            data = build_run_data(setup.data_config(cfg), cfg.seed, progress and comm.is_main)
        setup.check_all_labeled(cfg, data)
        setup.check_unlabeled(cfg, data)
        setup.check_labeled_classes(cfg, data)
        setup.check_cache_memory(cfg, data)
        return data

    # Every process reads the data itself (a root missing on one node fails there alone): all
    # learn how it went before the model's collectives, where the others would wait.
    run_data = comm.settle(checked_data)
    parts = setup.build_parts(cfg, run_data, device, comm, pretrained)
    return Trainer(cfg, out, run_data, parts, device, progress, command, comm)


__all__ = ["build_trainer", "train"]
