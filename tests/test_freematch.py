"""FreeMatch: self-adaptive thresholds (EMA first, then the mask) and the fairness term."""

import math

import torch
from fakes import CopiesOnTwoProcesses, Passthrough, global_batch, info, rows

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


def test_fairness_target_normalises_a_sum_below_one():
    # over the labeled classes 0 and 1, p̃/h̃ = (0.25, 0.5, ·) sums to 0.75: a = (1/3, 2/3, 0)
    logits_s = torch.log(T([[0.8, 0.15, 0.05], [0.3, 0.65, 0.05]]))
    mask, p_model, hist = T([True, True]), T([0.1, 0.2, 0.7]), T([0.4, 0.4, 0.2])
    loss = fairness_loss(logits_s, mask, p_model, hist, classes=T([True, True, False]))
    b0 = 1.1 / 1.9  # p̄ = (0.55, 0.4, 0.05), h̄ = (0.5, 0.5, 0) → b = (1.1, 0.8, 0) / 1.9
    expected = math.log(b0) / 3 + 2 * math.log(1 - b0) / 3
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)


def unlabeled_batch(probs_w, probs_s=None):
    probs_s = probs_w if probs_s is None else probs_s
    idx = T(list(range(len(probs_w))))
    return Batch(rows([[0.7, 0.2, 0.1]]), T([0]), T([0]), rows(probs_w), rows(probs_s), idx)


def test_step_loss_logs_and_pseudo_labels_by_hand():
    cfg = FreeMatchConfig(ema=0.5, lambda_u=2.0, lambda_f=0.5)
    algorithm = FreeMatch(cfg, info(3, given=(0, 1, 0, 1)))  # class 2 has no labeled image
    probs_w = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.4, 0.35, 0.25]]
    probs_s = [[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.6, 0.2, 0.2]]
    out = algorithm.step(Passthrough(3), unlabeled_batch(probs_w, probs_s), Progress(0, 10))
    # τ = 0.5/3 + 0.5·1.9/3; p̃ = (1/6 + (0.7, 0.575, 0.225)/3) = (0.4, 0.3583, 0.2417);
    # h̃ = 1/6 + (1/3, 1/6, 0) (class 2 is nobody's argmax)
    time_p = 0.5 / 3 + 0.5 * 1.9 / 3
    assert math.isclose(algorithm.time_p.item(), time_p, rel_tol=1e-5)
    assert torch.allclose(algorithm.p_model, T([0.4, 0.43 / 1.2, 0.29 / 1.2]))
    assert torch.allclose(algorithm.label_hist, T([0.5, 1 / 3, 1 / 6]))
    # τ(c) = τ · p̃ / 0.4 = (0.4833, 0.4330, 0.2920): 0.8 and 0.7 pass, 0.4 < 0.4833 does not
    assert out.pseudo_labels.tolist() == [0, 1, 0]
    assert out.mask.tolist() == [True, True, False]
    # the strong view's cross-entropy on the used rows, over the whole batch (3), not the 2 used
    loss_unsup = (-math.log(0.5) - math.log(0.6)) / 3
    # a = SumNorm((0.4/0.5, 0.3583/0.3333, 0)) = (0.8, 1.075, 0) / 1.875; p̄ = (0.35, 0.425, 0.225),
    # h̄ = (0.5, 0.5, 0) → b = (0.7, 0.85, 0) / 1.55
    a0, b0 = 0.8 / 1.875, 0.7 / 1.55
    loss_fair = a0 * math.log(b0) + (1 - a0) * math.log(1 - b0)
    loss_sup = -math.log(0.7)
    assert math.isclose(out.logs["loss_sup"].item(), loss_sup, rel_tol=1e-5)
    assert math.isclose(out.logs["loss_unsup"].item(), loss_unsup, rel_tol=1e-5)
    assert math.isclose(out.logs["loss_fair"].item(), loss_fair, rel_tol=1e-5)
    expected = loss_sup + 2.0 * loss_unsup + 0.5 * loss_fair
    assert math.isclose(out.loss.item(), expected, rel_tol=1e-5)
    assert math.isclose(out.logs["mask_rate"].item(), 2 / 3, rel_tol=1e-6)
    assert math.isclose(out.logs["threshold_global"].item(), time_p, rel_tol=1e-5)


def test_a_confidence_exactly_at_the_class_threshold_is_used():
    probs_w = [[0.75, 0.25, 0.0]]
    logits = Passthrough(3)(rows(probs_w)).logits.detach()
    confidence = logits.float().softmax(dim=1).max(dim=1).values[0]  # 0.75, as the step has it
    algorithm = FreeMatch(FreeMatchConfig(ema=1.0), info(3))
    # p̃(0) is the largest: τ(0) = τ · p̃(0) / max p̃ = τ
    algorithm.time_p, algorithm.p_model = confidence.clone(), T([0.5, 0.25, 0.25])
    out = algorithm.step(Passthrough(3), unlabeled_batch(probs_w), Progress(0, 10))
    assert out.mask.tolist() == [True]


def test_estimates_start_at_chance_confidence_and_uniform_prediction_and_histogram():
    state = FreeMatch(FreeMatchConfig(), info(4, given=(0, 1, 2, 3))).state_dict()
    assert list(state) == ["time_p", "p_model", "label_hist"]  # the checkpoint's keys
    assert state["time_p"].item() == 0.25
    assert torch.equal(state["p_model"], torch.full((4,), 0.25))
    assert torch.equal(state["label_hist"], torch.full((4,), 0.25))


def test_state_round_trip_gives_the_same_next_step():
    cfg = FreeMatchConfig(ema=0.5, lambda_f=1.0)
    trained = FreeMatch(cfg, info(3))
    first = unlabeled_batch([[0.95, 0.03, 0.02], [0.9, 0.05, 0.05]])
    trained.step(Passthrough(3), first, Progress(0, 10))
    assert list(trained.state_dict()) == ["time_p", "p_model", "label_hist"]
    restored = FreeMatch(cfg, info(3))
    restored.load_state_dict({k: v.clone() for k, v in trained.state_dict().items()})
    for key, value in trained.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    fresh = FreeMatch(cfg, info(3))
    following = unlabeled_batch([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    outs = [a.step(Passthrough(3), following, Progress(1, 10)) for a in (trained, restored, fresh)]
    assert torch.equal(outs[0].loss, outs[1].loss)
    assert outs[0].mask.tolist() == outs[1].mask.tolist()
    for key, value in trained.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    assert outs[2].loss != outs[0].loss


def test_to_moves_the_estimates_and_the_fairness_classes():
    # the trainer moves the algorithm to the GPU; "meta" stands in for a device other than the CPU
    algorithm = FreeMatch(FreeMatchConfig(), info(3)).to(torch.device("meta"))
    for key, value in algorithm.state_dict().items():
        assert value.device.type == "meta", key
    assert algorithm.classes.device.type == "meta"


def test_step_with_two_processes_uses_the_global_batch():
    algorithm = FreeMatch(FreeMatchConfig(ema=0.5), info(3))
    algorithm.comm = CopiesOnTwoProcesses()
    probs_w = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]]
    batch = global_batch([0.7, 0.2, 0.1], probs_w)
    out = algorithm.step(Passthrough(3), batch, Progress(0, 10))
    assert out.pseudo_labels.tolist() == [0, 1, 0, 1]
    assert out.mask.tolist() == [True, True, True, True]
    assert math.isclose(out.logs["loss_sup"].item(), -math.log(0.7), rel_tol=1e-5)
    assert torch.allclose(algorithm.label_hist, T([1 / 6 + 0.25, 1 / 6 + 0.25, 1 / 6]))
