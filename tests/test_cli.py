"""The lionfer command end to end on tiny runs."""

import argparse
import io
import json
import os
import signal
import tomllib

import pytest
import torch
from conftest import TINY

import lionfer.cli
from lionfer.cli import build_parser, main
from lionfer.errors import Interrupted


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
    code, stdout, _ = run(capsys, "evaluate", str(out), "--json", "--device", "cpu")
    assert code == 0 and json.loads(stdout)["test_acc"] == summary["test_acc"]
    if not torch.cuda.is_available():
        code, _, err = run(capsys, "evaluate", str(out), "--device", "cuda")
        assert code == 2 and "cuda" in err
    code, _, err = run(capsys, "train", *TINY, "--out", str(out), "--no-progress")
    assert code == 2 and "already holds a run" in err


def test_dry_run_saves_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = run(capsys, "train", *TINY, "--dry-run")
    assert code == 0 and "dry run ok" in stdout and "the run would write runs/" in stdout
    assert not (tmp_path / "runs").exists()
    photos = tmp_path / "photos"  # an --out the run itself would refuse is refused now
    photos.mkdir()
    (photos / "me.jpg").write_bytes(b"mine")
    code, _, err = run(capsys, "train", *TINY, "--out", str(photos), "--dry-run")
    assert code == 2 and "not a lionfer run" in err and (photos / "me.jpg").read_bytes() == b"mine"


def test_list_and_config_show(capsys):
    code, stdout, _ = run(capsys, "list", "algorithms")
    names = {line.split()[0] for line in stdout.splitlines() if not line.startswith(" ")}
    assert code == 0 and len(names) == 13 and {"lion", "fixmatch", "adacm", "softmatch"} <= names
    recipes = [line.split()[0].rstrip(":") for line in stdout.splitlines() if line.startswith(" ")]
    recipe_names = ("paper", "released", "robust", "evidence")
    assert recipes == [f"algorithm.recipe={r}" for r in recipe_names]
    assert "algorithm.recipe=evidence (default)" in stdout
    code, stdout, _ = run(capsys, "list", "datasets")
    assert {"synthetic", "digits", "rafdb"} <= {line.split()[0] for line in stdout.splitlines()}
    code, stdout, _ = run(capsys, "config", "show", "train.steps=9", "algorithm.name=fixmatch")
    shown = tomllib.loads(stdout)
    assert shown["train"]["steps"] == 9 and shown["algorithm"]["threshold"] == 0.95


def test_help_says_what_lionfer_and_each_command_do():
    parser = build_parser()
    top = parser.format_help()
    assert "facial expression recognition" in top and "Exit status: 0 ok" in top
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    nested = [("config", "show"), ("data", "stats")]
    for names in [(name,) for name in commands.choices] + nested:
        command = parser
        for name in names:
            action = next(a for a in command._actions if isinstance(a, argparse._SubParsersAction))
            summary = next(c.help for c in action._choices_actions if c.dest == name)
            command = action.choices[name]
        # the command's own --help opens with the line the list of commands gives it
        assert command.description == summary[0].upper() + summary[1:] + ".", names


def test_bad_input_exits_2_with_the_fix(capsys, tmp_path):
    code, _, err = run(capsys, "train", "train.stepz=3", "--out", str(tmp_path / "x"))
    assert code == 2 and "Did you mean 'steps'" in err
    code, _, err = run(capsys, "config", "show", "missing.toml")
    assert code == 2 and "config file not found" in err
    code, _, err = run(capsys, "train", "--resume", "--out", str(tmp_path / "none"))
    assert code == 2 and "nothing to resume" in err


def test_data_stats_json(capsys):
    code, stdout, _ = run(
        capsys, "data", "stats", *[t for t in TINY if t.startswith("data.")], "--json"
    )
    stats = json.loads(stdout)
    assert code == 0 and set(stats) == {"train", "test", "labeled", "unlabeled"}
    assert sum(stats["labeled"].values()) == 28
    assert sum(stats["train"].values()) == 210
    assert sum(stats["labeled"].values()) + sum(stats["unlabeled"].values()) == 210


def test_flags_and_overrides_in_any_order(tmp_path):
    from lionfer.cli import parse_args
    from lionfer.config import config_from_args

    args = parse_args(["train", "--no-progress", "train.steps=5"])
    assert args.no_progress and args.items == ["train.steps=5"]
    args = parse_args(["train", "train.steps=5", "--out", "X", "seed=1", "--dry-run", "default"])
    assert args.out == "X" and args.dry_run and args.items == ["train.steps=5", "seed=1", "default"]
    cfg = config_from_args(args.items)
    assert (cfg.train.steps, cfg.seed, cfg.model.name) == (5, 1, "mobilenet_v2")  # default.toml
    with pytest.raises(SystemExit) as info:
        parse_args(["train", "train.steps=5", "--bogus"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        parse_args(["evaluate", "run", "--json", "extra"])


def test_no_progress_prints_a_line_per_log_interval_and_warnings_as_one_line(
    capsys, tmp_path, monkeypatch
):
    import warnings

    from lionfer.algorithms.supervised import Supervised

    original = Supervised.step

    def warns_at_step_1(self, model, batch, progress):
        if progress.step == 1:
            warnings.warn("few labeled images are clear", UserWarning, stacklevel=2)
        return original(self, model, batch, progress)

    monkeypatch.setattr(Supervised, "step", warns_at_step_1)
    out = tmp_path / "run"
    argv = [*TINY, "algorithm.name=supervised", "train.steps=4", "train.log_every=2"]
    code, stdout, err = run(capsys, "train", "--no-progress", *argv, "--out", str(out))
    assert code == 0, err
    lines = [line for line in stdout.splitlines() if line.startswith("step ")]
    assert [line.split("  ")[:1] for line in lines if "loss" in line] == [
        ["step 2/4"],
        ["step 4/4"],
    ]
    assert "steps/s" in lines[0]
    assert "warning: few labeled images are clear\n" in err and "UserWarning" not in err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"event": "warning", "step": 1, "message": "few labeled images are clear"} in records


def test_a_gpu_run_is_continued_on_a_cpu_with_device(capsys, tmp_path, tiny_cfg):
    from lionfer.training.run import train

    small = ("data.num_train=70", "data.num_test=14", "data.num_labels=14")
    run_dir = tmp_path / "run"
    train(tiny_cfg("algorithm.name=supervised", "train.steps=2", *small), run_dir, stop_after=1)
    config = run_dir / "config.toml"
    config.write_text(config.read_text().replace('device = "auto"', 'device = "cuda:0"'))
    resume = ["train", "--resume", "--out", str(run_dir), "--no-progress"]
    if not torch.cuda.is_available():
        code, _, err = run(capsys, *resume)
        assert code == 2 and "--resume --out RUN --device cpu" in err
    code, stdout, err = run(capsys, *resume, "--device", "cpu")
    assert code == 0 and "2 steps" in stdout, err
    code, _, err = run(capsys, *resume, "--dry-run")
    assert code == 2 and "neither --overwrite nor --dry-run" in err


def test_ctrl_c_on_a_sweep_does_not_say_it_stopped_its_runs_at_once(capsys, monkeypatch):
    import lionfer.experiments.sweep as sweep

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", interrupted)
    code, _, err = run(capsys, "sweep", "lion-digits", "--out", "unused")
    assert code == 130 and "the sweep and its runs stopped." in err
    assert "stopped at once" not in err


class ClosedPipe(io.StringIO):
    """A stdout whose reader has gone (`lionfer train | head -1`)."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self):
        raise io.UnsupportedOperation("fileno")


def test_a_run_goes_on_when_its_output_streams_are_gone(tmp_path, monkeypatch):
    """Lines and bars are all a closed stdout or a missing stderr lose: the run completes."""
    import sys

    small = ["data.num_train=70", "data.num_test=14", "data.num_labels=14", "train.steps=4"]
    argv = ["train", *TINY, "algorithm.name=supervised", *small, "train.log_every=1"]
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main([*argv, "--no-progress", "--out", str(tmp_path / "lines")]) == 0
    assert (tmp_path / "lines" / "summary.json").is_file()
    monkeypatch.setattr(sys, "stderr", None)  # started without one: no bars, no error
    assert main([*argv, "--out", str(tmp_path / "bars")]) == 0
    assert (tmp_path / "bars" / "summary.json").is_file()


def test_the_examples_of_train_help_run(capsys, tmp_path, monkeypatch):
    """Each example of `lionfer train --help`, in order, on tiny settings (the first item
    without '=' stays the config file; flags as given)."""
    from conftest import tiny

    from lionfer.cli import TRAIN_EXAMPLES

    monkeypatch.chdir(tmp_path)
    examples = [
        line.split("   ")[0].split()[2:]  # the command, without its description
        for line in TRAIN_EXAMPLES.splitlines()
        if line.strip().startswith("lionfer train")
    ]
    assert len(examples) >= 5
    for argv in examples:
        datasets = [item for item in argv if item.startswith("data.dataset=")]
        extra = [] if "--resume" in argv else tiny(*datasets, "train.steps=4")
        code, stdout, err = run(capsys, "train", *argv, *extra, "--no-progress")
        assert code == 0, (argv, err)
        assert "test accuracy" in stdout or "dry run ok" in stdout, argv


def close_fd_2() -> None:
    os.close(2)


def test_a_process_started_without_stderr_keeps_its_files_off_fd_2(tmp_path):
    """`lionfer ... 2>&-`: fd 2 is held on /dev/null, so no run file gets it (a note written to
    stderr, e.g. by the stop handler, would land in that file)."""
    import subprocess
    import sys

    script = (
        "import os, sys; from lionfer.cli import hold_standard_fds; hold_standard_fds(); "
        f"fd = os.open({str(tmp_path / 'f')!r}, os.O_CREAT | os.O_WRONLY); print(fd)"
    )
    done = subprocess.run(  # as `2>&-` starts it: no fd 2
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, preexec_fn=close_fd_2
    )
    assert done.returncode == 0 and int(done.stdout) > 2


@pytest.mark.parametrize(("rank", "said"), [("0", True), ("1", False)])
def test_a_stop_under_torchrun_is_reported_by_the_main_process_alone(
    monkeypatch, capsys, rank, said
):
    def stopped(args):
        raise Interrupted(signal.SIGTERM, 7, "runs/x")

    monkeypatch.setenv("RANK", rank)
    args = argparse.Namespace(command="train", func=stopped)
    monkeypatch.setattr(lionfer.cli, "parse_args", lambda argv: args)
    assert main(["train"]) == 143
    assert ("interrupted by SIGTERM at step 7" in capsys.readouterr().err) is said
