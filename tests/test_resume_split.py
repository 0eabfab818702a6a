"""A run's split.json is read again to resume the run and to read its checkpoint's per-image
state (evaluate, relabel). That state (LION's complementary label bank, its relabels) is indexed
by position in the split, so a split.json from another seed, budget or dataset, or one edited by
hand, is refused, naming split.json, what differs and the fix; the run's own split resumes
exactly as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lionfer.data.pipeline import load_dataset
from lionfer.data.splits import Split, make_split
from lionfer.errors import InputError
from lionfer.evaluate import evaluate_run
from lionfer.inference.audit import relabel_rows
from lionfer.training.checkpoint import load_checkpoint
from lionfer.training.run import train

LION = ("algorithm.name=lion", "algorithm.evidence_start=0.25")
FIX = "put back the run's own split.json"


@pytest.fixture
def stopped(tiny_cfg, tmp_path):
    """A LION run stopped at step 5 (checkpoints/last.pt), and a copy of its own split.json."""
    run = tmp_path / "run"
    assert train(tiny_cfg(*LION), run, progress=False, stop_after=5) is None
    shutil.copy(run / "split.json", tmp_path / "own.json")
    return run


def split_of(tiny_cfg, *overrides) -> Split:
    """The split a run of the tiny data would draw with these settings."""
    cfg = tiny_cfg(*LION, *overrides)
    data = load_dataset(cfg.data, cfg.seed, check=())
    return make_split(data, cfg.data.num_labels, cfg.seed, cfg.data.val_fraction)


def labeled_of(path: Path) -> list[int]:
    return json.loads(path.read_text())["labeled"]


def resume_refused(run: Path, monkeypatch) -> str:
    """The refusal of a resume, which comes before the data are read."""
    from lionfer.training import run as run_module

    with monkeypatch.context() as patch:
        patch.setattr(run_module, "build_run_data", None)  # reading the data fails the test
        with pytest.raises(InputError) as info:
            train(None, run, resume=True, progress=False)
    message = str(info.value)
    assert message.startswith(f"{run / 'split.json'} is not the split the run in {run} trained")
    assert FIX in message and "indexed by position" in message
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 5  # nothing trained
    return message


def test_a_split_json_of_another_seed_is_refused_and_the_runs_own_resumes_exactly(
    tiny_cfg, tmp_path, monkeypatch
):
    full = tmp_path / "full"
    summary = train(tiny_cfg(*LION), full, progress=False)
    run = tmp_path / "run"
    assert train(tiny_cfg(*LION), run, progress=False, stop_after=5) is None
    own = (run / "split.json").read_bytes()
    other = tmp_path / "seed1"
    assert train(tiny_cfg(*LION, "seed=1"), other, progress=False, stop_after=0) is None
    shutil.copy(other / "split.json", run / "split.json")
    shared = len(set(labeled_of(run / "split.json")) & set(labeled_of(full / "split.json")))
    assert shared < 28
    message = resume_refused(run, monkeypatch)
    assert f"its labeled images are not the ones the run trained on: {28 - shared} of 28" in message
    assert "it was drawn with seed=1, the run's with seed=0" in message
    assert f"lionfer train {run / 'config.toml'} --out NEW" in message
    (run / "split.json").write_bytes(own)  # the fix
    resumed = train(None, run, resume=True, progress=False)
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (full, run))
    for part in ("model", "ema", "algorithm"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"
    assert resumed["test_acc"] == summary["test_acc"]
    assert a["split"]["digest"] == b["split"]["digest"]


def test_a_split_json_edited_by_hand_is_refused_with_what_differs(stopped, monkeypatch):
    path = stopped / "split.json"
    own = json.loads(path.read_text())
    edited = dict(own)
    gone, new = own["labeled"][0], own["unlabeled"][0]
    edited["labeled"] = sorted([new, *own["labeled"][1:]])
    edited["unlabeled"] = sorted([gone, *own["unlabeled"][1:]])
    path.write_text(json.dumps(edited))
    message = resume_refused(stopped, monkeypatch)
    assert "its labeled images are not the ones the run trained on: 1 of 28 differ" in message
    assert "seed=" not in message  # the file still says it was drawn with the run's seed
    edited = dict(own, labeled=own["labeled"][::-1])  # the same images, other positions
    path.write_text(json.dumps(edited))
    message = resume_refused(stopped, monkeypatch)
    assert "its labeled images are the run's, but listed in another order" in message
    edited = dict(own, unlabeled=own["unlabeled"][::-1])
    path.write_text(json.dumps(edited))
    message = resume_refused(stopped, monkeypatch)
    assert "its unlabeled images are not listed as the run's were" in message


def test_a_split_json_of_another_budget_is_refused(stopped, tiny_cfg, tmp_path, monkeypatch):
    split_of(tiny_cfg, "data.num_labels=14").save(stopped / "split.json")
    message = resume_refused(stopped, monkeypatch)
    assert "it lists 14 labeled images, the run's split 28" in message
    assert "data.num_labels=14, the run's with data.num_labels=28" in message


def test_a_split_json_of_the_same_seed_for_other_data_is_named_not_the_data(
    stopped, tiny_cfg, monkeypatch
):
    noisy = ("data.noise=symmetric", "data.noise_rate=0.4")
    split_of(tiny_cfg, *noisy).save(stopped / "split.json")
    message = resume_refused(stopped, monkeypatch)
    assert "it was made for other training images or labels" in message
    assert "changed since the run" not in message  # the data are as they were
    split_of(tiny_cfg, "data.num_test=35").save(stopped / "split.json")
    assert "it was made beside other test images" in resume_refused(stopped, monkeypatch)


def without_split_record(run: Path) -> None:
    """The run's checkpoints as saved before checkpoints recorded their split."""
    for path in (run / "checkpoints").glob("*.pt"):
        state = torch.load(path, weights_only=True)
        state.pop("split", None)
        torch.save(state, path)


def test_a_checkpoint_saved_before_it_recorded_its_split_checks_the_seed_and_budget(
    stopped, tiny_cfg, tmp_path, monkeypatch
):
    without_split_record(stopped)
    split_of(tiny_cfg, "seed=1").save(stopped / "split.json")
    message = resume_refused(stopped, monkeypatch)
    assert "it was drawn with seed=1, the run has seed=0" in message
    split_of(tiny_cfg, "data.num_labels=14").save(stopped / "split.json")
    message = resume_refused(stopped, monkeypatch)
    assert "it was drawn with data.num_labels=14, the run has data.num_labels=28" in message
    shutil.copy(tmp_path / "own.json", stopped / "split.json")
    assert train(None, stopped, resume=True, progress=False)["steps"] == 12
    assert "split" in load_checkpoint(stopped / "checkpoints" / "last.pt")  # recorded from now


def test_a_run_given_another_seeds_split_file_resumes_from_an_older_checkpoint(tiny_cfg, tmp_path):
    made = tmp_path / "made.json"
    split_of(tiny_cfg, "seed=3").save(made)
    run = tmp_path / "run"
    cfg = tiny_cfg(*LION, f"data.split_file={made}", "train.steps=4")
    assert train(cfg, run, progress=False, stop_after=2) is None
    without_split_record(run)
    assert train(None, run, resume=True, progress=False)["steps"] == 4


def test_evaluate_and_relabel_refuse_a_split_json_that_is_not_the_runs(stopped, tiny_cfg, tmp_path):
    columns, rows = relabel_rows(stopped)
    before = evaluate_run(stopped, device="cpu")
    assert len(rows) == before["num_labels"] == 28
    split_of(tiny_cfg, "seed=1").save(stopped / "split.json")
    for command in (lambda: relabel_rows(stopped), lambda: evaluate_run(stopped, device="cpu")):
        with pytest.raises(InputError, match="its labeled images are not the ones the run") as info:
            command()
        assert FIX in str(info.value) and "--out NEW" not in str(info.value)
    without_split_record(stopped)  # a run saved before: its settings are compared
    with pytest.raises(InputError, match="it was drawn with seed=1, the run has seed=0"):
        relabel_rows(stopped)
    shutil.copy(tmp_path / "own.json", stopped / "split.json")
    assert relabel_rows(stopped) == (columns, rows)
    after = evaluate_run(stopped, device="cpu")
    assert after["test_acc"] == before["test_acc"] and after["num_labels"] == 28


def test_the_record_a_checkpoint_keeps_is_that_of_its_runs_split(stopped):
    state = load_checkpoint(stopped / "checkpoints" / "last.pt")
    split = Split.load(stopped / "split.json")
    record = state["split"]
    assert np.array_equal(record["labeled"].numpy(), split.labeled)
    assert record["num_train"] == 210 and record["seed"] == 0 and record["num_labels"] == 28
    assert record["source_hash"] == split.source_hash
