"""An evaluation's figures: each model's confusion matrix on the test set, with both models
reading one pass of the images."""

from types import SimpleNamespace

import numpy as np
import torch
from conftest import TINY

from lionfer.config import load_config
from lionfer.data.base import ImageSet
from lionfer.models import build_model
from lionfer.training import evaluation

CPU = torch.device("cpu")


def test_both_models_are_scored_from_one_pass_over_the_test_images(monkeypatch):
    cfg = load_config(None, TINY)
    torch.manual_seed(0)
    ema, live = build_model(cfg.model, 7), build_model(cfg.model, 7)
    rng = np.random.default_rng(0)
    test = ImageSet(rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), rng.integers(0, 7, 12))
    alone = {
        tag: evaluation.confusion_on(m, test, 7, cfg, CPU) for tag, m in (("", ema), ("_raw", live))
    }
    assert not np.array_equal(alone[""], alone["_raw"])  # two models that disagree

    passes = []
    make_loader = evaluation.eval_loader

    def counted(images, *args):
        passes.append(len(images))
        return make_loader(images, *args)

    monkeypatch.setattr(evaluation, "eval_loader", counted)
    run_data = SimpleNamespace(test=test, val=None, num_classes=7)
    record = evaluation.eval_figures(ema, live, run_data, cfg, CPU)
    assert passes == [12]
    assert record["test_acc"] == np.trace(alone[""]) / 12
    assert record["test_acc_raw"] == np.trace(alone["_raw"]) / 12
    assert record["test_confusion"] == alone[""].tolist()


def test_only_the_classes_a_model_was_trained_on_are_predicted():
    cfg = load_config(None, TINY)
    torch.manual_seed(1)
    model = build_model(cfg.model, 7)
    rng = np.random.default_rng(1)
    test = ImageSet(rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), rng.integers(0, 7, 40))
    everything = evaluation.confusion_on(model, test, 7, cfg, CPU)
    assert everything.sum(axis=0)[[1, 3, 4, 5, 6]].sum() > 0  # untrained outputs win somewhere
    only = evaluation.confusion_on(model, test, 7, cfg, CPU, trained=[0, 2])
    assert only.sum(axis=0)[[1, 3, 4, 5, 6]].sum() == 0
    assert only.sum() == 40 and (only.sum(axis=1) == everything.sum(axis=1)).all()
    # an image predicted as a trained class keeps its prediction
    assert (only[:, [0, 2]] >= everything[:, [0, 2]]).all()
    every_class = evaluation.confusion_on(model, test, 7, cfg, CPU, trained=range(7))
    assert np.array_equal(every_class, everything)
