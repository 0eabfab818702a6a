"""LION's equations against hand-computed numbers on tiny tensors, and its step end to end."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lionfer.algorithms.base import AlgorithmInfo, Batch, Progress
from lionfer.algorithms.lion import (
    Lion,
    LionConfig,
    candidate_set,
    grow_complementary,
    negative_consistency_loss,
    negative_learning_loss,
    relabel_decision,
    split_clear,
    update_prototypes,
    update_weights,
)
from lionfer.models import Output

T = torch.tensor


class Passthrough(nn.Module):
    """A 'model' whose input rows are [logits (C) | features (D)], so every probability in a
    step is chosen by the test. The scale parameter gives the loss a graph."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        c = self.num_classes
        return Output(x[:, :c] * self.scale, F.normalize(x[:, c:], dim=1))


def rows(probs, features):
    """Inputs for Passthrough: logits = log(probs) so softmax returns probs exactly."""
    return torch.cat([torch.log(T(probs)), T(features)], dim=1)


def make_batch(probs_lb, feats_lb, labels, idx_lb, probs_w, probs_s, feats_ulb, idx_ulb):
    """A step's Batch whose probabilities and features are all chosen by the test."""
    return Batch(
        rows(probs_lb, feats_lb),
        T(labels),
        T(idx_lb),
        rows(probs_w, feats_ulb),
        rows(probs_s, feats_ulb),
        T(idx_ulb),
    )


def make_lion(given, num_unlabeled=4, num_classes=3, dim=2, **overrides):
    cfg = LionConfig(**{"disambiguation_start": 0.0, **overrides})
    info = AlgorithmInfo(num_classes, len(given), num_unlabeled, dim, T(given))
    return Lion(cfg, info)


# ---- Eq. 1 ----


def test_eq1_clear_needs_confidence_and_agreement():
    probs = T([[0.85, 0.10, 0.05], [0.50, 0.40, 0.10], [0.10, 0.05, 0.85], [0.80, 0.15, 0.05]])
    clear = split_clear(probs, T([0, 0, 1, 0]), tau=0.8)
    assert clear.tolist() == [True, False, False, True]  # 0.80 ≥ τ counts as clear


# ---- Eq. 3 ----


def test_eq3_first_update_sets_then_normalised_ema_in_batch_order():
    prototypes, ready = torch.zeros(3, 2), torch.zeros(3, dtype=torch.bool)
    update_prototypes(
        prototypes, ready, T([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]), T([0, 0, 2]), phi=0.5
    )
    s = 1 / math.sqrt(2)
    assert torch.allclose(prototypes[0], T([s, s]))  # normalise(0.5·[1,0] + 0.5·[0,1])
    assert torch.allclose(prototypes[2], T([0.6, 0.8]))
    assert prototypes[1].abs().sum() == 0 and ready.tolist() == [True, False, True]
    update_prototypes(prototypes, ready, T([[1.0, 0.0]]), T([0]), phi=0.99)
    expected = F.normalize(0.99 * T([s, s]) + 0.01 * T([1.0, 0.0]), dim=0)
    assert torch.allclose(prototypes[0], expected)


# ---- Eq. 4 ----


def test_eq4_candidates_argmax_plus_classes_above_mu():
    probs = T([[0.50, 0.35, 0.15], [0.25, 0.25, 0.50], [0.10, 0.30, 0.60]])
    assert candidate_set(probs, mu=0.3).tolist() == [
        [True, True, False],
        [False, False, True],
        [False, True, True],
    ]
    assert candidate_set(T([[0.4, 0.35, 0.25]]), mu=0.9).tolist() == [[True, False, False]]


# ---- Eq. 5 ----


def test_eq5_weights_move_toward_cosine_and_missing_prototype_gives_zero():
    weights = T([[0.50, 0.35, 0.0]])
    candidates = T([[True, True, False]])
    prototypes = T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    ready = T([True, False, True])
    out = update_weights(weights, candidates, T([[2.0, 0.0]]), prototypes, ready, phi=0.9)
    # class 0: 0.9·0.5 + 0.1·cos=1; class 1: no prototype → 0.9·0.35; class 2 not a candidate
    assert torch.allclose(out, T([[0.55, 0.315, 0.0]]))


# ---- Eq. 6 ----


def test_eq6_relabel_picks_best_candidate_only():
    weights = T([[0.55, 0.315, 0.0], [0.10, 0.85, 0.90]])
    candidates = T([[True, True, False], [True, True, False]])
    best, label = relabel_decision(weights, candidates)
    assert torch.allclose(best, T([0.55, 0.85])) and label.tolist() == [0, 1]


# ---- Eq. 9, the progressive loop ----


def test_eq9_adds_several_classes_in_one_step():
    bank = torch.zeros(1, 4, dtype=torch.bool)
    out = grow_complementary(bank, T([[0.01, 0.02, 0.07, 0.90]]), delta=0.05)
    # round 1: 0.01 ≤ δ; round 2: 0.02/0.99 = 0.0202 ≤ δ; round 3: 0.07/0.97 = 0.072 > δ
    assert out.tolist() == [[True, True, False, False]]


def test_eq9_renormalises_over_remaining_classes():
    bank = torch.zeros(1, 3, dtype=torch.bool)
    out = grow_complementary(bank, T([[0.04, 0.049, 0.911]]), delta=0.05)
    # raw 0.049 ≤ δ, but renormalised 0.049/0.96 = 0.051 > δ: only class 0 joins
    assert out.tolist() == [[True, False, False]]


def test_eq9_never_every_class():
    bank = torch.zeros(1, 3, dtype=torch.bool)
    out = grow_complementary(bank, T([[0.001, 0.001, 0.998]]), delta=0.99)
    assert out.sum().item() == 2 and not out[0, 2]


def test_eq9_bank_persists_and_excludes_known_classes():
    bank = T([[False, False, True, False]])
    out = grow_complementary(bank, T([[0.30, 0.30, 0.01, 0.39]]), delta=0.05)
    assert out.tolist() == [[False, False, True, False]]  # 0.30/0.99 > δ, class 2 stays
    assert bank.tolist() == [[False, False, True, False]]  # input not modified


def test_eq9_vectorised_rows_are_independent():
    bank = torch.zeros(2, 3, dtype=torch.bool)
    probs = T([[0.01, 0.02, 0.97], [0.40, 0.30, 0.30]])
    assert grow_complementary(bank, probs, 0.05).tolist() == [
        [True, True, False],
        [False, False, False],
    ]


# ---- Eqs. 10, 11 ----


def test_eq10_negative_learning_loss():
    bank = T([[True, False, True], [False, True, False]])
    probs = T([[0.1, 0.6, 0.3], [0.2, 0.5, 0.3]])
    expected = (-(0.9 + 0.7) + -(0.5)) / 2
    assert negative_learning_loss(bank, probs).item() == pytest.approx(expected)


def test_eq11_negative_consistency_loss():
    bank = T([[True, False, True]])
    probs = T([[0.1, 0.6, 0.3]])
    expected = -(math.log(0.9) + math.log(0.7))
    assert negative_consistency_loss(bank, probs).item() == pytest.approx(expected, rel=1e-6)


# ---- Eq. 12 and the step ----


def unlabeled_batch():
    # sample 0 reliable (0.9 ≥ γ); sample 1 unreliable with one tiny class
    probs_w = [[0.90, 0.06, 0.04], [0.40, 0.58, 0.02]]
    probs_s = [[0.70, 0.20, 0.10], [0.30, 0.50, 0.20]]
    feats = [[1.0, 0.0], [0.0, 1.0]]
    return probs_w, probs_s, feats


def test_step_total_loss_matches_eq12_by_hand():
    lion = make_lion([0, 1])
    probs_lb = [[0.90, 0.05, 0.05], [0.50, 0.30, 0.20]]  # clear, ambiguous
    probs_w, probs_s, feats = unlabeled_batch()
    batch = make_batch(
        probs_lb, [[1.0, 0.0], [0.0, 1.0]], [0, 1], [0, 1], probs_w, probs_s, feats, [3, 1]
    )
    out = lion.step(Passthrough(3), batch, Progress(5, 10))
    loss_s = -math.log(0.90)  # only the clear sample
    loss_re = -math.log(0.70)  # reliable sample 0: pseudo-label 0, strong p = 0.7
    # unreliable sample 1: class 2 (0.02) joins the bank; 0.40/0.98 > δ stops the loop
    loss_nl = -(1 - 0.02)
    loss_nc = -math.log(1 - 0.20)
    expected = loss_s + 0.85 * loss_re + 0.45 * loss_nl + 0.06 * loss_nc
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert lion.bank[1].tolist() == [False, False, True]
    assert not lion.bank[[0, 2, 3]].any()  # per-sample indexing: only dataset index 1
    assert out.mask.tolist() == [True, False] and out.pseudo_labels[0] == 0
    out.loss.backward()  # a graph exists


def test_all_switches_off_is_supervised_plus_fixmatch_gamma():
    lion = make_lion(
        [0, 1],
        use_disambiguation=False,
        use_negative_learning=False,
        use_negative_consistency=False,
    )
    probs_lb = [[0.90, 0.05, 0.05], [0.50, 0.30, 0.20]]
    probs_w, probs_s, feats = unlabeled_batch()
    batch = make_batch(probs_lb, feats, [0, 1], [0, 1], probs_w, probs_s, feats, [0, 1])
    out = lion.step(Passthrough(3), batch, Progress(9, 10))
    logits_lb, logits_s = torch.log(T(probs_lb)), torch.log(T(probs_s))
    supervised = F.cross_entropy(logits_lb, T([0, 1]))  # all labeled samples
    reliable = T(probs_w).max(dim=1).values >= 0.83
    fixmatch = F.cross_entropy(logits_s[reliable], T(probs_w).argmax(dim=1)[reliable])
    assert out.loss.item() == pytest.approx((supervised + 0.85 * fixmatch).item(), rel=1e-6)
    assert not lion.bank.any()


def test_warmup_trains_every_labeled_sample_and_leaves_labels_alone():
    lion = make_lion(
        [0, 1],
        disambiguation_start=0.5,
        use_negative_learning=False,
        use_negative_consistency=False,
    )
    probs_lb = [[0.90, 0.05, 0.05], [0.95, 0.03, 0.02]]  # sample 1 disagrees with confidence
    probs_w, probs_s, feats = unlabeled_batch()
    batch = make_batch(probs_lb, feats, [0, 1], [0, 1], probs_w, probs_s, feats, [0, 1])
    lion.step(Passthrough(3), batch, Progress(4, 10))  # 40% < 50%: warm-up
    assert lion.label.tolist() == [0, 1] and not lion.ambiguous.any()
    lion.step(Passthrough(3), batch, Progress(5, 10))  # disambiguation from here on
    assert lion.label.tolist() == [0, 0]  # w = 0.99·p + 0.01·cos ≥ τ: relabeled to class 0
    assert lion.relabel_step.tolist() == [-1, 5]
    assert not lion.ambiguous.any()  # relabeled samples become clear


def one_ambiguous_sample_lion(**overrides):
    """One labeled sample (label 1), fixed prototypes S = [1,0], [0,1], [-1,0], φ = 0.5."""
    lion = make_lion(
        [1],
        num_unlabeled=1,
        ema_momentum=0.5,
        use_negative_learning=False,
        use_negative_consistency=False,
        **overrides,
    )
    lion.prototypes[:] = T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    lion.prototype_ready[:] = True
    return lion


def test_ambiguous_sample_keeps_candidates_across_visits_and_relabels_via_prototypes():
    lion = one_ambiguous_sample_lion()
    probs_w, probs_s = [[0.5, 0.3, 0.2]], [[0.5, 0.3, 0.2]]  # unreliable, no bank use
    first = make_batch(
        [[0.45, 0.40, 0.15]], [[1.0, 0.0]], [1], [0], probs_w, probs_s, [[0.0, 1.0]], [0]
    )
    lion.step(Passthrough(3), first, Progress(0, 10))
    # candidates {0, 1}; w = 0.5·[0.45, 0.40] + 0.5·[cos 1, cos 0] = [0.725, 0.2]
    assert lion.ambiguous.tolist() == [True]
    assert lion.candidates[0].tolist() == [True, True, False]
    assert torch.allclose(lion.weights[0], T([0.725, 0.2, 0.0]))
    # second visit with different probabilities: candidates are not re-initialised
    second = make_batch(
        [[0.2, 0.3, 0.5]], [[1.0, 0.0]], [1], [0], probs_w, probs_s, [[0.0, 1.0]], [0]
    )
    lion.step(Passthrough(3), second, Progress(1, 10))
    # w0 = 0.5·0.725 + 0.5·1 = 0.8625 ≥ τ → relabeled to class 0 at step 1
    assert lion.label.tolist() == [0] and lion.relabel_step.tolist() == [1]
    assert lion.relabel_weight[0].item() == pytest.approx(0.8625)
    assert not lion.ambiguous.any() and not lion.candidates.any()


def test_state_dict_round_trip():
    lion = make_lion([0, 1])
    lion.bank[2, 1] = True
    lion.label[1] = 2
    other = make_lion([0, 1])
    other.load_state_dict({k: v.clone() for k, v in lion.state_dict().items()})
    for key, value in lion.state_dict().items():
        assert torch.equal(getattr(other, key), value), key
    with pytest.raises(ValueError, match="expected"):
        other.load_state_dict({"label": lion.label})


def test_optional_candidate_loss_trains_ambiguous_samples_toward_their_weights():
    probs_w, probs_s = [[0.5, 0.3, 0.2]], [[0.5, 0.3, 0.2]]
    batch = make_batch(
        [[0.45, 0.40, 0.15]], [[1.0, 0.0]], [1], [0], probs_w, probs_s, [[0.0, 1.0]], [0]
    )
    losses = {}
    for mode in ("none", "candidates"):
        lion = one_ambiguous_sample_lion(ambiguous_loss=mode)
        losses[mode] = lion.step(Passthrough(3), batch, Progress(0, 10)).loss.item()
    assert losses["none"] == 0.0  # the paper: no loss for an ambiguous sample
    target = T([0.725, 0.2]) / 0.925  # its candidate weights after Eq. 5, normalised
    expected = -(target * torch.log(T([0.45, 0.40]))).sum().item()
    assert losses["candidates"] == pytest.approx(expected, rel=1e-5)


def test_warns_when_disambiguation_starts_with_few_clear_images():
    lion = make_lion(
        [0, 1],
        disambiguation_start=0.5,
        use_negative_learning=False,
        use_negative_consistency=False,
    )
    probs_w, probs_s, feats = unlabeled_batch()
    unsure = make_batch(
        [[0.5, 0.3, 0.2], [0.3, 0.5, 0.2]], feats, [0, 1], [0, 1], probs_w, probs_s, feats, [0, 1]
    )
    lion.step(Passthrough(3), unsure, Progress(0, 10))
    with pytest.warns(UserWarning, match="only 0% of labeled"):
        lion.step(Passthrough(3), unsure, Progress(5, 10))
    summary = lion.summary()
    assert summary["clear_rate_at_disambiguation"] == 0.0 and "warnings" in summary
