"""Checkpoints: atomic writes that leave the last good file in place, loads that refuse anything
that is not a lionfer checkpoint in one line with the fix, executing nothing, and the model a
checkpoint holds (its EMA weights)."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from lionfer.cli import main
from lionfer.config import save_config
from lionfer.config_sections import ModelConfig
from lionfer.errors import CheckpointError, CheckpointWriteError, MissingInputError
from lionfer.models import build_model
from lionfer.training.checkpoint import (
    MODEL_KEYS,
    REQUIRED_KEYS,
    RUN_FIX,
    checkpoint_model,
    load_checkpoint,
    save_checkpoint,
)


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


def test_a_missing_or_damaged_file_names_the_problem_and_the_fix(tmp_path):
    missing = tmp_path / "run" / "checkpoints" / "best.pt"
    with pytest.raises(MissingInputError) as info:
        load_checkpoint(missing)
    assert str(info.value) == f"checkpoint not found: {missing}; {RUN_FIX}"
    damaged = not_checkpoints(tmp_path)["truncated"]
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(damaged, fix="pass another file")
    assert str(info.value) == (
        f"{damaged} is not a lionfer checkpoint: it is a damaged or truncated PyTorch file (copy "
        "it again); pass another file"
    )
    archive = tmp_path / "notes.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("notes.txt", "not a model")
    with pytest.raises(CheckpointError, match="it is a ZIP archive, not a PyTorch file; use "):
        load_checkpoint(archive)


def test_the_keys_asked_for_are_the_keys_checked(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint({key: {} for key in MODEL_KEYS} | {"class_names": ["a", "b"]}, path)
    assert load_checkpoint(path, MODEL_KEYS)["class_names"] == ["a", "b"]
    with pytest.raises(CheckpointError, match="another lionfer version .*missing step, model, "):
        load_checkpoint(path)  # resuming needs the optimizer, the algorithm, the RNG ...
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match=r"bare model weights .*model\.pretrained"):
        load_checkpoint(path, MODEL_KEYS)


def network(seed: int, feature_scale: float = 1.0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(name="cnn_small", feature_scale=feature_scale), 3)


def test_the_model_of_a_checkpoint_has_its_ema_weights_and_its_recorded_shape(tmp_path):
    live, ema = network(0, 2.5), network(1, 2.5)
    path = tmp_path / "last.pt"
    config = dataclasses.asdict(ModelConfig(name="cnn_small", feature_scale=2.5))
    state = {"model": live.state_dict(), "ema": ema.state_dict(), "model_config": config}
    save_checkpoint(state | {"class_names": ["a", "b", "c"], "model_name": "cnn_small"}, path)
    state = load_checkpoint(path, ("model", "ema", "class_names", "model_name"))
    for weights, source in (("ema", ema), ("model", live)):
        model = checkpoint_model(state, path, weights)
        assert not model.training and model.feature_scale == 2.5
        for key, value in source.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), (weights, key)
    older = {k: v for k, v in state.items() if k != "model_config"}  # the defaults shaped it
    assert checkpoint_model(older, path).feature_scale == 1.0


def test_a_model_the_weights_do_not_fit_is_refused_in_one_line(tmp_path):
    state = {"ema": network(0).state_dict(), "class_names": ["a", "b"], "model_name": "cnn_small"}
    with pytest.raises(CheckpointError, match="do not fit lionfer's 'cnn_small' model") as info:
        checkpoint_model(state, tmp_path / "last.pt")  # three classes' head, two class names
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="'vit_huge' model, which this lionfer"):
        checkpoint_model(state | {"model_name": "vit_huge"}, tmp_path / "last.pt")


SMALL = ("data.num_train=70", "data.num_test=14", "data.num_labels=14", "train.steps=6")


def test_resume_from_a_damaged_or_foreign_last_pt_is_refused_before_the_data_are_read(
    tiny_cfg, tmp_path, monkeypatch, capsys
):
    from lionfer.training import run as run_module
    from lionfer.training.run import train

    other = tmp_path / "other"
    train(tiny_cfg("algorithm.name=fixmatch", *SMALL), other, progress=False, stop_after=2)
    run = tmp_path / "run"
    cfg = tiny_cfg("algorithm.name=supervised", *SMALL, "train.eval_every=2")
    assert train(cfg, run, progress=False, stop_after=3) is None  # best.pt at step 2
    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    good = last.read_bytes()
    monkeypatch.setattr(run_module, "build_run_data", None)  # reading the data fails the test
    for damage in (b"", good[: len(good) // 3]):
        last.write_bytes(damage)
        assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "the run cannot continue from it" in err
        assert f"copying {best} over it" in err and "again with --overwrite" in err
    last.write_bytes((other / "checkpoints" / "last.pt").read_bytes())
    with pytest.raises(CheckpointError, match=r'algorithm.name \("fixmatch" then, "supervised"'):
        train(None, run, resume=True, progress=False)
    monkeypatch.undo()
    last.write_bytes(best.read_bytes())  # the fix the message gives: on from the best step
    assert train(None, run, resume=True, progress=False)["steps"] == 6


def test_resume_may_move_the_images_but_not_cache_them():
    from lionfer.config import DEFAULT_CONFIG, load_config, to_toml
    from lionfer.training.checkpoint import check_resume_config

    def cfg(*items):
        return load_config(DEFAULT_CONFIG, ["data.dataset=folder", *items])

    state = {"config": to_toml(cfg("data.root=/old/faces")), "step": 2}
    last = Path("run/checkpoints/last.pt")
    moved = check_resume_config(state, cfg("data.root=/new/faces"), last)
    assert moved == {"data.root": ["/old/faces", "/new/faces"]}
    cached = cfg("data.root=/old/faces", "data.cache_images=true")
    with pytest.raises(CheckpointError, match=r"data.cache_images \(false then, true now\)"):
        check_resume_config(state, cached, last)


def test_a_checkpoint_of_a_run_records_its_split_and_a_resume_checks_it(tmp_path):
    from types import SimpleNamespace

    import numpy as np

    from lionfer.data.split_record import split_digest
    from lionfer.data.splits import Split
    from lionfer.errors import InputError
    from lionfer.training.checkpoint import check_state_fits, saved_split, split_state

    def split(seed: int) -> Split:
        order = np.random.default_rng(seed).permutation(20)
        labeled, unlabeled, val = np.sort(order[:6]), np.sort(order[6:]), np.zeros(0, np.int64)
        return Split(labeled, unlabeled, val, seed, "balanced", 6, source_hash="abc")

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    split(0).save(run / "split.json")
    save_checkpoint(
        lionfer_state(3) | {"split": split_state(split(0))}, run / "checkpoints" / "last.pt"
    )
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["split"]["labeled"].tolist() == split(0).labeled.tolist()
    assert saved_split(state)["digest"] == split_digest(split(0)) == state["split"]["digest"]
    fresh = {"label": torch.zeros(6)}
    state = state | {"algorithm": fresh}

    def run_data(s: Split):
        names = SimpleNamespace(class_names=("a", "b"))
        return SimpleNamespace(data=names, split=s, labeled=[0] * 6, unlabeled=[0] * 14)

    last = run / "checkpoints" / "last.pt"
    check_state_fits(state, fresh, run_data(split(0)), last)
    with pytest.raises(InputError, match=r"run/split.json is not the split the run in .* its labe"):
        check_state_fits(state, fresh, run_data(split(1)), last)
    old = {k: v for k, v in state.items() if k != "split"}  # saved before: nothing to compare
    check_state_fits(old, fresh, run_data(split(1)), last)
