"""Typed, frozen, strict configuration: defaults < TOML file < `key=value` overrides.

A Config is a tree of frozen dataclasses, its sections (lionfer.config_sections). The `algorithm`
section holds `name` plus the fields of that algorithm's own config class (see
lionfer.algorithms). Unknown keys and bad values raise ConfigError with a suggestion; the resolved
config is saved as TOML in every run folder (save_config). Paths (data.root, data.unlabeled_root,
data.split_file, data.label_file, model.pretrained when it names a file) are made absolute when a
config is loaded, relative to the current folder (data.label_file: to data.root), so a saved
config works from anywhere.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import lionfer.data.datasets  # noqa: F401  (the table of dataset names; imports no reader)
from lionfer import config_text
from lionfer.atomic import write_text_atomic
from lionfer.config_sections import (
    SECTIONS,
    AlgorithmConfig,
    DataConfig,
    ModelConfig,
    TrainConfig,
    check_seed,
)
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


def _plain(value: Any) -> Any:
    """A config value as tomli-w writes it: tuples as lists, table keys as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_toml(cfg: Config) -> str:
    """The config as TOML that tomllib reads back to the same values (written by tomli-w, which
    quotes and escapes every string and key)."""
    import tomli_w

    return tomli_w.dumps(_plain(cfg.to_dict()))


def save_config(cfg: Config, path: str | Path) -> None:
    write_text_atomic(path, to_toml(cfg))


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
