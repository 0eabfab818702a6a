"""Settings a new run would not read, refused before it starts: a noise rate or map without its
noise, data keys its dataset does not read (DATASET_KEYS), and LION's settings of the rule the run
does not decide by (unread_settings); and a run folder inside a `folder` dataset's images
(check_out). Each is a ConfigError naming the settings and the fix.
`lionfer train` checks a new run (not a resumed one: a finished run's config.toml is not judged
again), and `lionfer sweep` every run it would start, before it starts any. A sweep also hands
each run only the shared `algorithm.*` settings its algorithm has (algorithm_reads), refuses a
semi-supervised run left without unlabeled images (check_unlabeled_images), and a run whose
data.root or model.pretrained file is missing (check_inputs), which the run would refuse once it
reads them: data.root empty for a dataset that reads files (lionfer.data.datasets.check_root,
the check of every reading of a dataset), or naming nothing. Free of torch at
import."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from lionfer.algorithms.lion_config import LION_RECIPES, unread_settings
from lionfer.config import WEIGHT_SETS, Config, algorithm_config_class
from lionfer.config_sections import DataConfig
from lionfer.data.datasets import DATASET_KEYS, FILE_DATASETS, check_root
from lionfer.errors import ConfigError, did_you_mean


def check_new_run(cfg: Config, out: str | Path | None = None) -> None:
    """Every check below, in turn (check_out where the run's folder is given)."""
    check_dataset_keys(cfg)
    check_noise(cfg)
    check_lion_settings(cfg)
    if out is not None:
        check_out(cfg, out)


def check_inputs(cfg: Config, paths: bool = True) -> None:
    """A new run's data.root and model.pretrained file, where the run would refuse them once it
    reads them: data.root empty (check_root), or naming nothing (the dataset's reader refuses
    it), and a weights file that is not there (refused after the data are read). Told from the
    config and the paths alone, reading nothing, so that a sweep refuses before it starts a run
    that would fail. Paths are taken as the run takes them, from the current folder (~
    expanded; a loaded config's are absolute already); data.root is left to the reader where
    data.label_file names a file outside it (fer2013 reads such a file alone). paths=False:
    data.root empty only (runs on other machines, a cluster's, may see other files)."""
    data = cfg.data
    check_root(data)
    if not paths:
        return
    root = Path(data.root).expanduser().absolute()
    labels = [p.strip() for p in data.label_file.split(",") if p.strip()]
    alone = any(root not in Path(p).expanduser().absolute().parents for p in labels)
    if data.dataset in FILE_DATASETS and data.root and not alone:
        if not root.exists():
            raise ConfigError(
                f"data.root={data.root} does not exist: the {data.dataset} dataset would not be "
                "found; set data.root to the dataset's folder"
            )
    pretrained = cfg.model.pretrained
    if pretrained in ("", *WEIGHT_SETS):  # none, or the name of a weight set
        return
    path = Path(pretrained).expanduser()
    if path.is_dir():
        raise ConfigError(f"model.pretrained={pretrained} is a folder: name the weights file in it")
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained={pretrained} does not exist: put the weights file there, or fix "
            'model.pretrained (model.pretrained="" trains from random weights)'
        )


def check_out(cfg: Config, out: str | Path) -> None:
    """A run folder inside a `folder` dataset's image tree would become part of the data: every
    folder under data.root is read as a class (data.unlabeled_root: as unlabeled images), so a
    report's figures or annotated predictions written into the run later would be trained on."""
    if cfg.data.dataset != "folder":
        return
    run = Path(out).expanduser().resolve()
    for key in ("root", "unlabeled_root"):
        value = getattr(cfg.data, key)
        if not value:
            continue
        tree = Path(value).expanduser().resolve()
        if run == tree or tree in run.parents:
            raise ConfigError(
                f"--out {out} lies inside data.{key}={value}, every folder of which is read as "
                "data: the run's figures and predictions would be trained on next time. Choose "
                "an --out outside it"
            )


def check_noise(cfg: Config) -> None:
    """data.noise_rate and data.noise_map act only with a noise that reads them: set without it,
    they would leave the labels as given in a run meant to study noise."""
    data = cfg.data
    if data.noise == "none" and data.noise_rate > 0:
        raise ConfigError(
            f"data.noise_rate={data.noise_rate} changes no label with data.noise=none; add "
            "data.noise=symmetric, asymmetric or instance, or drop data.noise_rate"
        )
    if data.noise_map and data.noise != "asymmetric":
        raise ConfigError(
            f"data.noise_map is read only by data.noise=asymmetric, not {data.noise}; add "
            "data.noise=asymmetric, or drop data.noise_map"
        )


def check_dataset_keys(cfg: Config) -> None:
    """Data keys set away from their defaults for a dataset that does not read them."""
    data, default = cfg.data, DataConfig()
    unread = [
        key
        for key, readers in DATASET_KEYS.items()
        if data.dataset not in readers and getattr(data, key) != getattr(default, key)
    ]
    if unread:
        named = " or ".join(
            f"data.{key} (read by {', '.join(sorted(DATASET_KEYS[key]))})" for key in unread
        )
        raise ConfigError(
            f"data.dataset={data.dataset} does not read {named}; drop "
            f"{'it' if len(unread) == 1 else 'them'}, or pick the dataset meant"
        )


def check_lion_settings(cfg: Config) -> None:
    """LION's settings of the rule the run does not decide by (prototypes or evidence)."""
    if cfg.algorithm.name != "lion":
        return
    unread = unread_settings(cfg.algorithm.params)
    if not unread:
        return
    names = ", ".join(f"algorithm.{name}" for name in unread)
    verb, pronoun = ("is", "it") if len(unread) == 1 else ("are", "them")
    recipe = f"algorithm.recipe={cfg.algorithm.recipe}"
    if cfg.algorithm.disambiguation == "prototypes":
        rule, run, fix = (
            "the evidence rule (algorithm.disambiguation=evidence, the default recipe's)",
            f"decides by prototypes ({recipe})",
            "algorithm.recipe=evidence",
        )
    else:
        rule, run, fix = (
            "the prototypes' rule (Eqs. 1-6: the paper, released and robust recipes)",
            f"decides from evidence ({recipe})",
            "algorithm.recipe=paper, released or robust",
        )
    own = LION_RECIPES.get(cfg.algorithm.recipe, {}).get("disambiguation", "prototypes")
    if own != cfg.algorithm.disambiguation:  # the recipe was changed, its rule set apart
        raise ConfigError(
            f"{names} {verb} read only by {rule}, and this run {run.split(' (')[0]} "
            f"(algorithm.disambiguation={cfg.algorithm.disambiguation}), while {recipe} "
            f"decides {'from evidence' if own == 'evidence' else 'by prototypes'}: the config "
            "sets the rule, and the settings, of another recipe (as a file written by `lionfer "
            "config show` does). Write it again for this recipe (lionfer config show "
            f"{recipe} > FILE), or drop algorithm.disambiguation and {names} from it"
        )
    raise ConfigError(
        f"{names} {verb} read only by {rule}, and this run {run}; drop {pronoun}, or train "
        f"with {fix}"
    )


def algorithm_setting(assignment: str) -> str:
    """The field an `algorithm.FIELD=...` override sets ("" for algorithm.name and for keys of
    other sections): the settings an algorithm may not have."""
    key = assignment.partition("=")[0].strip()
    section, _, rest = key.partition(".")
    field = rest.partition(".")[0]
    return field if section == "algorithm" and field and field != "name" else ""


def algorithm_fields(algorithm: str) -> set[str]:
    """The `algorithm.*` settings a run of `algorithm` has (its config's fields)."""
    return {f.name for f in fields(algorithm_config_class(algorithm))}


def algorithm_reads(algorithm: str, assignment: str) -> bool:
    """Whether a run of `algorithm` reads the override `assignment`: any key but an
    `algorithm.FIELD` that its config lacks (FixMatch has no algorithm.recipe)."""
    field = algorithm_setting(assignment)
    return not field or field in algorithm_fields(algorithm)


def check_read_by_some(assignments, algorithms, where: str) -> None:
    """Each `algorithm.*` override of `assignments` is a setting of at least one of `algorithms`
    (the algorithms of a sweep's runs): else a ConfigError naming it, and the closest setting."""
    algorithms = sorted(set(algorithms))
    for assignment in assignments:
        if any(algorithm_reads(a, assignment) for a in algorithms):
            continue
        known = set().union(*(algorithm_fields(a) for a in algorithms))
        field = algorithm_setting(assignment)
        hint = did_you_mean(field, known)
        raise ConfigError(
            f"{assignment.strip()} in {where} is read by no run of this sweep: none of its "
            f"algorithms ({', '.join(algorithms)}) has algorithm.{field}.{hint or ''} Drop it, "
            "or add a method whose algorithm has it"
        )


def check_unlabeled_images(cfg: Config) -> None:
    """A semi-supervised algorithm (one with unlabeled views) with data.num_labels=-1 and no
    other source of unlabeled images (a `folder` dataset's data.unlabeled_root, a split file)
    has none to learn from: the error the run gives once its data are read, told before any
    run of a sweep starts. Imports the algorithm (and torch) only for such a run."""
    data = cfg.data
    if data.num_labels != -1 or data.split_file:
        return
    if data.dataset == "folder" and data.unlabeled_root:
        return
    from lionfer.registry import ALGORITHMS

    if not ALGORITHMS.get(cfg.algorithm.name).views:
        return
    folder = "add a folder of unlabeled images (data.unlabeled_root), " * (data.dataset == "folder")
    raise ConfigError(
        f"algorithm {cfg.algorithm.name} learns from unlabeled images, but "
        "data.num_labels=-1 labels all training images and leaves none unlabeled; lower "
        f"data.num_labels, {folder}or train with algorithm.name=supervised"
    )
