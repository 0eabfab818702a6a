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
