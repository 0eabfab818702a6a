"""The same config on the same machine repeats exactly: two runs write the same metrics.jsonl
(apart from the measured speed), the same summary and the same weights. Across machines, CPU
kinds, thread counts or devices the floating-point kernels differ and results may not."""

import json

import torch

from lionfer.training.run import train

TIMING = {"steps_per_s"}  # measured, not computed


def records(run) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def test_the_same_config_on_the_same_machine_repeats_exactly(tmp_path, tiny_cfg):
    cfg = tiny_cfg("data.num_workers=1", "train.steps=8", "train.eval_every=4")
    for name in ("a", "b"):
        train(cfg, tmp_path / name, progress=False)
    a, b = tmp_path / "a", tmp_path / "b"
    assert records(a) == records(b)
    assert len([r for r in records(a) if r["event"] == "train"]) >= 2
    summaries = [json.loads((run / "summary.json").read_text()) for run in (a, b)]
    assert [{k: v for k, v in s.items() if k not in TIMING} for s in summaries] == [
        {k: v for k, v in summaries[1].items() if k not in TIMING}
    ] * 2
    for name in ("split.json", "relabels.csv", "confusion.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    states = [torch.load(run / "checkpoints" / "last.pt", weights_only=False) for run in (a, b)]
    for key, value in states[0]["ema"].items():
        assert torch.equal(value, states[1]["ema"][key]), key
