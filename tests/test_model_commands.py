"""The commands that use a trained model (evaluate, export, relabel, audit, lionfer.load) on run
folders that are not as training left them: still starting, without best.pt, with their data
moved; and --out paths that would destroy a file or name a folder."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from conftest import tiny

from lionfer.cli import main
from lionfer.inference.predictor import InputError, load
from lionfer.run_lock import RunLock


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny supervised run on the embedded faces, finished (last.pt and best.pt)."""
    out = tmp_path_factory.mktemp("runs") / "sup"
    args = ["train", *tiny("algorithm.name=supervised", "train.steps=6"), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    return out


def cli(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_a_run_without_the_checkpoint_says_what_it_has(run, tmp_path, capsys):
    copy = shutil.copytree(run, tmp_path / "no best")
    (copy / "checkpoints" / "best.pt").unlink()
    for command in (
        ["evaluate", copy, "--checkpoint", "best"],
        ["export", copy, "--checkpoint", "best", "--out", tmp_path / "m.onnx"],
        ["relabel", copy, "--checkpoint", "best", "--out", tmp_path / "r.csv"],
    ):
        code, err = cli(capsys, *command)
        assert code == 2 and "(only last.pt); pass --checkpoint last" in err, err
    (copy / "checkpoints" / "last.pt").unlink()  # a run that has not saved its first checkpoint
    training = RunLock()  # ... and trains there now
    training.acquire(copy)
    try:
        code, err = cli(capsys, "evaluate", copy)
    finally:
        training.release()
    assert code == 2 and "no checkpoint yet" in err and "wait for the first" in err, err
    code, err = cli(capsys, "evaluate", copy)  # stopped (killed) before its first checkpoint
    assert code == 2 and "it stopped before its first checkpoint" in err, err
    assert "--overwrite" in err and "wait" not in err and "Traceback" not in err, err


def test_a_folder_that_is_not_a_run_is_named_as_such(run, tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    code, err = cli(capsys, "evaluate", tmp_path / "photos")
    assert code == 2 and "evaluate needs a run folder" in err, err
    code, err = cli(capsys, "evaluate", run / "checkpoints" / "last.pt")
    assert code == 2 and "evaluate needs a run folder" in err, err
    code, err = cli(capsys, "evaluate", tmp_path / "gone")
    assert code == 2 and "run folder not found" in err, err
    with pytest.raises(InputError, match="no config.toml"):
        load(tmp_path / "photos")
    with pytest.raises(InputError, match="a run's checkpoints folder"):
        load(run / "checkpoints")
    with pytest.raises(InputError, match="checkpoint must be one of last, best"):
        load(run, checkpoint="final")


def test_a_run_whose_data_moved_says_so(run, tmp_path, capsys):
    moved = shutil.copytree(run, tmp_path / "moved")
    config = moved / "config.toml"
    config.write_text(config.read_text().replace('dataset = "synthetic"', 'dataset = "folder"', 1)
                      .replace('root = ""', f'root = "{tmp_path / "gone"}"', 1))  # fmt: skip
    for command in (["evaluate", moved], ["relabel", moved, "--out", tmp_path / "r.csv"]):
        code, err = cli(capsys, *command)
        assert code == 2 and "is not where its config.toml says" in err, err
        assert "set data.root in" in err and str(tmp_path / "gone") in err, err


def test_a_run_without_its_split_is_not_said_to_have_lost_its_data(run, tmp_path, capsys):
    split = shutil.copytree(run, tmp_path / "nosplit")
    (split / "split.json").unlink()
    code, err = cli(capsys, "relabel", split, "--out", tmp_path / "r.csv")
    assert code == 2 and "split.json" in err and "set data.root" not in err, err


def test_export_never_replaces_the_checkpoint_a_run_file_or_a_folder(run, tmp_path, capsys):
    copy = shutil.copytree(run, tmp_path / "run")
    last = copy / "checkpoints" / "last.pt"
    kept = {p: p.read_bytes() for p in (last, copy / "config.toml")}
    for out in kept:  # the checkpoint exported, and a file of the run it comes from
        code, err = cli(capsys, "export", copy, "--out", out, "--format", "torchscript",
                        "--overwrite")  # fmt: skip
        assert code == 2 and f"is a file of the run in {copy}" in err, err
    assert all(p.read_bytes() == before for p, before in kept.items())
    assert not [p for p in copy.rglob(".*")]  # nothing half-written left there
    alone = shutil.copy(last, tmp_path / "model.pt")  # a checkpoint outside any run
    code, err = cli(capsys, "export", alone, "--out", alone, "--format", "torchscript",
                    "--overwrite")  # fmt: skip
    assert code == 2 and "is the checkpoint being exported" in err, err
    assert Path(alone).read_bytes() == kept[last]
    (tmp_path / "out").mkdir()
    code, err = cli(capsys, "export", copy, "--out", tmp_path / "out", "--overwrite")
    assert code == 2 and "is a folder" in err, err
    code, err = cli(capsys, "relabel", copy, "--out", tmp_path / "out", "--overwrite")
    assert code == 2 and "is a folder" in err, err


@pytest.mark.parametrize("missing", ["onnx", "onnxscript", "onnxruntime"])
def test_onnx_export_without_its_packages_says_what_to_install(run, tmp_path, capsys, monkeypatch,
                                                                missing):  # fmt: skip
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    code, err = cli(capsys, "export", run, "--out", tmp_path / "m.onnx")
    assert code == 2 and "pip install 'lionfer[export]'" in err and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())
