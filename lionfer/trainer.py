"""THE training loop: batch → algorithm step → backward → Adam → EMA → log → evaluate →
checkpoint, counted in steps, resumable exactly, with a run folder as its only output."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lionfer import report
from lionfer.algorithms.base import AlgorithmInfo, Batch, Probe, Progress
from lionfer.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from lionfer.config import Config, load_config, save_config
from lionfer.data import transforms
from lionfer.data.loaders import eval_loader, stream_loader
from lionfer.data.pipeline import RunData, build_run_data
from lionfer.ema import ModelEMA
from lionfer.metrics import accuracy, confusion_matrix
from lionfer.models import build_model, load_pretrained, resolve_pretrained
from lionfer.registry import ALGORITHMS


class RunExistsError(FileExistsError):
    pass


class NonFiniteLoss(RuntimeError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but CUDA is not available; use train.device=cpu")
    return device


def check_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to touch an existing run unless resuming or asked to overwrite it."""
    if resume:
        last = out / "checkpoints" / "last.pt"
        if not last.is_file():
            raise FileNotFoundError(f"nothing to resume: {last} is missing")
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise RunExistsError(
            f"run folder {out} already holds a run; pass --resume to continue it, --overwrite to "
            "replace it, or choose another --out"
        )


def create_run_dir(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)  # only reached with overwrite=True (see check_run_dir)
    out.mkdir(parents=True)


def confusion_on(model, images, num_classes: int, cfg: Config, device) -> np.ndarray:
    """The (C, C) test confusion matrix of `model` on an ImageSet, eval transform, no TTA."""
    tf = transforms.evaluate(cfg.data.image_size, model.mean, model.std)
    loader = eval_loader(images, tf, cfg.train.eval_batch_size, cfg.data.num_workers)
    predicted, _ = predict(model, loader, device)
    return confusion_matrix(images.labels, predicted, num_classes)


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


@dataclass
class Window:
    """Running means of the step logs since the last record, plus pseudo-label diagnostics."""

    sums: dict
    count: int = 0
    pseudo_total: int = 0
    pseudo_correct: int = 0

    @classmethod
    def empty(cls) -> Window:
        return cls({})

    def add(self, logs: dict, pseudo_correct: int = 0, pseudo_total: int = 0) -> None:
        """Values are floats or detached 0-d tensors; tensors are summed where they live and
        read only by means(), so logging costs no host synchronisation per step."""
        for key, value in logs.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        self.pseudo_correct += pseudo_correct
        self.pseudo_total += pseudo_total

    def means(self) -> dict:
        out = {k: float(v) / max(self.count, 1) for k, v in self.sums.items()}
        if self.pseudo_total:
            out["pseudo_label_acc"] = self.pseudo_correct / self.pseudo_total
        return out


class Trainer:
    def __init__(
        self,
        cfg: Config,
        out: Path,
        run_data: RunData | None = None,
        progress: bool = True,
        command: str = "",
    ):
        self.cfg, self.out, self.progress, self.command = cfg, Path(out), progress, command
        self.device = resolve_device(cfg.train.device)
        self.run_data = run_data or build_run_data(cfg.data, cfg.seed)
        self.metrics_path = self.out / "metrics.jsonl"
        self._build()

    def _build(self) -> None:
        cfg, rd = self.cfg, self.run_data
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.model = build_model(dataclasses.replace(cfg.model, pretrained=""), rd.num_classes)
        self.weights_message = "random init"
        if cfg.model.pretrained:
            weights = resolve_pretrained(cfg.model.name, cfg.model.pretrained)
            self.weights_message = load_pretrained(self.model, weights)
        self.model.to(self.device)
        self.ema = ModelEMA(self.model, cfg.train.ema_decay)
        info = AlgorithmInfo(
            rd.num_classes,
            len(rd.labeled),
            len(rd.unlabeled),
            self.model.feature_dim,
            torch.as_tensor(rd.labeled.labels),
            tuple(rd.data.class_names),
        )
        self.algorithm = ALGORITHMS.get(cfg.algorithm.name)(cfg.algorithm.params, info)
        self.algorithm.to(self.device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
        )
        truth = rd.unlabeled.true_labels
        self.truth_ulb = None if truth is None else torch.as_tensor(truth, device=self.device)
        self.step, self.best, self.window = 0, {"acc": -1.0, "step": -1}, Window.empty()
        self.eval_window = Window.empty()
        self.last_eval: dict | None = None

    def _loaders(self):
        cfg, rd = self.cfg, self.run_data
        size, mean, std = cfg.data.image_size, self.model.mean, self.model.std
        common = dict(
            seed=cfg.seed,
            start_batch=self.step,
            num_workers=cfg.data.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        labeled = stream_loader(
            rd.labeled,
            (transforms.weak(size, mean, std),),
            cfg.train.batch_size,
            stream=0,
            **common,
        )
        unlabeled = None
        if self.algorithm.views:
            views = tuple(getattr(transforms, v)(size, mean, std) for v in self.algorithm.views)
            unlabeled = stream_loader(
                rd.unlabeled,
                views,
                cfg.train.batch_size * cfg.train.unlabeled_ratio,
                stream=1,
                **common,
            )
        return labeled, unlabeled

    # ---- checkpoints ----

    def _state(self) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            "rng": rng_state(),
            "best": self.best,
            "window": self.window.__dict__,
            "eval_window": self.eval_window.__dict__,
            "class_names": list(self.run_data.data.class_names),
            "model_name": self.cfg.model.name,
            "image_size": self.cfg.data.image_size,
        }

    def _restore(self, state: dict) -> None:
        self.step = state["step"]
        self.model.load_state_dict(state["model"])
        self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.best = state["best"]
        self.window = Window(**state["window"])
        self.eval_window = Window(**state["eval_window"])
        set_rng_state(state["rng"])

    def _save(self, name: str = "last.pt") -> None:
        save_checkpoint(self._state(), self.out / "checkpoints" / name)

    # ---- evaluation and logging ----

    def _log(self, record: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

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
        labels = self.algorithm.diagnostics(self._probe())
        if labels:
            record["labels"] = labels
        self.eval_window = Window.empty()
        return record

    def _probe(self) -> Probe:
        """Features of the live model on demand, once per evaluation."""
        rd, cache = self.run_data, {}

        def features(part: str):
            if part not in cache:
                images = {"labeled": rd.labeled, "test": rd.test}[part]
                cache[part] = features_of(self.model, images, self.cfg, self.device)
            return cache[part]

        return Probe(rd.labeled.true_labels, features)

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

    def fit(self, resume: bool = False, stop_after: int | None = None) -> dict | None:
        """Train to cfg.train.steps (or stop early after `stop_after` steps of this call, saving
        a checkpoint). Returns the summary, or None when stopped early."""
        if resume:
            self._restore(load_checkpoint(self.out / "checkpoints" / "last.pt"))
        else:
            self.run_data.split.save(self.out / "split.json")
            report.write_meta(self.out, self.cfg, self.device, self.command)
            self._log(
                {
                    "event": "start",
                    "num_labeled": len(self.run_data.labeled),
                    "num_unlabeled": len(self.run_data.unlabeled),
                    "weights": self.weights_message,
                    "notes": self.run_data.data.notes,
                }
            )
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
                self._periodic(bar, started, start)
        except KeyboardInterrupt:
            self._save()
            bar.close()
            raise
        bar.close()
        if self.step < total:
            self._save()
            return None
        return report.finish_run(self)

    def _train_step(self, lb, ulb) -> None:
        x_lb, y_lb, idx_lb = lb
        batch = Batch(x_lb, y_lb, idx_lb)
        if ulb is not None:
            batch.x_ulb_w, batch.x_ulb_s, _, batch.idx_ulb = ulb
        batch = batch.to(self.device)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else nullcontext()
        )
        with autocast:
            out = self.algorithm.step(self.model, batch, Progress(self.step, self.cfg.train.steps))
        if not math.isfinite(out.loss.item()):
            self._log({"event": "error", "step": self.step, "error": "non-finite loss", **out.logs})
            raise NonFiniteLoss(
                f"loss is {out.loss.item()} at step {self.step} (logs: {out.logs}); lower "
                "train.lr or check the data; the last good checkpoint is in checkpoints/last.pt"
            )
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        self.ema.update(self.model, self.step)
        correct = total = 0
        if out.mask is not None and self.truth_ulb is not None and out.mask.any():
            known = self.truth_ulb[batch.idx_ulb]
            used = out.mask & (known >= 0)
            correct = int((out.pseudo_labels[used] == known[used]).sum())
            total = int(used.sum())
        logs = {"loss": out.loss.detach(), **out.logs}
        self.window.add(logs, correct, total)
        self.eval_window.add({k: v for k, v in logs.items() if k == "mask_rate"}, correct, total)

    def _periodic(self, bar, started: float, start: int) -> None:
        cfg, step = self.cfg.train, self.step
        last = step == cfg.steps
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
            self.window = Window.empty()
        if step % cfg.eval_every == 0 or last:
            record = self._evaluate()
            self._after_eval(record)
            bar.set_postfix(test_acc=f"{record['test_acc']:.3f}")
        if step % cfg.checkpoint_every == 0 or last:
            self._save()
        bar.update(1)


def train(
    cfg: Config,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    command: str = "",
) -> dict | None:
    """Train one run into `out`; on resume the run's saved config is used."""
    out = Path(out)
    check_run_dir(out, resume, overwrite)
    if resume:
        cfg = load_config(out / "config.toml")  # a resumed run continues with its own config
        split = dataclasses.replace(cfg.data, split_file=str(out / "split.json"))
        trainer = Trainer(cfg, out, build_run_data(split, cfg.seed), progress, command)
    else:
        trainer = Trainer(cfg, out, progress=progress, command=command)  # data and model first,
        create_run_dir(out)  # so a bad root or weights file leaves no half-made run behind
        save_config(cfg, out / "config.toml")
    return trainer.fit(resume=resume, stop_after=stop_after)
