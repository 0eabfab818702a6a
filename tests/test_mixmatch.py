"""MixMatch's pieces against hand-computed values: sharpening, label guessing, MixUp, λ draws."""

import copy
import math

import pytest
import torch
from batchnorm_helpers import bn_model, recorded_passes, same, statistics, statistics_after
from fakes import info

from lionfer.algorithms.base import Batch, Progress
from lionfer.algorithms.hparams import MixMatchConfig
from lionfer.algorithms.mixmatch import (
    MixMatch,
    draw_mixup,
    guess_labels,
    mixup,
    sample_beta,
    sharpen,
)

T = torch.tensor


def test_sharpen_raises_to_one_over_t_and_renormalises():
    out = sharpen(T([[0.6, 0.4], [0.5, 0.5]]), temperature=0.5)
    # 0.6² = 0.36, 0.4² = 0.16, sum 0.52
    assert torch.allclose(out, T([[0.36 / 0.52, 0.16 / 0.52], [0.5, 0.5]]))
    assert torch.allclose(sharpen(T([[0.7, 0.2, 0.1]]), 1.0), T([[0.7, 0.2, 0.1]]))


def test_guess_averages_the_views_then_sharpens():
    views = [torch.log(T([[0.8, 0.2]])), torch.log(T([[0.4, 0.6]]))]  # mean (0.6, 0.4)
    assert torch.allclose(guess_labels(views, 0.5), T([[0.36 / 0.52, 0.16 / 0.52]]))


def test_mixup_mixes_inputs_and_targets_with_each_partner():
    x = T([[1.0], [3.0]])
    y = T([[1.0, 0.0], [0.0, 1.0]])
    mixed_x, mixed_y = mixup(x, y, lam=T([0.75, 0.6]), partner=T([1, 0]))
    assert torch.allclose(mixed_x, T([[0.75 * 1 + 0.25 * 3], [0.6 * 3 + 0.4 * 1]]))
    assert torch.allclose(mixed_y, T([[0.75, 0.25], [0.4, 0.6]]))


def test_mixup_broadcasts_lambda_over_image_dimensions():
    x = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    mixed_x, _ = mixup(x, torch.eye(2), lam=T([0.9, 0.7]), partner=T([1, 0]))
    assert torch.allclose(mixed_x[0], torch.full((3, 2, 2), 0.1))
    assert torch.allclose(mixed_x[1], torch.full((3, 2, 2), 0.7))


def test_draws_keep_each_item_closer_to_itself_and_repeat_with_the_seed():
    lam, partner = draw_mixup(64, 0.75, torch.Generator().manual_seed(3))
    again, partner_again = draw_mixup(64, 0.75, torch.Generator().manual_seed(3))
    other, _ = draw_mixup(64, 0.75, torch.Generator().manual_seed(4))
    assert (lam >= 0.5).all() and (lam <= 1.0).all()
    assert sorted(partner.tolist()) == list(range(64))
    assert torch.equal(lam, again) and torch.equal(partner, partner_again)
    assert not torch.equal(lam, other)


@pytest.mark.parametrize("alpha", [0.5, 0.75, 2.0])
def test_beta_draws_have_the_beta_mean_and_variance(alpha):
    lam = sample_beta(alpha, 20000, torch.Generator().manual_seed(0)).double()
    variance = 1.0 / (4 * (2 * alpha + 1))  # Beta(α, α): mean 1/2, variance 1/(4(2α + 1))
    assert abs(lam.mean().item() - 0.5) < 0.01
    assert math.isclose(lam.var().item(), variance, rel_tol=0.05)


def test_only_the_mixed_pass_moves_batchnorm_statistics():
    model = bn_model()
    initial = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    views = tuple(torch.randn(2, 3, 16, 16, generator=g) for _ in MixMatch.views)
    x_lb, y = torch.randn(2, 3, 16, 16, generator=g), T([0, 1])
    batch = Batch.from_views(x_lb, y, y, MixMatch.views, views, y)
    algorithm = MixMatch(MixMatchConfig(), info(3, feature_dim=model.feature_dim))
    with recorded_passes(model) as passes:
        algorithm.step(model, batch, Progress(5, 10))
    guess, mixed = passes  # the K weak views; the mixed labeled and unlabeled parts
    assert torch.equal(guess, torch.cat(views)) and len(mixed) == 2 + 2 * 2
    assert same(statistics(model), statistics_after(initial, [mixed]))
    assert not same(statistics(model), statistics_after(initial, [guess, mixed]))
