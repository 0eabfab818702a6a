"""Pseudo-Label: the ramp of α(t) and the mask on its own view."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from batchnorm_helpers import bn_model, recorded_passes, same, statistics, statistics_after
from fakes import Passthrough, info, rows

from lionfer.algorithms.base import Batch, Progress
from lionfer.algorithms.hparams import PseudoLabelConfig
from lionfer.algorithms.pseudolabel import PseudoLabel, unlabeled_weight


@pytest.mark.parametrize(
    "fraction, expected",
    [(0.0, 0.0), (0.099, 0.0), (0.1, 0.0), (0.35, 1.5), (0.6, 3.0), (1.0, 3.0)],
)
def test_weight_is_zero_then_linear_then_final(fraction, expected):
    assert math.isclose(unlabeled_weight(fraction, 0.1, 0.6, 3.0), expected)


def test_weight_steps_when_start_equals_end():
    assert unlabeled_weight(0.49, 0.5, 0.5, 2.0) == 0.0
    assert unlabeled_weight(0.5, 0.5, 0.5, 2.0) == 2.0


def test_step_trains_each_image_toward_its_own_argmax_above_the_threshold():
    algorithm = PseudoLabel(PseudoLabelConfig(threshold=0.7), info())
    batch = Batch(
        rows([[0.8, 0.1, 0.1]]),
        torch.tensor([0]),
        torch.tensor([0]),
        rows([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1]]),
        None,
        torch.tensor([0, 1]),
    )
    out = algorithm.step(Passthrough(3), batch, Progress(60, 100))  # α = α_f = 3
    assert out.mask.tolist() == [False, True] and out.pseudo_labels.tolist() == [0, 1]
    expected = -math.log(0.8) + 3.0 * (-math.log(0.8)) / 2  # masked CE over the whole batch
    assert math.isclose(out.loss.item(), expected, rel_tol=1e-5)


def test_an_image_exactly_at_the_threshold_is_kept():
    x_ulb = rows([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    confidence = x_ulb[:, :3].softmax(dim=1).max(dim=1).values  # as the step computes it
    algorithm = PseudoLabel(PseudoLabelConfig(threshold=confidence[0].item()), info())
    batch = Batch(
        rows([[0.8, 0.1, 0.1]]),
        torch.tensor([0]),
        torch.tensor([0]),
        x_ulb,
        None,
        torch.tensor([0, 1]),
    )
    out = algorithm.step(Passthrough(3), batch, Progress(60, 100))
    assert out.mask.tolist() == [True, False]


def test_labeled_and_unlabeled_images_are_apart_and_only_the_labeled_move_batchnorm():
    model = bn_model()
    initial = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    x_lb, x_ulb_w = torch.randn(4, 3, 16, 16, generator=g), torch.randn(6, 3, 16, 16, generator=g)
    y_lb = torch.tensor([0, 1, 2, 0])
    batch = Batch(x_lb, y_lb, torch.arange(4), x_ulb_w, None, torch.arange(6))
    algorithm = PseudoLabel(PseudoLabelConfig(), info())
    with recorded_passes(model) as passes:
        out = algorithm.step(model, batch, Progress(60, 100))  # α = α_f = 3
    out.loss.backward()  # the frozen pass keeps its gradient
    assert [len(x) for x in passes] == [4, 6]
    assert same(statistics(model), statistics_after(initial, [x_lb]))
    assert not same(statistics(model), statistics_after(initial, [torch.cat([x_lb, x_ulb_w])]))
    # each part normalised with its own batch's statistics
    logits_lb = copy.deepcopy(initial)(x_lb).logits
    logits_ulb = copy.deepcopy(initial)(x_ulb_w).logits
    expected = F.cross_entropy(logits_lb, y_lb) + 3.0 * F.cross_entropy(
        logits_ulb, logits_ulb.argmax(dim=1)
    )
    assert torch.allclose(out.loss, expected, rtol=1e-5)
