"""A run folder refused by train(): from Python the message names train()'s arguments
(resume=True, overwrite=True), from the command line its flags (--resume, --overwrite)."""

import json

import pytest

from lionfer.cli import main
from lionfer.errors import RunExistsError
from lionfer.training.run import train


def finished_run(folder):
    """A folder lionfer made (its start event) holding a checkpoint to resume."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.pt").write_bytes(b"a checkpoint")
    start = {"event": "start", "num_labeled": 28}
    (folder / "metrics.jsonl").write_text(json.dumps(start) + "\n")
    return folder


def test_train_from_python_names_its_arguments(tiny_cfg, tmp_path):
    run = finished_run(tmp_path / "run")
    with pytest.raises(RunExistsError) as info:
        train(tiny_cfg(), run, progress=False)
    said = str(info.value)
    assert "pass resume=True to continue it, overwrite=True to replace it" in said
    assert "--" not in said
    (run / "checkpoints" / "last.pt").unlink()  # stopped before its first checkpoint
    with pytest.raises(RunExistsError, match=r"nothing to resume\); pass overwrite=True"):
        train(tiny_cfg(), run, progress=False)


def test_the_command_line_names_its_flags(tmp_path, capsys):
    run = finished_run(tmp_path / "run")
    assert main(["train", "train.steps=2", "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pass --resume to continue it, --overwrite to replace it, or choose another --out" in err
