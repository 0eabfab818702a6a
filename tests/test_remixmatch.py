"""ReMixMatch: distribution alignment, rotation targets, and the p_model / p_target state."""

import copy

import torch
from batchnorm_helpers import bn_model, recorded_passes, same, statistics, statistics_after
from fakes import info

from lionfer.algorithms.base import Batch, Progress
from lionfer.algorithms.hparams import ReMixMatchConfig
from lionfer.algorithms.mixmatch import sharpen
from lionfer.algorithms.remixmatch import ReMixMatch, align_distribution, rotate_quarters
from lionfer.config_sections import ModelConfig
from lionfer.models import build_model

T = torch.tensor


def test_alignment_scales_by_target_over_model_and_renormalises():
    out = align_distribution(T([[0.6, 0.4]]), p_target=T([0.5, 0.5]), p_model=T([0.8, 0.2]))
    # 0.6·0.5/0.8 = 0.375, 0.4·0.5/0.2 = 1.0 → (0.375, 1.0) / 1.375
    assert torch.allclose(out, T([[0.375 / 1.375, 1.0 / 1.375]]), atol=1e-5)
    same = align_distribution(T([[0.5, 0.5]]), T([0.75, 0.25]), T([0.5, 0.5]))
    assert torch.allclose(same, T([[0.75, 0.25]]), atol=1e-5)


def test_rotation_turns_each_image_by_its_own_target():
    image = torch.arange(4.0).view(1, 1, 2, 2)  # [[0, 1], [2, 3]]
    x = image.repeat(4, 1, 1, 1)
    out = rotate_quarters(x, T([0, 1, 2, 3]))
    assert out[0, 0].tolist() == [[0, 1], [2, 3]]
    assert out[1, 0].tolist() == [[1, 3], [0, 2]]  # a quarter turn counter-clockwise
    assert out[2, 0].tolist() == [[3, 2], [1, 0]]
    assert out[3, 0].tolist() == [[2, 0], [3, 1]]
    head = ReMixMatch(ReMixMatchConfig(), info(3, given=(0, 1, 2))).rotation_head
    assert head.out_features == 4  # one class per quarter turn, no more


def test_a_class_without_labels_has_a_zero_target_share():
    algorithm = ReMixMatch(ReMixMatchConfig(), info(3, given=(0, 1, 1)))
    assert torch.allclose(algorithm.p_target, T([1 / 3, 2 / 3, 0.0]))


def test_guess_uses_the_stored_p_model_then_records_the_batch_mean():
    algorithm = ReMixMatch(ReMixMatchConfig(history=2), info(3, given=(0, 0, 1, 2)))
    assert torch.allclose(algorithm.p_target, T([0.5, 0.25, 0.25]))
    probs = T([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    guess = algorithm._guess(torch.log(probs))
    expected = sharpen(
        align_distribution(probs, T([0.5, 0.25, 0.25]), torch.full((3,), 1 / 3)), 0.5
    )
    assert torch.allclose(guess, expected)
    assert torch.allclose(algorithm.p_model_history[0], T([0.4, 0.4, 0.2]))
    assert torch.allclose(algorithm.p_model_history[1], torch.full((3,), 1 / 3))
    algorithm._guess(torch.log(T([[0.1, 0.1, 0.8]])))
    algorithm._guess(torch.log(T([[0.1, 0.8, 0.1]])))  # history of 2: overwrites row 0
    assert torch.allclose(algorithm.p_model_history, T([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]))
    assert algorithm.p_model_position == 3
    # p_model is the class-wise mean of the history: (0.1, 0.45, 0.45), not uniform
    guess = algorithm._guess(torch.log(probs))
    expected = sharpen(align_distribution(probs, algorithm.p_target, T([0.1, 0.45, 0.45])), 0.5)
    assert torch.allclose(guess, expected)


def test_step_is_reproducible_from_the_global_seed():
    model = build_model(ModelConfig(name="cnn_small", pretrained="", dropout=0.0), 3)
    model.eval()  # BatchNorm on running statistics: the forward itself is deterministic
    g = torch.Generator().manual_seed(0)
    views = tuple(torch.randn(2, 3, 16, 16, generator=g) for _ in range(3))
    batch = Batch.from_views(
        torch.randn(2, 3, 16, 16, generator=g),
        T([0, 1]),
        T([0, 1]),
        ReMixMatch.views,
        views,
        T([0, 1]),
    )
    losses = []
    for seed in (7, 7, 8):
        algorithm = ReMixMatch(ReMixMatchConfig(), info(3, feature_dim=model.feature_dim))
        torch.manual_seed(0)
        algorithm.rotation_head.reset_parameters()
        torch.manual_seed(seed)
        losses.append(algorithm.step(model, batch, Progress(5, 10)).loss)
    assert torch.equal(losses[0], losses[1]) and not torch.equal(losses[0], losses[2])


def test_only_the_mixed_strong_and_rotated_pass_moves_batchnorm_statistics():
    model = bn_model()
    initial = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    views = tuple(torch.randn(2, 3, 16, 16, generator=g) for _ in ReMixMatch.views)
    x_lb, y = torch.randn(2, 3, 16, 16, generator=g), T([0, 1])
    batch = Batch.from_views(x_lb, y, y, ReMixMatch.views, views, y)
    algorithm = ReMixMatch(ReMixMatchConfig(), info(3, feature_dim=model.feature_dim))
    with recorded_passes(model) as passes:
        algorithm.step(model, batch, Progress(5, 10))
    guess, rest = passes  # the weak view; the mixed pool, the first strong view, its rotation
    assert torch.equal(guess, views[0]) and len(rest) == 2 + 2 * 3 + 2 + 2
    assert same(statistics(model), statistics_after(initial, [rest]))
    assert not same(statistics(model), statistics_after(initial, [guess, rest]))
