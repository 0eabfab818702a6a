"""FlexMatch: learning effect, flexible thresholds and the per-image record."""

import math

import pytest
import torch
from fakes import Passthrough, info, rows

from lionfer.algorithms.base import Batch, Progress
from lionfer.algorithms.flexmatch import FlexMatch, flexible_thresholds, learning_effect
from lionfer.algorithms.hparams import FlexMatchConfig

T = torch.tensor


def test_learning_effect_with_and_without_warmup():
    selected = T([-1, -1, -1, 0, 0, 1])  # σ = (2, 1, 0), 3 unrecorded
    assert torch.allclose(learning_effect(selected, 3, warmup=True), T([2 / 3, 1 / 3, 0.0]))
    assert torch.allclose(learning_effect(selected, 3, warmup=False), T([1.0, 0.5, 0.0]))
    assert torch.equal(learning_effect(T([-1, -1]), 3, warmup=False), torch.zeros(3))


@pytest.mark.parametrize(
    "mapping, expected",
    [
        ("convex", [0.95 * (2 / 3) / (2 - 2 / 3), 0.95 * (1 / 3) / (2 - 1 / 3), 0.0]),
        ("linear", [0.95 * 2 / 3, 0.95 / 3, 0.0]),
        ("concave", [0.95 * math.log2(1 + 2 / 3), 0.95 * math.log2(1 + 1 / 3), 0.0]),
    ],
)
def test_thresholds_map_the_learning_effect(mapping, expected):
    out = flexible_thresholds(T([2 / 3, 1 / 3, 0.0]), 0.95, mapping)
    assert torch.allclose(out, T(expected))


def test_step_masks_with_earlier_records_and_records_only_confident_images():
    algorithm = FlexMatch(FlexMatchConfig(threshold=0.9), info(3, num_unlabeled=4))
    algorithm.selected_label = T([0, 0, -1, 2])  # σ = (2, 0, 1), 1 unrecorded: β = (1, 0, 0.5)
    # thresholds: 0.9·1/1 = 0.9, 0, 0.9·0.5/1.5 = 0.3
    probs_w = [[0.85, 0.1, 0.05], [0.2, 0.7, 0.1], [0.05, 0.05, 0.9], [0.3, 0.3, 0.4]]
    batch = Batch(
        rows([[0.7, 0.2, 0.1]]),
        T([0]),
        T([0]),
        rows(probs_w),
        rows(probs_w),
        T([0, 1, 2, 3]),
    )
    out = algorithm.step(Passthrough(3), batch, Progress(0, 10))
    assert out.mask.tolist() == [False, True, True, True]
    assert algorithm.selected_label.tolist() == [0, 0, 2, 2]  # only image 2 reached τ = 0.9
