"""The options that feed a GPU, run on the CPU: views made on the training device (from the uint8
cache) train and resume exactly, channels_last and torch.compile reach the training model, and the
defaults leave the CPU path as it was."""

import pytest
import torch

from lionfer.errors import ConfigError
from lionfer.training.checkpoint import load_checkpoint
from lionfer.training.run import build_trainer, train


def states_equal(a, b) -> None:
    for part in ("model", "ema", "algorithm"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"


def test_device_views_train_and_resume_exactly(tiny_cfg, tmp_path):
    cfg = tiny_cfg(
        "data.augment_on=device",
        "algorithm.evidence_start=0.25",
        "train.steps=6",
        "train.eval_every=6",
    )
    full = train(cfg, tmp_path / "full", progress=False)
    assert train(cfg, tmp_path / "split", progress=False, stop_after=4) is None
    resumed = train(cfg, tmp_path / "split", resume=True, progress=False)
    states_equal(
        *(load_checkpoint(tmp_path / r / "checkpoints" / "last.pt") for r in ("full", "split"))
    )
    assert full["test_acc"] == resumed["test_acc"]


def test_the_cpu_path_is_the_default_and_device_views_differ_from_it(tiny_cfg, tmp_path):
    cpu = build_trainer(tiny_cfg(), tmp_path / "a", progress=False)
    device = build_trainer(tiny_cfg("data.augment_on=device"), tmp_path / "b", progress=False)
    assert cpu.cfg.data.augment_on == "cpu" and not cpu.cfg.data.cache_images
    (x_cpu, y_cpu, idx_cpu), _ = (next(iter(s)) for s in cpu.loaders())
    (x_dev, y_dev, idx_dev), _ = (next(iter(s)) for s in device.loaders())
    assert torch.equal(idx_cpu, idx_dev) and torch.equal(y_cpu, y_dev)  # the same images
    assert x_cpu.shape == x_dev.shape and not torch.equal(x_cpu, x_dev)  # other pixels
    with pytest.raises(ConfigError, match="data.augment_on: must be cpu or device"):
        tiny_cfg("data.augment_on=gpu")


def test_a_cache_larger_than_the_memory_left_is_refused_before_the_run(
    tiny_cfg, tmp_path, monkeypatch
):
    """A folder of 21 faces (14 left for training once its test set is held out, 7 of them
    labeled) and 4 unlabeled images at 16 px takes (14 + 4) x 16 x 16 x 3 = 13,824 bytes in the
    uint8 cache: with less memory available the run
    is refused before its folder is made, naming the size and the ways out. The embedded faces
    are made in memory at their size already, and cost the cache nothing."""
    import numpy as np
    from PIL import Image

    from lionfer.errors import InputError
    from lionfer.labels import CLASS_NAMES
    from lionfer.training import setup

    rng = np.random.default_rng(0)
    for name in CLASS_NAMES:
        for k in range(3):
            path = tmp_path / "faces" / name.lower() / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    for k in range(4):
        path = tmp_path / "unlabeled" / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    folder = (
        "data.dataset=folder",
        f"data.root={tmp_path / 'faces'}",
        f"data.unlabeled_root={tmp_path / 'unlabeled'}",
        "data.num_labels=7",
        "data.image_size=16",
        "train.steps=1",
    )
    monkeypatch.setattr(setup, "available_memory", lambda: 13_823)
    for asked in ("data.cache_images=true", "data.augment_on=device"):
        with pytest.raises(InputError, match=rf"{asked} holds the 18 training images decoded"):
            train(tiny_cfg(*folder, asked), tmp_path / "run", progress=False)
        assert not (tmp_path / "run").exists()
    with pytest.raises(InputError, match=r"at 16 px: 0.00 GiB, but 0.00 GiB of memory is avail"):
        train(tiny_cfg(*folder, "data.cache_images=true"), tmp_path / "run", progress=False)
    monkeypatch.setattr(setup, "available_memory", lambda: 13_824)  # just enough
    build_trainer(tiny_cfg(*folder, "data.cache_images=true"), tmp_path / "ok", progress=False)
    monkeypatch.setattr(setup, "available_memory", lambda: None)  # unknown: not refused
    build_trainer(tiny_cfg(*folder, "data.cache_images=true"), tmp_path / "ok2", progress=False)
    monkeypatch.setattr(setup, "available_memory", lambda: 0)
    build_trainer(tiny_cfg(*folder), tmp_path / "plain", progress=False)  # no cache asked
    build_trainer(tiny_cfg("data.cache_images=true"), tmp_path / "faces", progress=False)


def test_channels_last_and_compile_reach_the_training_model(tiny_cfg, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(model, **kwargs):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    cfg = tiny_cfg("train.channels_last=true", "train.compile=true", "train.steps=2")
    trainer = build_trainer(cfg, tmp_path / "run", progress=False)
    assert compiled == [trainer.model] and trainer.train_model is trainer.model
    conv = trainer.model.backbone[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    plain = build_trainer(tiny_cfg(), tmp_path / "plain", progress=False)
    assert len(compiled) == 1 and plain.model.backbone[0][0].weight.is_contiguous()


def test_resolve_device_names_the_setting_and_the_gpus_there_are(monkeypatch):
    from lionfer.device import resolve_device

    with pytest.raises(ConfigError, match="train.device 'gpu' is not a device; use auto, cpu"):
        resolve_device("gpu")
    with pytest.raises(ConfigError, match="--device 'cuda:x' is not a device"):
        resolve_device("cuda:x", what="--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"--device cuda:7 but this machine has 1 CUDA GPU \("):
        resolve_device("cuda:7", what="--device")
    with pytest.raises(ConfigError, match=r"train.device=cuda:1 but .* use one of them, or train"):
        resolve_device("cuda:1")
    assert resolve_device("cuda:0") == torch.device("cuda:0")


def test_the_memory_left_is_read_without_leaving_a_file_open():
    import warnings
    from pathlib import Path

    from lionfer.data.cache import available_memory

    if not Path("/proc/meminfo").is_file():
        pytest.skip("no /proc/meminfo here")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert available_memory() > 0
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
