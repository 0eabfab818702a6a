"""SoftMatch: the truncated Gaussian weight, its EMAs (taken before the weight), uniform
alignment of the weight but not of the label, and an exact resume of its state."""

import math

import pytest
import torch
from fakes import CopiesOnTwoProcesses, Passthrough, global_batch, info, rows

from lionfer.algorithms.base import Batch, Progress
from lionfer.algorithms.hparams import SoftMatchConfig
from lionfer.algorithms.softmatch import (
    SoftMatch,
    truncated_gaussian_weight,
    uniform_alignment,
    update_estimates,
)
from lionfer.errors import ConfigError

T = torch.tensor


def test_weight_is_a_gaussian_below_the_mean_and_full_from_it_up():
    confidence = T([0.3, 0.5, 0.7])
    weight = truncated_gaussian_weight(confidence, T(0.5), T(0.04), n_sigma=1.0)
    # below: exp(−0.2² / (2 · 0.04)) = exp(−0.5); at and above μ: 1
    assert torch.allclose(weight, T([math.exp(-0.5), 1.0, 1.0]))
    narrow = truncated_gaussian_weight(confidence, T(0.5), T(0.04), n_sigma=2.0)
    # σ / 2: exp(−0.04 / (2 · 0.04 / 4)) = exp(−2)
    assert torch.allclose(narrow, T([math.exp(-2.0), 1.0, 1.0]))


def test_weight_with_no_variance_left_is_a_hard_threshold():
    weight = truncated_gaussian_weight(T([0.49, 0.5, 0.9]), T(0.5), T(0.0), n_sigma=2.0)
    assert weight.tolist() == [0.0, 1.0, 1.0]


def test_estimates_are_emas_of_mean_and_unbiased_variance_of_confidence_and_of_prediction():
    probs = T([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    third = torch.full((3,), 1 / 3)
    mu, var, p_model = update_estimates(T(1 / 3), T(1.0), third, probs, momentum=0.5)
    # confidences 0.6, 0.8: mean 0.7, unbiased variance (0.1² + 0.1²) / 1 = 0.02
    assert math.isclose(mu.item(), 0.5 / 3 + 0.5 * 0.7, rel_tol=1e-6)
    assert math.isclose(var.item(), 0.5 * 1.0 + 0.5 * 0.02, rel_tol=1e-6)
    assert torch.allclose(p_model, 0.5 * third + 0.5 * T([0.35, 0.2, 0.45]))


def test_a_batch_of_one_adds_no_variance():
    _, var, _ = update_estimates(T(0.5), T(0.2), T([0.5, 0.5]), T([[0.9, 0.1]]), momentum=0.5)
    assert math.isclose(var.item(), 0.1, rel_tol=1e-6)


def test_uniform_alignment_divides_by_the_mean_prediction_and_renormalises():
    probs = T([[0.5, 0.3, 0.2]])
    # (0.5/0.5, 0.3/0.25, 0.2/0.25) / 3 = (1, 1.2, 0.8) / 3
    aligned = uniform_alignment(probs, T([0.5, 0.25, 0.25]))
    assert torch.allclose(aligned, T([[1 / 3, 0.4, 0.8 / 3]]))
    assert torch.allclose(uniform_alignment(probs, torch.full((3,), 1 / 3)), probs)


def test_step_by_hand_estimates_first_then_aligned_weights_on_unaligned_labels():
    algorithm = SoftMatch(SoftMatchConfig(ema=0.5), info(2))
    algorithm.prob_max_var = T(0.01)
    probs_w = [[0.9, 0.1], [0.4, 0.6], [0.55, 0.45]]
    probs_s = [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]
    batch = Batch(rows([[0.7, 0.3]]), T([0]), T([0]), rows(probs_w), rows(probs_s), T([0, 1, 2]))
    out = algorithm.step(Passthrough(2), batch, Progress(0, 10))

    mu = 0.5 * 0.5 + 0.5 * (0.9 + 0.6 + 0.55) / 3  # 0.5917: above the stored 0.5
    deviations = (0.9 - 0.6833333, 0.6 - 0.6833333, 0.55 - 0.6833333)
    var = 0.5 * 0.01 + 0.5 * sum(d * d for d in deviations) / 2
    p_model = (0.5 * 0.5 + 0.5 * 1.85 / 3, 0.5 * 0.5 + 0.5 * 1.15 / 3)  # (0.5583, 0.4417)
    assert math.isclose(algorithm.prob_max_mu.item(), mu, rel_tol=1e-5)
    assert math.isclose(algorithm.prob_max_var.item(), var, rel_tol=1e-4)
    assert torch.allclose(algorithm.p_model, T(p_model))
    # UA: row 2 → 0.6547 ≥ μ (weight 1); row 3 → 0.5084 < μ, its aligned argmax is class 1, but
    # its pseudo-label stays the unaligned argmax, class 0.
    row3 = (0.45 / p_model[1]) / (0.55 / p_model[0] + 0.45 / p_model[1])
    w3 = math.exp(-((row3 - mu) ** 2) / (2 * var / 4))
    assert out.pseudo_labels.tolist() == [0, 1, 0]
    assert out.mask.tolist() == [True, True, False]
    loss_unsup = (-math.log(0.8) - math.log(0.7) - w3 * math.log(0.6)) / 3
    assert math.isclose(out.logs["loss_unsup"].item(), loss_unsup, rel_tol=1e-5)
    assert math.isclose(out.logs["loss_sup"].item(), -math.log(0.7), rel_tol=1e-5)
    assert math.isclose(out.loss.item(), -math.log(0.7) + loss_unsup, rel_tol=1e-5)
    assert math.isclose(out.logs["mask_rate"].item(), (2 + w3) / 3, rel_tol=1e-5)
    assert math.isclose(out.logs["threshold_global"].item(), mu, rel_tol=1e-5)


def test_alignment_changes_the_weight_not_the_label():
    probs_w = [[0.6, 0.4]]
    batch = Batch(rows([[0.7, 0.3]]), T([0]), T([0]), rows(probs_w), rows(probs_w), T([0]))
    outs = []
    for aligned in (True, False):
        algorithm = SoftMatch(SoftMatchConfig(ema=1.0, uniform_alignment=aligned), info(2))
        algorithm.prob_max_mu, algorithm.prob_max_var = T(0.7), T(0.01)
        algorithm.p_model = T([0.8, 0.2])  # the model over-predicts class 0
        outs.append(algorithm.step(Passthrough(2), batch, Progress(0, 10)))
    # UA: (0.6/0.8, 0.4/0.2) → (0.27, 0.73), 0.73 ≥ 0.7: full weight; without it 0.6 < 0.7
    assert outs[0].logs["mask_rate"].item() == 1.0
    assert math.isclose(outs[1].logs["mask_rate"].item(), math.exp(-2.0), rel_tol=1e-5)
    assert outs[0].pseudo_labels.tolist() == outs[1].pseudo_labels.tolist() == [0]


def test_uniform_alignment_toward_a_given_target():
    probs = T([[0.5, 0.3, 0.2]])
    # (0.5·0.5/0.5, 0.3·0.5/0.25, 0.2·0/0.25) = (0.5, 0.6, 0) → (5/11, 6/11, 0)
    aligned = uniform_alignment(probs, T([0.5, 0.25, 0.25]), T([0.5, 0.5, 0.0]))
    assert torch.allclose(aligned, T([[5 / 11, 6 / 11, 0.0]]))


def test_a_class_without_labeled_images_takes_no_share_of_the_alignment():
    algorithm = SoftMatch(SoftMatchConfig(ema=1.0), info(3, given=(0, 1, 0, 1)))
    assert torch.equal(algorithm.alignment_target, T([0.5, 0.5, 0.0]))
    algorithm.prob_max_mu, algorithm.prob_max_var = T(0.8), T(0.01)
    algorithm.p_model = T([0.5, 0.49, 0.01])  # class 2, never predicted, has faded
    probs_w = [[0.9, 0.09, 0.01]]
    batch = Batch(rows([[0.7, 0.3, 0.0]]), T([0]), T([0]), rows(probs_w), rows(probs_w), T([0]))
    out = algorithm.step(Passthrough(3), batch, Progress(0, 10))
    # toward (1/2, 1/2, 0): (1.8, 0.184, 0) → max 0.907 ≥ μ: full weight. Toward u(3) it would
    # be (1.8, 0.184, 1.0) → 0.603, and its weight exp(−(0.603 − 0.8)² / 0.005) ≈ 4e-4.
    assert out.logs["mask_rate"].item() == 1.0 and out.mask.tolist() == [True]


def test_state_round_trip_gives_the_same_next_step():
    def batch(probs_w):
        return Batch(rows([[0.7, 0.3]]), T([0]), T([0]), rows(probs_w), rows(probs_w), T([0, 1]))

    cfg = SoftMatchConfig(ema=0.5)
    trained = SoftMatch(cfg, info(2))
    trained.step(Passthrough(2), batch([[0.95, 0.05], [0.9, 0.1]]), Progress(0, 10))
    restored = SoftMatch(cfg, info(2))
    restored.load_state_dict({k: v.clone() for k, v in trained.state_dict().items()})
    fresh = SoftMatch(cfg, info(2))
    following = batch([[0.6, 0.4], [0.8, 0.2]])
    losses = [a.step(Passthrough(2), following, Progress(1, 10)).loss for a in (trained, restored)]
    assert torch.equal(losses[0], losses[1])
    for key, value in trained.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    assert fresh.step(Passthrough(2), following, Progress(1, 10)).loss != losses[0]


def test_estimates_start_at_chance_confidence_unit_variance_and_a_uniform_prediction():
    state = SoftMatch(SoftMatchConfig(), info(4)).state_dict()
    assert state["prob_max_mu"].item() == 0.25 and state["prob_max_var"].item() == 1.0
    assert torch.equal(state["p_model"], torch.full((4,), 0.25))


def test_a_confidence_exactly_at_the_mean_has_full_weight_and_is_logged():
    probs_w = [[0.75, 0.25]]
    batch = Batch(rows([[0.7, 0.3]]), T([0]), T([0]), rows(probs_w), rows(probs_w), T([0]))
    cfg = SoftMatchConfig(ema=1.0, uniform_alignment=False)
    algorithm = SoftMatch(cfg, info(2))
    logits = Passthrough(2)(rows(probs_w)).logits.detach()
    confidence = logits.float().softmax(dim=1).max(dim=1).values[0]  # 0.75, as the step has it
    algorithm.prob_max_mu, algorithm.prob_max_var = confidence.clone(), T(0.01)
    out = algorithm.step(Passthrough(2), batch, Progress(0, 10))
    assert out.mask.tolist() == [True]
    assert out.logs["full_weight_rate"].item() == 1.0
    assert out.logs["threshold_var"].item() == pytest.approx(0.01)


def test_to_moves_the_estimates_and_the_alignment_target():
    # the trainer moves the algorithm to the GPU; "meta" stands in for a device other than the CPU
    algorithm = SoftMatch(SoftMatchConfig(), info(3)).to(torch.device("meta"))
    assert list(algorithm.state_dict()) == ["prob_max_mu", "prob_max_var", "p_model"]
    for key, value in algorithm.state_dict().items():
        assert value.device.type == "meta", key
    assert algorithm.alignment_target.device.type == "meta"


def test_step_with_two_processes_uses_the_global_batch():
    algorithm = SoftMatch(SoftMatchConfig(ema=0.5), info(2))
    algorithm.comm = CopiesOnTwoProcesses()
    probs_w = [[0.9, 0.1], [0.4, 0.6]]
    batch = global_batch([0.7, 0.3], probs_w)
    out = algorithm.step(Passthrough(2), batch, Progress(0, 10))
    assert out.pseudo_labels.tolist() == [0, 1, 0, 1]
    # confidences (0.9, 0.6, 0.9, 0.6): unbiased variance 4 · 0.15² / 3 = 0.03 (0.045 over two)
    assert math.isclose(algorithm.prob_max_var.item(), 0.5 + 0.5 * 0.03, rel_tol=1e-5)
    assert math.isclose(out.logs["loss_sup"].item(), -math.log(0.7), rel_tol=1e-5)


@pytest.mark.parametrize("field", ["ema=1.5", "lambda_u=-1", "n_sigma=0"])
def test_config_rejects_out_of_range_values(field):
    name, value = field.split("=")
    with pytest.raises(ConfigError, match=f"algorithm.{name}"):
        SoftMatchConfig(**{name: float(value)})
