"""benchmarks/early_evidence.py stays runnable and counts what it says on data with known truth."""

import numpy as np
import pytest
from conftest import TINY, load_benchmark

NOISY = [*TINY, "data.noise=symmetric", "data.noise_rate=0.5"]


@pytest.fixture
def early():
    return load_benchmark("early_evidence")


@pytest.mark.parametrize("answer", ["true", "given"])
def test_the_trace_counts_predictions_of_the_wrongly_labeled_images(early, monkeypatch, answer):
    seen = {}

    def predict(model, loader, device):  # a model that answers the true or the given labels
        labeled = loader.dataset.images
        seen["given"], seen["true"] = labeled.labels, labeled.true_labels
        labels = np.asarray(labeled.true_labels if answer == "true" else labeled.labels)
        return labels, None

    monkeypatch.setattr(early, "predict", predict)
    rows = early.trace(NOISY, steps=4, every=2)
    assert [row["step"] for row in rows] == [2, 4]
    wrong = np.asarray(seen["given"]) != np.asarray(seen["true"])
    for row in rows:
        assert row["labeled"] == 28 and row["wrong"] == wrong.sum() > 0
        if answer == "true":
            assert row["true_on_wrong"] == 1.0 and row["given_on_wrong"] == 0.0
            assert row["fit"] == pytest.approx(1 - wrong.mean())
        else:
            assert row["true_on_wrong"] == 0.0 and row["given_on_wrong"] == 1.0
            assert row["fit"] == 1.0


def test_the_trace_runs_a_real_model(early):
    (row,) = early.trace(NOISY, steps=2, every=2)
    assert 0.0 <= row["true_on_wrong"] + row["given_on_wrong"] <= 1.0


def test_folds_deal_every_class_over_the_folds(early):
    labels = np.array([0] * 10 + [1] * 7 + [2] * 3)
    fold = early.fold_of(labels, 5, seed=0)
    assert sorted(np.bincount(fold, minlength=5).tolist()) == [4, 4, 4, 4, 4]
    assert np.bincount(fold[labels == 0], minlength=5).tolist() == [2] * 5
    assert len(set(fold[labels == 2].tolist())) == 3  # a small class in three folds
    assert np.array_equal(fold, early.fold_of(labels, 5, seed=0))
    assert not np.array_equal(fold, early.fold_of(labels, 5, seed=1))
    with pytest.raises(SystemExit, match="at least 2"):
        early.fold_of(labels, 1, seed=0)


def test_out_of_fold_predicts_each_image_by_a_model_that_never_trained_on_it(early, monkeypatch):
    trained, held = [], []

    real_build_trainer = early.build_trainer

    def build_trainer(cfg, out, run_data=None, **kwargs):
        trainer = real_build_trainer(cfg, out, run_data, **kwargs)
        trained.append(set(trainer.run_data.labeled.ids))
        return trainer

    def predict(model, loader, device):  # a model that answers the true labels, surely
        images = loader.dataset.images
        held.append(list(images.ids))
        truth = np.asarray(images.true_labels)
        return truth, np.eye(7)[truth]

    monkeypatch.setattr(early, "build_trainer", build_trainer)
    monkeypatch.setattr(early, "predict", predict)
    rows = early.out_of_fold(NOISY, steps=4, every=2, folds=5)
    assert [row["step"] for row in rows] == [2, 4] and rows[0]["folds"] == 5
    assert len(trained) == 5 and len(held) == 10  # 5 models, each predicting at steps 2 and 4
    folds = held[::2]
    everyone = set().union(*folds)
    assert len(everyone) == sum(len(f) for f in folds) == 28  # a partition of the labeled set
    for k, fold in enumerate(folds):
        assert not trained[k] & set(fold) and trained[k] | set(fold) == everyone
        assert 4 <= len(fold) <= 7  # about a fifth each
    for row in rows:
        assert row["labeled"] == 28 and row["wrong"] > 0
        assert row["true_on_wrong"] == 1.0 and row["given_on_wrong"] == 0.0
        assert row["p_given_correct"] == 1.0 and row["p_given_wrong"] == 0.0


def test_unknown_truth_and_error_types_in_a_row(early):
    class Labeled:
        labels = np.array([0, 1, 2, 3, 4])
        true_labels = np.array([0, 2, 3, -1, 1])
        error_types = np.array([0, 1, 2, -1, 1], dtype=np.int8)

    probs = np.full((5, 7), 0.1)
    probs[np.arange(5), Labeled.labels] = [0.9, 0.2, 0.4, 0.5, 0.0]
    row = early.evidence_row(3, np.array([0, 2, 2, 0, 1]), probs, Labeled)
    assert row["wrong"] == 3  # the image of unknown truth is neither right nor wrong
    assert row["fit"] == pytest.approx(2 / 5)
    assert row["true_on_wrong"] == pytest.approx(2 / 3) and row["given_on_wrong"] == pytest.approx(
        1 / 3
    )
    assert row["true_on_slip"] == 1.0 and row["true_on_ambiguity"] == 0.0
    assert row["p_given_correct"] == 0.9 and row["p_given_wrong"] == pytest.approx(0.2)


def test_out_of_fold_runs_a_real_model(early):
    (row,) = early.out_of_fold(NOISY, steps=2, every=2, folds=2)
    assert 0.0 <= row["true_on_wrong"] + row["given_on_wrong"] <= 1.0
    assert 0.0 <= row["p_given_wrong"] <= 1.0 and row["folds"] == 2
