"""A sweep file and its grid: read and check the TOML file (methods, label budgets, seeds, the
command line's sweep.KEY=... selection), then expand it into grid points, each with its resolved
config and its stable folder <dataset>@<labels>/<method>/s<seed>. Carrying a grid out is
lionfer.experiments.sweep; the file format is in docs/sweeps.md.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lionfer import run_names as names
from lionfer.config import PACKAGED_CONFIGS, Config, load_config, parse_value
from lionfer.errors import ConfigError, did_you_mean

PACKAGED_SWEEPS = PACKAGED_CONFIGS / "sweeps"
SWEEP_KEYS = (
    "description",
    "config",
    "dataset_name",
    "overrides",
    "num_labels",
    "seeds",
    "algorithms",
    "variants",
    "slurm",
)
VARIANT_KEYS = ("label", "overrides", "num_labels")
SELECT_KEYS = ("seeds", "num_labels", "only")  # sweep.<key>=... on the command line


@dataclass(frozen=True)
class Method:
    """A row of the grid: a label and the overrides that make it (e.g. algorithm.name=fixmatch)."""

    label: str
    overrides: tuple[str, ...]
    num_labels: tuple[int, ...] = ()  # its own budgets (e.g. -1 for full supervision); () = grid's


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    config: Path  # the base config file
    overrides: tuple[str, ...]
    num_labels: tuple[int, ...]
    seeds: tuple[int, ...]
    methods: tuple[Method, ...]
    dataset_name: str = ""  # the dataset's name in folders and report columns; "" = data.dataset
    slurm: tuple[tuple[str, Any], ...] = ()  # submitit parameters
    description: str = ""


@dataclass(frozen=True)
class Point:
    """One run of the grid; `overrides` follow the base config in this order."""

    label: str
    dataset: str
    num_labels: int  # -1 = every training image labeled
    seed: int
    overrides: tuple[str, ...]
    folder: str  # relative to the sweep folder

    @property
    def column(self) -> str:
        return names.column(self.dataset, self.num_labels)


def slug(label: str) -> str:
    """A folder name for a variant label (run_names.slug); an error where it would be empty."""
    name = names.slug(label)
    if not name:
        raise ConfigError(
            f"variant label {label!r} has no ASCII letters or digits to name a folder (folder "
            "names keep a-z, 0-9, '.' and '_')"
        )
    return name


# ---- reading a sweep file ----


def find_sweep(name: str | Path) -> Path:
    """A sweep file path, or the name of a packaged sweep in lionfer/configs/sweeps/."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = PACKAGED_SWEEPS / f"{str(name).removesuffix('.toml')}.toml"
    if packaged.is_file():
        return packaged
    names = ", ".join(packaged_sweeps())
    raise ConfigError(f"sweep file not found: {name} (packaged sweeps: {names})")


def packaged_sweeps() -> list[str]:
    return sorted(p.stem for p in PACKAGED_SWEEPS.glob("*.toml"))


def _base_config(text: str, near: Path) -> Path:
    """The sweep's base config: a path (relative to the sweep file) or a packaged config name."""
    for candidate in (near / text, PACKAGED_CONFIGS / f"{text.removesuffix('.toml')}.toml"):
        if candidate.is_file():
            return candidate.resolve()
    names = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.toml")))
    raise ConfigError(
        f"config {text!r} of the sweep is neither a file next to the sweep file nor a packaged "
        f"config ({names})"
    )


def _check_keys(table: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            hint = did_you_mean(key, allowed) or f" Valid keys: {', '.join(allowed)}"
            raise ConfigError(f"unknown key {key!r} in {where}.{hint}")


def _int_list(value: Any, key: str) -> tuple[int, ...]:
    if isinstance(value, str):  # sweep.seeds=0,1 on the command line
        value = [parse_value(v.strip()) for v in value.split(",") if v.strip()]
    values = value if isinstance(value, list | tuple) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{key}: expected a list of integers such as [0, 1, 2], got {value!r}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:  # each would be one more run into the same folder
        raise ConfigError(f"{key} lists {', '.join(map(str, repeated))} twice; list each once")
    return tuple(values)


def _str_list(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(value)


def _methods(raw: dict, where: str) -> tuple[Method, ...]:
    methods = [
        Method(name, (f"algorithm.name={name}",))
        for name in _str_list(raw.get("algorithms", []), "algorithms")
    ]
    variants = raw.get("variants", [])
    if not isinstance(variants, list):
        raise ConfigError(f"variants in {where}: expected [[variants]] tables")
    for i, variant in enumerate(variants):
        _check_keys(variant, VARIANT_KEYS, f"variant {i + 1} of {where}")
        if not isinstance(variant.get("label"), str):
            raise ConfigError(f'variant {i + 1} of {where} needs a label, e.g. label = "LION"')
        budgets = variant.get("num_labels")
        methods.append(
            Method(
                variant["label"],
                _str_list(variant.get("overrides", []), f"variant {variant['label']!r} overrides"),
                () if budgets is None else _int_list(budgets, f"variant {variant['label']!r}"),
            )
        )
    if not methods and ("algorithms" in raw or "variants" in raw):
        raise ConfigError(
            f"{where} lists no method to run: name some in algorithms = [...] or [[variants]], "
            "or leave both out to run the base config's own algorithm"
        )
    labels = [m.label for m in methods]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"{where} names these methods twice: {', '.join(repeated)}")
    return tuple(methods)


def load_sweep(name: str | Path, select: list[str] | tuple = ()) -> Sweep:
    """Read a sweep file; `select` holds `sweep.seeds=...`, `sweep.num_labels=...` and
    `sweep.only=LABEL,...` assignments that narrow its grid."""
    path = find_sweep(name)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    _check_keys(raw, SWEEP_KEYS, str(path))
    if not isinstance(raw.get("config"), str):
        raise ConfigError(f'{path} needs a base config, e.g. config = "rafdb-paper"')
    base = _base_config(raw["config"], path.parent)
    methods = _methods(raw, str(path))
    seeds = _int_list(raw.get("seeds", [0]), "seeds")
    budgets = _int_list(raw["num_labels"], "num_labels") if "num_labels" in raw else ()
    for assignment in select:
        key, _, text = assignment.removeprefix("sweep.").partition("=")
        _check_keys({key: None}, SELECT_KEYS, "the sweep's command-line selection (sweep.KEY=...)")
        value = parse_value(text)
        if key == "seeds":
            seeds = _int_list(value, "sweep.seeds")
        elif key == "num_labels":
            budgets = _int_list(value, "sweep.num_labels")
        else:
            methods = _select(methods, _str_list(value, "sweep.only"))
    slurm = raw.get("slurm", {})
    if not isinstance(slurm, dict):
        raise ConfigError(f"slurm in {path}: expected a table of submitit parameters")
    dataset_name = str(raw.get("dataset_name", ""))
    if dataset_name and names.slug(dataset_name) != dataset_name.lower():
        raise ConfigError(
            f"dataset_name {dataset_name!r} in {path} names a folder inside --out: use letters, "
            f"digits, '.', '_' and '-' (e.g. {names.slug(dataset_name) or 'rafdb'!r})"
        )
    return Sweep(
        name=path.stem,
        path=path.resolve(),
        config=base,
        overrides=_str_list(raw.get("overrides", []), "overrides"),
        num_labels=budgets,
        seeds=seeds,
        methods=methods or (Method("", ()),),
        dataset_name=dataset_name,
        slurm=tuple(slurm.items()),
        description=str(raw.get("description", "")),
    )


def _select(methods: tuple[Method, ...], labels: tuple[str, ...]) -> tuple[Method, ...]:
    known = [m.label for m in methods]
    if not labels:
        raise ConfigError(f"sweep.only names no method; the sweep has {', '.join(known)}")
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise ConfigError(
            f"sweep.only: no method named {', '.join(unknown)}; the sweep has {', '.join(known)}"
        )
    return tuple(m for m in methods if m.label in labels)


# ---- the grid ----


def expand(sweep: Sweep, overrides: list[str] | tuple = ()) -> list[tuple[Point, Config]]:
    """Every grid point with its resolved config (so a typo fails before anything runs), in run
    order: seed by seed, so the first seed of every method finishes first."""
    for assignment in overrides:
        key = assignment.partition("=")[0].strip()
        if key in ("seed", "data.num_labels"):
            option = "seeds" if key == "seed" else "num_labels"
            raise ConfigError(
                f"{key} is set by the sweep's grid; choose values with sweep.{option}=... instead"
            )
    points, folders = [], {}
    for seed in sweep.seeds:
        for method in sweep.methods:
            for budget in method.num_labels or sweep.num_labels or (None,):
                grid = [] if budget is None else [f"data.num_labels={budget}"]
                chosen = (*sweep.overrides, *method.overrides, *grid, f"seed={seed}", *overrides)
                try:
                    cfg = load_config(sweep.config, list(chosen))
                except ConfigError as error:
                    where = f"method {method.label!r}, " if method.label else ""
                    raise ConfigError(f"sweep {sweep.name}, {where}seed {seed}: {error}") from error
                label = method.label or cfg.algorithm.name
                point = Point(
                    label=label,
                    dataset=sweep.dataset_name or cfg.data.dataset,
                    num_labels=cfg.data.num_labels,
                    seed=seed,
                    overrides=tuple(chosen),
                    folder="",
                )
                folder = f"{point.column}/{slug(label)}/s{seed}"
                if folder in folders:
                    raise ConfigError(
                        f"methods {folders[folder]!r} and {label!r} would share the folder "
                        f"{folder}; give them labels that differ in ASCII letters or digits "
                        "(folder names keep a-z, 0-9, '.' and '_')"
                    )
                folders[folder] = label
                points.append((dataclasses.replace(point, folder=folder), cfg))
    return points
