"""From a DataConfig to the image sets a run uses: read the dataset, inject label noise if asked,
split train into labeled / unlabeled (/ validation), and report per-class counts."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from lionfer.data.base import FERData, ImageSet
from lionfer.data.noise import default_noise_map, inject_noise, parse_noise_map
from lionfer.data.splits import Split, load_split, make_split
from lionfer.registry import DATASETS

READERS = (
    "synthetic",
    "digits",
    "folder",
    "manifest",
    "rafdb",
    "sfew",
    "affectnet",
    "fer2013",
    "expw",
)


def register_readers() -> None:
    for module in READERS:
        importlib.import_module(f"lionfer.data.{module}")


def load_dataset(cfg, seed: int) -> FERData:
    """Read cfg.dataset and apply cfg.noise to its training labels (true labels are kept)."""
    register_readers()
    data = DATASETS.get(cfg.dataset)(cfg, seed)
    if cfg.noise != "none" and cfg.noise_rate > 0:
        train = data.train
        truth = train.labels.copy() if train.true_labels is None else train.true_labels
        mapping = (
            parse_noise_map(cfg.noise_map, data.num_classes)
            if cfg.noise_map
            else (default_noise_map(cfg.dataset))
        )
        labeled = train.labels >= 0
        noisy = train.labels.copy()
        noisy[labeled] = inject_noise(
            train.labels[labeled], data.num_classes, cfg.noise, cfg.noise_rate, seed + 7919, mapping
        )
        data.train = ImageSet(train.images, noisy, truth, train.ids, train.boxes)
        flipped = int((noisy != train.labels).sum())
        data.notes.append(f"{cfg.noise} noise at rate {cfg.noise_rate}: {flipped} labels flipped")
    return data


def concat(first: ImageSet, second: ImageSet | None) -> ImageSet:
    if second is None or len(second) == 0:
        return first
    if first.is_files != second.is_files:
        raise ValueError("cannot mix in-memory images with image files in one set")
    images = (
        np.concatenate([first.images, second.images])
        if not first.is_files
        else list(first.images) + list(second.images)
    )

    def truth(s: ImageSet) -> np.ndarray:
        return s.true_labels if s.true_labels is not None else np.full(len(s), -1)

    boxes = None
    if first.boxes is not None or second.boxes is not None:
        boxes = np.concatenate(
            [s.boxes if s.boxes is not None else np.full((len(s), 4), -1) for s in (first, second)]
        )
    return ImageSet(
        images,
        np.concatenate([first.labels, second.labels]),
        np.concatenate([truth(first), truth(second)]),
        first.ids + second.ids,
        boxes,
    )


@dataclass
class RunData:
    data: FERData
    split: Split
    labeled: ImageSet  # given labels
    unlabeled: ImageSet  # labels hidden (-1); true_labels for diagnostics where known
    val: ImageSet | None
    test: ImageSet

    @property
    def num_classes(self) -> int:
        return self.data.num_classes


def build_run_data(cfg, seed: int) -> RunData:
    data = load_dataset(cfg, seed)
    if cfg.split_file:
        split = load_split(cfg.split_file, data)
    else:
        split = make_split(data, cfg.num_labels, seed, cfg.val_fraction)
    train = data.train
    hidden = train.subset(split.unlabeled)
    if hidden.true_labels is None:
        hidden.true_labels = hidden.labels.copy()  # the labels we hide are the best truth known
    hidden.labels = np.full(len(hidden), -1)
    unlabeled = concat(hidden, data.unlabeled)
    val = train.subset(split.val) if len(split.val) else None
    return RunData(data, split, train.subset(split.labeled), unlabeled, val, data.test)


def count_by_class(labels: np.ndarray, class_names) -> dict[str, int]:
    counts = {name: int((labels == c).sum()) for c, name in enumerate(class_names)}
    missing = int((labels < 0).sum())
    if missing:
        counts["(no label)"] = missing
    return counts


def dataset_stats(cfg, seed: int) -> dict[str, dict[str, int]]:
    """Per-class counts of train, test and the labeled / unlabeled split the config makes."""
    data = load_dataset(cfg, seed)
    split = (
        load_split(cfg.split_file, data)
        if cfg.split_file
        else make_split(data, cfg.num_labels, seed, cfg.val_fraction)
    )
    names = data.class_names
    labels = data.train.labels
    unlabeled = labels[split.unlabeled]
    if data.unlabeled is not None:
        unlabeled = np.concatenate([unlabeled, np.full(len(data.unlabeled), -1)])
    stats = {
        "train": count_by_class(labels, names),
        "test": count_by_class(data.test.labels, names),
        "labeled": count_by_class(labels[split.labeled], names),
        "unlabeled": count_by_class(unlabeled, names),
    }
    if len(split.val):
        stats["val"] = count_by_class(labels[split.val], names)
    return stats
