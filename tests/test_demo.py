"""make demo's entry point on a tiny schedule: six runs and the comparison table."""

import pytest
from conftest import TINY

from lionfer.config import DEFAULT_CONFIG, load_config
from lionfer.experiments.demo import ORDER, RUNS, main, run_overrides


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_demo_trains_baselines_and_every_lion_recipe_and_prints_the_table(
    tmp_path, monkeypatch, capsys, jobs
):
    monkeypatch.chdir(tmp_path)
    assert main(["--jobs", jobs, *TINY, "train.steps=4", "train.eval_every=4"]) == 0
    out = capsys.readouterr().out
    for name in ("supervised", "fixmatch", "lion:paper", "lion:released", "lion:robust"):
        assert name in out
    assert "lion:evidence" in out and "cannot rank" in out  # the default, and what a seed shows
    assert "test acc %" in out and "label acc now %" in out and "relabeled" in out
    assert "±" not in out  # one seed: means only
    assert f"{jobs} at a time" in out
    (root,) = (tmp_path / "runs").iterdir()
    assert {p.name for p in root.iterdir()} == {folder for folder, _ in RUNS} | {"logs"}
    assert all((root / folder / "summary.json").is_file() for folder, _ in RUNS)
    assert {p.stem for p in (root / "logs").iterdir()} == set(ORDER)
    # the runs were what each folder's name says, with the overrides given
    assert 'recipe = "paper"' in (root / "lion-paper" / "config.toml").read_text()
    assert "steps = 4" in (root / "supervised" / "config.toml").read_text()


def test_demo_checks_every_config_before_running_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "train.stepz=4"]) == 2
    assert "train.stepz" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_demo_reports_a_failed_run_and_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # a device that does not exist: every run fails at its start, with its log kept
    assert main(["--jobs", "2", *TINY, "train.steps=2", "train.device=cuda:7"]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "failed:" in captured.err


def test_runs_sharing_the_cpu_make_their_views_without_a_loader_worker():
    def workers(jobs, given, gpus):
        return load_config(DEFAULT_CONFIG, run_overrides(jobs, given, gpus)).data.num_workers

    default = load_config(DEFAULT_CONFIG, []).data.num_workers
    assert default == 1  # one run alone: augmentation beside the model
    assert workers(2, [], gpus=False) == 0  # two runs on the cores: no worker each
    assert workers(1, [], gpus=False) == default
    assert workers(2, [], gpus=True) == default  # a GPU each: the cores feed them
    assert workers(2, ["data.num_workers=3"], gpus=False) == 3  # what the user gives wins
