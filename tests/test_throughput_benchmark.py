"""benchmarks/throughput.py stays runnable: its step section on a tiny model gives LION busy
state (clear, reliable and ambiguous rows), no host sync, and a LION / FixMatch ratio; its
trainer and scaling sections run for a model that has no packaged weights."""

from types import SimpleNamespace

import pytest
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


def test_synchronize_waits_on_the_device_in_use(monkeypatch):
    throughput = load_benchmark("throughput")
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    throughput.synchronize(torch.device("cuda:1"))
    throughput.synchronize(torch.device("cpu"))
    assert waited == [torch.device("cuda:1")]


def test_the_bare_reference_uses_the_trainers_optimiser_settings():
    """The bare step's optimiser is the one the Trainer builds (fused Adam on a GPU), at lr 0."""
    from lionfer.config import load_config
    from lionfer.training.setup import build_optimizer

    throughput = load_benchmark("throughput")
    model = torch.nn.Linear(3, 2)
    algorithm = SimpleNamespace(modules=lambda: None)
    trainer = SimpleNamespace(cfg=load_config(None, []), model=model, algorithm=algorithm)
    for device in (torch.device("cuda"), torch.device("cpu")):
        built = build_optimizer(trainer.cfg, model, algorithm, device)
        bare = throughput.bare_optimizer(trainer, device)
        assert type(bare) is type(built)
        for key in ("fused", "foreach", "weight_decay", "betas", "eps"):
            assert bare.defaults[key] == built.defaults[key], key
        assert all(group["lr"] == 0.0 for group in bare.param_groups)


def test_a_failed_section_is_reported_after_the_others_ran(monkeypatch, capsys):
    throughput = load_benchmark("throughput")
    ran = []

    def broken(*args):
        ran.append("step")
        raise RuntimeError("out of memory")

    monkeypatch.setattr(throughput, "step_section", broken)
    monkeypatch.setattr(throughput, "trainer_section", lambda *a: ran.append("trainer"))
    monkeypatch.setattr(throughput, "scaling_section", lambda *a: ran.append("scaling") or False)
    args = throughput.parser().parse_args(["--device", "cpu", "--batch", "2"])
    failed = throughput.run_sections(args, torch.device("cpu"))
    assert ran == ["step", "trainer", "scaling"]
    assert failed == ["step (batch 2)", "scaling (batch 2)"]
    assert "out of memory" in capsys.readouterr().err


def test_scaling_on_one_gpu_is_skipped_with_a_reason(monkeypatch, capsys):
    throughput = load_benchmark("throughput")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(throughput, "scaling_section", lambda *a: pytest.fail("ran"))
    args = throughput.parser().parse_args(["--device", "cpu", "--sections", "scaling"])
    args.device = "cuda"  # as resolved on a one-GPU machine
    assert throughput.run_sections(args, torch.device("cuda")) == []
    assert "[scaling] skipped: 2 processes need 2 GPUs; 1 visible" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["--sections", "steps"], ["--steps", "0"], ["--batch", "0"], ["--scale-steps", "1"],
     ["--size", "x"], ["--workers", "-1"]],
)  # fmt: skip
def test_bad_arguments_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        load_benchmark("throughput").parser().parse_args(argv)
    assert exit_.value.code == 2 and argv[0] in capsys.readouterr().err
