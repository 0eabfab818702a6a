"""THE training loop: batch → algorithm step → backward → Adam → EMA → log → evaluate →
checkpoint, counted in steps, resumable exactly, with a run folder as its only output.

SIGINT and SIGTERM stop the loop at the next step boundary with checkpoints/last.pt saved and an
"interrupted" event (Interrupted is raised); any other failure in the loop writes an "error" event
and a checkpoint before it propagates. The training thread's Python warnings become "warning"
events.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import torch

from lionfer.algorithms.base import Batch, Progress
from lionfer.config import Config, to_toml
from lionfer.data.pipeline import RunData
from lionfer.distributed import LOCAL, Comm, global_labels
from lionfer.errors import CheckpointWriteError, Interrupted, NonFiniteLoss
from lionfer.stop_signals import StopSignals
from lionfer.tensorboard_log import TensorBoardLog
from lionfer.training import setup, summary
from lionfer.training.checkpoint import (
    check_state_fits,
    config_changes,
    copy_checkpoint,
    load_checkpoint,
    restore_algorithm,
    rng_state,
    save_checkpoint,
    set_rng_state,
    split_state,
)
from lionfer.training.evaluation import better_best, eval_figures, feature_probe, labeled_probs
from lionfer.training.interrupts import failure_record, stop_record
from lionfer.training.metrics_log import MetricsLog, plain
from lionfer.training.progress import (
    QuietStream,
    bar_figures,
    eval_line,
    progress_bar,
    progress_line,
)
from lionfer.training.runfolder import LAST
from lionfer.training.window import LossWatch, Window, pseudo_counts

__all__ = ["Trainer"]


def shut_down(*iterators) -> None:
    """Stop the worker processes of DataLoader iterators now, not when they are collected: a
    failed run's exception, kept by the caller (IPython's sys.last_value), would keep them."""
    for iterator in iterators:
        stop = getattr(iterator, "_shutdown_workers", None)  # DataLoader's, with workers
        if stop is not None:
            stop()


class Trainer:
    """One run's loop, given its config, run folder, data and parts (model, EMA, algorithm,
    optimiser), built by lionfer.training.setup; the streams come from there too."""

    def __init__(
        self,
        cfg: Config,
        out: Path,
        run_data: RunData,
        parts: setup.Parts,
        device: torch.device,
        progress: bool = True,
        command: str = "",
        comm: Comm = LOCAL,
    ):
        """run_data and parts: the run's data and what it trains (lionfer.training.run's
        build_trainer makes both from a config); comm: the processes of a multi-process run
        (lionfer.distributed.join); the main one writes the run folder, evaluates and saves
        checkpoints."""
        self.comm, self.is_main = comm, comm.is_main
        self.cfg, self.out, self.command = cfg, Path(out), command
        self.progress = progress and self.is_main
        self.device, self.run_data = device, run_data
        self.metrics_path = self.out / "metrics.jsonl"
        self.metrics = MetricsLog(self.metrics_path)
        self.model, self.ema, self.train_model = parts.model, parts.ema, parts.train_model
        self.algorithm, self.optimizer = parts.algorithm, parts.optimizer
        self.weights_message = parts.weights_message
        self.memory_format = setup.memory_format(cfg)
        given = set(run_data.labeled.labels.tolist())  # after any injected label noise
        names = run_data.data.class_names
        self.trained_ids = sorted(given)  # the classes predicted at evaluation
        self.trained_classes = [names[c] for c in self.trained_ids]
        truth = self.run_data.unlabeled.true_labels
        self.truth_ulb = None if truth is None else torch.as_tensor(truth, device=self.device)
        self.step, self.best, self.window = 0, {"acc": -1.0, "step": -1}, Window.empty()
        self.eval_window = Window.empty()
        self.watch = LossWatch()
        self.last_eval: dict | None = None
        self.saved_step: int | None = None  # the step of checkpoints/last.pt on disk
        self._best_due = False  # best.pt to be written beside last.pt at this step
        self.best_saved_step: int | None = None  # the step of checkpoints/best.pt written here
        self._mid_step = False  # True while a step's updates are under way
        self._at_boundary = False  # True while a step's logs, evaluation and checkpoint are made
        self.tensorboard = (
            TensorBoardLog(self.out / "tensorboard") if cfg.train.tensorboard else None
        )
        self.lines = QuietStream("stdout")  # the plain lines of progress=False

    def loaders(self):
        """The labeled stream and, for an algorithm with views, the unlabeled one, from the
        current step on."""
        return setup.loaders(self.cfg, self.run_data, self.algorithm.views, self.model,
                             self.device, self.comm, self.step, self.progress)  # fmt: skip

    # ---- checkpoints ----

    def _state(self) -> dict:
        modules = self.algorithm.modules()
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            "algorithm_modules": modules.state_dict() if modules is not None else {},
            "rng": rng_state(),
            "best": self.best,
            "window": self.window.state(),
            "eval_window": self.eval_window.state(),
            "class_names": list(self.run_data.data.class_names),
            "trained_classes": self.trained_classes,  # those with a labeled training image
            "model_name": self.cfg.model.name,
            "model_config": dataclasses.asdict(self.cfg.model),  # what shapes the network
            "image_size": self.cfg.data.image_size,
            "config": to_toml(self.cfg),  # what a resumed run must continue with
            "last_eval": self._eval_here(),  # what the summary is written from
            "split": split_state(self.run_data.split),  # what its per-image state is indexed by
        }

    def _eval_here(self) -> dict | None:
        """The evaluation of this step, if there was one, as plain values."""
        here = self.last_eval is not None and self.last_eval["step"] == self.step
        return plain(self.last_eval) if here else None

    def _restore(self, state: dict, path: Path) -> None:
        check_state_fits(state, self.algorithm.state_dict(), self.run_data, path)
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_algorithm(self.algorithm, state)
        self.best = state["best"]
        self.last_eval = state.get("last_eval")  # a run resumed at its end: the summary's figures
        self.window = Window.from_state(state["window"], self.device)
        self.eval_window = Window.from_state(state["eval_window"], self.device)
        set_rng_state(state["rng"])
        setup.seed_device_rng(self.cfg, self.comm, self.device, self.step)
        self.saved_step = self.step

    def _save(self, name: str = "last.pt") -> None:
        """Write checkpoints/<name> (the main process; the state is the same in every one).
        last.pt first where best.pt is due at the same step (_after_eval): best.pt is then a copy
        of it, so a disk with room for one more file keeps the one a resume reads."""
        if name != "error.pt":
            self._check_finite()  # a checkpoint never holds the state after a non-finite loss
        if self.is_main:
            folder = self.out / "checkpoints"
            try:
                save_checkpoint(self._state(), folder / name)
                if name == "last.pt":
                    self.saved_step = self.step
                    if self._best_due:
                        copy_checkpoint(folder / name, folder / "best.pt")
                        self.best_saved_step = self.step
                elif name == "best.pt":
                    self.best_saved_step = self.step
            except CheckpointWriteError as error:
                raise CheckpointWriteError(f"{error}; {self._last_good()}") from error
        if name == "last.pt":
            self.saved_step = self.step
            self._best_due = False

    def _check_finite(self) -> None:
        """Raise NonFiniteLoss naming the first step whose loss was NaN or infinite, and the
        step where that was noticed (the loss is checked on the device every step and read here,
        at log, evaluation and checkpoint boundaries); its logs carry the first as
        non_finite_step."""
        bad = self.watch.check()
        if bad is None:
            return
        step, logs = bad
        noticed = "" if step == self.step else f", noticed at step {self.step}"
        good = "no checkpoint to resume from was saved"
        if self.saved_step is not None:
            good = self._last_good()
        raise NonFiniteLoss(
            f"loss is {logs.get('loss')} at step {step}{noticed} (logs of step {step}: {logs}); "
            f"lower train.lr or check the data; {good}",
            {"non_finite_step": step, **logs},
        )

    def _last_good(self) -> str:
        """Where the run can go on from: last.pt's step, and best.pt where it is newer (an
        evaluation between checkpoints), with how to resume from it."""
        best, best_step = self.out / "checkpoints" / "best.pt", self.best_saved_step
        newer = best_step is not None and best_step > (
            self.saved_step if self.saved_step is not None else -1
        )
        if newer:
            return (
                f"{best} holds step {best_step}, the newest state saved: copy it over "
                f"{self.out / LAST} to resume from there"
                + ("" if self.saved_step is None else f" (last.pt holds step {self.saved_step})")
            )
        if self.saved_step is None:
            return "no checkpoint of this run was saved yet"
        return f"the last good checkpoint is {self.out / LAST} (step {self.saved_step})"

    # ---- evaluation and logging ----

    def _log(self, record: dict) -> None:
        if not self.is_main:
            return
        self.metrics.append(record)
        if self.tensorboard is not None:
            self.tensorboard.write(record)

    def _evaluate(self) -> dict:
        rd, cfg = self.run_data, self.cfg
        figures = eval_figures(self.ema.module, self.model, rd, cfg, self.device, self.trained_ids)
        record = {"event": "eval", "step": self.step, **figures}
        self.model.train()
        means = self.eval_window.means()
        record.update({k: v for k, v in means.items() if k in ("mask_rate", "pseudo_label_acc")})
        labels = self.algorithm.diagnostics(feature_probe(self.model, rd, cfg, self.device))
        if labels:
            record["labels"] = labels
        self.eval_window = Window.empty()
        return record

    def _after_eval(self, record: dict) -> None:
        self.last_eval = record
        best = better_best(self.best, record, self.step)
        if best is not None:
            self.best = best
            cfg = self.cfg.train
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self._best_due = True  # written with last.pt at this step, as its copy (_save)
            else:
                self._save("best.pt")
        self._log({k: v for k, v in record.items() if not k.endswith("_confusion")})

    # ---- the loop ----

    def _begin(self) -> None:
        """The run's first files; the start event first, so the folder is recognisably a run."""
        rd = self.run_data
        self._log(
            {
                "event": "start",
                "num_labeled": len(rd.labeled),
                "num_unlabeled": len(rd.unlabeled),
                "weights": self.weights_message,
                "notes": rd.data.notes,
            }
        )
        if self.is_main:
            world_size = self.comm.world_size
            summary.write_start(self.out, self.cfg, rd.split, self.device, self.command, world_size)

    def _resume(self) -> None:
        path = self.out / LAST
        state = load_checkpoint(path)
        self._restore(state, path)
        dropped = self.metrics.rewind(self.step) if self.is_main else 0  # trained again
        if self.is_main and self.step < self.cfg.train.steps:
            summary.unfinish_run(self.out)  # a finished run trained on (train.steps raised)
        if self.tensorboard is not None:
            self.tensorboard.rewind(self.step)
        record = {
            "event": "resume",
            "step": self.step,
            "checkpoint": str(LAST),
            "processes": self.comm.world_size,  # meta.json keeps those the run began with
            "device": str(self.device),
        }
        changed = config_changes(state, self.cfg)  # those allowed: lionfer.training.run checks
        if changed:
            record["changed"] = changed
        self._log({**record, "dropped": dropped, "notes": self.run_data.data.notes})

    def fit(self, resume: bool = False, stop_after: int | None = None) -> dict | None:
        """Train to cfg.train.steps (or stop early after `stop_after` steps of this call, saving
        a checkpoint). Returns the summary, or None when stopped early. A signal from here on
        stops the run at the next step boundary."""
        with StopSignals() as stop:
            if resume:
                self._resume()
            else:
                self._begin()
            if not self.is_main:  # the main process reports warnings once for all
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return self._loop(stop, stop_after)
            with self.metrics.recording_warnings(lambda: self.step):
                return self._loop(stop, stop_after)

    def _loop(self, stop: StopSignals, stop_after: int | None) -> dict | None:
        total, start = self.cfg.train.steps, self.step
        end = total if stop_after is None else min(total, start + stop_after)
        labeled, unlabeled = self.loaders()
        labeled_iter = iter(labeled)
        unlabeled_iter = iter(unlabeled) if unlabeled is not None else None
        bar = progress_bar(total, start, self.progress, f"{self.cfg.algorithm.name}")
        started = time.perf_counter()
        self.model.train()
        try:
            while self.step < end:
                ulb = next(unlabeled_iter) if unlabeled_iter is not None else None
                self.train_step(next(labeled_iter), ulb)
                self.step += 1
                if self.algorithm.period() and self.step % self.algorithm.period() == 0:
                    self.algorithm.on_period(self._labeled_probs)
                self._mid_step, self._at_boundary = False, True
                self._periodic(bar, started, start)
                self._at_boundary = False
                signum = self.comm.agree(stop.signum or 0)  # every process stops at this step
                if signum:
                    self._stop(signum)
            if self.step < total:
                self._save()
                return None
            return self._finish() if self.is_main else None
        except Interrupted:
            raise
        except BaseException as error:
            if (
                stop.signum is not None
                and not self._mid_step
                and not isinstance(error, NonFiniteLoss)
            ):
                # e.g. loader workers that got the same SIGTERM (Slurm signals every process), or
                # a second Ctrl-C; during the step's evaluation nothing is saved (a last.pt of
                # this step would resume after an evaluation that never happened)
                self._stop(stop.signum, cause=error, save=not self._at_boundary)
            self._fail(error)
            raise
        finally:
            bar.close()
            # a traceback the caller keeps holds this frame: stop the workers, let go of them
            shut_down(labeled_iter, unlabeled_iter)
            labeled = unlabeled = labeled_iter = unlabeled_iter = ulb = None

    def _finish(self) -> dict:
        """summary.json, relabels.csv and confusion.csv, from the last evaluation."""
        last = self.last_eval or self._evaluate()
        return summary.finish_run(
            self.out, self.cfg, self.run_data, self.algorithm, last, self.step, self.best
        )

    def _stop(self, signum: int, cause: BaseException | None = None, save: bool = True) -> None:
        if not save:
            self._log(stop_record(self.step, signum, cause))
            kept = self.saved_step  # last.pt stays as it is
            raise Interrupted(signum, self.step, str(self.out), False, kept) from cause
        self._save()
        self._log({**stop_record(self.step, signum, cause), "checkpoint": str(LAST)})
        raise Interrupted(signum, self.step, str(self.out)) from cause

    def _fail(self, error: BaseException) -> None:
        """Record a failure in the loop. At a step boundary the state is exact and goes to
        last.pt; part-way through a step it goes to error.pt (for inspection). A second Ctrl-C
        saves nothing there, nor while a step's logs, evaluation and checkpoint are made (a
        last.pt of that step would resume after an evaluation that never happened)."""
        interrupted = isinstance(error, KeyboardInterrupt)
        unsure = self._mid_step or isinstance(error, NonFiniteLoss) or self.watch.seen()
        name = "error.pt" if unsure else "last.pt"
        saved: dict = {}
        if not (interrupted and (self._mid_step or self._at_boundary)):
            try:
                self._save(name)
                saved["checkpoint"] = str(Path("checkpoints") / name)
            except CheckpointWriteError as save_error:
                saved["checkpoint_error"] = str(save_error)
        if isinstance(error, NonFiniteLoss) and "checkpoint" in saved:
            # the message, written before the save, says where the state went once it is there
            path = self.out / saved["checkpoint"]
            kept = f"the state at step {self.step} is saved as {path}, for inspection only"
            error.args = (f"{error}; {kept}",)
        record = {**failure_record(error, self.step), **saved}
        try:
            self._log(record)
        except OSError:
            pass  # e.g. the disk is full; the error itself still reaches the caller

    def train_step(self, lb, ulb) -> None:
        x_lb, y_lb, idx_lb = lb
        # ulb: (view_1, ..., view_k, labels, indices), views in the order of algorithm.views
        x_ulb, idx_ulb = (tuple(ulb[:-2]), ulb[-1]) if ulb is not None else ((), None)
        batch = Batch.from_views(x_lb, y_lb, idx_lb, self.algorithm.views, x_ulb, idx_ulb)
        batch = global_labels(batch.to(self.device, self.memory_format), self.comm)
        self._mid_step = True  # the algorithm's per-sample state may change from here on
        with setup.autocast(self.device):
            out = self.algorithm.step(
                self.train_model, batch, Progress(self.step, self.cfg.train.steps)
            )
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        self.ema.update(self.model, self.step)
        logs = {"loss": out.loss.detach(), **out.logs}
        # named as events name steps: the step that brings the run to step + 1; read at the next
        # boundary, no sync now
        self.watch.record(self.step + 1, out.loss, logs)
        correct, total = pseudo_counts(out.mask, out.pseudo_labels, self.truth_ulb, batch.idx_ulb)
        self.window.add(logs, correct, total)
        self.eval_window.add({k: v for k, v in logs.items() if k == "mask_rate"}, correct, total)

    def _labeled_probs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The EMA model's probabilities on the labeled set at this step, and the given labels:
        the main process's probabilities in every process, as the EMA's BatchNorm statistics
        may be each process's own (train.sync_batchnorm=false, or a layer it leaves alone), and
        what the algorithm makes of them must be the same everywhere."""
        probs, labels = labeled_probs(
            self.ema.module, self.run_data, self.cfg, self.step, self.device
        )
        return self.comm.broadcast(probs.contiguous()), labels

    def _periodic(self, bar, started: float, start: int) -> None:
        cfg, step = self.cfg.train, self.step
        last = step == cfg.steps
        boundaries = (cfg.log_every, cfg.eval_every, cfg.checkpoint_every)
        if last or any(step % every == 0 for every in boundaries):
            self._check_finite()
        if step % cfg.log_every == 0 or last:
            means = self.window.means()
            steps_per_s = (step - start) / max(time.perf_counter() - started, 1e-9)
            self._log({"event": "train", "step": step, "steps_per_s": steps_per_s, **means})
            bar.set_postfix(**bar_figures(means, self.best, steps_per_s))
            if self.is_main and not self.progress:
                self.lines.print(progress_line(step, cfg.steps, means, steps_per_s))
            self.window = Window.empty()
        if (step % cfg.eval_every == 0 or last) and not self.is_main:
            self.eval_window = Window.empty()  # the main process evaluates
        elif step % cfg.eval_every == 0 or last:
            record = self._evaluate()
            self._after_eval(record)
            bar.set_postfix(test_acc=f"{record['test_acc']:.3f}")
            if not self.progress:
                self.lines.print(eval_line(step, cfg.steps, record["test_acc"]))
        if step % cfg.checkpoint_every == 0 or last:
            self.comm.check_identical(
                self.algorithm.state_dict(), f"algorithm state at step {step}"
            )
            self._save()
        bar.update(1)
