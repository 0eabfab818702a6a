"""The training loop: run folder contract, resume = uninterrupted, NaN stop, no overwrite."""

import csv
import json

import pytest
import torch

from lionfer.checkpoint import load_checkpoint
from lionfer.trainer import NonFiniteLoss, RunExistsError, train


@pytest.mark.parametrize("algorithm", ["supervised", "fixmatch", "lion"])
def test_every_algorithm_writes_the_run_contract(tiny_cfg, tmp_path, algorithm):
    out = tmp_path / algorithm
    summary = train(tiny_cfg(f"algorithm.name={algorithm}"), out, progress=False)
    for name in (
        "config.toml",
        "meta.json",
        "split.json",
        "metrics.jsonl",
        "summary.json",
        "relabels.csv",
        "confusion.csv",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "summary.json").read_text())
    assert saved == summary
    for key in (
        "algorithm",
        "dataset",
        "num_labels",
        "seed",
        "steps",
        "test_acc",
        "test_acc_raw",
        "mean_class_acc",
        "per_class_acc",
        "confusion_matrix",
    ):
        assert key in summary, key
    assert summary["algorithm"] == algorithm and summary["steps"] == 12
    assert summary["num_labels"] == 28 and 0.0 <= summary["test_acc"] <= 1.0
    assert sum(map(sum, summary["confusion_matrix"])) == 70
    events = [
        json.loads(line)["event"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert events.count("eval") == 2 and events[0] == "start"
    if algorithm == "lion":
        assert {"count", "precision", "recall"} <= set(summary["relabel"])
        assert {"mean_size", "correct_fraction"} <= set(summary["clb"])
        assert "pseudo_label_acc" in summary or summary["mask_rate"] == 0
    with (out / "relabels.csv").open() as f:
        assert next(csv.reader(f))[:6] == [
            "index",
            "id",
            "given_label",
            "current_label",
            "step",
            "true_label",
        ]


def test_resume_equals_uninterrupted(tiny_cfg, tmp_path):
    cfg = tiny_cfg("algorithm.name=lion", "algorithm.disambiguation_start=0.25")
    full = train(cfg, tmp_path / "full", progress=False)
    assert train(cfg, tmp_path / "split", progress=False, stop_after=5) is None
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["step"] == 5
    resumed = train(cfg, tmp_path / "split", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for part in ("model", "ema", "algorithm"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"
    assert full["test_acc"] == resumed["test_acc"]
    assert full["relabel"] == resumed["relabel"]


def test_existing_run_is_never_overwritten_unless_asked(tiny_cfg, tmp_path):
    cfg = tiny_cfg("algorithm.name=supervised", "train.steps=2", "train.eval_every=2")
    train(cfg, tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "summary.json").read_text()
    with pytest.raises(RunExistsError, match="--resume"):
        train(cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "summary.json").read_text() == before
    train(cfg, tmp_path / "run", overwrite=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(cfg, tmp_path / "other", resume=True, progress=False)


def test_nan_loss_stops_naming_the_step(tiny_cfg, tmp_path):
    cfg = tiny_cfg("algorithm.name=supervised", "train.lr=1e30", "train.steps=50")
    with pytest.raises(NonFiniteLoss, match=r"at step \d+"):
        train(cfg, tmp_path / "run", progress=False)
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(records[-1])["event"] == "error"


def test_ctrl_c_saves_a_checkpoint_first(tiny_cfg, tmp_path, monkeypatch):
    from lionfer.trainer import Trainer

    original = Trainer._train_step

    def interrupt_at_step_3(self, lb, ulb):
        if self.step == 3:
            raise KeyboardInterrupt
        original(self, lb, ulb)

    monkeypatch.setattr(Trainer, "_train_step", interrupt_at_step_3)
    cfg = tiny_cfg("algorithm.name=fixmatch")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 3
    monkeypatch.setattr(Trainer, "_train_step", original)
    assert train(cfg, tmp_path / "run", resume=True, progress=False)["steps"] == 12


def test_pretrained_weights_are_loaded_and_reported(tiny_cfg, tmp_path):
    from types import SimpleNamespace

    from lionfer.models import build_model

    source = build_model(
        SimpleNamespace(name="cnn_small", pretrained="", dropout=0.5, feature_scale=1.0), 7
    )
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    cfg = tiny_cfg(
        "algorithm.name=supervised",
        "train.steps=2",
        "train.eval_every=2",
        f"model.pretrained={tmp_path / 'weights.pt'}",
    )
    train(cfg, tmp_path / "run", progress=False)
    start = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["weights"].startswith("loaded") and "weights.pt" in start["weights"]
    missing = tiny_cfg(f"model.pretrained={tmp_path / 'nope.pt'}")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        train(missing, tmp_path / "run2", progress=False)
    assert not (tmp_path / "run2").exists()  # a failed start leaves no run folder behind
