"""Margin-Mix (approximation): the additive margin, class centroids and the blended guess."""

import copy
import math

import torch
from batchnorm_helpers import bn_model, recorded_passes, same, statistics, statistics_after
from fakes import Passthrough, info, rows

from lionfer.algorithms import mixmatch
from lionfer.algorithms.base import Batch, Progress
from lionfer.algorithms.hparams import MarginMixConfig
from lionfer.algorithms.marginmix import (
    MarginMix,
    centroid_guess,
    margin_logits,
    update_centroids,
)
from lionfer.algorithms.mixmatch import sharpen
from lionfer.losses import soft_cross_entropy

T = torch.tensor


def test_margin_is_taken_off_each_class_by_its_target_weight():
    assert torch.allclose(margin_logits(T([[2.0, 1.0]]), T([[1.0, 0.0]]), 0.5), T([[1.5, 1.0]]))
    mixed = margin_logits(T([[2.0, 1.0]]), T([[0.75, 0.25]]), 0.5)
    assert torch.allclose(mixed, T([[2.0 - 0.375, 1.0 - 0.125]]))
    loss = soft_cross_entropy(margin_logits(T([[2.0, 1.0]]), T([[1.0, 0.0]]), 0.5), T([[1.0, 0.0]]))
    # the target must now lead by 0.5 more: −log(e^1.5 / (e^1.5 + e^1))
    assert math.isclose(
        loss.item(), -math.log(math.exp(1.5) / (math.exp(1.5) + math.e)), rel_tol=1e-6
    )


def test_margin_logits_keep_the_dtype_of_the_logits():
    # under autocast the logits are bfloat16 and the mixed targets float32
    logits = T([[2.0, 1.0]], dtype=torch.bfloat16)
    shifted = margin_logits(logits, T([[1.0, 0.0]]), 0.5)
    assert shifted.dtype == torch.bfloat16
    assert shifted.tolist() == [[1.5, 1.0]]


def test_centroids_start_at_the_first_mean_then_follow_an_ema():
    centroids, ready = torch.zeros(3, 2), torch.zeros(3, dtype=torch.bool)
    update_centroids(centroids, ready, T([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), T([0, 0, 1]), 0.9)
    assert torch.allclose(centroids, T([[0.5, 0.5], [1.0, 1.0], [0.0, 0.0]]))
    assert ready.tolist() == [True, True, False]
    update_centroids(centroids, ready, T([[1.0, 0.0]]), T([0]), 0.9)
    assert torch.allclose(centroids, T([[0.9 * 0.5 + 0.1, 0.9 * 0.5], [1.0, 1.0], [0.0, 0.0]]))


def test_centroid_guess_is_a_softmax_of_negative_cosine_distance():
    guess = centroid_guess(T([[1.0, 0.0]]), T([[2.0, 0.0], [0.0, 3.0]]), temperature=0.5)
    # d = (0, 1) → softmax(0, −2)
    assert torch.allclose(guess, T([[1 / (1 + math.exp(-2)), math.exp(-2) / (1 + math.exp(-2))]]))
    # each row by its own norm: a longer feature beside it changes nothing
    both = centroid_guess(T([[1.0, 0.0], [0.0, 5.0]]), T([[2.0, 0.0], [0.0, 3.0]]), 0.5)
    assert torch.allclose(both[0], guess[0])
    assert torch.allclose(both[1], guess[0].flip(0))


def make_batch(labels):
    return Batch.from_views(
        rows([[0.5, 0.5], [0.5, 0.5]], [[1.0, 0.0], [0.0, 1.0]]),
        T(labels),
        T([0, 1]),
        ("weak", "weak"),
        (rows([[0.6, 0.4]], [[1.0, 0.0]]), rows([[0.6, 0.4]], [[1.0, 0.0]])),
        T([0]),
    )


def test_guess_blends_in_the_centroids_once_every_class_has_one():
    cfg = MarginMixConfig(distance_temperature=0.5, centroid_weight=0.5, temperature=0.5)
    partial = MarginMix(cfg, info(2, given=(0, 1)))
    plain = partial._guess(Passthrough(2), make_batch([0, 0]))  # class 1 has no centroid yet
    assert torch.allclose(plain, sharpen(T([[0.6, 0.4]]), 0.5))

    full = MarginMix(cfg, info(2, given=(0, 1)))
    blended = full._guess(Passthrough(2), make_batch([0, 1]))
    by_centroid = 1 / (1 + math.exp(-2))
    mix = T([[0.5 * 0.6 + 0.5 * by_centroid, 0.5 * 0.4 + 0.5 * (1 - by_centroid)]])
    assert torch.allclose(blended, sharpen(mix, 0.5))


def test_only_the_mixed_pass_moves_batchnorm_statistics():
    model = bn_model()
    initial = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    views = tuple(torch.randn(2, 3, 16, 16, generator=g) for _ in MarginMix.views)
    x_lb, y = torch.randn(2, 3, 16, 16, generator=g), T([0, 1])
    batch = Batch.from_views(x_lb, y, y, MarginMix.views, views, y)
    algorithm = MarginMix(MarginMixConfig(), info(3, feature_dim=model.feature_dim))
    with recorded_passes(model) as passes:
        algorithm.step(model, batch, Progress(5, 10))
    guess, mixed = passes  # the labeled images and the K weak views; the mixed pool
    assert torch.equal(guess, torch.cat([x_lb, *views])) and len(mixed) == 2 + 2 * 2
    assert same(statistics(model), statistics_after(initial, [mixed]))
    assert not same(statistics(model), statistics_after(initial, [guess, mixed]))


def test_step_loss_logs_and_pseudo_labels_by_hand(monkeypatch):
    # λ' = 1 with each item its own partner: the pool is mixed with itself, unchanged
    monkeypatch.setattr(
        mixmatch, "draw_mixup", lambda n, alpha, g: (torch.ones(n), torch.arange(n))
    )
    cfg = MarginMixConfig(temperature=0.5, centroid_weight=0.5, margin=0.5, rampup=1.0)
    algorithm = MarginMix(cfg, info(2, given=(0, 0)))  # class 1 has no labeled image
    out = algorithm.step(Passthrough(2), make_batch([0, 0]), Progress(5, 10))
    # class 0's centroid is the only one: the centroid guess is (1, 0), blended half and half
    # with the views' (0.6, 0.4) into (0.8, 0.2), sharpened at T = 0.5 into (16/17, 1/17)
    assert torch.allclose(algorithm.centroids, T([[0.5, 0.5], [0.0, 0.0]]))
    assert algorithm.centroid_ready.tolist() == [True, False]
    # labeled logits log(0.5, 0.5) − 0.5·(1, 0): −log(e^−0.5 / (e^−0.5 + 1)) = log(1 + e^0.5)
    loss_sup = math.log(1 + math.exp(0.5))
    loss_unsup = (0.6 - 16 / 17) ** 2  # both entries of both views are 5.8/17 off
    assert math.isclose(out.logs["loss_sup"].item(), loss_sup, rel_tol=1e-5)
    assert math.isclose(out.logs["loss_unsup"].item(), loss_unsup, rel_tol=1e-5)
    assert out.logs["weight_unsup"] == 75.0 * 0.5
    assert out.logs["centroids_ready"].item() == 1.0  # the one labeled class has its centroid
    assert math.isclose(out.loss.item(), loss_sup + 37.5 * loss_unsup, rel_tol=1e-5)
    assert out.pseudo_labels.tolist() == [0]
    assert out.mask.tolist() == [True]


def test_centroids_ready_logs_the_share_of_labeled_classes_with_a_centroid():
    algorithm = MarginMix(MarginMixConfig(), info(2, given=(0, 1)))  # only class 0 comes
    out = algorithm.step(Passthrough(2), make_batch([0, 0]), Progress(0, 10))
    assert out.logs["centroids_ready"].item() == 0.5


def test_state_round_trip_gives_the_same_next_guess():
    cfg = MarginMixConfig(distance_temperature=0.5, centroid_weight=0.5, temperature=0.5)
    trained = MarginMix(cfg, info(2, given=(0, 1)))
    trained._guess(Passthrough(2), make_batch([0, 1]))  # both classes get a centroid
    assert list(trained.state_dict()) == ["centroids", "centroid_ready"]  # the checkpoint's keys
    restored = MarginMix(cfg, info(2, given=(0, 1)))
    restored.load_state_dict({k: v.clone() for k, v in trained.state_dict().items()})
    for key, value in trained.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    fresh = MarginMix(cfg, info(2, given=(0, 1)))
    # only class 0 is labeled next: the trained and restored guesses blend in the centroids,
    # the fresh one (no centroid for class 1 yet) does not
    following = make_batch([0, 0])
    guesses = [a._guess(Passthrough(2), following) for a in (trained, restored, fresh)]
    assert torch.equal(guesses[0], guesses[1])
    assert torch.allclose(guesses[2], sharpen(T([[0.6, 0.4]]), 0.5))
    assert not torch.allclose(guesses[0], guesses[2])


def test_to_moves_the_centroids_and_the_labeled_classes():
    # the trainer moves the algorithm to the GPU; "meta" stands in for a device other than the CPU
    algorithm = MarginMix(MarginMixConfig(), info(3)).to(torch.device("meta"))
    for key, value in algorithm.state_dict().items():
        assert value.device.type == "meta", key
    assert algorithm.labeled_classes.device.type == "meta"
