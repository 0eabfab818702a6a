"""UDA's training-signal annealing (all schedules) and masked, sharpened consistency."""

import math

import pytest
import torch

from lionfer.algorithms.uda import annealed_cross_entropy, consistency_loss, tsa_threshold

T = torch.tensor


@pytest.mark.parametrize(
    "schedule, fraction, expected",
    [
        # η = a(1 − 1/C) + 1/C with C = 4
        ("linear", 0.0, 0.25),
        ("linear", 0.5, 0.5 * 0.75 + 0.25),
        ("linear", 1.0, 1.0),
        ("exp", 0.0, math.exp(-5) * 0.75 + 0.25),
        ("exp", 0.5, math.exp(-2.5) * 0.75 + 0.25),
        ("exp", 1.0, 1.0),
        ("log", 0.0, 0.25),
        ("log", 0.5, (1 - math.exp(-2.5)) * 0.75 + 0.25),
        ("log", 1.0, (1 - math.exp(-5)) * 0.75 + 0.25),
        ("none", 0.0, 1.0),
    ],
)
def test_tsa_threshold_schedules(schedule, fraction, expected):
    assert math.isclose(tsa_threshold(schedule, fraction, 4), expected, rel_tol=1e-12)


def test_tsa_rejects_an_unknown_schedule():
    with pytest.raises(ValueError, match="linear, exp or log"):
        tsa_threshold("cosine", 0.5, 4)


def test_annealing_drops_images_whose_correct_class_is_already_confident():
    logits = torch.log(T([[0.9, 0.1], [0.3, 0.7]]))
    labels = T([0, 0])
    loss, kept = annealed_cross_entropy(logits, labels, threshold=0.5)
    assert kept.tolist() == [False, True]
    assert math.isclose(loss.item(), -math.log(0.3), rel_tol=1e-6)  # divided by the 1 kept
    loss_all, kept_all = annealed_cross_entropy(logits, labels, threshold=1.0)
    assert kept_all.all()
    assert math.isclose(loss_all.item(), -(math.log(0.9) + math.log(0.3)) / 2, rel_tol=1e-6)
    nothing, _ = annealed_cross_entropy(logits, labels, threshold=0.1)
    assert nothing.item() == 0.0


def test_consistency_is_masked_kl_to_the_sharpened_weak_view():
    logits_w = T([[2.0, 0.0], [0.0, 0.0]])  # max p = 0.881 > β; 0.5 is not
    logits_s = T([[0.0, 0.0], [1.0, -1.0]])
    loss, mask = consistency_loss(logits_w, logits_s, threshold=0.8, temperature=0.5)
    assert mask.tolist() == [True, False]
    q = [math.exp(4) / (math.exp(4) + 1), 1 / (math.exp(4) + 1)]  # softmax(z_w / 0.5)
    kl = sum(qc * math.log(qc / 0.5) for qc in q)
    assert math.isclose(loss.item(), kl / 2, rel_tol=1e-5)  # averaged over the whole batch
