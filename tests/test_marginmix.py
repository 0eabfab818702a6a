"""Margin-Mix (approximation): the additive margin, class centroids and the blended guess."""

import copy
import math

import torch
from batchnorm_helpers import bn_model, recorded_passes, same, statistics, statistics_after
from fakes import Passthrough, info, rows

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
