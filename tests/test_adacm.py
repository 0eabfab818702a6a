"""Ada-CM: adaptive per-class margins, the NT-Xent term, the per-class mask and the epoch hook."""

import math

import torch
import torch.nn.functional as F
from fakes import Passthrough, info, rows

from lionfer.algorithms.adacm import AdaCM, adaptive_thresholds, nt_xent
from lionfer.algorithms.base import Batch, Progress
from lionfer.algorithms.hparams import AdaCMConfig

T = torch.tensor


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_margins_from_correct_labeled_predictions_with_floor():
    probs = T(
        [
            [0.99, 0.005, 0.005],  # class 0, correct
            [0.97, 0.02, 0.01],  # class 0, correct
            [0.60, 0.30, 0.10],  # class 1, wrong: ignored
            [0.05, 0.05, 0.90],  # class 2, correct
            [0.20, 0.10, 0.70],  # class 0, wrong: ignored
        ]
    )
    labels = T([0, 0, 1, 2, 0])
    out = adaptive_thresholds(probs, labels, T(5), beta=0.97, floor=0.8)
    expected = [0.97 * 0.98 * sigmoid(5), 0.8, 0.97 * 0.90 * sigmoid(5)]
    assert torch.allclose(out, T(expected))
    early = adaptive_thresholds(probs, labels, T(1), beta=0.97, floor=0.8)
    assert torch.allclose(early, T([0.8, 0.8, 0.8]))  # 0.97 · 0.98 · 0.731 < 0.8


def test_nt_xent_by_hand():
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    loss = nt_xent(T([e1, e2]), T([e1, e2]), T([True, True]), temperature=1.0)
    # each anchor: positive at cos 1, the two other views at cos 0
    assert math.isclose(loss.item(), math.log(1 + 2 / math.e), rel_tol=1e-6)
    single = nt_xent(T([e1, e2]), T([e1, e2]), T([True, False]), temperature=1.0)
    assert single.item() == 0.0  # one image: its positive is the whole denominator
    assert nt_xent(T([e1, e2]), T([e1, e2]), T([False, False]), 1.0).item() == 0.0


def reference_nt_xent(f1, f2, temperature):
    """SimCLR's loss written as loops over the 2n anchors."""
    views = torch.cat([f1, f2])
    n, total = len(f1), 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        denominator = sum(math.exp(views[i].dot(views[k]).item() / temperature) for k in others)
        total += -math.log(math.exp(views[i].dot(views[j]).item() / temperature) / denominator)
    return total / (2 * n)


def test_nt_xent_keeps_only_the_low_confidence_images():
    g = torch.Generator().manual_seed(0)
    f1 = F.normalize(torch.randn(5, 4, generator=g), dim=1)
    f2 = F.normalize(torch.randn(5, 4, generator=g), dim=1)
    keep = T([True, False, True, True, False])
    loss = nt_xent(f1, f2, keep, temperature=0.5)
    assert math.isclose(loss.item(), reference_nt_xent(f1[keep], f2[keep], 0.5), rel_tol=1e-5)


def test_nt_xent_gradient_is_finite_when_images_are_left_out():
    f1 = F.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    f2 = F.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    nt_xent(f1, f2, T([True, False, True, False]), 0.07).backward()
    assert torch.isfinite(f1.grad).all() and torch.isfinite(f2.grad).all()
    assert f1.grad[1].abs().sum() == 0  # a confident image is not in the term


def test_mask_uses_the_margin_of_the_averaged_weak_prediction():
    algorithm = AdaCM(AdaCMConfig(), info(3))
    algorithm.thresholds = T([0.9, 0.6, 0.8])
    w1 = [[0.8, 0.1, 0.1], [0.1, 0.6, 0.3], [0.1, 0.1, 0.8]]
    w2 = [[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.3, 0.1, 0.6]]  # means: 0.7 (c0), 0.7 (c1), 0.7 (c2)
    batch = Batch.from_views(
        rows([[0.7, 0.2, 0.1]]),
        T([0]),
        T([0]),
        AdaCM.views,
        (rows(w1), rows(w2), rows(w1)),
        T([0, 1, 2]),
    )
    out = algorithm.step(Passthrough(3), batch, Progress(0, 10))
    assert out.pseudo_labels.tolist() == [0, 1, 2]
    assert out.mask.tolist() == [False, True, False]  # only class 1's margin (0.6) is met


def test_epoch_hook_counts_epochs_and_sets_the_margins():
    algorithm = AdaCM(AdaCMConfig(epoch_steps=5), info(2, given=(0, 1)))
    assert algorithm.period() == 5 and torch.equal(algorithm.thresholds, T([0.8, 0.8]))
    probs, labels = T([[0.99, 0.01], [0.02, 0.98]]), T([0, 1])
    for _ in range(3):
        algorithm.on_period(lambda: (probs, labels))
    assert algorithm.epoch == 3
    expected = [0.97 * 0.99 * sigmoid(3), 0.97 * 0.98 * sigmoid(3)]
    assert torch.allclose(algorithm.thresholds, T(expected))
