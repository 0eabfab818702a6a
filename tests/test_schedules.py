"""lionfer.schedules: the rule's arithmetic on hand-computed values, the stated defaults against
the configs lionfer loads, docs/schedules.md holding the tables the module prints (so the page
follows hparams.py), and the showcase sweep running every registered method with the rule's
overrides and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

import lionfer.algorithms  # noqa: F401  (registers the algorithms)
from lionfer import schedules
from lionfer.algorithms.hparams import LionConfig, lion_config
from lionfer.config import DEFAULT_CONFIG, load_config
from lionfer.experiments.sweep_file import expand, load_sweep
from lionfer.registry import ALGORITHMS
from lionfer.schedules import SCHEDULES, Schedule, rule_overrides, rule_value

PAGE = Path(__file__).resolve().parents[1] / "docs" / "schedules.md"


def registered(method: str) -> bool:
    return method.partition(":")[0] in ALGORITHMS.names()


def test_the_rule_on_hand_computed_values():
    ramp = Schedule("m", "rampup", "", "", "", "fraction", 16384, 2**20)
    assert rule_value(ramp, 600) == 0.015625  # 1/64 of any run
    epoch = Schedule("m", "epoch_steps", "", "", "", "period", 800, 16000)
    assert (rule_value(epoch, 600), rule_value(epoch, 1200)) == (30, 60)  # 1/20 of the run
    ema = Schedule("m", "ema", "", "", "", "ema", 1000, 2**20)
    assert rule_value(ema, 600) == 0.9  # 0.57 steps, bounded to 10
    assert rule_value(ema, 2**20) == 0.999  # the source's own run gives the source's value
    assert rule_value(ema, 16000) == pytest.approx(1 - 1 / (16000 / 1048.576), abs=1e-6)
    window = Schedule("m", "history", "", "", "", "window", 128, 2**20)
    assert (rule_value(window, 600), rule_value(window, 2**20)) == (10, 128)
    assert not Schedule("m", "ramp_start", "", "", "", "fraction").ruled  # no source run
    assert rule_overrides("adacm", 1200) == ("algorithm.epoch_steps=60",)
    assert rule_overrides("freematch", 600) == ("algorithm.ema=0.9",)
    assert rule_overrides("fixmatch", 600) == rule_overrides("lion:evidence", 600) == ()


def test_every_registered_algorithm_has_its_schedules_and_ratio_stated():
    stated = {s.method.partition(":")[0] for s in SCHEDULES}
    ratios = {r.method for r in schedules.RATIOS}
    for name in ALGORITHMS.names():
        assert name in stated and name in ratios, f"{name}: add it to lionfer/schedules.py"
    recipes = {s.method for s in SCHEDULES if s.method.startswith("lion:")}
    assert recipes <= {f"lion:{r}" for r in LionConfig.RECIPES}


@pytest.mark.parametrize("schedule", [s for s in SCHEDULES if s.field and registered(s.method)])
def test_each_stated_default_is_what_hparams_gives_the_method(schedule):
    name, _, recipe = schedule.method.partition(":")
    config_class = ALGORITHMS.entry(name).config
    params = lion_config(recipe or LionConfig.DEFAULT_RECIPE) if name == "lion" else config_class()
    wanted = getattr(params, schedule.field)
    if (name, schedule.field) == ("lion", "epoch_steps"):
        wanted = 30  # the one schedule the packaged default.toml sets: 600 steps as 20 epochs
    assert schedules.default_value(schedule.method, schedule.field) == wanted
    if schedule.ruled:  # the rule's value is valid for the method's config
        ruled = f"algorithm.{schedule.field}={rule_value(schedule, 600)}"
        load_config(DEFAULT_CONFIG, [*schedules._algorithm(schedule.method), ruled])


def test_the_stated_views_are_the_algorithms_views():
    for ratio in schedules.RATIOS:
        if registered(ratio.method):
            assert len(ALGORITHMS.get(ratio.method).views) == ratio.views, ratio.method


def test_stated_defaults_follow_hparams():
    rows = {(s.method, s.field): s for s in SCHEDULES}
    mixmatch = rows["mixmatch", "rampup"]
    assert schedules._length(mixmatch, 1.0, 600) == "100% (600 steps)"
    adacm = rows["adacm", "epoch_steps"]
    assert schedules.default_value("adacm", "epoch_steps") == 800
    assert schedules._length(adacm, 800, 600) == "133% (0 updates)"  # never in 600 steps
    assert schedules._length(adacm, 800, 1200) == "66.7% (1 update)"
    freematch = rows["freematch", "ema"]
    assert schedules._length(freematch, 0.999, 600) == "167% (1,000 steps)"
    # the embedded default's file sets the released recipe's epoch to 30 steps: 20 epochs
    assert schedules.default_value("lion:released", "epoch_steps") == 30


def test_the_page_holds_the_tables_the_module_prints():
    page = PAGE.read_text()
    for table in schedules.tables().strip().split("\n\n"):
        assert table in page, "docs/schedules.md is stale: paste `python -m lionfer.schedules`"
    assert f"{schedules.MIN_STEPS} steps" in page  # the bound is stated


def test_showcase_runs_every_method_with_the_rules_overrides_only():
    sweep = load_sweep("showcase")
    methods = {m.label: m for m in sweep.methods}
    assert list(methods) == [m for m in schedules.METHODS if registered(m)]
    for name in ALGORITHMS.names():
        assert any(label.partition(":")[0] == name for label in methods), name
    for label, method in methods.items():
        assert method.overrides == tuple(schedules._algorithm(label)) + rule_overrides(label, 600)
    assert methods["fullysupervised"].num_labels == (-1,)
    assert sweep.seeds == (0, 1, 2) and not sweep.num_labels
    assert not any(o.startswith(("data.", "model.", "train.")) for o in sweep.overrides)
    points = expand(sweep)
    by_label = {p.label: cfg for p, cfg in points if p.seed == 0}
    assert {cfg.train.steps for cfg in by_label.values()} == {600}
    default = load_config(DEFAULT_CONFIG)
    for cfg in by_label.values():  # the embedded default's data, model and schedule
        assert cfg.data == default.data or cfg.data.num_labels == -1
        assert cfg.model == default.model and cfg.train == default.train
    assert by_label["adacm"].algorithm.epoch_steps == 30
    assert by_label["lion:released"].algorithm.epoch_steps == 20
    assert by_label["lion:evidence"].algorithm.params == default.algorithm.params
