"""benchmarks/throughput.py stays runnable: its step section on a tiny model gives LION busy
state (clear, reliable and ambiguous rows), no host sync, and a LION / FixMatch ratio."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "throughput.py"


def test_the_step_section_measures_lion_against_fixmatch(capsys):
    spec = importlib.util.spec_from_file_location("throughput", SCRIPT)
    throughput = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(throughput)
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
