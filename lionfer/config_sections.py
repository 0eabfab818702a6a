"""The sections of a config, each a frozen dataclass whose defaults, types and line comments are
the reference (docs/config.md's key tables are generated from them): [data], [model], [train] and
[algorithm] (`name` plus that algorithm's own config class), and their checks (a bad value is a
ConfigError naming the key). lionfer.config assembles them into a Config and loads it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from lionfer.config_text import as_toml
from lionfer.errors import ConfigError, check

MIN_IMAGE_SIZE = 16  # px: the smallest input the models reduce to a 1×1 feature map
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# the same as lionfer.data.annotators.ANNOTATORS (test_annotators checks it)
ANNOTATORS = ("single", "crowd10", "crowd40", "legacy", "truth")
SEED_LIMIT = 2**63  # torch and numpy take seeds that fit a signed 64-bit integer


def check_seed(seed: int, key: str) -> None:
    """A seed torch and numpy take: 0 <= seed < 2**63, else ConfigError naming `key`."""
    check(seed >= 0, key, f"must be a non-negative integer, got {seed}")
    check(seed < SEED_LIMIT, key, f"must be below 2**63 (a 64-bit seed), got {seed}")


def check_class_map(class_map: dict) -> None:
    """data.class_map maps each class name to a class id (an integer, -1 drops the class) or to a
    FER class name; any other value (true, 3.5, a list or table) is a ConfigError naming it."""
    for name, value in class_map.items():
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(
                f"data.class_map[{name!r}] = {as_toml(value)}: give a class id 0-7, -1 to drop "
                'the class, or a FER class name, e.g. {happy = 3} or {happy = "Happiness"}'
            )


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"  # registry name, see `lionfer list datasets`
    root: str = ""  # the dataset's folder as it ships
    num_labels: int = 140  # labeled budget; -1 labels every training image
    noise: str = "none"  # none | symmetric | asymmetric | instance (label noise for studies)
    noise_rate: float = 0.0
    noise_map: dict = field(default_factory=dict)  # {from: to}, class names or ids; {}: default
    image_size: int = 32
    # seed of generated data (synthetic) and of the test set held out of data without one
    # (folder, manifest, digits, ExpW), independent of the run seed
    data_seed: int = 0
    num_train: int = 2100  # synthetic: training images
    num_test: int = 700  # synthetic: test images
    ambiguity: float = 0.35  # synthetic: fraction of faces blending two expressions
    # synthetic: who labels the training faces: single (one annotator a face), crowd10 (ten
    # votes, FERPlus majority), crowd40 (forty votes, plurality), legacy (the earlier data) or
    # truth (every label is the face's true class: clean labels).
    annotator: str = "single"
    num_classes: int = 7  # 7, or 8 with Contempt (AffectNet, FERPlus)
    variant: str = ""  # dataset layout/variant; empty = detect
    unlabeled_root: str = ""  # folder: optional folder of unlabeled images
    class_map: dict = field(default_factory=dict)  # folder/manifest: class name -> canonical id
    label_file: str = ""  # override the dataset's label list (relative to root)
    # fer2013: "ferplus" reads FERPlus's fer2013new.csv beside fer2013.csv as the true labels
    # (majority vote); "" = no truth beyond the given labels.
    truth: str = ""
    split_file: str = ""  # reuse a saved split.json
    val_fraction: float = 0.0  # stratified validation carve-out from train, for model selection
    skip_bad: bool = False  # skip missing/unreadable listed files (counted) instead of failing
    allow_outside_root: bool = False  # manifest: allow image paths outside the manifest's folder
    num_workers: int = 0  # data-loading worker processes
    # Training images decoded once, resized to image_size and held in memory as uint8
    # (N × image_size² × 3 bytes); RandAugment then sees them at image_size.
    cache_images: bool = False
    # Where the training views are made: "cpu" (loader workers, PIL) or "device" (batched tensor
    # ops on the training device from the uint8 cache, which it implies).
    augment_on: str = "cpu"

    def __post_init__(self) -> None:
        check(
            self.num_labels == -1 or self.num_labels > 0,
            "data.num_labels",
            f"must be positive or -1 (all labeled), got {self.num_labels}",
        )
        check(
            self.noise in ("none", "symmetric", "asymmetric", "instance"),
            "data.noise",
            f"must be none, symmetric, asymmetric or instance, got {self.noise!r}",
        )
        check(0.0 <= self.noise_rate <= 1.0, "data.noise_rate", "must lie in [0, 1]")
        check(
            MIN_IMAGE_SIZE <= self.image_size <= 1024,
            "data.image_size",
            f"must lie in [{MIN_IMAGE_SIZE}, 1024] pixels, got {self.image_size}",
        )
        check(self.num_train > 0 and self.num_test > 0, "data.num_train", "must be positive")
        check(0.0 <= self.ambiguity <= 1.0, "data.ambiguity", "must lie in [0, 1]")
        check(
            self.annotator in ANNOTATORS,
            "data.annotator",
            f"must be one of {', '.join(ANNOTATORS)}, got {self.annotator!r}",
        )
        check(
            self.num_classes in (7, 8),
            "data.num_classes",
            f"must be 7 or 8, the FER classes without or with Contempt, got {self.num_classes}; "
            "data of classes of its own (digits, a folder or manifest of other names) takes "
            "them from the data: drop the key",
        )
        check(
            self.truth in ("", "ferplus"),
            "data.truth",
            f'must be "" (none) or ferplus, got {self.truth!r}',
        )
        check(
            self.truth != "ferplus" or self.dataset == "fer2013",
            "data.truth",
            f"ferplus is the truth of data.dataset=fer2013, not of {self.dataset!r}",
        )
        check(0.0 <= self.val_fraction < 1.0, "data.val_fraction", "must lie in [0, 1)")
        check(self.num_workers >= 0, "data.num_workers", "must be >= 0")
        check_seed(self.data_seed, "data.data_seed")
        check_class_map(self.class_map)
        check(
            self.augment_on in ("cpu", "device"),
            "data.augment_on",
            f"must be cpu or device, got {self.augment_on!r}",
        )


@dataclass(frozen=True)
class ModelConfig:
    name: str = "cnn_small"  # registry name, see `lionfer list models`
    pretrained: str = ""  # local weights file (e.g. resnet18_msceleb.pth); empty = random init
    dropout: float = 0.5
    # s in logits = Linear(Dropout(s·q)): q has unit norm, so s sets how fast the head can
    # become confident (1 = the paper's head).
    feature_scale: float = 1.0

    def __post_init__(self) -> None:
        check(0.0 <= self.dropout < 1.0, "model.dropout", "must lie in [0, 1)")
        check(
            0 < self.feature_scale < math.inf,
            "model.feature_scale",
            f"must be positive and finite, got {self.feature_scale}",
        )


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600  # optimisation steps (paper scale: 16000)
    batch_size: int = 16  # labeled images per step (B_l)
    unlabeled_ratio: int = 1  # unlabeled images per step = ratio * batch_size
    lr: float = 5e-4  # Adam, constant
    weight_decay: float = 0.0
    ema_decay: float = 0.999  # EMA model used for evaluation
    eval_every: int = 200  # steps between evaluations (and the end of training)
    log_every: int = 20  # steps between metrics.jsonl training records
    checkpoint_every: int = 200  # steps between checkpoints/last.pt
    eval_batch_size: int = 128
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    tensorboard: bool = False  # also write the metric records to RUN/tensorboard/
    channels_last: bool = False  # NHWC model and images (faster on GPUs; MobileNetV2 on CPUs)
    compile: bool = False  # torch.compile the training model (slow start, faster steps)
    # Several processes (torchrun): BatchNorm statistics over the global batch, so the run
    # equals one process; false keeps each process's own statistics (less communication).
    sync_batchnorm: bool = True

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "batch_size",
            "unlabeled_ratio",
            "eval_every",
            "log_every",
            "checkpoint_every",
            "eval_batch_size",
        ):
            check(getattr(self, name) > 0, f"train.{name}", "must be positive")
        check(0 < self.lr < math.inf, "train.lr", f"must be positive and finite, got {self.lr}")
        check(0.0 <= self.ema_decay < 1.0, "train.ema_decay", "must lie in [0, 1)")
        check(
            0 <= self.weight_decay < math.inf,
            "train.weight_decay",
            f"must be >= 0 and finite, got {self.weight_decay}",
        )
        check(
            DEVICE_PATTERN.fullmatch(self.device) is not None,
            "train.device",
            f"must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}",
        )


@dataclass(frozen=True)
class AlgorithmConfig:
    name: str = "lion"  # registry name, see `lionfer list algorithms`
    params: Any = None  # the algorithm's own frozen config dataclass

    def __getattr__(self, key: str) -> Any:  # cfg.algorithm.clear_threshold reads params
        params = self.__dict__.get("params")
        if params is not None and key in {f.name for f in fields(params)}:
            return getattr(params, key)
        raise AttributeError(key)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
