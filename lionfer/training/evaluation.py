"""Evaluating a model on a run's images: predictions of an evaluation loader, the test (and
validation) figures of an eval event, the choice of the best evaluation, and the feature probe
the algorithms' diagnostics read. Used by the Trainer, by lionfer.evaluate and by the run's
summary."""

from __future__ import annotations

import numpy as np
import torch

from lionfer.algorithms.base import Probe
from lionfer.config import Config
from lionfer.data import transforms
from lionfer.data.loaders import eval_loader
from lionfer.data.pipeline import RunData
from lionfer.metrics import accuracy, confusion_matrix


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
def predict_each(models, loader, device: torch.device, untrained=None) -> list[np.ndarray]:
    """The predicted class of every image of an evaluation loader by each model, in one pass:
    each batch is decoded and moved once for all of them. untrained: a (C,) bool tensor on
    `device`, True for the classes the models had no labeled training images of (None: none);
    an output never trained on a label means nothing, so the prediction is the most probable of
    the others (as `lionfer predict` gives)."""
    for model in models:
        model.eval()
    predicted = [[] for _ in models]
    for images, _, _ in loader:
        images = images.to(device)
        for model, classes in zip(models, predicted, strict=True):
            logits = model(images).logits.float()
            if untrained is not None:
                logits = logits.masked_fill(untrained, -torch.inf)
            classes.append(logits.softmax(dim=1).argmax(dim=1).cpu())
    return [torch.cat(classes).numpy() for classes in predicted]


def confusions_on(
    models, images, num_classes: int, cfg: Config, device, trained=None
) -> list[np.ndarray]:
    """The (C, C) confusion matrix of each model (the same architecture and input normalisation)
    on an ImageSet, eval transform, no TTA; trained: the class ids the models had labeled
    training images of, the only ones predicted (None: every class)."""
    untrained = None
    if trained is not None and len(set(trained)) < num_classes:  # else the plain argmax
        untrained = torch.ones(num_classes, dtype=torch.bool, device=device)
        untrained[list(trained)] = False
    tf = transforms.evaluate(cfg.data.image_size, models[0].mean, models[0].std)
    loader = eval_loader(images, tf, cfg.train.eval_batch_size, cfg.data.num_workers)
    return [
        confusion_matrix(images.labels, predicted, num_classes)
        for predicted in predict_each(models, loader, device, untrained)
    ]


def confusion_on(model, images, num_classes: int, cfg: Config, device, trained=None) -> np.ndarray:
    """The (C, C) test confusion matrix of `model` on an ImageSet, eval transform, no TTA;
    trained: as for confusions_on."""
    return confusions_on([model], images, num_classes, cfg, device, trained)[0]


def eval_figures(ema_model, model, run_data: RunData, cfg: Config, device, trained=None) -> dict:
    """{part}_acc of the EMA model, {part}_acc_raw of the live one and {part}_confusion (EMA), for
    the test set and, where the run holds one out, the validation set; both models read each
    batch of images once. trained: the class ids with labeled training images (None: all), the
    only classes predicted."""
    rd, record = run_data, {}
    parts = {"test": rd.test, **({"val": rd.val} if rd.val is not None else {})}
    for part, images in parts.items():
        ema_cm, raw_cm = confusions_on(
            [ema_model, model], images, rd.num_classes, cfg, device, trained
        )
        record[f"{part}_acc"] = accuracy(ema_cm)
        record[f"{part}_confusion"] = ema_cm.tolist()
        record[f"{part}_acc_raw"] = accuracy(raw_cm)
    return record


def better_best(best: dict, record: dict, step: int) -> dict | None:
    """The new best evaluation when an eval record at `step` beats `best` on the validation
    accuracy (the test accuracy without a validation set), else None."""
    selector = "val_acc" if "val_acc" in record else "test_acc"
    if record[selector] <= best["acc"]:
        return None
    return {
        "acc": record[selector],
        "step": step,
        "selected_on": selector,
        "test_acc": record["test_acc"],
    }


def labeled_probs(
    ema_model, run_data: RunData, cfg: Config, step: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The EMA model's probabilities on the labeled set (eval mode, weak views seeded by the
    step, so a resumed run sees the same views) and the given labels."""
    labeled = run_data.labeled
    tf = transforms.weak(cfg.data.image_size, ema_model.mean, ema_model.std)
    seed = hash((cfg.seed, -1, step)) % 2**62  # ints only: hash() is stable for them
    loader = eval_loader(labeled, tf, cfg.train.eval_batch_size, cfg.data.num_workers, seed)
    _, probs = predict(ema_model, loader, device)
    return torch.from_numpy(probs), torch.as_tensor(labeled.labels)


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


__all__ = [
    "better_best",
    "confusion_on",
    "feature_probe",
    "labeled_probs",
    "predict",
    "eval_figures",
]
