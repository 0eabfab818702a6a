"""THE training loop: batch → algorithm step → backward → Adam → EMA → log → evaluate →
checkpoint, counted in steps, resumable exactly, with a run folder as its only output.

SIGINT and SIGTERM stop the loop at the next step boundary with checkpoints/last.pt saved and an
"interrupted" event (Interrupted is raised); any other failure in the loop writes an "error" event
and a checkpoint before it propagates. Python warnings become "warning" events.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lionfer import report
from lionfer.algorithms.base import Algorithm, AlgorithmInfo, Batch, Probe, Progress
from lionfer.checkpoint import (
    check_state_fits,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from lionfer.config import Config, load_config, replace, resolve_paths, save_config
from lionfer.data import transforms
from lionfer.data.base import ImageSet
from lionfer.data.cache import cache_images
from lionfer.data.loaders import DeviceStream, eval_loader, stream_loader
from lionfer.data.pipeline import RunData, build_run_data
from lionfer.distributed import (
    LOCAL,
    Comm,
    check_divisible,
    join,
    leave,
    process_device,
    sync_batchnorm,
    wrap,
)
from lionfer.ema import ModelEMA
from lionfer.errors import (
    CheckpointWriteError,
    ConfigError,
    InputError,
    Interrupted,
    MissingInputError,
    NonFiniteLoss,
    RunExistsError,
)
from lionfer.interrupts import StopSignals
from lionfer.metrics import accuracy, confusion_matrix
from lionfer.models import build_model, load_weights
from lionfer.registry import ALGORITHMS
from lionfer.runfolder import LAST, MetricsLog, check_run_dir, create_run_dir
from lionfer.tensorboard_log import TensorBoardLog
from lionfer.window import LossWatch, Window

__all__ = ["NonFiniteLoss", "RunExistsError", "Trainer", "train"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if device.type in available and not available[device.type]():
        raise ConfigError(
            f"train.device={name} but {device.type} is not available here; use train.device=cpu "
            "or auto (to continue a run here: lionfer train --resume --out RUN --device cpu)"
        )
    return device


def confusion_on(model, images, num_classes: int, cfg: Config, device) -> np.ndarray:
    """The (C, C) test confusion matrix of `model` on an ImageSet, eval transform, no TTA."""
    tf = transforms.evaluate(cfg.data.image_size, model.mean, model.std)
    loader = eval_loader(images, tf, cfg.train.eval_batch_size, cfg.data.num_workers)
    predicted, _ = predict(model, loader, device)
    return confusion_matrix(images.labels, predicted, num_classes)


def data_config(cfg: Config):
    """The data section a run is built from: every training image labeled when the algorithm
    declares uses_all_labels (data.num_labels is then ignored)."""
    if ALGORITHMS.get(cfg.algorithm.name).uses_all_labels:
        return dataclasses.replace(cfg.data, num_labels=-1)
    return cfg.data


def check_all_labeled(cfg: Config, run_data: RunData) -> None:
    """An algorithm that uses every label must not get a split that hides some (a split file)."""
    hidden = int((run_data.data.train.labels[run_data.split.unlabeled] >= 0).sum())
    if ALGORITHMS.get(cfg.algorithm.name).uses_all_labels and hidden:
        raise ConfigError(
            f"algorithm {cfg.algorithm.name} trains on every training image, but the split "
            f"{cfg.data.split_file or ''} leaves {hidden} of them unlabeled; drop "
            "data.split_file, or use a split made with data.num_labels=-1"
        )


@torch.no_grad()
def predict(model: torch.nn.Module, loader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, probabilities) for every image of an evaluation loader."""
    model.eval()
    probs = []
    for images, _, _ in loader:
        logits = model(images.to(device)).logits.float()
        probs.append(logits.softmax(dim=1).cpu())
    probs = torch.cat(probs).numpy()
    return probs.argmax(axis=1), probs


def build_algorithm(cfg: Config, run_data: RunData, model) -> Algorithm:
    """The run's algorithm, told what it may know of the data and the model."""
    info = AlgorithmInfo(
        run_data.num_classes,
        len(run_data.labeled),
        len(run_data.unlabeled),
        model.feature_dim,
        torch.as_tensor(run_data.labeled.labels),
        tuple(run_data.data.class_names),
    )
    return ALGORITHMS.get(cfg.algorithm.name)(cfg.algorithm.params, info)


def feature_probe(model, run_data: RunData, cfg: Config, device) -> Probe:
    """Features of `model` (eval mode) on the labeled or test set, computed on first use."""
    cache = {}

    def features(part: str):
        if part not in cache:
            images = {"labeled": run_data.labeled, "test": run_data.test}[part]
            cache[part] = features_of(model, images, cfg, device)
        return cache[part]

    return Probe(run_data.labeled.true_labels, features, run_data.labeled.error_types)


@torch.no_grad()
def features_of(model, images, cfg: Config, device) -> tuple[torch.Tensor, np.ndarray]:
    """(unit-norm features q (N, D) on the CPU, labels (N,)) of an ImageSet, eval mode."""
    tf = transforms.evaluate(cfg.data.image_size, model.mean, model.std)
    loader = eval_loader(images, tf, cfg.train.eval_batch_size, cfg.data.num_workers)
    was_training = model.training
    model.eval()
    features = [model(x.to(device)).features.float().cpu() for x, _, _ in loader]
    model.train(was_training)
    return torch.cat(features), images.labels


class Trainer:
    def __init__(
        self,
        cfg: Config,
        out: Path,
        run_data: RunData | None = None,
        progress: bool = True,
        command: str = "",
        comm: Comm = LOCAL,
    ):
        """comm: the processes of a multi-process run (lionfer.distributed.join); the main one
        writes the run folder, evaluates and saves checkpoints."""
        self.comm, self.is_main = comm, comm.is_main
        self.cfg, self.out, self.command = cfg, Path(out), command
        self.progress = progress and self.is_main
        self.device = process_device(resolve_device(cfg.train.device), comm)
        sizes = {"train.batch_size": cfg.train.batch_size}
        sizes["batch_size x unlabeled_ratio"] = cfg.train.batch_size * cfg.train.unlabeled_ratio
        check_divisible(sizes, comm)
        self.run_data = run_data or build_run_data(
            data_config(cfg), cfg.seed, progress=self.progress
        )
        check_all_labeled(cfg, self.run_data)
        self.metrics_path = self.out / "metrics.jsonl"
        self.metrics = MetricsLog(self.metrics_path)
        self._build()

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.cfg.train.channels_last else torch.preserve_format

    def _build(self) -> None:
        cfg, rd = self.cfg, self.run_data
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.model = build_model(dataclasses.replace(cfg.model, pretrained=""), rd.num_classes)
        self.weights_message = "random init"
        if cfg.model.pretrained:
            self.weights_message = _load_weights(self.model, cfg.model)
        self.model.to(self.device, memory_format=self.memory_format)
        self.ema = ModelEMA(self.model, cfg.train.ema_decay)  # plain BatchNorm: evaluated alone
        synced = cfg.train.sync_batchnorm and self.comm.world_size > 1
        if synced:
            self.model = sync_batchnorm(self.model, self.comm, self.device)
        self.train_model = wrap(self.model, self.comm, self.device, synced)
        if cfg.train.compile:
            self.train_model = torch.compile(self.train_model)
        self._seed_device_rng()
        self.algorithm = build_algorithm(cfg, rd, self.model)
        self.algorithm.comm = self.comm
        self.algorithm.to(self.device)
        groups = [{"params": self.model.parameters()}]
        if self.algorithm.modules() is not None:  # e.g. a rotation head, trained with the model
            groups.append({"params": self.algorithm.modules().parameters()})
        cuda = self.device.type == "cuda"
        self.optimizer = torch.optim.Adam(  # fused on a GPU: one kernel, no host reads;
            groups,  # on a CPU the multi-tensor update, which computes what the per-tensor one does
            lr=cfg.train.lr,
            weight_decay=cfg.train.weight_decay,
            fused=True if cuda else None,
            foreach=None if cuda else True,
        )
        truth = rd.unlabeled.true_labels
        self.truth_ulb = None if truth is None else torch.as_tensor(truth, device=self.device)
        self.step, self.best, self.window = 0, {"acc": -1.0, "step": -1}, Window.empty()
        self.eval_window = Window.empty()
        self.watch = LossWatch()
        self.last_eval: dict | None = None
        self.saved_step: int | None = None  # the step of checkpoints/last.pt on disk
        self._mid_step = False  # True while a step's updates are under way
        self.tensorboard = (
            TensorBoardLog(self.out / "tensorboard") if cfg.train.tensorboard else None
        )

    def _seed_device_rng(self) -> None:
        """With several processes on GPUs, each draws its own dropout masks: the GPU generator is
        seeded by (seed, rank, step); the CPU generator, which the algorithms draw from, stays the
        same on every process."""
        if self.comm.world_size > 1 and self.device.type == "cuda":
            torch.cuda.manual_seed(hash((self.cfg.seed, self.comm.rank, self.step)) % 2**62)

    def _training_sets(self) -> tuple[ImageSet, ImageSet]:
        """The labeled and unlabeled training images, through the uint8 cache when asked (or
        when the views are made on the device, which needs it)."""
        cfg, rd = self.cfg.data, self.run_data
        if not (cfg.cache_images or cfg.augment_on == "device"):
            return rd.labeled, rd.unlabeled
        return tuple(
            cache_images(images, cfg.image_size, cfg.num_workers, self.progress, what)
            for images, what in ((rd.labeled, "labeled"), (rd.unlabeled, "unlabeled"))
        )

    def _loaders(self):
        """The labeled stream (weak views) and, for an algorithm with views, the unlabeled one."""
        cfg = self.cfg
        labeled_set, unlabeled_set = self._training_sets()
        sizes = (cfg.train.batch_size, cfg.train.batch_size * cfg.train.unlabeled_ratio)
        streams = [(labeled_set, ("weak",), sizes[0], 0)]
        if self.algorithm.views:
            streams.append((unlabeled_set, self.algorithm.views, sizes[1], 1))
        made = [self._stream(*stream) for stream in streams]
        return made[0], (made[1] if len(made) > 1 else None)

    def _stream(self, images, views: tuple[str, ...], batch_size: int, stream: int):
        """This process's share of a stream of global batches of `batch_size`."""
        cfg, mean, std = self.cfg, self.model.mean, self.model.std
        shard = (self.comm.rank, self.comm.world_size)
        if cfg.data.augment_on == "device":
            return DeviceStream(images, views, batch_size, cfg.seed, stream, self.step,
                                self.device, (mean, std), shard)  # fmt: skip
        size = cfg.data.image_size
        return stream_loader(
            images,
            tuple(getattr(transforms, view)(size, mean, std) for view in views),
            batch_size,
            seed=cfg.seed,
            stream=stream,
            start_batch=self.step,
            num_workers=cfg.data.num_workers,
            pin_memory=self.device.type == "cuda",
            shard=shard,
        )

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
            "model_name": self.cfg.model.name,
            "model_config": dataclasses.asdict(self.cfg.model),  # what shapes the network
            "image_size": self.cfg.data.image_size,
        }

    def _restore(self, state: dict, path: Path) -> None:
        check_state_fits(state, self.algorithm.state_dict(), self.run_data, path)
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.algorithm.load_state_dict(state["algorithm"])
        if self.algorithm.modules() is not None:
            self.algorithm.modules().load_state_dict(state["algorithm_modules"])
        self.best = state["best"]
        self.window = Window(**state["window"])
        self.eval_window = Window(**state["eval_window"])
        set_rng_state(state["rng"])
        self._seed_device_rng()
        self.saved_step = self.step

    def _save(self, name: str = "last.pt") -> None:
        """Write checkpoints/<name> (the main process; the state is the same in every one)."""
        if name != "error.pt":
            self._check_finite()  # a checkpoint never holds the state after a non-finite loss
        if not self.is_main:
            if name == "last.pt":
                self.saved_step = self.step
            return
        try:
            save_checkpoint(self._state(), self.out / "checkpoints" / name)
        except CheckpointWriteError as error:
            raise CheckpointWriteError(f"{error}; {self._last_good()}") from error
        if name == "last.pt":
            self.saved_step = self.step

    def _check_finite(self) -> None:
        """Raise NonFiniteLoss naming the first step whose loss was NaN or infinite (the loss is
        checked on the device every step and read here, at log, evaluation and checkpoint
        boundaries)."""
        bad = self.watch.check()
        if bad is not None:
            step, logs = bad
            raise NonFiniteLoss(
                f"loss is {logs.get('loss')} at step {step} (logs: {logs}); lower train.lr or "
                f"check the data; {self._last_good()}",
                logs,
            )

    def _last_good(self) -> str:
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
        record = {"event": "eval", "step": self.step}
        parts = {"test": rd.test, **({"val": rd.val} if rd.val is not None else {})}
        for part, images in parts.items():
            for tag, model in (("", self.ema.module), ("_raw", self.model)):
                cm = confusion_on(model, images, rd.num_classes, cfg, self.device)
                record[f"{part}_acc{tag}"] = accuracy(cm)
                if not tag:
                    record[f"{part}_confusion"] = cm.tolist()
        self.model.train()
        record.update(
            {
                k: v
                for k, v in self.eval_window.means().items()
                if k in ("mask_rate", "pseudo_label_acc")
            }
        )
        labels = self.algorithm.diagnostics(
            feature_probe(self.model, self.run_data, self.cfg, self.device)
        )
        if labels:
            record["labels"] = labels
        self.eval_window = Window.empty()
        return record

    def _after_eval(self, record: dict) -> None:
        self.last_eval = record
        selector = "val_acc" if "val_acc" in record else "test_acc"
        if record[selector] > self.best["acc"]:
            self.best = {
                "acc": record[selector],
                "step": self.step,
                "selected_on": selector,
                "test_acc": record["test_acc"],
            }
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
            save_config(self.cfg, self.out / "config.toml")
            rd.split.save(self.out / "split.json")
            report.write_meta(self.out, self.cfg, self.device, self.command, self.comm.world_size)

    def _resume(self) -> None:
        path = self.out / LAST
        self._restore(load_checkpoint(path), path)
        dropped = self.metrics.rewind(self.step) if self.is_main else 0  # trained again
        record = {"event": "resume", "step": self.step, "checkpoint": str(LAST)}
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
        labeled, unlabeled = self._loaders()
        labeled_iter = iter(labeled)
        unlabeled_iter = iter(unlabeled) if unlabeled is not None else None
        bar = tqdm(
            total=total,
            initial=start,
            disable=not self.progress,
            dynamic_ncols=True,
            desc=f"{self.cfg.algorithm.name}",
        )
        started = time.perf_counter()
        self.model.train()
        try:
            while self.step < end:
                ulb = next(unlabeled_iter) if unlabeled_iter is not None else None
                self._train_step(next(labeled_iter), ulb)
                self.step += 1
                if self.algorithm.period() and self.step % self.algorithm.period() == 0:
                    self.algorithm.on_period(self._labeled_probs)
                self._mid_step = False
                self._periodic(bar, started, start)
                signum = self.comm.agree(stop.signum or 0)  # every process stops at this step
                if signum:
                    self._stop(signum)
            if self.step < total:
                self._save()
                return None
            return report.finish_run(self) if self.is_main else None
        except Interrupted:
            raise
        except BaseException as error:
            if stop.signum is not None and not self._mid_step:
                # e.g. loader workers that got the same SIGTERM (Slurm signals every process)
                self._stop(stop.signum, cause=error)
            self._fail(error)
            raise
        finally:
            bar.close()

    def _stop(self, signum: int, cause: BaseException | None = None) -> None:
        self._save()
        name = signal.Signals(signum).name
        record = {"event": "interrupted", "step": self.step, "signal": name}
        if cause is not None:
            record["error"] = _describe(cause)
        self._log({**record, "checkpoint": str(LAST)})
        raise Interrupted(signum, self.step, str(self.out)) from cause

    def _fail(self, error: BaseException) -> None:
        """Record a failure in the loop. At a step boundary the state is exact and goes to
        last.pt; part-way through a step it goes to error.pt (for inspection), except on a
        second Ctrl-C, which saves nothing."""
        interrupted = isinstance(error, KeyboardInterrupt)
        record: dict = {"event": "interrupted" if interrupted else "error", "step": self.step}
        record.update({"signal": "SIGINT"} if interrupted else {"error": _describe(error)})
        if isinstance(error, NonFiniteLoss):
            record.update(error.logs)
        unsure = self._mid_step or isinstance(error, NonFiniteLoss) or self._nonfinite_seen()
        name = "error.pt" if unsure else "last.pt"
        if not (interrupted and self._mid_step):
            try:
                self._save(name)
                record["checkpoint"] = str(Path("checkpoints") / name)
            except CheckpointWriteError as save_error:
                record["checkpoint_error"] = str(save_error)
        try:
            self._log(record)
        except OSError:
            pass  # e.g. the disk is full; the error itself still reaches the caller

    def _nonfinite_seen(self) -> bool:
        try:
            return self.watch.check() is not None
        except RuntimeError:  # the device itself failed
            return True

    def _train_step(self, lb, ulb) -> None:
        x_lb, y_lb, idx_lb = lb
        # ulb: (view_1, ..., view_k, labels, indices), views in the order of algorithm.views
        x_ulb, idx_ulb = (tuple(ulb[:-2]), ulb[-1]) if ulb is not None else ((), None)
        batch = Batch.from_views(x_lb, y_lb, idx_lb, self.algorithm.views, x_ulb, idx_ulb)
        batch = self._global_labels(batch.to(self.device, self.memory_format))
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else nullcontext()
        )
        self._mid_step = True  # the algorithm's per-sample state may change from here on
        with autocast:
            out = self.algorithm.step(
                self.train_model, batch, Progress(self.step, self.cfg.train.steps)
            )
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        self.ema.update(self.model, self.step)
        logs = {"loss": out.loss.detach(), **out.logs}
        self.watch.record(self.step, out.loss, logs)  # read at the next boundary, no sync now
        correct = total = 0
        if out.mask is not None and self.truth_ulb is not None:
            known = self.truth_ulb[batch.idx_ulb]
            used = out.mask & (known >= 0)
            correct, total = (used & (out.pseudo_labels == known)).sum(), used.sum()
        self.window.add(logs, correct, total)
        self.eval_window.add({k: v for k, v in logs.items() if k == "mask_rate"}, correct, total)

    def _global_labels(self, batch: Batch) -> Batch:
        """With several processes: the labels and indices of the whole global batch (one small
        collective); the images stay this process's share."""
        if self.comm.world_size == 1:
            return batch
        parts = [batch.y_lb, batch.idx_lb] + ([batch.idx_ulb] if batch.idx_ulb is not None else [])
        gathered = self.comm.gather_views(torch.cat(parts), [len(p) for p in parts])
        batch.y_lb, batch.idx_lb = gathered[0], gathered[1]
        batch.idx_ulb = gathered[2] if batch.idx_ulb is not None else None
        return batch

    def _labeled_probs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The EMA model's probabilities on the labeled set (eval mode, weak views seeded by the
        step, so a resumed run sees the same views) and the given labels."""
        cfg, labeled = self.cfg, self.run_data.labeled
        tf = transforms.weak(cfg.data.image_size, self.model.mean, self.model.std)
        seed = hash((cfg.seed, -1, self.step)) % 2**62  # ints only: hash() is stable for them
        loader = eval_loader(labeled, tf, cfg.train.eval_batch_size, cfg.data.num_workers, seed)
        _, probs = predict(self.ema.module, loader, self.device)
        return torch.from_numpy(probs), torch.as_tensor(labeled.labels)

    def _periodic(self, bar, started: float, start: int) -> None:
        cfg, step = self.cfg.train, self.step
        last = step == cfg.steps
        if last or any(step % every == 0 for every in self._boundaries()):
            self._check_finite()
        if step % cfg.log_every == 0 or last:
            means = self.window.means()
            steps_per_s = (step - start) / max(time.perf_counter() - started, 1e-9)
            self._log({"event": "train", "step": step, "steps_per_s": steps_per_s, **means})
            bar.set_postfix(
                loss=f"{means.get('loss', 0):.3f}",
                mask=f"{means.get('mask_rate', 0):.2f}",
                acc=f"{self.best['test_acc'] if 'test_acc' in self.best else 0:.3f}",
                it_s=f"{steps_per_s:.1f}",
            )
            if self.is_main and not self.progress:
                print(progress_line(step, cfg.steps, means, steps_per_s), flush=True)
            self.window = Window.empty()
        if (step % cfg.eval_every == 0 or last) and not self.is_main:
            self.eval_window = Window.empty()  # the main process evaluates
        elif step % cfg.eval_every == 0 or last:
            record = self._evaluate()
            self._after_eval(record)
            bar.set_postfix(test_acc=f"{record['test_acc']:.3f}")
            if not self.progress:
                print(f"step {step}/{cfg.steps}  test_acc {record['test_acc']:.4f}", flush=True)
        if step % cfg.checkpoint_every == 0 or last:
            self.comm.check_identical(
                self.algorithm.state_dict(), f"algorithm state at step {step}"
            )
            self._save()
        bar.update(1)

    def _boundaries(self) -> tuple[int, ...]:
        cfg = self.cfg.train
        return cfg.log_every, cfg.eval_every, cfg.checkpoint_every


def progress_line(step: int, total: int, means: dict, steps_per_s: float) -> str:
    """One plain line per log interval (for --no-progress, logs and batch jobs)."""
    parts = [f"step {step}/{total}", f"loss {means.get('loss', float('nan')):.4f}"]
    if "mask_rate" in means:
        parts.append(f"mask {means['mask_rate']:.2f}")
    parts.append(f"{steps_per_s:.2f} steps/s")
    return "  ".join(parts)


def _load_weights(model: torch.nn.Module, model_cfg) -> str:
    """model.pretrained loaded into the model (a file, or a packaged weight set's name)."""
    try:
        return load_weights(model, model_cfg.name, model_cfg.pretrained)
    except InputError:
        raise
    except FileNotFoundError as error:
        raise MissingInputError(f"model.pretrained: {error}") from error
    except ValueError as error:
        raise InputError(f"model.pretrained: {error}") from error


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


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
        data = None
        if resume:
            split = dataclasses.replace(cfg.data, split_file=str(out / "split.json"))
            data = build_run_data(split, cfg.seed, progress and comm.is_main)
        # data and model first, so a bad root or weights file leaves no run folder
        trainer = Trainer(cfg, out, data, progress, command, comm)
        if not resume and comm.is_main:
            create_run_dir(out, overwrite)
        comm.barrier()
        summary = trainer.fit(resume=resume, stop_after=stop_after)
        finished = True
        return summary
    finally:
        leave(comm, finished)
