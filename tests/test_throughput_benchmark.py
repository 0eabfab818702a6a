"""benchmarks/throughput.py stays runnable: its step section on a tiny model gives LION busy
state (clear, reliable and ambiguous rows), no host sync, and a LION / FixMatch ratio; its
trainer and scaling sections run for a model that has no packaged weights."""

from types import SimpleNamespace

import torch
from conftest import load_benchmark


def test_the_step_section_measures_lion_against_fixmatch(capsys):
    throughput = load_benchmark("throughput")
    args = SimpleNamespace(model="cnn_small", size=16, steps=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and steady on a busy machine
    try:
        result = throughput.step_section(args, 8, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "LION / FixMatch per step" in out and result["ratio"] > 0
    assert result["costs"]["lion"][0] == result["costs"]["fixmatch"][0] == 0  # syncs
    rates = dict(
        part.split() for part in out.split("state rates of LION: ")[1].split("\n")[0].split(", ")
    )
    assert 0 < float(rates["clear_rate"]) < 1 and 0 < float(rates["mask_rate"]) < 1
    assert float(rates["ambiguous_rate"]) > 0


def test_the_trainer_section_runs_a_model_without_packaged_weights(capsys):
    throughput = load_benchmark("throughput")
    args = SimpleNamespace(model="resnet18", size=24, steps=1, workers=0, device="cpu")
    throughput.trainer_section(args, 4, torch.device("cpu"), with_loader=True)
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    rows = [row for row in rows if row and row[0] in ("fixmatch", "lion")]
    assert [row[:2] for row in rows] == [
        ["fixmatch", "cpu"], ["fixmatch", "device"], ["lion", "cpu"], ["lion", "device"]
    ]  # fmt: skip
    assert all(float(value) > 0 for row in rows for value in row[2:])


def test_the_scaling_section_runs_a_model_without_packaged_weights(capsys):
    args = SimpleNamespace(model="resnet18", size=24, scale_steps=2, device="cpu")
    load_benchmark("throughput").scaling_section(args, 4)
    out = capsys.readouterr().out
    assert "failed" not in out and "2 / 1 processes:" in out
