"""FreeMatch: self-adaptive thresholds (EMA first, then the mask) and the fairness term."""

import math

import torch
from fakes import Passthrough, info, rows

from lionfer.algorithms.base import Batch, Progress
from lionfer.algorithms.freematch import (
    FreeMatch,
    fairness_loss,
    local_thresholds,
    update_estimates,
)
from lionfer.algorithms.hparams import FreeMatchConfig

T = torch.tensor


def test_estimates_are_emas_of_confidence_prediction_and_histogram():
    probs = T([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    third = torch.full((3,), 1 / 3)
    time_p, p_model, hist = update_estimates(T(1 / 3), third, third, probs, momentum=0.5)
    assert math.isclose(time_p.item(), 0.5 / 3 + 0.5 * 0.6, rel_tol=1e-6)
    assert torch.allclose(p_model, 0.5 * third + 0.5 * T([0.4, 0.25, 0.35]))
    assert torch.allclose(hist, 0.5 * third + 0.5 * T([0.5, 0.0, 0.5]))


def test_local_thresholds_scale_the_global_one_by_the_class_prediction():
    assert torch.allclose(local_thresholds(T(0.6), T([0.5, 0.25, 0.25])), T([0.6, 0.3, 0.3]))


def test_fairness_by_hand():
    logits_s = torch.log(T([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])).requires_grad_()
    mask = T([True, True, False])
    loss = fairness_loss(logits_s, mask, p_model=T([0.6, 0.4]), label_hist=T([0.5, 0.5]))
    # a = SumNorm((0.6, 0.4)/(0.5, 0.5)) = (0.6, 0.4); p̄ = (0.55, 0.45), h̄ = (0.5, 0.5) → b = p̄
    assert math.isclose(loss.item(), 0.6 * math.log(0.55) + 0.4 * math.log(0.45), rel_tol=1e-5)
    loss.backward()
    assert logits_s.grad[:2].abs().sum() > 0 and logits_s.grad[2].abs().sum() == 0


def test_fairness_is_zero_without_masked_images_and_has_no_nan_gradient():
    logits_s = torch.randn(3, 4, requires_grad=True)
    loss = fairness_loss(
        logits_s, T([False, False, False]), torch.full((4,), 0.25), T([0.5, 0.5, 0.0, 0.0])
    )
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits_s.grad, torch.zeros(3, 4))


def test_fairness_target_ranges_over_the_classes_with_labeled_images():
    logits_s = torch.log(T([[0.8, 0.15, 0.05], [0.3, 0.65, 0.05]]))
    mask, p_model, hist = T([True, True]), T([0.5, 0.4, 0.1]), T([0.5, 0.49, 0.01])
    loss = fairness_loss(logits_s, mask, p_model, hist, classes=T([True, True, False]))
    # a = SumNorm(1, 0.816, 0); p̄ = (0.55, 0.4, 0.05), h̄ = (0.5, 0.5, 0) → b = (0.579, 0.421, 0)
    a0 = 1 / (1 + 0.4 / 0.49)
    b0 = 1.1 / 1.9
    expected = a0 * math.log(b0) + (1 - a0) * math.log(1 - b0)
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    # over every class the faded class 2 (p̃/h̃ = 10) would take 85% of the target
    assert fairness_loss(logits_s, mask, p_model, hist).item() < -20
    algorithm = FreeMatch(FreeMatchConfig(), info(3, given=(0, 1, 0, 1)))
    assert algorithm.classes.tolist() == [True, True, False]


def test_step_updates_the_estimates_before_masking():
    algorithm = FreeMatch(FreeMatchConfig(ema=0.5, lambda_f=0.0), info(2))
    probs_w = [[0.9, 0.1], [0.4, 0.6]]
    batch = Batch(rows([[0.7, 0.3]]), T([0]), T([0]), rows(probs_w), rows(probs_w), T([0, 1]))
    out = algorithm.step(Passthrough(2), batch, Progress(0, 10))
    # τ = 0.5·0.5 + 0.5·0.75 = 0.625; p̃ = (0.575, 0.425); τ(c) = (0.625, 0.4620)
    assert math.isclose(algorithm.time_p.item(), 0.625, rel_tol=1e-6)
    assert torch.allclose(algorithm.p_model, T([0.575, 0.425]))
    assert out.mask.tolist() == [True, True]  # 0.9 ≥ 0.625 and 0.6 ≥ 0.4620
    algorithm.time_p, algorithm.p_model = T(1.0), T([0.5, 0.5])
    out = algorithm.step(Passthrough(2), batch, Progress(1, 10))
    # τ = 0.875, p̃ = (0.575, 0.425), τ(c) = (0.875, 0.6467): the stored τ = 1 would pass nothing
    assert out.mask.tolist() == [True, False]
