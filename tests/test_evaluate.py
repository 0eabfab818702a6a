"""lionfer evaluate (lionfer.evaluate): a run's checkpoint that holds no model is refused."""

from __future__ import annotations

import shutil

import pytest
import torch
from predict_helpers import trained_run

from lionfer.errors import CheckpointError
from lionfer.evaluate import evaluate_run


def test_a_checkpoint_of_nan_weights_is_refused_naming_the_runs_other_checkpoint(
    tmp_path, tmp_path_factory
):
    run = tmp_path / "run"
    shutil.copytree(trained_run(tmp_path_factory), run)
    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    state = torch.load(last, weights_only=False)
    for tensor in state["ema"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    torch.save(state, last)
    with pytest.raises(CheckpointError, match="hold NaN") as info:
        evaluate_run(run, device="cpu")  # it reported the accuracy of always the first class
    assert str(info.value).endswith(
        f"use the run's best.pt ({best}; --checkpoint best), or train the run again (a lower "
        "train.lr)"
    )
    best.unlink()
    with pytest.raises(CheckpointError, match=r"no predictions; train the run again \(a lower"):
        evaluate_run(run, device="cpu")
