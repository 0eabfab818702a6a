"""FlexMatch: learning effect, flexible thresholds and the per-image record."""

import math

import pytest
import torch
from fakes import CopiesOnTwoProcesses, Passthrough, global_batch, info, rows

from lionfer.algorithms.base import Batch, Progress
from lionfer.algorithms.flexmatch import FlexMatch, flexible_thresholds, learning_effect
from lionfer.algorithms.hparams import FlexMatchConfig

T = torch.tensor


def test_learning_effect_with_and_without_warmup():
    selected = T([-1, -1, -1, 0, 0, 1])  # σ = (2, 1, 0), 3 unrecorded
    assert torch.allclose(learning_effect(selected, 3, warmup=True), T([2 / 3, 1 / 3, 0.0]))
    assert torch.allclose(learning_effect(selected, 3, warmup=False), T([1.0, 0.5, 0.0]))
    assert torch.equal(learning_effect(T([-1, -1]), 3, warmup=False), torch.zeros(3))


def test_a_normaliser_of_one_leaves_the_count_as_it_is():
    # one recorded image: max σ = 1 (and 1 unrecorded with warm-up), so β = σ
    assert torch.equal(learning_effect(T([0]), 3, warmup=False), T([1.0, 0.0, 0.0]))
    assert torch.equal(learning_effect(T([-1, 1]), 2, warmup=True), T([0.0, 1.0]))


def test_learning_effect_is_computed_on_the_device_of_the_record():
    # a run on a GPU keeps the record there; "meta" stands in for a device other than the CPU
    selected = T([-1, 0, 0, 1]).to("meta")
    for warmup in (True, False):
        assert learning_effect(selected, 3, warmup).device.type == "meta"


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


def unlabeled_batch(probs_w, probs_s=None, idx=None):
    probs_s = probs_w if probs_s is None else probs_s
    idx = T(list(range(len(probs_w)))) if idx is None else idx
    return Batch(rows([[0.7, 0.2, 0.1]]), T([0]), T([0]), rows(probs_w), rows(probs_s), idx)


def test_step_loss_logs_and_pseudo_labels_by_hand():
    cfg = FlexMatchConfig(threshold=0.9, lambda_u=2.0)
    algorithm = FlexMatch(cfg, info(3, num_unlabeled=4))
    algorithm.selected_label = T([0, 0, -1, 2])  # thresholds (0.9, 0, 0.3), as above
    probs_w = [[0.85, 0.1, 0.05], [0.2, 0.7, 0.1], [0.05, 0.05, 0.9], [0.3, 0.3, 0.4]]
    probs_s = [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]]
    out = algorithm.step(Passthrough(3), unlabeled_batch(probs_w, probs_s), Progress(0, 10))
    assert out.pseudo_labels.tolist() == [0, 1, 2, 2]  # argmax of the weak view
    assert out.mask.tolist() == [False, True, True, True]
    # the strong view's cross-entropy on the used rows, over the whole batch (4), not the 3 used
    loss_unsup = (-math.log(0.5) - math.log(0.6) - math.log(0.8)) / 4
    loss_sup = -math.log(0.7)
    assert math.isclose(out.logs["loss_sup"].item(), loss_sup, rel_tol=1e-5)
    assert math.isclose(out.logs["loss_unsup"].item(), loss_unsup, rel_tol=1e-5)
    assert math.isclose(out.loss.item(), loss_sup + 2.0 * loss_unsup, rel_tol=1e-5)
    assert out.logs["mask_rate"].item() == 0.75
    assert math.isclose(out.logs["threshold_mean"].item(), (0.9 + 0.0 + 0.3) / 3, rel_tol=1e-5)


@pytest.mark.parametrize("warmup, mask, threshold_mean", [(True, True, 0.06), (False, False, 0.3)])
def test_step_thresholds_follow_the_warmup_setting(warmup, mask, threshold_mean):
    algorithm = FlexMatch(FlexMatchConfig(threshold=0.9, warmup=warmup), info(3, num_unlabeled=4))
    algorithm.selected_label = T([0, -1, -1, -1])  # σ = (1, 0, 0), 3 unrecorded
    # warm-up: β(0) = 1/3, T(0) = 0.9 · (1/3) / (5/3) = 0.18; without: β(0) = 1, T(0) = 0.9
    out = algorithm.step(Passthrough(3), unlabeled_batch([[0.5, 0.3, 0.2]]), Progress(0, 10))
    assert out.mask.tolist() == [mask]
    assert math.isclose(out.logs["threshold_mean"].item(), threshold_mean, rel_tol=1e-5)


def test_a_confidence_exactly_at_the_class_threshold_is_used():
    probs_w = [[0.6, 0.3, 0.1]]
    logits = Passthrough(3)(rows(probs_w)).logits.detach()
    confidence = logits.float().softmax(dim=1).max(dim=1).values[0]  # 0.6, as the step has it
    algorithm = FlexMatch(FlexMatchConfig(threshold=confidence.item()), info(3, num_unlabeled=1))
    algorithm.selected_label = T([0])  # β(0) = 1: T(0) = M(1) · τ = τ
    out = algorithm.step(Passthrough(3), unlabeled_batch(probs_w), Progress(0, 10))
    assert out.mask.tolist() == [True]
    assert algorithm.selected_label.tolist() == [0]


def test_state_round_trip_gives_the_same_next_step():
    cfg = FlexMatchConfig(threshold=0.9)
    trained = FlexMatch(cfg, info(3, num_unlabeled=2))
    first = unlabeled_batch([[0.95, 0.03, 0.02], [0.92, 0.05, 0.03]])
    trained.step(Passthrough(3), first, Progress(0, 10))  # both recorded as class 0
    assert list(trained.state_dict()) == ["selected_label"]  # the checkpoint's key
    restored = FlexMatch(cfg, info(3, num_unlabeled=2))
    restored.load_state_dict({k: v.clone() for k, v in trained.state_dict().items()})
    assert restored.selected_label.tolist() == [0, 0]
    fresh = FlexMatch(cfg, info(3, num_unlabeled=2))
    # T = (0.9, 0, 0) after the records: neither 0.6 nor 0.8 passes; fresh, every T is 0
    following = unlabeled_batch([[0.6, 0.3, 0.1], [0.8, 0.1, 0.1]])
    outs = [a.step(Passthrough(3), following, Progress(1, 10)) for a in (trained, restored, fresh)]
    assert torch.equal(outs[0].loss, outs[1].loss)
    assert outs[0].mask.tolist() == outs[1].mask.tolist() == [False, False]
    assert outs[2].mask.tolist() == [True, True]


def test_step_with_two_processes_uses_and_records_the_global_batch():
    algorithm = FlexMatch(FlexMatchConfig(threshold=0.9), info(3, num_unlabeled=4))
    algorithm.comm = CopiesOnTwoProcesses()
    probs_w = [[0.95, 0.03, 0.02], [0.05, 0.05, 0.9]]
    batch = global_batch([0.7, 0.2, 0.1], probs_w)
    out = algorithm.step(Passthrough(3), batch, Progress(0, 10))
    assert out.pseudo_labels.tolist() == [0, 2, 0, 2]
    assert out.mask.tolist() == [True, True, True, True]
    assert algorithm.selected_label.tolist() == [0, 2, 0, 2]
    assert math.isclose(out.logs["loss_sup"].item(), -math.log(0.7), rel_tol=1e-5)
