"""Every packaged config and sweep, loaded by lionfer's own loaders: each names a LION recipe that
exists, the paper-scale configs run the paper's recipe, Fig. 4 moves τ in Eq. 1 and Eq. 6
together, and Table 1 runs the released recipe on its own schedule."""

from __future__ import annotations

import dataclasses

import pytest

from lionfer.algorithms.hparams import LionConfig, lion_config
from lionfer.config import PACKAGED_CONFIGS, load_config
from lionfer.config_text import split_config_args
from lionfer.data.datasets import FILE_DATASETS
from lionfer.experiments.sweep_file import expand, load_sweep, packaged_sweeps
from lionfer.unread import check_new_run

CONFIGS = sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.toml"))
PAPER_CONFIGS = ("rafdb-paper", "sfew-paper", "affectnet-paper")
PLACEHOLDER = ["data.root=/data/placeholder"]


def recipe_of(overrides) -> str | None:
    named = [o.partition("=")[2] for o in overrides if o.startswith("algorithm.recipe=")]
    return named[-1] if named else None


def points(name: str):
    """(point, config) of every grid point of a packaged sweep. A method that names a recipe
    lionfer does not have yet (`evidence`, lionfer's next default) is left out."""
    sweep = load_sweep(name)
    methods = tuple(
        m for m in sweep.methods if recipe_of(m.overrides) in (None, *LionConfig.RECIPES)
    )
    pending = {recipe_of(m.overrides) for m in sweep.methods if m not in methods}
    assert pending <= {"evidence"}, f"{name} names unknown recipes {pending}"
    return expand(dataclasses.replace(sweep, methods=methods), PLACEHOLDER)


def test_the_packaged_files_are_all_here():
    assert set(PAPER_CONFIGS) | {"default"} <= set(CONFIGS)
    assert {"fig4-rafdb", "table1-rafdb", "fer2013-ferplus"} <= set(packaged_sweeps())


@pytest.mark.parametrize("name", CONFIGS)
def test_every_packaged_config_names_a_known_recipe(name):
    path, overrides = split_config_args([name])  # as `lionfer train NAME` finds it
    assert path == PACKAGED_CONFIGS / f"{name}.toml"
    cfg = load_config(path, overrides)
    if cfg.algorithm.name == "lion":
        assert cfg.algorithm.recipe in LionConfig.RECIPES
    check_new_run(cfg)


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_scale_configs_run_the_paper_recipe(name):
    cfg = load_config(*split_config_args([name]))
    assert cfg.algorithm.name == "lion" and cfg.algorithm.recipe == "paper"
    assert cfg.algorithm.params == lion_config("paper")  # every rule the paper's
    assert cfg.train.steps == 16000 and cfg.model.name == "resnet18"
    # whatever the toolkit's default recipe, the file decides
    assert load_config(*split_config_args([name, "seed=1"])).algorithm.recipe == "paper"


@pytest.mark.parametrize("name", packaged_sweeps())
def test_every_packaged_sweep_point_names_a_known_recipe(name):
    found = points(name)
    assert found
    for point, cfg in found:
        if cfg.algorithm.name == "lion":
            assert cfg.algorithm.recipe in LionConfig.RECIPES, point.label
            wanted = recipe_of(point.overrides)
            if wanted is not None:
                assert cfg.algorithm.recipe == wanted, point.label
        if cfg.data.dataset not in FILE_DATASETS:  # PLACEHOLDER's root is for those alone
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=""))
        check_new_run(cfg)  # nothing set that its dataset or rule would not read


def test_paper_sweeps_run_lion_paper_on_paper_configs():
    for name in packaged_sweeps():
        if name.startswith(("table1-", "table2-", "fig4-")):
            for point, cfg in points(name):
                if point.label.startswith("lion") and point.label != "lion:released":
                    assert cfg.algorithm.recipe == "paper", (name, point.label)


def test_fig4_moves_tau_in_eq1_and_eq6_together():
    found = points("fig4-rafdb")
    by_label = {point.label: cfg.algorithm for point, cfg in found if point.seed == 0}
    taus = {label: a for label, a in by_label.items() if label.startswith("lion tau=")}
    assert len(taus) == 6
    for label, algo in taus.items():
        tau = float(label.removeprefix("lion tau="))
        assert algo.clear_threshold == algo.resolve_threshold == algo.relabel_threshold == tau
        assert algo.reliable_threshold == 0.83  # γ stays at the paper's value
    middle = by_label["lion:paper"]
    assert middle.clear_threshold == middle.resolve_threshold == middle.relabel_threshold == 0.80
    for label, algo in by_label.items():
        if label.startswith("lion gamma="):
            assert algo.reliable_threshold == float(label.removeprefix("lion gamma="))
            assert algo.clear_threshold == algo.resolve_threshold == 0.80


@pytest.mark.parametrize("name", ["table1-rafdb", "table1-sfew", "table1-affectnet"])
def test_table1_runs_the_released_recipe_on_its_schedule(name):
    found = [(p, c) for p, c in points(name) if p.label == "lion:released"]
    assert len(found) == len(load_sweep(name).num_labels) * 3  # every budget, seeds 0, 1, 2
    for _, cfg in found:
        assert cfg.algorithm.recipe == "released"
        assert cfg.train.steps == 24000 and cfg.algorithm.epoch_steps == 800  # 30 epochs
        assert cfg.algorithm.disambiguation_start * cfg.train.steps == pytest.approx(7200)
    others = {c.train.steps for p, c in points(name) if p.label != "lion:released"}
    assert others == {16000}


def test_fer2013_ferplus_sweep():
    sweep = load_sweep("fer2013-ferplus")
    labels = [m.label for m in sweep.methods]
    assert {"supervised", "fixmatch", "lion:paper", "lion:released", "lion:robust"} <= set(labels)
    assert "lion:evidence" in labels
    evidence = next(m for m in sweep.methods if m.label == "lion:evidence")
    assert evidence.overrides == ("algorithm.name=lion", "algorithm.recipe=evidence")
    found = points("fer2013-ferplus")
    assert {p.num_labels for p, _ in found} == {1000, 4000}
    for point, cfg in found:
        assert cfg.data.dataset == "fer2013" and cfg.data.truth == "ferplus"
        assert cfg.data.image_size == 48 and cfg.train.steps == 2400
        if cfg.algorithm.name == "lion":  # 30 "epochs", the released recipe's schedule
            assert cfg.algorithm.epoch_steps == 80, point.label
    assert sweep.dataset_name == "fer2013-ferplus"
