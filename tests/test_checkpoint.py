"""Checkpoints: atomic writes that leave the last good file in place, and loads that refuse
anything that is not a lionfer checkpoint in one line, executing nothing."""

from __future__ import annotations

import errno
import io
import os
import pickle

import pytest
import torch

from lionfer.cli import main
from lionfer.config import save_config
from lionfer.errors import CheckpointError, CheckpointWriteError
from lionfer.training.checkpoint import REQUIRED_KEYS, load_checkpoint, save_checkpoint


def lionfer_state(step: int) -> dict:
    return {key: {} for key in REQUIRED_KEYS} | {"step": step, "class_names": ["a", "b"]}


class RunsCode:
    """Unpickling this would run os.system; weights_only loading must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def not_checkpoints(tmp_path) -> dict:
    real = tmp_path / "real.pt"
    save_checkpoint(lionfer_state(3), real)
    data = real.read_bytes()
    files = {
        "text": b"step = 3\nthis is a note, not a checkpoint\n",
        "truncated": data[: len(data) // 2],
        "code": pickle.dumps(RunsCode(tmp_path / "executed")),
        "state dict": None,
    }
    paths = {}
    for name, content in files.items():
        path = tmp_path / f"{name.replace(' ', '_')}.pt"
        if content is None:
            torch.save({"conv.weight": torch.zeros(2, 2)}, path)
        else:
            path.write_bytes(content)
        paths[name] = path
    return paths


def test_files_that_are_not_lionfer_checkpoints_are_refused_in_one_line(tmp_path):
    for name, path in not_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message, name
        assert "is not a lionfer checkpoint" in message, name
    assert not (tmp_path / "executed").exists()  # the pickle's code never ran
    assert load_checkpoint(tmp_path / "real.pt")["step"] == 3


def test_evaluate_of_a_bad_checkpoint_exits_2(tiny_cfg, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    save_config(tiny_cfg(), run / "config.toml")
    for path in not_checkpoints(tmp_path).values():
        (run / "checkpoints" / "last.pt").write_bytes(path.read_bytes())
        assert main(["evaluate", str(run)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "executed").exists()


def test_a_failed_write_keeps_the_last_good_checkpoint_and_no_tmp_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(lionfer_state(1), path)

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointWriteError, match=f"could not write checkpoint {path}: No space"):
        save_checkpoint(lionfer_state(2), path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    assert load_checkpoint(path)["step"] == 1


class FullDisk(io.RawIOBase):
    """A file on a disk that fills up after `room` bytes."""

    def __init__(self, room: int):
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return len(data)


def test_torchs_vague_error_on_a_full_disk_is_reported_as_one(tmp_path, monkeypatch):
    import lionfer.training.checkpoint

    real_open = open

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        real_open(file, mode, *args, **kwargs).close()  # the .tmp file exists, as it would
        return FullDisk(room=300)

    monkeypatch.setattr(lionfer.training.checkpoint, "open", open_on_a_full_disk, raising=False)
    path = tmp_path / "last.pt"
    with pytest.raises(CheckpointWriteError, match="No space left on device"):
        save_checkpoint(lionfer_state(1) | {"weights": torch.zeros(10_000)}, path)
    assert list(tmp_path.iterdir()) == []  # no .tmp left behind
