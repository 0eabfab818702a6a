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
from lionfer.experiments.sweep_file import load_sweep, packaged_sweeps


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_then_evaluate(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "train", *TINY, "--out", str(out), "--no-progress")
    assert code == 0, stdout
    assert "test accuracy" in stdout
    assert "relabeled" in stdout or "no label changed" in stdout
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


def test_list_names_the_packaged_configs_and_sweeps(capsys):
    code, stdout, _ = run(capsys, "list", "configs")
    rows = dict(line.split(maxsplit=1) for line in stdout.splitlines())
    assert code == 0 and set(rows) == {"default", "rafdb-paper", "sfew-paper", "affectnet-paper"}
    assert rows["rafdb-paper"] == "LION at paper scale on RAF-DB (Du et al., IJCAI 2023, Table 1)"
    code, stdout, _ = run(capsys, "list", "sweeps")
    rows = dict(line.split(maxsplit=1) for line in stdout.splitlines())
    assert code == 0 and sorted(rows) == packaged_sweeps()
    assert rows["table2-sfew"] == load_sweep("table2-sfew").description


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
    code, _, err = run(capsys, "train", "mine.toml", "seed=1", "--resume", "--out", "runs/x")
    assert code == 2 and "its own config (runs/x/config.toml): drop mine.toml seed=1" in err


def test_a_bad_device_option_names_device_and_its_fix(capsys, tmp_path):
    for argv in (
        ("evaluate", str(tmp_path / "run"), "--device", "gpu"),
        ("train", "--resume", "--out", str(tmp_path / "run"), "--device", "gpu"),
        ("train", *TINY, "--dry-run", "--device", "gpu"),
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2, err
        assert err == "error: --device 'gpu' is not a device; use auto, cpu, cuda, cuda:N or mps\n"
    if not torch.cuda.is_available():  # phrased for the command line, not for train.device
        code, _, err = run(capsys, "evaluate", str(tmp_path / "run"), "--device", "cuda:1")
        assert code == 2 and "--device cuda:1 but cuda is not available here" in err
        assert "use --device cpu or auto" in err and "train.device" not in err


def test_a_dry_run_stopped_by_a_nan_loss_names_no_file_of_its_deleted_folder(capsys, tmp_path):
    argv = ("train", *TINY, "algorithm.name=supervised", "train.lr=1e30", "--dry-run")
    code, _, err = run(capsys, *argv, "--out", str(tmp_path / "run"))
    assert code == 1 and "loss is nan at step" in err, err
    assert "lionfer-dry-run-" not in err and "dry run: nothing was kept" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["config", "data"])
def test_a_command_of_subcommands_without_one_says_which(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "action" not in err
    shown = {"config": "lionfer config show [CONFIG]", "data": "lionfer data stats [CONFIG]"}
    assert f"a subcommand is needed: {shown[command]}" in err


def test_every_option_has_help_and_is_in_its_docs_table():
    """`--help` explains every option, and the docs' table of commands lists each."""
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs"
    rows = [
        line
        for page in ("cli.md", "inference.md")
        for line in (docs / page).read_text(encoding="utf-8").splitlines()
        if line.startswith("| `lionfer ")
    ]
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            assert action.help, f"lionfer {name} {action.option_strings[0]} has no help text"
        row = [line for line in rows if line.startswith(f"| `lionfer {name} ")]
        if not row:  # sweep and report have pages of their own
            continue
        flags = [a.option_strings[-1] for a in command._actions if a.option_strings]
        missing = [f for f in flags if f not in ("-h", "--help") and f not in row[0]]
        assert not missing, f"docs' line of lionfer {name} lacks {missing}"
    for name in ("evaluate", "relabel"):
        run_arg = next(a for a in commands.choices[name]._actions if a.dest == "run")
        assert run_arg.help, name


def test_a_runs_elr_weight_is_read_as_utf8_whatever_the_locale(tmp_path):
    import subprocess
    import sys

    run_folder = tmp_path / "run"
    run_folder.mkdir()
    text = '[data]\nroot = "données"\n[algorithm]\ndisambiguation = "evidence"\nlambda_elr = 0.5\n'
    (run_folder / "config.toml").write_text(text, encoding="utf-8")
    env = {**os.environ, "LC_ALL": "POSIX", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    code = "import sys; from pathlib import Path; "
    code += "from lionfer.reporting.run_summary import elr_weight; "
    code += "print(elr_weight(Path(sys.argv[1])))"
    result = subprocess.run(
        [sys.executable, "-c", code, str(run_folder)], env=env, capture_output=True, text=True
    )
    assert (result.returncode, result.stdout.strip()) == (0, "0.5"), result.stderr
    (run_folder / "config.toml").write_bytes(b"\xff\xfe[train]\n")  # not UTF-8: no hint
    from lionfer.reporting.run_summary import elr_weight

    assert elr_weight(run_folder) == 0.0


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


@pytest.mark.parametrize("rank", ["0", "1"])
def test_under_torchrun_a_bad_command_line_is_printed_by_the_main_process_alone(
    monkeypatch, capsys, rank
):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    if rank == "0":
        assert main(["train", "algorithm.bogus=1", "--dry-run"]) == 2
        assert "unknown key algorithm.bogus" in capsys.readouterr().err
    else:
        with pytest.raises(SystemExit) as stopped:
            main(["train", "algorithm.bogus=1", "--dry-run"])
        assert stopped.value.code == 2
        assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", [["sweep", "embedded", "--out", "x"], ["list", "models"]])
@pytest.mark.parametrize("rank", ["0", "1"])
def test_under_torchrun_only_train_runs_and_the_refusal_is_printed_once(
    monkeypatch, capsys, tmp_path, rank, command
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    if rank == "0":
        assert main(command) == 2
        assert f"lionfer {command[0]} runs in one process: start it without torchrun" in (
            capsys.readouterr().err
        )
    else:
        with pytest.raises(SystemExit) as stopped:
            main(command)
        assert stopped.value.code == 2
        assert capsys.readouterr().err == ""
    assert list(tmp_path.iterdir()) == []  # each process would have written the sweep's folder
