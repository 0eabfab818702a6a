"""train(): one run from its config (or, on resume, its run folder) to its summary: the checks
before anything is written, the processes of a torchrun run, the Trainer and its fit; and
build_trainer(), a Trainer made from a config (device, checks, data, parts)."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

from lionfer.config import Config, load_config, replace, resolve_paths
from lionfer.data.pipeline import RunData, build_run_data
from lionfer.device import resolve_device
from lionfer.distributed import LOCAL, Comm, join, leave, process_device
from lionfer.training import setup
from lionfer.training.runfolder import check_run_dir, create_run_dir
from lionfer.training.trainer import Trainer
from lionfer.unread import check_new_run


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
    """Train one run into `out`; on resume the run's saved config is used (cfg may be None), on
    `device` when one is given (e.g. a run begun on a GPU continued on a CPU). Started by
    torchrun, the processes share the run (lionfer.distributed); the main one writes the run
    folder and returns the summary, the others None.

    Raises InputError (bad config, data or run folder: nothing is written), Interrupted (SIGINT or
    SIGTERM: checkpoints/last.pt saved), or the failure of a step (an "error" event and a
    checkpoint are written first)."""
    out = Path(out)
    check_run_dir(out, resume, overwrite)
    if resume:
        cfg = load_config(out / "config.toml")  # a resumed run continues with its own config
        if device:
            cfg = replace(cfg, f"train.device={device}")
    else:
        cfg = resolve_paths(cfg)
    comm = join(resolve_device(cfg.train.device))
    finished = False
    try:
        summary = train_here(cfg, out, resume, overwrite, stop_after, progress, command, comm)
        finished = True
        return summary
    finally:
        # train_here's Trainer is gone by now, and with it the DistributedDataParallel model,
        # which holds the process group: no gloo work outlives the group into the exit
        leave(comm, finished)


def train_here(cfg, out, resume, overwrite, stop_after, progress, command, comm) -> dict | None:
    """train()'s work in this process, between joining the process group and leaving it."""
    if not resume:  # a finished run's config is not judged again
        check_new_run(cfg, out)  # settings that would do nothing, a folder inside the data

    def build() -> Trainer:  # data and model first, so a bad root or weights file leaves no run
        data = None
        if resume:
            split = dataclasses.replace(cfg.data, split_file=str(out / "split.json"))
            data = build_run_data(split, cfg.seed, progress and comm.is_main)
        return build_trainer(cfg, out, data, progress, command, comm)

    if command and comm.is_main:  # the command line: the data's notes too, before training
        caught, trainer = [], None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                trainer = build()
        finally:  # the warnings even where building failed
            show_notes(trainer.run_data.data.notes if trainer else [], caught)
    else:
        trainer = build()
    if not resume and comm.is_main:
        create_run_dir(out, overwrite)
    comm.barrier()
    return trainer.fit(resume=resume, stop_after=stop_after)


def show_notes(notes: list[str], caught: list[warnings.WarningMessage]) -> None:
    """The warnings caught, shown, then the notes that none of them already said."""
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    said = {str(w.message) for w in caught}
    for note in notes:
        if note not in said:
            print(f"note: {note}", file=sys.stderr, flush=True)


def build_trainer(
    cfg: Config,
    out: str | Path,
    run_data: RunData | None = None,
    progress: bool = True,
    command: str = "",
    comm: Comm = LOCAL,
) -> Trainer:
    """A Trainer for `cfg` writing into `out`: this process's device, the batch and label checks,
    the run's data (read from cfg.data unless given) and its parts, seeded by cfg.seed."""
    device = process_device(resolve_device(cfg.train.device), comm)
    setup.check_batch_sizes(cfg, comm)
    if run_data is None:
        run_data = build_run_data(setup.data_config(cfg), cfg.seed, progress and comm.is_main)
    setup.check_all_labeled(cfg, run_data)
    setup.check_unlabeled(cfg, run_data)
    setup.check_labeled_classes(cfg, run_data)
    parts = setup.build_parts(cfg, run_data, device, comm)
    return Trainer(cfg, out, run_data, parts, device, progress, command, comm)


__all__ = ["build_trainer", "train"]
