"""train.tensorboard=true: the metric records of metrics.jsonl mirrored as TensorBoard scalars."""

import json

import pytest

from lionfer.config import load_config
from lionfer.tensorboard_log import scalars
from lionfer.training.run import train


def test_tensorboard_mirrors_the_metric_records(tiny_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(tiny_cfg("algorithm.name=supervised", "train.tensorboard=true"), run, progress=False)
    board = EventAccumulator(str(run / "tensorboard"))
    board.Reload()
    evals = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    evals = [e for e in evals if e["event"] == "eval"]
    logged = board.Scalars("eval/test_acc")
    assert [s.step for s in logged] == [e["step"] for e in evals] == [6, 12]
    assert [s.value for s in logged] == pytest.approx([e["test_acc"] for e in evals])
    assert "train/loss" in board.Tags()["scalars"]
    assert load_config(None).train.tensorboard is False  # off by default


def test_tensorboard_scalars_of_a_record():
    record = {
        "event": "eval",
        "step": 40,
        "test_acc": 0.5,
        "test_confusion": [[1, 0], [0, 1]],
        "labels": {"current_accuracy": 0.9, "note": "x"},
        "done": True,
    }
    assert scalars(record) == {"eval/test_acc": 0.5, "eval/labels/current_accuracy": 0.9}


def test_a_resume_hides_the_steps_it_trains_again_from_tensorboard(tiny_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    cfg = tiny_cfg(
        "algorithm.name=supervised",
        "train.tensorboard=true",
        "train.log_every=1",
        "train.checkpoint_every=4",
        "train.eval_every=100",
    )
    train(cfg, run, progress=False, stop_after=4)
    at_four = (run / "checkpoints" / "last.pt").read_bytes()
    train(None, run, resume=True, progress=False, stop_after=3)  # logs steps 5-7, saves at 7
    (run / "checkpoints" / "last.pt").write_bytes(at_four)  # as if it died before that save
    train(None, run, resume=True, progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    steps = [r["step"] for r in records if r["event"] == "train"]
    board = EventAccumulator(str(run / "tensorboard"))
    board.Reload()
    assert [s.step for s in board.Scalars("train/loss")] == steps == list(range(1, 13))
    assert not any(tag.startswith("resume/") for tag in board.Tags()["scalars"])


def test_tensorboard_keeps_the_metric_records_only():
    assert scalars({"event": "resume", "step": 4, "processes": 1, "dropped": 3}) == {}
    assert scalars({"event": "train", "step": 4, "loss": 0.5}) == {"train/loss": 0.5}
