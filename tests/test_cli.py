"""The lionfer command end to end on tiny runs."""

import json
import tomllib

from conftest import TINY

from lionfer.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_then_evaluate(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "train", *TINY, "--out", str(out), "--no-progress")
    assert code == 0, stdout
    assert "test accuracy" in stdout and "relabeled" in stdout
    summary = json.loads((out / "summary.json").read_text())
    code, stdout, _ = run(capsys, "evaluate", str(out), "--json")
    assert code == 0
    assert json.loads(stdout)["test_acc"] == summary["test_acc"]
    code, _, err = run(capsys, "train", *TINY, "--out", str(out), "--no-progress")
    assert code == 2 and "already holds a run" in err


def test_dry_run_saves_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = run(capsys, "train", *TINY, "--dry-run")
    assert code == 0 and "dry run ok" in stdout
    assert not (tmp_path / "runs").exists()


def test_list_and_config_show(capsys):
    code, stdout, _ = run(capsys, "list", "algorithms")
    assert code == 0 and {"lion", "fixmatch", "supervised"} <= {
        line.split()[0] for line in stdout.splitlines()
    }
    code, stdout, _ = run(capsys, "list", "datasets")
    assert {"synthetic", "digits", "rafdb"} <= {line.split()[0] for line in stdout.splitlines()}
    code, stdout, _ = run(capsys, "config", "show", "train.steps=9", "algorithm.name=fixmatch")
    shown = tomllib.loads(stdout)
    assert shown["train"]["steps"] == 9 and shown["algorithm"]["threshold"] == 0.95


def test_bad_input_exits_2_with_the_fix(capsys, tmp_path):
    code, _, err = run(capsys, "train", "train.stepz=3", "--out", str(tmp_path / "x"))
    assert code == 2 and "Did you mean 'steps'" in err
    code, _, err = run(capsys, "config", "show", "missing.toml")
    assert code == 2 and "config file not found" in err
    code, _, err = run(capsys, "train", "--resume", "--out", str(tmp_path / "none"))
    assert code == 2 and "config file not found" in err


def test_data_stats_json(capsys):
    code, stdout, _ = run(capsys, "data", "stats", *TINY[:4], "--json")
    stats = json.loads(stdout)
    assert code == 0 and set(stats) == {"train", "test", "labeled", "unlabeled"}
    assert sum(stats["labeled"].values()) == 28
    assert sum(stats["train"].values()) == 210
    assert sum(stats["labeled"].values()) + sum(stats["unlabeled"].values()) == 210
