"""Sweeps: the file format, the grid and its folders, skip / resume / start decisions, GPU slots,
local subprocesses and submitit's local executor end to end, and every packaged sweep."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from conftest import TINY

import lionfer
from lionfer.cli import main
from lionfer.config import ConfigError, load_config, replace, save_config
from lionfer.data.pipeline import read_dataset
from lionfer.experiments.launch import child_env, visible_gpus
from lionfer.experiments.sweep import config_differences, plan, run_sweep, write_sweep_json
from lionfer.experiments.sweep_file import expand, load_sweep, packaged_sweeps, slug
from lionfer.training.run import train
from lionfer.unread import check_inputs


def write_sweep(tmp_path, body: str, name: str = "grid.toml", shared=()):
    base = tmp_path / "base.toml"
    base.write_text(
        "[data]\n" + "\n".join(t.removeprefix("data.") for t in TINY if t.startswith("data."))
    )
    path = tmp_path / name
    others = [t for t in TINY if not t.startswith("data.")] + list(shared)
    path.write_text(f'config = "base.toml"\noverrides = {json.dumps(others)}\n' + body)
    return path


GRID = """
num_labels = [14, 28]
seeds = [0, 1]
algorithms = ["supervised"]

[[variants]]
label = "LION w/o LD"
overrides = ["algorithm.name=lion", "algorithm.use_disambiguation=false"]

[[variants]]
label = "all labels"
overrides = ["algorithm.name=supervised"]
num_labels = [-1]
"""


def test_grid_points_folders_and_overrides(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, GRID))
    assert [m.label for m in sweep.methods] == ["supervised", "LION w/o LD", "all labels"]
    points = [p for p, _ in expand(sweep, ["train.lr=0.01"])]
    assert [p.folder for p in points[:5]] == [
        "synthetic@14/supervised/s0",
        "synthetic@28/supervised/s0",
        "synthetic@14/lion-w-o-ld/s0",
        "synthetic@28/lion-w-o-ld/s0",
        "synthetic@all/all-labels/s0",
    ]
    assert len(points) == 10 and points[5].folder == "synthetic@14/supervised/s1"
    lion = points[2]
    assert lion.overrides[-5:] == (
        "algorithm.name=lion",
        "algorithm.use_disambiguation=false",
        "data.num_labels=14",
        "seed=0",
        "train.lr=0.01",
    )
    cfg = dict(expand(sweep, ["train.lr=0.01"]))[lion]
    assert cfg.algorithm.use_disambiguation is False and cfg.train.lr == 0.01
    assert cfg.data.num_labels == 14 and cfg.seed == 0 and cfg.train.steps == 12
    assert lion.column == "synthetic@14" and points[4].column == "synthetic@all"


def test_selection_from_the_command_line(tmp_path):
    path = write_sweep(tmp_path, GRID)
    sweep = load_sweep(path, ["sweep.seeds=3", "sweep.num_labels=[28]", "sweep.only=supervised"])
    assert [p.folder for p, _ in expand(sweep)] == ["synthetic@28/supervised/s3"]
    with pytest.raises(ConfigError, match="no method named lion; the sweep has supervised"):
        load_sweep(path, ["sweep.only=lion"])
    with pytest.raises(ConfigError, match="Did you mean 'seeds'"):
        load_sweep(path, ["sweep.seed=1"])
    with pytest.raises(ConfigError, match="sweep.seeds=..."):
        expand(sweep, ["seed=4"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("seed = [0]\n", "unknown key 'seed'.*Did you mean 'seeds'"),
        ("[[variants]]\noverrides = []\n", "needs a label"),
        ('algorithms = ["lion"]\n[[variants]]\nlabel = "lion"\n', "names these methods twice"),
        ('algorithms = ["lion", "lino"]\n', "unknown algorithm 'lino'"),
        ('[[variants]]\nlabel = "a b"\n[[variants]]\nlabel = "a-b"\n', "share the folder"),
        ('[[variants]]\nlabel = "x"\noverrides = ["train.stpes=3"]\n', "method 'x'.*'steps'"),
        ('dataset_name = "../escaped"\n', "names a folder inside --out.*'escaped'"),
        ('dataset_name = "/tmp/abs"\n', "names a folder inside --out.*'tmp-abs'"),
        ("variants = [1, 2]\n", r"expected \[\[variants\]\] tables.*got \[1, 2\]"),
        ('[[variants]]\nlabel = ""\n', "variant 1 .* needs a label"),
        (
            '[[variants]]\nlabel = "a"\noverrides = ["seed=5"]\n',
            r"seed=5 in the overrides of variant 'a' .*sweep's grid.*seeds = \[\.\.\.\]",
        ),
        (
            'num_labels = [28]\n[[variants]]\nlabel = "a"\noverrides = ["data.num_labels=70"]\n',
            r"data.num_labels=70 in the overrides of variant 'a'.*budgets \(28\).*"
            r"num_labels = \[\.\.\.\] in its",
        ),
        (  # -1 labels every image: a semi-supervised method has no unlabeled image left
            'num_labels = [28, -1]\nalgorithms = ["supervised", "fixmatch"]\n',
            "method 'fixmatch', seed 0: algorithm fixmatch learns from unlabeled images, but "
            "data.num_labels=-1 labels all training images",
        ),
    ],
)
def test_bad_sweep_files_are_errors_with_the_fix(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        expand(load_sweep(write_sweep(tmp_path, body)))


@pytest.mark.parametrize(
    ("shared", "message"),
    [
        (["seed=3"], r"seed=3 in the overrides of .*grid.toml would lose.*seeds = \[\.\.\.\]"),
        (["data.num_labels=70"], r"data.num_labels=70 .*num_labels = \[\.\.\.\] \(a variant"),
        (  # a setting of none of the sweep's algorithms
            ["algorithm.threshhold=0.5"],
            r"algorithm.threshhold=0.5 in the overrides of .* is read by no run of this sweep: "
            r"none of its algorithms \(fixmatch, supervised\).*Did you mean 'threshold'",
        ),
    ],
)
def test_shared_overrides_the_grid_would_override_or_no_run_reads_are_refused(
    tmp_path, shared, message
):
    body = 'num_labels = [28]\nalgorithms = ["supervised", "fixmatch"]\n'
    with pytest.raises(ConfigError, match=message):
        expand(load_sweep(write_sweep(tmp_path, body, shared=shared)))


def test_a_budget_override_without_a_budget_list_is_the_runs_budget(tmp_path):
    """data.num_labels= in a sweep's or a variant's overrides is refused only where a budget
    list (the sweep's, the variant's, sweep.num_labels=) would set it instead."""
    body = '[[variants]]\nlabel = "a"\noverrides = ["data.num_labels=21"]\n'
    sweep = load_sweep(write_sweep(tmp_path, body, shared=["data.num_labels=28"]))
    assert [cfg.data.num_labels for _, cfg in expand(sweep)] == [21]
    sweep = load_sweep(write_sweep(tmp_path, "", shared=["data.num_labels=28"]))
    assert [cfg.data.num_labels for _, cfg in expand(sweep)] == [28]
    with pytest.raises(ConfigError, match=r"would lose to the sweep's budgets \(14\)"):
        load_sweep(
            write_sweep(tmp_path, "", shared=["data.num_labels=28"]), ["sweep.num_labels=[14]"]
        )


def test_a_budget_on_the_command_line_without_a_budget_list_is_the_runs_budget(tmp_path, capsys):
    """data.num_labels= on the command line follows the rule of the sweep file's overrides:
    refused wherever a budget list (the sweep's, a variant's, sweep.num_labels=) would set it;
    without one it is the runs' budget. seed= is always the grid's (seeds = [0] by default)."""
    path = write_sweep(tmp_path, 'algorithms = ["supervised"]\n')
    sweep = load_sweep(path)
    [(point, cfg)] = expand(sweep, ["data.num_labels=21"])
    assert point.folder == "synthetic@21/supervised/s0" and cfg.data.num_labels == 21
    assert point.overrides[-1] == "data.num_labels=21"
    with pytest.raises(
        ConfigError,
        match=r"data.num_labels is set by the sweep's grid \(its budgets: 14, 28\); choose "
        r"values with sweep.num_labels=\.\.\. instead",
    ):
        expand(load_sweep(path, ["sweep.num_labels=14,28"]), ["data.num_labels=21"])
    body = '[[variants]]\nlabel = "all"\noverrides = ["algorithm.name=supervised"]\n'
    own = write_sweep(tmp_path, body + "num_labels = [-1]\n", name="own.toml")
    with pytest.raises(ConfigError, match=r"grid \(the budgets of variant 'all': -1\)"):
        expand(load_sweep(own), ["data.num_labels=21"])
    with pytest.raises(ConfigError, match=r"seed is set by the sweep's grid.*sweep.seeds=\.\.\."):
        expand(sweep, ["seed=1"])
    nobudget = tmp_path / "nobudget.toml"
    nobudget.write_text('config = "default"\nseeds = [0]\nalgorithms = ["supervised"]\n')
    argv = ["sweep", str(nobudget), "--out", str(tmp_path / "y"), "--dry-run"]
    assert main([*argv, "data.num_labels=70"]) == 0
    printed = capsys.readouterr().out
    assert "synthetic@70/supervised/s0" in printed and "seed=0 data.num_labels=70 --out" in printed


def test_each_method_gets_the_shared_algorithm_settings_it_has(tmp_path):
    """A shared algorithm.* setting reaches every method whose algorithm has it, after the
    method's algorithm.name (which would drop it) and before its own settings (which win); the
    runs, the plan and sweep.json list only the settings each run gets."""
    body = """algorithms = ["fixmatch", "supervised"]
[[variants]]
label = "lion"
overrides = ["algorithm.name=lion"]
[[variants]]
label = "strict"
overrides = ["algorithm.name=fixmatch", "algorithm.threshold=0.9"]
"""
    shared = ["algorithm.threshold=0.5", "algorithm.recipe=paper"]
    path = write_sweep(tmp_path, body, shared=shared)
    points = expand(load_sweep(path), ["algorithm.lambda_u=2"])
    runs = {p.label: (p.overrides, cfg) for p, cfg in points}
    overrides, cfg = runs["fixmatch"]
    assert overrides[-4:] == (
        "algorithm.name=fixmatch",
        "algorithm.threshold=0.5",
        "seed=0",
        "algorithm.lambda_u=2",
    )
    assert "algorithm.recipe=paper" not in overrides
    assert (cfg.algorithm.threshold, cfg.algorithm.lambda_u) == (0.5, 2.0)
    overrides, cfg = runs["supervised"]
    assert not [o for o in overrides if o.startswith("algorithm.") and "name" not in o]
    overrides, cfg = runs["lion"]
    assert "algorithm.recipe=paper" in overrides and "algorithm.threshold=0.5" not in overrides
    assert cfg.algorithm.recipe == "paper"
    overrides, cfg = runs["strict"]
    assert cfg.algorithm.threshold == 0.9 and cfg.algorithm.lambda_u == 2.0
    lines = []
    out = tmp_path / "out"
    assert run_sweep(path, [], out, dry_run=True, echo=lines.append, gpus=[]) == 0
    plan_line = next(line for line in lines if "/supervised/s0" in line)
    assert "algorithm.threshold" not in plan_line and "algorithm.recipe" not in plan_line
    write_sweep_json(out, load_sweep(path), [p for p, _ in points])
    recorded = json.loads((out / "sweep.json").read_text())["points"]
    assert {p["label"]: p["overrides"] for p in recorded}["supervised"][-2:] == [
        "algorithm.name=supervised",
        "seed=0",
    ]
    with pytest.raises(ConfigError, match="algorithm.tau=1 in the command line is read by no run"):
        expand(load_sweep(path), ["algorithm.tau=1"])


def test_a_sweep_file_that_is_not_utf8_is_an_error_with_the_fix(tmp_path, capsys):
    path = tmp_path / "latin.toml"
    path.write_bytes('description = "caf\xe9"\nconfig = "default"\n'.encode("latin-1"))
    code = main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "latin.toml is not UTF-8 text (invalid continuation byte" in err
    assert "TOML files must be UTF-8" in err and "Traceback" not in err
    path.write_bytes(b'\xef\xbb\xbfconfig = "default"\n')  # a byte-order mark is skipped
    assert load_sweep(path).config.name == "default.toml"


def test_unknown_sweep_name_lists_the_packaged_ones(capsys, tmp_path):
    code = main(["sweep", "no-such-sweep", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    assert "packaged sweeps: demo, embedded, evidence-ablation-digits, evidence-ablation" in err


def test_cli_dry_run_of_a_packaged_sweep(capsys, tmp_path):
    out = tmp_path / "embedded"
    argv = ["sweep", "embedded", "sweep.only=supervised", "sweep.seeds=0", "--out", str(out)]
    assert main([*argv, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "1 runs into" in printed and "would start: lionfer train" in printed
    assert "train.steps=400" in printed and "synthetic@140/supervised/s0" in printed
    assert not out.exists()


def test_slug_names_folders():
    assert slug("lion:paper") == "lion-paper"
    assert slug("LION+LD+NL") == "lion-ld-nl"
    assert slug("lion tau=0.60") == "lion-tau-0.60"
    with pytest.raises(ConfigError, match="no ASCII letters or digits"):
        slug("+++")


def test_config_differences_ignore_device_and_compare_paths_absolutely(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = load_config(None, ["data.root=data", "train.device=cpu"]).to_dict()
    b = load_config(None, [f"data.root={tmp_path / 'data'}", "train.device=cuda"]).to_dict()
    assert config_differences(a, b) == []
    c = load_config(None, ["data.root=data", "train.steps=7"]).to_dict()
    assert config_differences(c, a) == ["train.steps is 7 in the run, 600 in the sweep"]
    how = ["train.eval_batch_size=7", "train.log_every=3", "train.checkpoint_every=100"]
    assert config_differences(load_config(None, ["data.root=data", *how]).to_dict(), a) == []


def test_plan_skips_finished_resumes_unfinished_and_leaves_foreign_folders(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, GRID), ["sweep.seeds=0"])
    points = expand(sweep)
    out = tmp_path / "out"

    def folder(i):
        path = out / points[i][0].folder
        path.mkdir(parents=True)
        return path

    finished, unfinished, early, other, foreign = (folder(i) for i in range(5))
    for path, i in ((finished, 0), (unfinished, 1), (early, 2)):
        save_config(points[i][1], path / "config.toml")
    (finished / "summary.json").write_text("{}")
    (unfinished / "checkpoints").mkdir()
    (unfinished / "checkpoints" / "last.pt").write_bytes(b"")
    save_config(replace(points[3][1], "train.steps=5"), other / "config.toml")
    (foreign / "notes.txt").write_text("mine")
    kinds = [(a.kind, a.reason) for a in plan(points, out)]
    assert [k for k, _ in kinds] == ["skip", "resume", "restart", "conflict", "conflict"]
    assert "train.steps is 5 in the run, 12 in the sweep" in kinds[3][1]
    assert "not a run" in kinds[4][1]
    points_new = expand(load_sweep(write_sweep(tmp_path, GRID), ["sweep.seeds=1"]))
    assert {a.kind for a in plan(points_new, out)} == {"start"}


def test_a_run_killed_before_its_config_was_written_is_started_again(tmp_path):
    points = expand(load_sweep(write_sweep(tmp_path, GRID), ["sweep.seeds=0"]))[:2]
    out = tmp_path / "out"
    begun, mine = (out / point.folder for point, _ in points)
    for folder in (begun, mine):
        folder.mkdir(parents=True)
        start = {"event": "start", "num_labeled": 14}  # its first log line, then the kill
        (folder / "metrics.jsonl").write_text(json.dumps(start) + "\n")
    (mine / "notes.txt").write_text("mine")  # and a file of the user's: left alone
    kinds = [(a.kind, a.reason) for a in plan(points, out)]
    assert kinds[0] == ("restart", "stopped before its config was written")
    assert kinds[1][0] == "conflict"


def test_out_folder_with_other_files_is_refused(tmp_path, capsys):
    path = write_sweep(tmp_path, GRID)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    code = main(["sweep", str(path), "--out", str(tmp_path / "mine")])
    assert code == 2 and "not a lionfer sweep (thesis.tex)" in capsys.readouterr().err


def test_one_sweep_at_a_time_in_a_folder(tmp_path):
    path = write_sweep(tmp_path, 'algorithms = ["supervised"]\n')
    out = tmp_path / "out"
    point, cfg = expand(load_sweep(path))[0]
    (out / point.folder).mkdir(parents=True)
    save_config(cfg, out / point.folder / "config.toml")
    (out / point.folder / "summary.json").write_text("{}")
    (out / "sweep.lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    lines = []
    with pytest.raises(ConfigError, match="another sweep is running in"):
        run_sweep(path, [], out, echo=lines.append, gpus=[])
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (out / "sweep.lock").write_text(f"{socket.gethostname()} {ended.pid}\n")
    assert run_sweep(path, [], out, echo=lines.append, gpus=[]) == 0
    assert lines[0].startswith("removing the lock of a sweep that is gone")
    assert not (out / "sweep.lock").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    lines = []
    code = run_sweep(
        write_sweep(tmp_path, GRID), [], tmp_path / "out", dry_run=True, echo=lines.append, gpus=[]
    )
    assert code == 0 and not (tmp_path / "out").exists()
    assert lines[0].startswith("sweep grid: 10 runs") and "10 to start" in lines[0]
    assert "would start: lionfer train" in lines[1] and "--out" in lines[1]


def test_runs_that_would_not_start_stop_the_sweep_before_it_writes_anything(tmp_path):
    # τ on the default recipe, which decides from evidence: none of the runs would read it
    path = write_sweep(tmp_path, 'num_labels = [14]\nseeds = [0, 1]\nalgorithms = ["lion"]\n')
    problem = (
        r"the sweep's run \S+ \(and 1 more of its runs\): algorithm.clear_threshold is read "
        r"only by the prototypes' rule"
    )
    for dry_run in (True, False):
        with pytest.raises(ConfigError, match=problem):
            run_sweep(path, ["algorithm.clear_threshold=0.5"], tmp_path / "out", dry_run=dry_run,
                      echo=print, gpus=[])  # fmt: skip
        assert not (tmp_path / "out").exists()
    lines = []  # without it, the same sweep plans its two runs
    assert run_sweep(path, [], tmp_path / "out", dry_run=True, echo=lines.append, gpus=[]) == 0
    assert "2 to start" in lines[0]


NARROW = ["sweep.seeds=0", "sweep.num_labels=100", "sweep.only=supervised,fixmatch"]


def test_a_sweep_without_its_datas_root_is_refused_before_any_run_starts(tmp_path, monkeypatch):
    """data.root left out of a sweep of a dataset that reads files: each run would stop with
    read_dataset's error; the plan gives it (as --dry-run does), once, naming a run, before
    anything starts or is written."""
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    monkeypatch.setattr("lionfer.experiments.launch.LIONFER", (sys.executable, str(fake)))
    point, cfg = expand(load_sweep("table1-rafdb", NARROW))[0]
    with pytest.raises(ConfigError) as run_error:
        read_dataset(cfg.data, cfg.seed)  # what the run would say
    assert str(run_error.value).startswith("data.root is empty, but the rafdb dataset reads")
    out = tmp_path / "out"
    for dry_run in (True, False):
        with pytest.raises(ConfigError) as refused:
            run_sweep("table1-rafdb", NARROW, out, dry_run=dry_run, echo=print, gpus=[])
        assert str(refused.value) == (
            f"the sweep's run {point.folder} (and 1 more of its runs): {run_error.value}"
        )
        assert not out.exists()
    with pytest.raises(ConfigError) as refused:  # every run of the paper's grid, said once
        run_sweep("table1-rafdb", [], out, dry_run=True, echo=print, gpus=[])
    assert "(and 158 more of its runs): data.root is empty" in str(refused.value)
    assert str(refused.value).count("data.root is empty") == 1


def test_a_missing_data_root_or_weights_file_is_refused_before_any_run_starts(
    tmp_path, monkeypatch
):
    """A data.root that names nothing, or a model.pretrained file that is not there (each run
    would refuse them when it reads them), stops the plan; paths as the runs take them."""
    monkeypatch.chdir(tmp_path)
    out, data, weights = tmp_path / "out", tmp_path / "raf", tmp_path / "w.pth"

    def refusal(*items):
        with pytest.raises(ConfigError) as refused:
            run_sweep("table1-rafdb", [*NARROW, *items], out, dry_run=True, echo=print, gpus=[])
        assert not out.exists()
        return str(refused.value)

    assert f"data.root={data} does not exist: the rafdb dataset" in refusal("data.root=raf")
    lines = []  # a cluster's nodes may see other files: left to its runs
    slurm = run_sweep(
        "table1-rafdb", [*NARROW, "data.root=raf"], out, launcher="slurm", dry_run=True,
        echo=lines.append, gpus=[],
    )  # fmt: skip
    assert slurm == 0 and "2 to start" in lines[0]
    with pytest.raises(ConfigError, match="data.root is empty"):  # but an empty one is refused
        run_sweep("table1-rafdb", NARROW, out, launcher="slurm", dry_run=True, gpus=[])
    data.mkdir()
    message = refusal("data.root=raf", "model.pretrained=w.pth")
    assert message.startswith("the sweep's run rafdb@100/supervised/s0 (and 1 more of its runs)")
    assert f"model.pretrained={weights} does not exist" in message
    assert "is a folder" in refusal("data.root=raf", f"model.pretrained={tmp_path}")
    weights.write_bytes(b"")
    lines = []
    given = [*NARROW, "data.root=raf", "model.pretrained=w.pth"]
    assert run_sweep("table1-rafdb", given, out, dry_run=True, echo=lines.append, gpus=[]) == 0
    assert "2 to start" in lines[0]
    # fer2013 reads a data.label_file outside data.root alone: left to the run
    csv, missing = tmp_path / "fer2013.csv", tmp_path / "none"
    check_inputs(load_config(None, ["data.dataset=fer2013", f"data.root={missing}",
                                    f"data.label_file={csv}"]))  # fmt: skip
    with pytest.raises(ConfigError, match=f"data.root={missing} does not exist"):
        check_inputs(load_config(None, ["data.dataset=fer2013", f"data.root={missing}"]))


def test_finished_runs_are_not_checked_again(tmp_path):
    """The plan checks only the runs it would start: finished ones are skipped as they are,
    even where their weights file has gone since."""
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    path = write_sweep(tmp_path, 'algorithms = ["supervised", "fixmatch"]\n')
    given = f"model.pretrained={weights}"
    out = tmp_path / "out"
    for point, cfg in expand(load_sweep(path), [given]):
        (out / point.folder).mkdir(parents=True)
        save_config(cfg, out / point.folder / "config.toml")
        (out / point.folder / "summary.json").write_text("{}")
    (out / "sweep.json").write_text('{"points": []}')
    weights.unlink()
    lines = []
    assert run_sweep(path, [given], out, echo=lines.append, gpus=[]) == 0
    assert "0 finished now, 2 finished before, 0 failed" in lines[-2]
    with pytest.raises(
        ConfigError,
        match=r"the sweep's run synthetic@28/supervised/s1 \(and 1 more of its runs\): "
        r"model.pretrained=\S+w.pth does not exist",
    ):
        run_sweep(path, ["sweep.seeds=0,1", given], out, dry_run=True, echo=print, gpus=[])


def test_one_gpu_per_slot_and_a_share_of_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    envs = [child_env(slot, ["2", "5"], threads=3) for slot in range(3)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["2", "5", "2"]
    assert envs[0]["OMP_NUM_THREADS"] == "3"
    # the lionfer these tests import: its checkout goes first on the runs' path; an installed
    # copy is found by the runs as it is, with the path left as it was
    root = Path(lionfer.__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file():
        assert envs[0]["PYTHONPATH"].split(os.pathsep)[0] == str(root)
    else:
        assert envs[0].get("PYTHONPATH") == os.environ.get("PYTHONPATH")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,7")
    assert visible_gpus() == ["3", "7"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_sweep_skips_finished_runs_and_resumes_unfinished_ones(tmp_path):
    path = write_sweep(tmp_path, 'algorithms = ["supervised", "lion"]\n')
    out = tmp_path / "out"
    points = {p.label: (p, cfg) for p, cfg in expand(load_sweep(path))}
    done = out / points["supervised"][0].folder
    done.mkdir(parents=True)
    save_config(points["supervised"][1], done / "config.toml")
    (done / "summary.json").write_text('{"test_acc": 0.5}')
    half_point, half_cfg = points["lion"]
    assert train(half_cfg, out / half_point.folder, progress=False, stop_after=6) is None
    (out / "sweep.json").write_text('{"points": []}')
    lines = []
    assert run_sweep(path, [], out, echo=lines.append, gpus=[]) == 0, lines
    assert lines[1] == "[1/2] skip synthetic@28/supervised/s0 (finished)"
    assert lines[2] == "[2/2] resume synthetic@28/lion/s0"
    assert lines[3].startswith("[2/2] done synthetic@28/lion/s0: test_acc ")
    assert "1 finished now, 1 finished before, 0 failed" in lines[4]
    assert (done / "summary.json").read_text() == '{"test_acc": 0.5}'  # left as it was
    resumed = out / half_point.folder
    assert json.loads((resumed / "summary.json").read_text())["steps"] == 12
    events = [json.loads(line)["event"] for line in (resumed / "metrics.jsonl").open()]
    assert events.count("start") == 1  # continued from its checkpoint, not started again
    listed = json.loads((out / "sweep.json").read_text())["points"]
    assert [p["label"] for p in listed] == ["supervised", "lion"]
    assert listed[1]["folder"] == half_point.folder and listed[1]["column"] == "synthetic@28"
    assert listed[1]["overrides"] == list(half_point.overrides)
    lines.clear()
    assert run_sweep(path, [], out, echo=lines.append, gpus=[]) == 0
    assert "0 finished now, 2 finished before, 0 failed" in lines[-2]


def test_a_run_stopped_before_its_first_last_pt_goes_on_from_its_best_pt(tmp_path):
    """A run stopped after an evaluation wrote best.pt and before last.pt was first whole: the
    sweep continues it from best.pt (copied over last.pt), where starting it again with
    --overwrite would delete best.pt with the steps it holds."""
    path = write_sweep(tmp_path, 'algorithms = ["lion"]\n')
    out = tmp_path / "out"
    point, cfg = expand(load_sweep(path))[0]
    run = out / point.folder
    assert train(cfg, run, progress=False, stop_after=6) is None
    best = run / "checkpoints" / "best.pt"
    os.replace(run / "checkpoints" / "last.pt", best)  # as if last.pt were never written
    (out / "sweep.json").write_text('{"points": []}')
    lines = []
    assert run_sweep(path, [], out, echo=lines.append, dry_run=True, gpus=[]) == 0
    assert lines[1] == (
        f"[1/1] resume {point.folder}: it stopped before its first checkpoints/last.pt, but "
        f"{best} holds step 6 (its best evaluation): continuing from it"
    )
    assert not (run / "checkpoints" / "last.pt").exists()  # a dry run writes nothing
    lines.clear()
    assert run_sweep(path, [], out, echo=lines.append, gpus=[]) == 0, lines
    assert json.loads((run / "summary.json").read_text())["steps"] == 12
    events = [json.loads(line)["event"] for line in (run / "metrics.jsonl").open()]
    assert events.count("start") == 1  # continued, not started again
    assert best.is_file()  # kept: the run's best evaluation so far


FAKE_TRAIN = """
import json, os, sys
out = sys.argv[sys.argv.index("--out") + 1]
if "broken" in out:
    print("error: loss is nan at step 3")
    sys.exit(1)
os.makedirs(out)
env = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")}
json.dump({"test_acc": 0.25, "env": env, "argv": sys.argv[1:]}, open(out + "/summary.json", "w"))
"""


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path, monkeypatch):
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    monkeypatch.setattr("lionfer.experiments.launch.LIONFER", (sys.executable, str(fake)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    body = """
algorithms = ["supervised", "fixmatch"]
[[variants]]
label = "broken"
overrides = []
"""
    lines = []
    out = tmp_path / "out"
    code = run_sweep(
        write_sweep(tmp_path, body), [], out, jobs=2, echo=lines.append, gpus=["4", "6"]
    )
    assert code == 1
    text = "\n".join(lines)
    assert "start synthetic@28/supervised/s0 on GPU 4" in text
    assert "start synthetic@28/fixmatch/s0 on GPU 6" in text
    assert "done synthetic@28/fixmatch/s0: test_acc 25.00%" in text
    assert "FAILED synthetic@28/broken/s0: exit 1" in text
    assert "error: loss is nan at step 3 (log: " in text
    assert lines[-1].endswith("1 failed: synthetic@28/broken/s0")
    runs = [
        json.loads((out / f / "summary.json").read_text())
        for f in ("synthetic@28/supervised/s0", "synthetic@28/fixmatch/s0")
    ]
    assert [r["env"]["CUDA_VISIBLE_DEVICES"] for r in runs] == ["4", "6"]
    assert runs[0]["env"]["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
    assert runs[0]["argv"][:2] == ["train", str(tmp_path / "base.toml")]
    assert "seed=0" in runs[0]["argv"] and "--no-progress" in runs[0]["argv"]
    log = out / "logs" / "synthetic@28__broken__s0.log"
    assert "loss is nan" in log.read_text()


def test_submitit_local_executor_runs_the_same_runs(tmp_path):
    path = write_sweep(tmp_path, 'algorithms = ["supervised"]\n')
    lines = []
    code = run_sweep(
        path,
        ["train.steps=4", "train.eval_every=2"],
        tmp_path / "out",
        launcher="slurm",
        cluster="local",
        slurm=["timeout_min=5"],
        echo=lines.append,
    )
    assert code == 0, lines
    run = tmp_path / "out" / "synthetic@28" / "supervised" / "s0"
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
    ledger = (tmp_path / "out" / "slurm" / "jobs.tsv").read_text().split()
    assert ledger[1] == "synthetic@28/supervised/s0"
    assert any("submitted synthetic@28/supervised/s0 as job" in line for line in lines)


def test_submitit_parameters_are_checked(tmp_path):
    path = write_sweep(tmp_path, 'algorithms = ["supervised"]\n')
    with pytest.raises(ConfigError, match="--slurm 'foo' must look like KEY=VALUE"):
        run_sweep(path, [], tmp_path / "out", launcher="slurm", slurm=["foo"], dry_run=True,
                  echo=lambda line: None, gpus=[])  # fmt: skip
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="need to be prefixed"):
        run_sweep(
            path,
            [],
            tmp_path / "out",
            launcher="slurm",
            cluster="local",
            slurm=["bogus=1"],
            echo=lambda line: None,
        )


def test_slurm_without_submitit_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    path = write_sweep(tmp_path, 'algorithms = ["supervised"]\n')
    for dry_run in (True, False):
        with pytest.raises(ConfigError, match=r"pip install 'lionfer\[slurm\]'"):
            run_sweep(path, [], tmp_path / "out", launcher="slurm", dry_run=dry_run,
                      echo=lambda line: None, gpus=[])  # fmt: skip
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", packaged_sweeps())
def test_every_packaged_sweep_resolves(name):
    sweep = load_sweep(name)
    points = expand(sweep, ["data.root=/data/placeholder"])
    budgets = sum(len(m.num_labels or sweep.num_labels or [None]) for m in sweep.methods)
    assert len(points) == budgets * len(sweep.seeds)
    assert len({p.folder for p, _ in points}) == len(points)
    assert sweep.description


def test_a_damaged_summary_is_finished_again_not_counted_as_finished(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, 'algorithms = ["supervised", "lion", "fixmatch"]\n'))
    points = expand(sweep)
    out = tmp_path / "out"
    folders = [out / p.folder for p, _ in points]
    for folder, (_, cfg) in zip(folders, points, strict=True):
        folder.mkdir(parents=True)
        save_config(cfg, folder / "config.toml")
    (folders[0] / "summary.json").write_text(
        '{"algorithm": "supervised", "seed": 0, "test_acc": 0.5}'
    )
    for folder in folders[1:]:
        (folder / "summary.json").write_text('{"algorithm": "lion", "te')  # cut short
    (folders[1] / "checkpoints").mkdir()
    (folders[1] / "checkpoints" / "last.pt").write_bytes(b"")
    actions = plan(points, out)
    assert [a.kind for a in actions] == ["skip", "resume", "conflict"]
    assert "summary.json is damaged" in actions[1].note
    assert "no checkpoint to finish it from" in actions[2].reason
    assert (folders[2] / "summary.json").read_text() == '{"algorithm": "lion", "te'


def test_a_repeated_seed_or_budget_is_named(tmp_path):
    with pytest.raises(ConfigError, match="seeds lists 0 twice"):
        load_sweep(write_sweep(tmp_path, 'seeds = [0, 1, 0]\nalgorithms = ["lion"]\n'))
    with pytest.raises(ConfigError, match="num_labels lists 28 twice"):
        load_sweep(write_sweep(tmp_path, 'num_labels = [28, 28]\nalgorithms = ["lion"]\n'))
    with pytest.raises(ConfigError, match="sweep.seeds lists 2 twice"):
        load_sweep(write_sweep(tmp_path, 'algorithms = ["lion"]\n'), ["sweep.seeds=2,2"])


def test_an_empty_list_of_methods_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no method to run"):
        load_sweep(write_sweep(tmp_path, "algorithms = []\n"))
    with pytest.raises(ConfigError, match="sweep.only names no method"):
        load_sweep(write_sweep(tmp_path, 'algorithms = ["lion"]\n'), ["sweep.only="])
    sweep = load_sweep(write_sweep(tmp_path, ""))  # no methods named: the config's algorithm
    assert [p.folder for p, _ in expand(sweep)] == ["synthetic@28/lion/s0"]


def test_dry_run_commands_can_be_pasted_into_a_shell(tmp_path):
    folder = tmp_path / "my sweeps é"
    folder.mkdir()
    lines = []
    path = write_sweep(folder, 'algorithms = ["supervised"]\n')
    out = folder / "out dir"
    assert run_sweep(path, [], out, dry_run=True, echo=lines.append, gpus=[]) == 0
    argv = shlex.split(lines[1].partition("would start: lionfer ")[2])
    assert argv[:2] == ["train", str(folder / "base.toml")]
    assert argv[argv.index("--out") + 1] == str((out / "synthetic@28/supervised/s0").resolve())
    assert 'model.pretrained=""' in argv


SLOW_TRAIN = """
import os, signal, sys, time
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
def stop(signum, frame):
    open(os.path.join(out, "saved"), "w").close()
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
open(os.path.join(out, "pid"), "w").write(str(os.getpid()))
time.sleep(60)
"""


def test_sigterm_to_the_sweep_stops_its_runs_first(tmp_path):
    """A sweep stopped by SIGTERM (kill, a scheduler) asks its runs to save and stop, and waits
    for them: no run goes on alone to write into a folder the next sweep resumes."""
    fake = tmp_path / "slow_train.py"
    fake.write_text(SLOW_TRAIN)
    path = write_sweep(tmp_path, 'algorithms = ["supervised", "fixmatch"]\n')
    out = tmp_path / "out"
    driver = (
        "import sys; import lionfer.experiments.launch as launch; "
        f"launch.LIONFER = (sys.executable, {str(fake)!r}); from lionfer.cli import main; "
        f"sys.exit(main(['sweep', {str(path)!r}, '--out', {str(out)!r}, '--jobs', '2']))"
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    sweep = subprocess.Popen(
        [sys.executable, "-c", driver], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    runs = [out / "synthetic@28" / m / "s0" for m in ("supervised", "fixmatch")]
    try:
        for _ in range(300):
            if all((run / "pid").is_file() and (run / "pid").read_text() for run in runs):
                break
            time.sleep(0.1)
        sweep.send_signal(signal.SIGTERM)
        assert sweep.wait(timeout=30) == 143
        printed = sweep.stdout.read().decode()
        assert "the sweep was stopped by SIGTERM" in printed
        assert "interrupted: run the same command again to continue the sweep" in printed
        assert all((run / "saved").is_file() for run in runs)
        assert not (out / "sweep.lock").exists()
    finally:
        sweep.kill()
        for run in runs:
            if (run / "pid").is_file() and not (run / "saved").is_file():
                os.kill(int((run / "pid").read_text()), signal.SIGKILL)


def test_a_runs_process_does_not_import_the_users_files_from_the_current_folder(tmp_path):
    import subprocess

    from lionfer.experiments.launch import LIONFER, with_lionfer

    (tmp_path / "json.py").write_text("raise RuntimeError('the user json.py was imported')\n")
    done = subprocess.run([*LIONFER, "--version"], cwd=tmp_path, env=with_lionfer(os.environ),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and "user json.py" not in done.stderr, done.stderr


def test_runs_in_conflict_are_left_as_they_are_with_their_record(tmp_path, monkeypatch):
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    monkeypatch.setattr("lionfer.experiments.launch.LIONFER", (sys.executable, str(fake)))
    body = 'algorithms = ["supervised"]\n'
    out, lines = tmp_path / "out", []
    assert run_sweep(write_sweep(tmp_path, body), ["sweep.seeds=0"], out, echo=lines.append) == 0
    record = (out / "sweep.json").read_text()
    lines.clear()  # the same sweep, longer: its finished run is a run of other settings now
    code = run_sweep(write_sweep(tmp_path, body), ["sweep.seeds=0", "train.steps=99"], out,
                     echo=lines.append)  # fmt: skip
    assert code == 1 and "CONFLICT synthetic@28/supervised/s0" in "\n".join(lines)
    assert lines[-1] == (
        "sweep grid: 0 finished now, 0 finished before, 0 failed, 1 in conflict, left as they "
        "are: synthetic@28/supervised/s0"
    )
    assert (out / "sweep.json").read_text() == record  # still the record of the run there


def test_a_base_configs_algorithm_setting_another_method_has_is_a_warning(tmp_path):
    """threshold=0.7 in a FixMatch base config does not reach FlexMatch: said, with the fix."""
    base = tmp_path / "fm.toml"
    base.write_text('[algorithm]\nname = "fixmatch"\nthreshold = 0.7\n')
    path = tmp_path / "s.toml"
    path.write_text('config = "fm.toml"\nalgorithms = ["fixmatch", "flexmatch"]\n')
    with pytest.warns(UserWarning, match=r"threshold=0.7 for fixmatch; flexmatch.*sweep's overr"):
        load_sweep(path)
    path.write_text(
        'config = "fm.toml"\nalgorithms = ["fixmatch", "flexmatch"]\n'
        'overrides = ["algorithm.threshold=0.7"]\n'
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_sweep(path)  # shared: every method has it
