"""A sweep file and its grid: read and check the TOML file (methods, label budgets, seeds, the
command line's sweep.KEY=... selection), then expand it into grid points, each with its resolved
config and its stable folder <dataset>@<labels>/<method>/s<seed>. Carrying a grid out is
lionfer.experiments.sweep; the file format is in docs/sweeps.md.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lionfer import run_names as names
from lionfer.config import PACKAGED_CONFIGS, Config, load_config
from lionfer.config_sections import AlgorithmConfig
from lionfer.config_text import parse_value, read_toml
from lionfer.errors import ConfigError, did_you_mean
from lionfer.unread import (
    algorithm_fields,
    algorithm_reads,
    algorithm_setting,
    check_read_by_some,
    check_unlabeled_images,
)

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
# settings the grid sets for each run: an override of them would lose to the grid's value
GRID_KEYS = {"seed": "seeds", "data.num_labels": "num_labels"}
FOLDER_RULE = (
    "folder names keep a-z, 0-9, '.', '_' and '-'; any other run of characters becomes '-'"
)


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
            f"variant label {label!r} has no ASCII letters or digits to name a folder "
            f"({FOLDER_RULE})"
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


def warn_base_settings_left_out(base: Path, runs) -> None:
    """The base config's own algorithm.* settings belong to its algorithm: a method of another
    algorithm that has the same setting, and does not set it itself, runs at its own default.
    Warn, naming the settings and how to share them (the sweep's overrides), so a comparison does
    not differ by accident. runs: (algorithm, the overrides it gets) of each method."""
    table = read_toml(base).get("algorithm", {})
    own = table.get("name", AlgorithmConfig.name) if isinstance(table, dict) else None
    if not isinstance(table, dict) or not isinstance(own, str):
        return
    for algorithm, overrides in runs:
        if algorithm in (None, own):
            continue
        given = {algorithm_setting(o) for o in overrides}
        fields = algorithm_fields(algorithm)
        left = sorted(k for k in table if k != "name" and k in fields and k not in given)
        if left:
            settings = ", ".join(f"algorithm.{k}={table[k]!r}" for k in left)
            warnings.warn(
                f"{base.name} sets {settings} for {own}; {algorithm}, which has the same "
                "setting, runs at its own default: to share a setting, put it in the sweep's "
                "overrides",
                stacklevel=3,
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


def _check_grid_keys(overrides, where: str, place: str) -> None:
    """seed= in a sweep file's overrides would lose to the grid's seeds: refused, naming the
    grid's key (`place`: "sweep" for the file's own overrides, "variant" for a variant's).
    data.num_labels= is checked once the budgets are known (_check_budget_overrides)."""
    for assignment in overrides:
        key = assignment.partition("=")[0].strip()
        if key != "seed":
            continue
        raise ConfigError(
            f"{assignment.strip()} in {where} would lose to the sweep's grid, which sets {key} "
            "for every run; list the seeds in seeds = [...] at the top of the sweep file"
        )


def _budgets(method: Method, budgets: tuple[int, ...]) -> tuple[int, ...]:
    """The budget list that sets data.num_labels for a method's runs: its own num_labels, else
    the sweep's (or sweep.num_labels=); () where none does (data.num_labels= is then the runs'
    budget, as in the base config)."""
    return method.num_labels or budgets


def _sets_budget(assignment: str) -> bool:
    return assignment.partition("=")[0].strip() == "data.num_labels"


def _check_budget_overrides(
    overrides, methods: tuple[Method, ...], budgets: tuple[int, ...], where: str
) -> None:
    """data.num_labels= in the sweep's or a variant's overrides loses to the grid wherever a
    budget list applies to that method (_budgets): refused, naming the list to use. Without one
    it is the runs' budget."""
    for method in methods:
        if not _budgets(method, budgets):
            continue
        for source, place in ((overrides, "sweep"), (method.overrides, "variant")):
            for assignment in source:
                if not _sets_budget(assignment):
                    continue
                at = (
                    f"the overrides of {where}"
                    if place == "sweep"
                    else f"the overrides of variant {method.label!r} of {where}"
                )
                fix = (
                    "give the variant its own budgets: num_labels = [...] in its [[variants]] table"
                    if place == "variant"
                    else "list the budgets in num_labels = [...] (a variant may have its own)"
                )
                raise ConfigError(
                    f"{assignment.strip()} in {at} would lose to the sweep's budgets "
                    f"({', '.join(map(str, _budgets(method, budgets)))}), which set "
                    f"data.num_labels for its runs; {fix}"
                )


def _check_line_budget(overrides, sweep: Sweep) -> None:
    """data.num_labels= on the command line, by the rule of _check_budget_overrides: refused
    wherever a budget list applies to one of the sweep's methods (the command line comes after
    the grid's budget, and would replace it); without one it is the runs' budget."""
    listed = [m for m in sweep.methods if _budgets(m, sweep.num_labels)]
    if not listed or not any(_sets_budget(o) for o in overrides):
        return
    method = listed[0]
    whose = f"the budgets of variant {method.label!r}" if method.num_labels else "its budgets"
    raise ConfigError(
        f"data.num_labels is set by the sweep's grid ({whose}: "
        f"{', '.join(map(str, _budgets(method, sweep.num_labels)))}); choose values with "
        "sweep.num_labels=... instead"
    )


def _methods(raw: dict, where: str) -> tuple[Method, ...]:
    methods = [
        Method(name, (f"algorithm.name={name}",))
        for name in _str_list(raw.get("algorithms", []), "algorithms")
    ]
    variants = raw.get("variants", [])
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(
            f"variants in {where}: expected [[variants]] tables, each with a label and its "
            f'overrides (label = "LION", overrides = ["algorithm.name=lion"]), got {variants!r}'
        )
    for i, variant in enumerate(variants):
        _check_keys(variant, VARIANT_KEYS, f"variant {i + 1} of {where}")
        label = variant.get("label")
        if not isinstance(label, str) or not label.strip():
            raise ConfigError(f'variant {i + 1} of {where} needs a label, e.g. label = "LION"')
        overrides = _str_list(variant.get("overrides", []), f"variant {label!r} overrides")
        _check_grid_keys(overrides, f"the overrides of variant {label!r} of {where}", "variant")
        budgets = variant.get("num_labels")
        methods.append(
            Method(
                label,
                overrides,
                () if budgets is None else _int_list(budgets, f"variant {label!r}"),
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
    raw = read_toml(path, "sweep file")
    _check_keys(raw, SWEEP_KEYS, str(path))
    if not isinstance(raw.get("config"), str):
        raise ConfigError(f'{path} needs a base config, e.g. config = "rafdb-paper"')
    base = _base_config(raw["config"], path.parent)
    methods = _methods(raw, str(path))
    overrides = _str_list(raw.get("overrides", []), "overrides")
    _check_grid_keys(overrides, f"the overrides of {path}", "sweep")
    algorithms = [
        _algorithm_of(base, (*overrides, *m.overrides)) for m in methods or [Method("", ())]
    ]
    if None not in algorithms:  # else expand names the method whose algorithm is not valid
        check_read_by_some(
            [o for o in overrides if algorithm_setting(o)], algorithms, f"the overrides of {path}"
        )
        given = [(*overrides, *m.overrides) for m in methods] or [overrides]
        runs = zip(algorithms, given, strict=True)
        warn_base_settings_left_out(base, {(a, tuple(o)) for a, o in runs})
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
    _check_budget_overrides(overrides, methods or (Method("", ()),), budgets, str(path))
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
        overrides=overrides,
        num_labels=budgets,
        seeds=seeds,
        methods=methods or (Method("", ()),),
        dataset_name=dataset_name,
        slurm=tuple(slurm.items()),
        description=str(raw.get("description", "")),
    )


def _algorithm_of(base: Path, overrides) -> str | None:
    """The algorithm a run of the base config and these overrides trains: the last
    algorithm.name= among them, else the base config's; None where that name is not valid
    (expand reports it, naming the method)."""
    names = [o for o in overrides if o.partition("=")[0].strip() == "algorithm.name"]
    try:
        return load_config(base, names[-1:]).algorithm.name
    except ConfigError:
        return None


def run_overrides(shared, own, algorithm: str | None) -> tuple[str, ...]:
    """A method's overrides after the sweep's shared ones: the shared `algorithm.*` settings its
    algorithm has, right after the last algorithm.name= (an algorithm switch starts its settings
    afresh), and before its own settings (which win); the others left out."""
    shared_algo = [o for o in shared if algorithm_setting(o)]
    if algorithm is not None:
        shared_algo = [o for o in shared_algo if algorithm_reads(algorithm, o)]
    chosen = [o for o in shared if not algorithm_setting(o)]
    own = list(own)
    switch = [i for i, o in enumerate(own) if o.partition("=")[0].strip() == "algorithm.name"]
    if switch:
        cut = switch[-1] + 1
        return (*chosen, *own[:cut], *shared_algo, *own[cut:])
    return (*chosen, *shared_algo, *own)


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
        if assignment.partition("=")[0].strip() == "seed":  # seeds = [0] where none are listed
            raise ConfigError(
                "seed is set by the sweep's grid; choose values with sweep.seeds=... instead"
            )
    _check_line_budget(overrides, sweep)
    algorithms = {
        m.label: _algorithm_of(sweep.config, (*sweep.overrides, *m.overrides, *overrides))
        for m in sweep.methods
    }
    if None not in algorithms.values():  # else the method's run names its algorithm's error
        check_read_by_some(
            [o for o in overrides if algorithm_setting(o)], algorithms.values(), "the command line"
        )
    points, folders = [], {}
    for seed in sweep.seeds:
        for method in sweep.methods:
            algorithm = algorithms[method.label]
            own = run_overrides(sweep.overrides, method.overrides, algorithm)
            line = [o for o in overrides if algorithm is None or algorithm_reads(algorithm, o)]
            for budget in method.num_labels or sweep.num_labels or (None,):
                grid = [] if budget is None else [f"data.num_labels={budget}"]
                chosen = (*own, *grid, f"seed={seed}", *line)
                try:
                    cfg = load_config(sweep.config, list(chosen))
                    check_unlabeled_images(cfg)
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
                        f"({FOLDER_RULE})"
                    )
                folders[folder] = label
                points.append((dataclasses.replace(point, folder=folder), cfg))
    return points
