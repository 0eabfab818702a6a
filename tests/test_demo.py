"""make demo: the packaged sweep `demo` holds the six runs of the embedded default it always made,
and the demo runs it through the sweep machinery and prints its report's tables (on a tiny
schedule here)."""

import pytest
from conftest import TINY

from lionfer.config import DEFAULT_CONFIG, load_config
from lionfer.experiments.demo import main, new_folder, sweep_items
from lionfer.experiments.sweep import Action, shares_cores, train_argv
from lionfer.experiments.sweep_file import expand, load_sweep

# The runs `make demo` has always made: each method's overrides of the packaged default config.
RUNS = {
    "supervised": ("algorithm.name=supervised",),
    "fixmatch": ("algorithm.name=fixmatch",),
    "lion:paper": ("algorithm.name=lion", "algorithm.recipe=paper"),
    "lion:released": ("algorithm.name=lion", "algorithm.recipe=released"),
    "lion:robust": ("algorithm.name=lion", "algorithm.recipe=robust"),
    "lion:evidence": ("algorithm.name=lion", "algorithm.recipe=evidence"),
}


def test_the_demo_sweep_holds_the_six_runs_of_make_demo():
    sweep = load_sweep("demo")
    assert sweep.config == DEFAULT_CONFIG.resolve() and sweep.seeds == (0,)
    points = expand(sweep)
    assert [p.label for p, _ in points] == list(RUNS)
    for point, cfg in points:
        assert cfg.to_dict() == load_config(DEFAULT_CONFIG, list(RUNS[point.label])).to_dict()
        assert cfg.seed == 0 and cfg.train.steps == 600 and cfg.data.num_labels == 140
        assert point.folder == f"synthetic@140/{point.label.replace(':', '-')}/s0"
    recipes = [cfg.algorithm.recipe for _, cfg in points if cfg.algorithm.name == "lion"]
    assert recipes == ["paper", "released", "robust", "evidence"]
    # the demo's own seed= and data.num_labels= choose the grid's seeds and budget
    assert sweep_items(["seed=1", "data.num_labels=28", "train.steps=4"]) == [
        "sweep.seeds=1",
        "sweep.num_labels=28",
        "train.steps=4",
    ]


def test_the_demo_is_named_by_its_command_too_where_there_is_no_makefile():
    # an installed lionfer has no Makefile: `lionfer list sweeps` showed "make demo: ..."
    named = "the demo (make demo, or python -m lionfer.experiments.demo)"
    assert load_sweep("demo").description.startswith(f"{named}: supervised, FixMatch")
    first = DEFAULT_CONFIG.read_text().split("\n# The paper's")[0]
    assert " ".join(first.replace("# ", "").split()).endswith(f"and {named} run without a config.")


def test_runs_sharing_the_cpu_make_their_views_without_a_loader_worker(tmp_path):
    sweep = load_sweep("demo")

    def workers(jobs, given, gpus):
        point = expand(sweep, given)[0][0]
        shared = shares_cores("local", jobs, gpus)
        argv = train_argv(Action(point, "start"), sweep, tmp_path, shared)
        return load_config(argv[1], argv[2 : argv.index("--out")]).data.num_workers

    default = load_config(DEFAULT_CONFIG, []).data.num_workers
    assert default == 1  # one run alone: augmentation beside the model
    assert workers(2, [], gpus=[]) == 0  # two runs on the cores: no worker each
    assert workers(1, [], gpus=[]) == default
    assert workers(2, [], gpus=["0"]) == default  # a GPU each: the cores feed them
    assert workers(2, ["data.num_workers=3"], gpus=[]) == 3  # what the user gives wins
    assert not shares_cores("slurm", 4, [])


def test_demo_runs_the_sweep_and_prints_the_reports_tables(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    only = "sweep.only=supervised,lion:evidence"  # two of the six runs, at once
    assert main(["--jobs", "2", *TINY, "train.steps=4", "train.eval_every=4", only]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 runs on synthetic (28 labels, 4 steps, cnn_small at 24 px), 2 at")
    for title in ("Test accuracy (final model):", "Mask rate (%):", "Relabeling:"):
        assert title in out
    assert "synthetic@28 test acc %" in out and "current labels correct %" in out
    assert "lion:evidence (" in out and "of 28 labeled images" in out  # the run's own account
    assert "slips fixed %" in out and "wrong labels fixed: slips" in out  # by error type
    assert "cannot rank" in out and "±" not in out  # one seed: means only
    (root,) = (tmp_path / "runs").iterdir()
    assert root.name.startswith("demo-")
    for folder in ("synthetic@28/supervised/s0", "synthetic@28/lion-evidence/s0"):
        assert (root / folder / "summary.json").is_file()
        config = (root / folder / "config.toml").read_text()
        assert "steps = 4" in config and "num_workers = 0" in config
    assert (root / "sweep.json").is_file() and (root / "report" / "report.md").is_file()
    assert len(list((root / "logs").iterdir())) == 2


def test_demo_checks_every_config_before_running_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "train.stepz=4"]) == 2
    assert "train.stepz" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_demo_reports_a_failed_run_and_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # a device that does not exist: the run fails at its start, with its log kept
    only = "sweep.only=supervised"
    assert main(["--jobs", "2", *TINY, "train.steps=2", "train.device=cuda:7", only]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "failed: synthetic@28/supervised/s0" in captured.err


def test_demo_writes_into_a_new_folder_and_never_into_one_of_the_users(
    tmp_path, monkeypatch, capsys
):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["--out", str(mine), *TINY, "train.steps=2"]) == 2
    assert "not a lionfer sweep" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    monkeypatch.setattr("lionfer.experiments.demo.time.strftime", lambda _: "20260101-000000")
    first = new_folder(tmp_path)
    assert first == (tmp_path / "demo-20260101-000000").resolve()
    first.mkdir()
    assert new_folder(tmp_path) == first.with_name("demo-20260101-000000-2")


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_demo_needs_at_least_one_job(jobs, capsys):
    assert main(["--jobs", jobs]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
