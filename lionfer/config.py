"""Typed, frozen, strict configuration: defaults < TOML file < `key=value` overrides.

A Config is a tree of frozen dataclasses. The `algorithm` section holds `name` plus the fields of
that algorithm's own config class (see lionfer.algorithms). Unknown keys and bad values raise
ConfigError with a suggestion; the resolved config is saved as TOML in every run folder. Paths
(data.root, data.unlabeled_root, data.split_file, data.label_file, model.pretrained when it names a
file) are made absolute when a config is loaded, relative to the current folder (data.label_file:
to data.root), so a saved config works from anywhere.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import lionfer.data.datasets  # noqa: F401  (the table of dataset names; imports no reader)
from lionfer import config_text
from lionfer.config_text import (
    as_toml,
    names_value,
    override_key,
    parse_value,
    quote_hint,
    read_toml,
    refuse_sweep_file,
    split_config_args,
    unquoted_hint,
)
from lionfer.errors import ConfigError, check, did_you_mean
from lionfer.registry import ALGORITHMS, DATASETS, MODELS

PACKAGED_CONFIGS = config_text.PACKAGED_CONFIGS
DEFAULT_CONFIG = config_text.DEFAULT_CONFIG  # the embedded data at CPU scale
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


@dataclass(frozen=True)
class Config:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        out = {"seed": self.seed}
        for section in ("data", "model", "train"):
            out[section] = dataclasses.asdict(getattr(self, section))
        params = self.algorithm.params
        out["algorithm"] = {"name": self.algorithm.name, **dataclasses.asdict(params)}
        return out


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def _suggest(key: str, options) -> str:
    return did_you_mean(key, options) or f" Valid keys: {', '.join(sorted(options))}"


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Check a TOML value against a field's annotated type; ints are accepted for floats."""
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        check(isinstance(value, bool), key, f"expected true or false, got {value!r}")
        return value
    if kind is int:
        check(
            isinstance(value, int) and not isinstance(value, bool),
            key,
            f"expected an integer, got {value!r}",
        )
        return value
    if kind is float:
        check(
            isinstance(value, int | float) and not isinstance(value, bool),
            key,
            f"expected a number, got {value!r}",
        )
        return float(value)
    if kind is str:
        check(isinstance(value, str), key, f"expected a string, got {quote_hint(value, key)}")
        return value
    if kind is dict:
        check(
            isinstance(value, dict),
            key,
            f"expected a table such as {{a = 1}}, got {value!r}{unquoted_hint(value, '{')}",
        )
        return dict(value)
    if kind is tuple:
        check(
            isinstance(value, list | tuple),
            key,
            f"expected a list, got {value!r}{unquoted_hint(value, '[')}",
        )
        return tuple(value)
    return value


def build_section(cls: type, values: dict, prefix: str) -> Any:
    """Construct a frozen dataclass from a dict, rejecting unknown keys with a suggestion."""
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key {prefix}{key}.{_suggest(key, known)}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{prefix.rstrip('.')}: {error}") from error
    except ConfigError as error:  # a value checked by the section: say which value it was given
        key, _, message = str(error).partition(": ")
        name = key.removeprefix(prefix)
        if key.startswith(prefix) and name in kwargs and not names_value(message, kwargs[name]):
            raise ConfigError(f"{error}, got {kwargs[name]!r}") from None
        raise


def algorithm_config_class(name: str) -> type:
    import lionfer.algorithms  # noqa: F401  (registers the algorithms; imports no torch)

    try:
        return ALGORITHMS.entry(name).config
    except KeyError as error:
        raise ConfigError(f"algorithm.name: {error.args[0]}") from error


def from_dict(raw: dict) -> Config:
    raw = dict(raw)
    known = {"seed", "algorithm", *SECTIONS}
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown key {key}.{_suggest(key, known)}")
    for name in ("algorithm", *SECTIONS):
        if not isinstance(raw.get(name, {}), dict):
            raise ConfigError(
                f"{name} is a section of settings, not a value ({name} = {raw[name]!r}): set "
                f"one of its keys, e.g. {name}.{_first_key(name)}=..., or them in the "
                f"[{name}] table of a TOML file"
            )
    sections = {
        name: build_section(cls, dict(raw.get(name, {})), f"{name}.")
        for name, cls in SECTIONS.items()
    }
    algo = dict(raw.get("algorithm", {}))
    name = algo.pop("name", AlgorithmConfig.name)
    check(isinstance(name, str), "algorithm.name", f"expected a string, got {as_toml(name)}")
    config_class = algorithm_config_class(name)
    params = build_section(config_class, algo, "algorithm.")  # LION: its recipe applies here
    seed = _coerce(raw.get("seed", Config.seed), int, "seed")
    check_seed(seed, "seed")
    check_name(DATASETS, sections["data"].dataset, "data.dataset")
    check_name(MODELS, sections["model"].name, "model.name")
    return Config(seed=seed, algorithm=AlgorithmConfig(name=name, params=params), **sections)


def _first_key(section: str) -> str:
    if section == "algorithm":
        return "name"
    return next(iter(f.name for f in dataclasses.fields(SECTIONS[section])))


def check_name(registry, name: str, key: str) -> None:
    """A registered name, or ConfigError listing the names."""
    try:
        registry.entry(name)
    except KeyError as error:
        raise ConfigError(f"{key}: {error}") from error


def apply_override(raw: dict, assignment: str) -> bool:
    """Apply one `dotted.key=value` to a nested dict in place. An algorithm.name that switches
    algorithm drops the algorithm fields raw holds (they are the previous algorithm's); returns
    whether it switched."""
    parts = override_key(assignment)
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(parts)}: {part} is a value, not a section")
    value = parse_value(assignment.split("=", 1)[1].strip())
    switched = parts == ["algorithm", "name"] and value != node.get("name", AlgorithmConfig.name)
    if switched:  # a file that names no algorithm holds the default algorithm's fields
        raw["algorithm"] = {k: v for k, v in node.items() if k == "name"}
        node = raw["algorithm"]
    node[parts[-1]] = value
    return switched


def apply_overrides(raw: dict, assignments: list[str] | tuple) -> None:
    """Apply `dotted.key=value` overrides in order, in place.

    The order of algorithm.* overrides and an algorithm.name switch does not matter: a switch
    drops the algorithm fields the config file set (the previous algorithm's) and applies the
    algorithm.* overrides given before it again, so each is read by the new algorithm (one it
    has no field for is an unknown key, as after the switch).

    Switching model (a model.name override that differs from the file's) without a
    model.pretrained override drops the file's model.pretrained: the weights a file names belong
    to its own model, so `lionfer train model.name=resnet18` trains a ResNet-18 from scratch
    (random init) rather than look for the default's ImageNet MobileNetV2 weights."""
    if isinstance(assignments, str):
        raise ConfigError(
            f"overrides are a list of 'key=value' strings: pass [{assignments!r}], not "
            f"{assignments!r}"
        )
    model = raw.get("model")
    name_before = model.get("name", ModelConfig.name) if isinstance(model, dict) else None
    keys, algorithm_settings = set(), []
    for assignment in assignments:
        key = ".".join(override_key(assignment))
        if apply_override(raw, assignment):
            for earlier in algorithm_settings:
                apply_override(raw, earlier)
        elif key.startswith("algorithm.") and key != "algorithm.name":
            algorithm_settings.append(assignment)
        keys.add(key)
    model = raw.get("model")
    if (
        "model.name" in keys
        and "model.pretrained" not in keys
        and isinstance(model, dict)
        and model.get("name") != (name_before or ModelConfig.name)
        and model.get("pretrained")
    ):
        model["pretrained"] = ""


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Defaults < the TOML file at `path` < `key=value` overrides, validated, paths absolute."""
    raw: dict = {}
    if not (path is None or isinstance(path, str | os.PathLike)):
        raise ConfigError(
            f"load_config() takes a config file's path first, not a {type(path).__name__}: "
            "pass the overrides second, load_config(DEFAULT_CONFIG, [...])"
        )
    if path is not None:
        raw = read_toml(path)
        refuse_sweep_file(raw, Path(path))
    apply_overrides(raw, overrides)
    return resolve_paths(from_dict(raw))


def replace(cfg: Config, *overrides: str) -> Config:
    """A copy of cfg with `key=value` overrides applied (validated like any config)."""
    raw = cfg.to_dict()
    old_recipe = raw["algorithm"].get("recipe")
    apply_overrides(raw, overrides)
    recipes = getattr(algorithm_config_class(raw["algorithm"]["name"]), "RECIPES", None)
    new_recipe = raw["algorithm"].get("recipe")
    if recipes and old_recipe in recipes and new_recipe != old_recipe:
        # cfg holds resolved values: keep only those that differ from what the old recipe set.
        config_class = type(cfg.algorithm.params)
        old = dataclasses.asdict(config_class(recipe=old_recipe))
        raw["algorithm"] = {
            k: v for k, v in raw["algorithm"].items() if k in ("name", "recipe") or old.get(k) != v
        }
    return resolve_paths(from_dict(raw))


def absolute(path: str, base: str | Path) -> str:
    """An absolute, normalised form of a path ('' stays ''; '~' is expanded)."""
    if not path:
        return path
    return os.path.abspath(os.path.join(base, os.path.expanduser(path)))


def resolve_paths(cfg: Config, base: str | Path | None = None) -> Config:
    """cfg with its paths absolute: relative to `base` (default: the current folder), and
    data.label_file (one path, or two separated by a comma) relative to data.root; a path that
    is not UTF-8 refused (check_utf8_paths)."""
    check_utf8_paths(cfg)
    base = Path.cwd() if base is None else Path(base)
    data = cfg.data
    root = absolute(data.root, base)
    label_base = root if root and not Path(root).is_file() else base
    label_file = ",".join(absolute(p.strip(), label_base) for p in data.label_file.split(","))
    data = dataclasses.replace(
        data,
        root=root,
        unlabeled_root=absolute(data.unlabeled_root, base),
        split_file=absolute(data.split_file, base),
        label_file=label_file if data.label_file else "",
    )
    pretrained = cfg.model.pretrained
    if _looks_like_a_path(pretrained, base):
        pretrained = absolute(pretrained, base)
    model = dataclasses.replace(cfg.model, pretrained=pretrained)
    return dataclasses.replace(cfg, data=data, model=model)


WEIGHT_SETS = ("imagenet", "hub")  # model.pretrained's names of weight sets, never paths
# the settings that may name files or folders (model.pretrained: or a weight set)
PATH_KEYS = (
    "data.root",
    "data.unlabeled_root",
    "data.split_file",
    "data.label_file",
    "model.pretrained",
)


def check_utf8_paths(cfg: Config) -> None:
    """Refuse a path whose name is not UTF-8 (a Latin-1 folder from an old zip, CD or Windows
    share, given on the command line and held by Python with surrogate escapes): the run's
    config.toml, UTF-8 text, cannot hold it. Checked wherever a config's paths are resolved, so
    before any command reads or writes a file."""
    for key in PATH_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            from lionfer.data.images import path_text  # numpy and PIL: only for the message

            raise ConfigError(
                f"{key}={path_text(value)}: the name is not UTF-8 (a byte shown as \\xNN), "
                "which a run's config.toml cannot hold; rename it in UTF-8 (`convmv -f latin1 "
                "-t utf8 --notest PATH` renames one, with -r every name below a folder)"
            ) from None


def _looks_like_a_path(value: str, base: Path) -> bool:
    """A weights file, as opposed to the name of a weight set (WEIGHT_SETS: `imagenet` stays the
    packaged weights even beside a folder of that name; ./imagenet names the folder)."""
    if value in WEIGHT_SETS:
        return False
    path = Path(os.path.expanduser(value))
    return bool(value) and (len(path.parts) > 1 or bool(path.suffix) or (base / path).exists())


def config_from_args(items: list[str], extra: tuple[str, ...] = ()):
    path, overrides = split_config_args(items)
    return load_config(path, [*overrides, *extra])
