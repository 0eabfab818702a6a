"""LION's equations against hand-computed numbers on tiny tensors, and its step end to end."""

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fakes import Passthrough

from lionfer.algorithms.base import AlgorithmInfo, Batch, Probe, Progress
from lionfer.algorithms.hparams import LION_RECIPES, LionConfig, lion_config
from lionfer.algorithms.lion import (
    Lion,
    candidate_set,
    class_similarity,
    disputed_by_margin,
    first_occurrence,
    grow_complementary,
    initial_weights,
    negative_consistency_loss,
    negative_learning_loss,
    protected_mask,
    relabel_decision,
    split_clear,
    update_prototypes,
    update_weights,
)
from lionfer.algorithms.lion_equations import (
    candidate_loss,
    negative_weights,
    prediction_given_candidates,
    start_when_fitted,
    unbacked_by_classifier,
)
from lionfer.errors import ConfigError

T = torch.tensor


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


def make_lion(given, num_unlabeled=4, num_classes=3, dim=2, recipe="paper", names=(), **fields):
    start = {} if recipe == "evidence" else {"disambiguation_start": 0.0}  # the prototypes' rule's
    cfg = lion_config(recipe, **{**start, **fields})
    info = AlgorithmInfo(num_classes, len(given), num_unlabeled, dim, T(given), tuple(names))
    return Lion(cfg, info)


def quiet(**fields):
    """No negative learning: the step's loss is the labeled part plus L_Re."""
    return {"use_negative_learning": False, "use_negative_consistency": False, **fields}


UNRELIABLE = ([[0.5, 0.3, 0.2]], [[0.5, 0.3, 0.2]], [[0.0, 1.0]])  # probs_w, probs_s, feats


def labeled_batch(probs_lb, labels, idx, feats=None, unlabeled=UNRELIABLE):
    feats = feats or [[1.0, 0.0]] * len(probs_lb)
    probs_w, probs_s, feats_ulb = unlabeled
    return make_batch(probs_lb, feats, labels, idx, probs_w, probs_s, feats_ulb, [0])


# ---- Eq. 1 and the margin rule ----


def test_eq1_clear_needs_confidence_and_agreement():
    probs = T([[0.85, 0.10, 0.05], [0.50, 0.40, 0.10], [0.10, 0.05, 0.85], [0.80, 0.15, 0.05]])
    clear = split_clear(probs, T([0, 0, 1, 0]), tau=0.8)
    assert clear.tolist() == [True, False, False, True]  # 0.80 ≥ τ counts as clear


def test_margin_rule_disputes_only_a_clear_preference_for_another_class():
    probs = T([[0.70, 0.20, 0.10], [0.40, 0.35, 0.25], [0.10, 0.80, 0.10]])
    # gaps max p − p_label: 0.5, 0.05, 0.0
    assert disputed_by_margin(probs, T([1, 1, 1]), 0.3).tolist() == [True, False, False]
    assert disputed_by_margin(probs, T([1, 1, 1]), 0.5).tolist() == [False, False, False]


# ---- Eq. 3 ----


def sequential_prototypes(prototypes, ready, features, classes, selected, phi):
    """The per-sample loop of Eq. 3, the reference for the vectorised version."""
    prototypes, ready = prototypes.clone(), ready.clone()
    for q, c, s in zip(features, classes.tolist(), selected.tolist(), strict=True):
        if not s:
            continue
        if ready[c]:
            prototypes[c] = F.normalize(phi * prototypes[c] + (1 - phi) * q, dim=0)
        else:
            prototypes[c], ready[c] = q, True
    return prototypes, ready


def test_eq3_first_update_sets_then_normalised_ema_in_batch_order():
    prototypes, ready = torch.zeros(3, 2), torch.zeros(3, dtype=torch.bool)
    features = T([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.0, 1.0]])
    selected = T([True, True, True, False])
    prototypes, ready = update_prototypes(
        prototypes, ready, features, T([0, 0, 2, 1]), selected, phi=0.5
    )
    s = 1 / math.sqrt(2)
    assert torch.allclose(prototypes[0], T([s, s]))  # normalise(0.5·[1,0] + 0.5·[0,1])
    assert torch.allclose(prototypes[2], T([0.6, 0.8]))
    assert prototypes[1].abs().sum() == 0 and ready.tolist() == [True, False, True]
    prototypes, ready = update_prototypes(
        prototypes, ready, T([[1.0, 0.0]]), T([0]), T([True]), phi=0.99
    )
    expected = F.normalize(0.99 * T([s, s]) + 0.01 * T([1.0, 0.0]), dim=0)
    assert torch.allclose(prototypes[0], expected)


def test_eq3_vectorised_equals_the_per_sample_loop():
    generator = torch.Generator().manual_seed(0)
    for trial in range(5):
        c, d, b = 4, 6, 24
        prototypes = F.normalize(torch.randn(c, d, generator=generator), dim=1)
        ready = torch.rand(c, generator=generator) < 0.5
        features = F.normalize(torch.randn(b, d, generator=generator), dim=1)
        classes = torch.randint(0, c, (b,), generator=generator)
        selected = torch.rand(b, generator=generator) < 0.7
        phi = (0.5, 0.9, 0.99, 0.3, 0.7)[trial]
        got = update_prototypes(prototypes, ready, features, classes, selected, phi)
        want = sequential_prototypes(prototypes, ready, features, classes, selected, phi)
        assert torch.equal(got[1], want[1])
        assert torch.allclose(got[0], want[0], atol=1e-6)


def test_eq3_first_update_keeps_the_feature_and_leaves_other_classes_alone():
    # features as the backbone gives them, not unit length: a class's first update takes q as it
    # is (no normalising, as the per-sample loop), and a ready class with no row this batch keeps
    # its prototype unchanged
    prototypes = T([[0.0, 0.0], [0.0, 2.0]])
    ready = T([False, True])
    prototypes, ready = update_prototypes(
        prototypes, ready, T([[3.0, 4.0]]), T([0]), T([True]), phi=0.5
    )
    assert prototypes.tolist() == [[3.0, 4.0], [0.0, 2.0]] and ready.tolist() == [True, True]


# ---- Eq. 4 and the initial weights ----


def test_eq4_candidates_argmax_plus_classes_above_mu():
    probs = T([[0.50, 0.35, 0.15], [0.25, 0.25, 0.50], [0.10, 0.30, 0.60]])
    assert candidate_set(probs, mu=0.3).tolist() == [
        [True, True, False],
        [False, False, True],
        [False, True, True],
    ]
    assert candidate_set(T([[0.4, 0.35, 0.25]]), mu=0.9).tolist() == [[True, False, False]]


def test_candidates_with_the_given_label():
    probs = T([[0.50, 0.35, 0.15]])
    assert candidate_set(probs, 0.3, T([2])).tolist() == [[True, True, True]]
    assert candidate_set(probs, 2.0, T([2])).tolist() == [[True, False, True]]  # {argmax, given}


def test_initial_weights_rules():
    probs, candidates = T([[0.6, 0.3, 0.1]]), T([[True, False, True]])
    assert torch.allclose(initial_weights(probs, candidates, "probs"), T([[0.6, 0.0, 0.1]]))
    normalised = initial_weights(probs, candidates, "normalised")
    assert torch.allclose(normalised, T([[0.6 / 0.7, 0.0, 0.1 / 0.7]]))
    assert torch.allclose(initial_weights(probs, candidates, "uniform"), T([[0.5, 0.0, 0.5]]))


# ---- Eq. 5 ----


def test_eq5_weights_move_toward_cosine_and_missing_prototype_gives_zero():
    weights = T([[0.50, 0.35, 0.0]])
    candidates = T([[True, True, False]])
    prototypes = T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    ready = T([True, False, True])
    similarity = class_similarity(T([[2.0, 0.0]]), prototypes, ready, candidates, "cosine", 0.1)
    assert torch.allclose(similarity, T([[1.0, 0.0, -1.0]]))
    out = update_weights(weights, candidates, similarity, phi=0.9)
    # class 0: 0.9·0.5 + 0.1·cos=1; class 1: no prototype → 0.9·0.35; class 2 not a candidate
    assert torch.allclose(out, T([[0.55, 0.315, 0.0]]))


def test_softmax_similarity_over_candidates_at_temperature():
    prototypes = T([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    ready = T([True, True, True])
    q = T([[0.6, 0.8]])
    candidates = T([[True, True, False]])
    # cos = 0.6 and 0.8; softmax([6, 8]) over the two candidates
    out = class_similarity(q, prototypes, ready, candidates, "softmax", 0.1)
    e = math.exp(2.0)
    assert torch.allclose(out, T([[1 / (1 + e), e / (1 + e), 0.0]]), atol=1e-6)
    everything = class_similarity(q, prototypes, ready, None, "softmax", 1.0)
    logits = T([0.6, 0.8, 1.0])
    assert torch.allclose(everything[0], logits.softmax(dim=0), atol=1e-6)


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


def sequential_complementary(bank_rows, probs, delta):
    """Eq. 9 one sample and one round at a time, the reference for the vectorised version."""
    rows = bank_rows.clone()
    for row, p in zip(rows, probs, strict=True):
        while True:
            remaining = [c for c in range(len(p)) if not row[c]]
            if len(remaining) <= 1:
                break
            mass = sum(float(p[c]) for c in remaining)
            smallest = min(remaining, key=lambda c: (float(p[c]), c))
            if float(p[smallest]) / mass > delta:
                break
            row[smallest] = True
    return rows


def test_eq9_tied_probabilities_join_the_lower_class_first():
    # 20 classes (torch sorts more than 16 values unstably unless asked): 19 tie at 0.01, and
    # bank_keep = 10 lets 10 of them join, the lowest-numbered ones
    bank = torch.zeros(1, 20, dtype=torch.bool)
    probs = T([[0.01] * 19 + [0.81]])
    out = grow_complementary(bank, probs, delta=0.05, keep=10)
    assert out[0].nonzero().flatten().tolist() == list(range(10))


def test_eq9_vectorised_equals_the_round_by_round_loop():
    generator = torch.Generator().manual_seed(0)
    for delta in (0.05, 0.2, 0.5):
        logits = 3 * torch.randn(64, 7, generator=generator)
        probs = logits.softmax(dim=1)
        probs[:4] = T([0.03, 0.03, 0.03, 0.03, 0.18, 0.2, 0.5])  # ties: the lower class first
        bank = torch.rand(64, 7, generator=generator) < 0.3
        got = grow_complementary(bank, probs, delta)
        assert torch.equal(got, sequential_complementary(bank, probs, delta)), delta


# ---- Eqs. 10, 11 ----


def test_eq10_negative_learning_loss():
    bank = T([[True, False, True], [False, True, False]])
    probs = T([[0.1, 0.6, 0.3], [0.2, 0.5, 0.3]])
    expected = (-(0.9 + 0.7) + -(0.5)) / 2
    assert negative_learning_loss(bank, probs).item() == pytest.approx(expected)
    only_first = negative_learning_loss(bank, probs, T([True, False]))
    assert only_first.item() == pytest.approx(-(0.9 + 0.7))


def test_eq11_negative_consistency_loss():
    bank = T([[True, False, True]])
    probs = T([[0.1, 0.6, 0.3]])
    expected = -(math.log(0.9) + math.log(0.7))
    assert negative_consistency_loss(bank, probs).item() == pytest.approx(expected, rel=1e-6)
    assert negative_consistency_loss(bank, probs, T([False])).item() == 0.0


def test_first_occurrence_points_every_row_at_its_index_first_row():
    assert first_occurrence(T([3, 1, 3, 0, 1]), 5).tolist() == [0, 1, 0, 3, 1]


# ---- Eq. 12 and the step ----


def unlabeled_batch():
    # sample 0 reliable (0.9 ≥ γ); sample 1 unreliable with one tiny class
    probs_w = [[0.90, 0.06, 0.04], [0.40, 0.58, 0.02]]
    probs_s = [[0.70, 0.20, 0.10], [0.30, 0.50, 0.20]]
    feats = [[1.0, 0.0], [0.0, 1.0]]
    return probs_w, probs_s, feats


def clear_and_ambiguous_batch():
    """Labeled: one clear row (class 0), one ambiguous; unlabeled: unlabeled_batch() at dataset
    indices 3 and 1."""
    probs_lb = [[0.90, 0.05, 0.05], [0.50, 0.30, 0.20]]
    probs_w, probs_s, feats = unlabeled_batch()
    return make_batch(
        probs_lb, [[1.0, 0.0], [0.0, 1.0]], [0, 1], [0, 1], probs_w, probs_s, feats, [3, 1]
    )


def test_step_total_loss_matches_eq12_by_hand():
    lion, batch = make_lion([0, 1]), clear_and_ambiguous_batch()
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


def test_step_updates_prototypes_from_clear_labeled_then_reliable_unlabeled():
    lion = make_lion([0, 1], ema_momentum=0.5, **quiet())
    probs_lb = [[0.90, 0.05, 0.05], [0.50, 0.30, 0.20]]  # clear (class 0), ambiguous
    probs_w = [[0.90, 0.06, 0.04], [0.40, 0.58, 0.02]]  # reliable → class 0, unreliable
    batch = make_batch(
        probs_lb,
        [[1.0, 0.0], [0.0, 1.0]],
        [0, 1],
        [0, 1],
        probs_w,
        probs_w,
        [[0.0, 1.0], [1.0, 0.0]],
        [0, 1],
    )
    lion.step(Passthrough(3), batch, Progress(5, 10))
    s = 1 / math.sqrt(2)
    # class 0: set to [1, 0] by the clear labeled row, then normalise(0.5·[1,0] + 0.5·[0,1])
    assert torch.allclose(lion.prototypes[0], T([s, s]))
    assert lion.prototype_ready.tolist() == [True, False, False]


def test_negative_learning_gradients_reach_the_model():
    for switch in ("use_negative_learning", "use_negative_consistency"):
        fields = quiet(**{switch: True}, lambda_reliable=0.0, use_disambiguation=False)
        lion = make_lion([0], **fields)
        lion.bank[0] = T([True, False, True])
        batch = labeled_batch([[1 / 3, 1 / 3, 1 / 3]], [0], [0])  # uniform: L_S has no gradient
        model = Passthrough(3)
        lion.step(model, batch, Progress(5, 10)).loss.backward()
        assert abs(model.scale.grad.item()) > 1e-4, switch


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
    lion = make_lion([0, 1], disambiguation_start=0.5, **quiet(lambda_reliable=0.0))
    probs_lb = [[0.90, 0.05, 0.05], [0.95, 0.03, 0.02]]  # sample 1 disagrees with confidence
    probs_w, probs_s, feats = unlabeled_batch()
    batch = make_batch(probs_lb, feats, [0, 1], [0, 1], probs_w, probs_s, feats, [0, 1])
    out = lion.step(Passthrough(3), batch, Progress(4, 10))  # 40% < 50%: warm-up
    assert out.loss.item() == pytest.approx(-(math.log(0.90) + math.log(0.03)) / 2, rel=1e-6)
    assert lion.label.tolist() == [0, 1] and not lion.ambiguous.any()
    assert lion.start_step.item() == -1
    lion.step(Passthrough(3), batch, Progress(5, 10))  # disambiguation from here on
    assert lion.label.tolist() == [0, 0]  # w = 0.99·p + 0.01·cos ≥ τ: relabeled to class 0
    assert lion.relabel_step.tolist() == [-1, 5] and lion.start_step.item() == 5
    assert not lion.ambiguous.any()  # relabeled samples become clear


def one_ambiguous_sample_lion(recipe="paper", **fields):
    """One labeled sample (label 1), fixed prototypes S = [1,0], [0,1], [-1,0], φ = 0.5."""
    lion = make_lion([1], num_unlabeled=1, recipe=recipe, **quiet(ema_momentum=0.5, **fields))
    lion.prototypes[:] = T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    lion.prototype_ready[:] = True
    return lion


def test_ambiguous_sample_keeps_candidates_across_visits_and_relabels_via_prototypes():
    lion = one_ambiguous_sample_lion()
    lion.step(Passthrough(3), labeled_batch([[0.45, 0.40, 0.15]], [1], [0]), Progress(0, 10))
    # candidates {0, 1}; w = 0.5·[0.45, 0.40] + 0.5·[cos 1, cos 0] = [0.725, 0.2]
    assert lion.ambiguous.tolist() == [True]
    assert lion.candidates[0].tolist() == [True, True, False]
    assert torch.allclose(lion.weights[0], T([0.725, 0.2, 0.0]))
    # second visit with different probabilities: candidates are not re-initialised
    lion.step(Passthrough(3), labeled_batch([[0.2, 0.3, 0.5]], [1], [0]), Progress(1, 10))
    # w0 = 0.5·0.725 + 0.5·1 = 0.8625 ≥ τ → relabeled to class 0 at step 1
    assert lion.label.tolist() == [0] and lion.relabel_step.tolist() == [1]
    assert torch.allclose(lion.relabel_weights[0], T([0.8625, 0.1, 0.0]))
    assert not lion.ambiguous.any() and not lion.candidates.any()


def test_eq6_never_relabels_to_a_class_outside_the_candidates():
    # q = (−1, −1)/√2 has cosine −0.707 to S_0 and S_1, +0.707 to S_2; candidates {0, 1}: w =
    # 0.5·[0.45, 0.40] + 0.5·[−0.707, −0.707] = [−0.128, −0.153], under even a threshold of 0;
    # class 2, outside the set, keeps weight 0 and must not win
    lion = one_ambiguous_sample_lion(resolve_threshold=0.0, relabel_threshold=0.0)
    batch = labeled_batch([[0.45, 0.40, 0.15]], [1], [0], feats=[[-1.0, -1.0]])
    lion.step(Passthrough(3), batch, Progress(0, 10))
    assert lion.candidates[0].tolist() == [True, True, False]
    assert lion.label.tolist() == [1] and lion.ambiguous.tolist() == [True]


def test_relabel_fires_when_the_weight_equals_tau():
    thresholds = {"clear_threshold": 0.75, "resolve_threshold": 0.75, "relabel_threshold": 0.75}
    lion = one_ambiguous_sample_lion(candidate_threshold=0.25, **thresholds)
    # w0 = 0.5·0.5 + 0.5·cos 1 = 0.75 exactly
    lion.step(Passthrough(3), labeled_batch([[0.5, 0.25, 0.25]], [1], [0]), Progress(0, 10))
    assert lion.label.tolist() == [0]


def test_relabeled_sample_stays_clear_and_trains_on_its_new_label():
    lion = one_ambiguous_sample_lion(reexamine_relabeled=False)
    lion.step(Passthrough(3), labeled_batch([[0.45, 0.40, 0.15]], [1], [0]), Progress(0, 10))
    lion.step(Passthrough(3), labeled_batch([[0.2, 0.3, 0.5]], [1], [0]), Progress(1, 10))
    assert lion.label.tolist() == [0]
    # next visit: unsure (Eq. 1 would call it ambiguous) but it trains with L_S on class 0
    batch = labeled_batch([[0.4, 0.35, 0.25]], [1], [0])
    out = lion.step(Passthrough(3), batch, Progress(2, 10))
    assert out.loss.item() == pytest.approx(-math.log(0.4), rel=1e-6)
    assert not lion.ambiguous.any() and lion.label.tolist() == [0]


def test_paper_recipe_judges_a_relabeled_sample_again_by_eq_1():
    lion = one_ambiguous_sample_lion()  # paper: reexamine_relabeled
    assert lion.cfg.reexamine_relabeled
    lion.step(Passthrough(3), labeled_batch([[0.45, 0.40, 0.15]], [1], [0]), Progress(0, 10))
    lion.step(Passthrough(3), labeled_batch([[0.2, 0.3, 0.5]], [1], [0]), Progress(1, 10))
    assert lion.label.tolist() == [0]
    # unsure again: Eq. 1 calls it ambiguous, so no L_S and fresh candidates {0, 1}
    out = lion.step(Passthrough(3), labeled_batch([[0.4, 0.35, 0.25]], [1], [0]), Progress(2, 10))
    assert out.loss.item() == 0.0
    assert lion.ambiguous.tolist() == [True]
    assert lion.candidates[0].tolist() == [True, True, False]


def test_repeated_index_in_a_batch_writes_one_value():
    lion = one_ambiguous_sample_lion()
    batch = labeled_batch([[0.45, 0.40, 0.15], [0.2, 0.3, 0.5]], [1, 1], [0, 0])
    lion.step(Passthrough(3), batch, Progress(0, 10))
    # the first row's visit decides the state: candidates {0, 1}, w = [0.725, 0.2]
    assert torch.allclose(lion.weights[0], T([0.725, 0.2, 0.0]))


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
    batch = labeled_batch([[0.45, 0.40, 0.15]], [1], [0])
    losses = {}
    for mode in ("none", "candidates"):
        lion = one_ambiguous_sample_lion(ambiguous_loss=mode, lambda_reliable=0.0)
        losses[mode] = lion.step(Passthrough(3), batch, Progress(0, 10)).loss.item()
    assert losses["none"] == 0.0  # the paper: no loss for an ambiguous sample
    target = T([0.725, 0.2]) / 0.925  # its candidate weights after Eq. 5, normalised
    expected = -(target * torch.log(T([0.45, 0.40]))).sum().item()
    assert losses["candidates"] == pytest.approx(expected, rel=1e-5)


def test_warns_when_disambiguation_starts_with_few_clear_images():
    lion = make_lion([0, 1], disambiguation_start=0.5, **quiet())
    probs_w, probs_s, feats = unlabeled_batch()
    unsure = make_batch(
        [[0.5, 0.3, 0.2], [0.3, 0.5, 0.2]], feats, [0, 1], [0, 1], probs_w, probs_s, feats, [0, 1]
    )
    lion.step(Passthrough(3), unsure, Progress(0, 10))
    lion.step(Passthrough(3), unsure, Progress(5, 10))
    probe = Probe(None, lambda part: (torch.zeros(2, 2), np.zeros(2, dtype=np.int64)))
    with pytest.warns(UserWarning, match="at step 5 with only 0% of labeled"):
        lion.diagnostics(probe)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lion.diagnostics(probe)  # once a run
    summary = lion.summary()
    assert summary["clear_rate_at_disambiguation"] == 0.0 and "warnings" in summary


def test_no_warning_when_disambiguation_starts_with_exactly_half_the_images_clear():
    lion = make_lion([0, 1], **quiet())
    lion.started.fill_(True)
    lion.clear_at_start.fill_(0.5)
    probe = Probe(None, lambda part: (torch.zeros(2, 2), np.zeros(2, dtype=np.int64)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures = lion.diagnostics(probe)
    assert figures["label_quality"]["clear_rate_at_start"] == 0.5


def test_summary_scores_the_bank_against_the_unlabeled_truth_it_is_given():
    lion = make_lion([0, 1], num_unlabeled=3)
    lion.bank = T([[1, 0, 0], [0, 1, 1], [0, 0, 0]]).bool()
    # truth 1, 2, 0: rows 0 and 1 hold 3 entries, one of them (row 1's class 2) the true class
    assert lion.summary(None, [1, 2, 0])["clb"]["correct_fraction"] == pytest.approx(2 / 3)
    # row 0's truth unknown: only row 1 counts, 1 of its 2 entries wrong
    assert lion.summary(None, [-1, 2, 0])["clb"]["correct_fraction"] == pytest.approx(0.5)
    assert "correct_fraction" not in lion.summary()["clb"]


def test_the_evidence_rule_summary_gives_its_agreement_by_class_under_the_class_names():
    lion = make_lion([0, 1, 1, 0, 1], recipe="evidence", names=("X", "Y", "Z"))
    lion.evidence = T(
        [[0.9, 0.1, 0.0], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]
    )
    lion.evidence_visits = T([1, 1, 1, 1, 1])
    lion.label = T([0, 1, 2, 0, 1])  # image 2 relabeled 1 → 2, truly 2
    # every kept image's fold head trains on another image of its label (head 0 on images 1
    # and 3, labels 1 and 0; head 1 on images 0, 2 and 4), none held out by an audit
    lion.fold, lion.audit = T([0, 1, 0, 1, 0]), torch.zeros(5, dtype=torch.bool)
    figures = lion.summary([0, 0, 2, 0, 1])["evidence_by_class"]
    assert figures["X"]["named"] == 2 and figures["X"]["agreement"] == 0.5
    assert (figures["Z"]["relabeled_to"], figures["Z"]["relabeled_to_right"]) == (1, 1)
    unnamed = make_lion([0, 1, 1], recipe="evidence")
    assert set(unnamed.summary()["evidence_by_class"]) == {"0", "1", "2"}
    assert "evidence_by_class" not in make_lion([0, 1, 1]).summary()


# ---- recipes: each rule ----


def test_a_recipe_sets_exactly_the_fields_it_names():
    defaults = {f.name: f.default for f in dataclasses.fields(LionConfig)}
    for name, fields in LION_RECIPES.items():
        cfg = lion_config(name)
        differing = {f for f, v in defaults.items() if getattr(cfg, f) != v} - {"recipe"}
        assert differing == {f for f, v in fields.items() if defaults[f] != v}, name
    assert lion_config("released", relabel_threshold=0.999).relabel_threshold == 0.999


def test_a_lion_config_built_directly_is_the_one_a_config_file_gets():
    from lionfer.config import load_config

    default = LionConfig.DEFAULT_RECIPE
    recipe_field = {f.name: f for f in dataclasses.fields(LionConfig)}["recipe"]
    assert recipe_field.default == default  # the recipe field says so
    assert LionConfig() == lion_config() == load_config().algorithm.params
    assert LionConfig().recipe == default and LionConfig().disambiguation == "evidence"
    for name in LION_RECIPES:
        loaded = load_config(None, [f"algorithm.recipe={name}", "algorithm.min_visits=2"])
        assert LionConfig(name, min_visits=2) == loaded.algorithm.params, name
        assert LionConfig(recipe=name) == lion_config(name), name
    released = LionConfig("released", min_visits=2)
    assert dataclasses.replace(released, folds=3) == LionConfig("released", min_visits=2, folds=3)
    with pytest.raises(ConfigError, match="unknown recipe 'papr'. Did you mean 'paper'"):
        LionConfig("papr")
    with pytest.raises(TypeError, match="clear_treshold"):
        LionConfig(clear_treshold=0.5)
    with pytest.raises(ConfigError, match="algorithm.clear_threshold: must lie in"):
        LionConfig("paper", clear_threshold=2.0)  # still validated
    for margin in (0.5, math.inf, math.nan):
        with pytest.raises(ConfigError, match="algorithm.relabel_margin: must be a number >= 1"):
            LionConfig(relabel_margin=margin)


def test_margin_rule_keeps_an_unsure_but_agreeing_sample_in_ls():
    batch = labeled_batch([[0.3, 0.45, 0.25]], [1], [0])  # argmax = label, p < τ
    paper = one_ambiguous_sample_lion(lambda_reliable=0.0)
    assert paper.step(Passthrough(3), batch, Progress(0, 10)).loss.item() == 0.0
    margin = one_ambiguous_sample_lion(lambda_reliable=0.0, ambiguity_rule="margin")
    loss = margin.step(Passthrough(3), batch, Progress(0, 10)).loss.item()
    assert loss == pytest.approx(-math.log(0.45), rel=1e-6) and not margin.ambiguous.any()


def test_persistent_ambiguity_keeps_weights_when_the_sample_looks_clear_again():
    unsure, sure = [[0.45, 0.40, 0.15]], [[0.05, 0.9, 0.05]]
    thresholds = {"resolve_threshold": 0.9, "relabel_threshold": 0.9}
    paper = one_ambiguous_sample_lion(**thresholds)
    paper.step(Passthrough(3), labeled_batch(unsure, [1], [0]), Progress(0, 10))
    paper.step(Passthrough(3), labeled_batch(sure, [1], [0]), Progress(1, 10))
    assert paper.ambiguous.tolist() == [False] and not paper.weights.any()  # Eq. 1 re-decided
    lion = one_ambiguous_sample_lion(ambiguity_persists=True, **thresholds)
    lion.step(Passthrough(3), labeled_batch(unsure, [1], [0]), Progress(0, 10))
    lion.step(Passthrough(3), labeled_batch(sure, [1], [0]), Progress(1, 10))
    assert lion.ambiguous.tolist() == [True]
    # [0.725, 0.2] kept, then one more Eq. 5 step toward the cosines [1, 0]
    assert torch.allclose(lion.weights[0], T([0.8625, 0.1, 0.0]))


def test_uniform_initial_weights_let_prototypes_decide():
    lion = one_ambiguous_sample_lion(weight_init="uniform")
    lion.step(Passthrough(3), labeled_batch([[0.45, 0.40, 0.15]], [1], [0]), Progress(0, 10))
    # candidates {0, 1} start at 0.5 each: w = 0.5·0.5 + 0.5·[1, 0] = [0.75, 0.25]
    assert torch.allclose(lion.weights[0], T([0.75, 0.25, 0.0]))


def test_threshold_given_candidates_always_hold_the_label():
    lion = one_ambiguous_sample_lion(candidate_rule="threshold_given")
    lion.step(Passthrough(3), labeled_batch([[0.45, 0.10, 0.45]], [1], [0]), Progress(0, 10))
    assert lion.candidates[0].tolist() == [True, True, True]
    paper = one_ambiguous_sample_lion()
    paper.step(Passthrough(3), labeled_batch([[0.45, 0.10, 0.45]], [1], [0]), Progress(0, 10))
    assert paper.candidates[0].tolist() == [True, False, True]


def test_prediction_given_candidates_ignore_mu():
    lion = one_ambiguous_sample_lion(candidate_rule="prediction_given")
    lion.step(Passthrough(3), labeled_batch([[0.40, 0.25, 0.35]], [1], [0]), Progress(0, 10))
    assert lion.candidates[0].tolist() == [True, True, False]


def test_agreement_blocks_a_relabel_the_classifier_does_not_share():
    batch1 = labeled_batch([[0.45, 0.40, 0.15]], [1], [0])
    batch2 = labeled_batch([[0.2, 0.3, 0.5]], [1], [0])  # classifier now prefers class 2
    lion = one_ambiguous_sample_lion(relabel_confidence=0.55)
    lion.step(Passthrough(3), batch1, Progress(0, 10))
    lion.step(Passthrough(3), batch2, Progress(1, 10))  # w0 = 0.8625 but argmax p = 2
    assert lion.label.tolist() == [1] and lion.ambiguous.tolist() == [True]
    unsure = labeled_batch([[0.5, 0.3, 0.2]], [1], [0])  # argmax 0 but p = 0.5 < 0.55
    lion.step(Passthrough(3), unsure, Progress(2, 10))
    assert lion.label.tolist() == [1]
    agreeing = labeled_batch([[0.6, 0.3, 0.1]], [1], [0])
    lion.step(Passthrough(3), agreeing, Progress(3, 10))
    assert lion.label.tolist() == [0]


def test_two_thresholds_resolve_without_relabel_below_the_second():
    lion = one_ambiguous_sample_lion(resolve_threshold=0.8, relabel_threshold=0.9)
    lion.step(Passthrough(3), labeled_batch([[0.45, 0.40, 0.15]], [1], [0]), Progress(0, 10))
    lion.step(Passthrough(3), labeled_batch([[0.2, 0.3, 0.5]], [1], [0]), Progress(1, 10))
    # w0 = 0.8625: ≥ 0.8 ends the ambiguity, < 0.9 keeps the given label
    assert lion.label.tolist() == [1] and not lion.ambiguous.any()


def test_protected_classes_are_never_relabeled_to_or_from():
    names = ("surprise", "fear", "neutral")
    for given, relabeled in ((1, True), (2, False)):
        lion = make_lion(
            [given],
            num_unlabeled=1,
            names=names,
            protected_classes=("Neutral",),
            **quiet(ema_momentum=0.5),
        )
        lion.prototypes[:] = T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        lion.prototype_ready[:] = True
        for step, probs in enumerate(([[0.45, 0.15, 0.40]], [[0.6, 0.2, 0.2]])):
            lion.step(Passthrough(3), labeled_batch(probs, [given], [0]), Progress(step, 10))
        assert (lion.label.tolist() == [0]) is relabeled


def test_protected_classes_are_class_names_and_lions_weights_finite():
    with pytest.raises(ConfigError, match=r"protected_classes: give class names.*got 6"):
        lion_config("released", protected_classes=(6,))
    assert lion_config(protected_classes=("neutral",)).protected_classes == ("neutral",)
    for name in ("lambda_supervised", "lambda_elr", "negative_decay", "evidence_scale"):
        with pytest.raises(ConfigError, match=f"algorithm.{name}: must be .* finite"):
            lion_config(**{name: math.inf})


def test_protected_mask_names_the_classes_when_a_name_is_unknown():
    names = ("Surprise", "Fear", "Neutral")
    assert protected_mask(("neutral",), names).tolist() == [False, False, True]
    with pytest.raises(ConfigError, match="'Contempt', which this dataset does not have"):
        protected_mask(("Contempt", "Neutral"), names)
    assert protected_mask(("Contempt", "Neutral"), names, skip_unknown=True).tolist() == [
        False,
        False,
        True,
    ]


def test_released_gamma_grows_per_epoch_and_negative_weights_decay():
    lion = make_lion([0], recipe="released", epoch_steps=2, use_disambiguation=False)
    probs_w = [[0.82, 0.1, 0.08]]  # reliable at γ(epoch 1) = 0.81, not at γ(epoch 3) = 0.83
    batch = make_batch(
        [[0.9, 0.05, 0.05]], [[1.0, 0.0]], [0], [0], probs_w, probs_w, [[1.0, 0.0]], [0]
    )
    assert lion.step(Passthrough(3), batch, Progress(0, 10)).mask.tolist() == [True]
    assert lion.step(Passthrough(3), batch, Progress(4, 10)).mask.tolist() == [False]
    lion.bank[0] = T([False, True, True])
    out = lion.step(Passthrough(3), batch, Progress(4, 10))  # epoch 3: a = 0.24 − 0.045
    l_s = 1.6 * -math.log(0.9)
    l_nl = -(0.9 + 0.92)
    l_nc = -(math.log(0.9) + math.log(0.92))
    a = 0.24 - 0.015 * 3
    expected = l_s + a * l_nl + a / 6.5 * l_nc
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


def test_fitted_start_waits_for_the_labeled_set_to_be_fitted():
    lion = make_lion([0, 1], start_rule="fitted", fit_threshold=0.9, **quiet())
    probs_w, probs_s, feats = unlabeled_batch()
    wrong = make_batch(
        [[0.2, 0.7, 0.1], [0.7, 0.2, 0.1]], feats, [0, 1], [0, 1], probs_w, probs_s, feats, [0, 1]
    )
    fitted = make_batch(
        [[0.85, 0.1, 0.05], [0.1, 0.85, 0.05]],
        feats,
        [0, 1],
        [0, 1],
        probs_w,
        probs_s,
        feats,
        [0, 1],
    )
    for step in range(3):
        lion.step(Passthrough(3), wrong, Progress(step, 100))
    assert not lion.started
    steps = 3
    while not lion.started:
        lion.step(Passthrough(3), fitted, Progress(steps, 100))
        steps += 1
        assert steps < 100
    # bias-corrected running agreement: 3 steps at 0, then 1s, crosses 0.9 at a known step
    rates = [0.0] * 3
    expected = None
    for n in range(4, 100):
        rates.append(1.0)
        ema = 0.0
        for r in rates:
            ema = 0.95 * ema + 0.05 * r
        if ema / (1 - 0.95**n) >= 0.9:
            expected = n - 1
            break
    assert lion.start_step.item() == expected


# ---- label-quality figures ----


def test_diagnostics_on_a_fabricated_case_with_known_truth():
    lion = make_lion([0, 1, 2, 0], num_classes=3, dim=2)
    lion.label[:] = T([0, 2, 2, 1])  # sample 1 corrected (truth 2), sample 3 broken (truth 0)
    lion.relabel_step[:] = T([-1, 7, -1, 9])
    lion.ambiguous[:] = T([False, False, True, False])
    lion.candidates[2] = T([True, False, True])  # holds the given 2 and the truth 2
    lion.prototypes[:] = T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    lion.prototype_ready[:] = True
    truth = np.array([0, 2, 2, 0])
    labeled_q = T([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    test_q = T([[1.0, 0.1], [0.1, 1.0], [-1.0, 0.2], [-1.0, 0.0]])
    parts = {"labeled": (labeled_q, truth), "test": (test_q, np.array([0, 1, 2, 0]))}
    figures = lion.diagnostics(Probe(truth, parts.get))
    relabel, quality = figures["relabel"], figures["label_quality"]
    assert relabel["count"] == 2 and relabel["precision"] == 0.5 and relabel["recall"] == 1.0
    assert relabel["given_accuracy"] == 0.75 and relabel["current_accuracy"] == 0.75
    assert quality["ambiguous_fraction"] == 0.25
    assert quality["candidates_hold_given"] == 1.0 and quality["candidates_hold_true"] == 1.0
    # cosine to the own (true) class: 1, 1, 0, 1; to the other two classes, averaged
    assert quality["similarity_own"] == pytest.approx(0.75)
    others = [(0 - 1) / 2, (-1 + 0) / 2, (0 + 1) / 2, (0 - 1) / 2]
    assert quality["similarity_other"] == pytest.approx(np.mean(others))
    assert quality["prototype_acc"] == 0.75  # the last test row is nearest to class 2


def test_mean_weights_wait_for_min_visits():
    lion = one_ambiguous_sample_lion(weight_update="mean", min_visits=2)
    batch = labeled_batch([[0.45, 0.40, 0.15]], [1], [0])  # q = [1, 0]: cosines [1, 0, −1]
    lion.step(Passthrough(3), batch, Progress(0, 10))
    # the mean of one visit's similarities: w = [1, 0]; one visit < min_visits: no decision
    assert torch.allclose(lion.weights[0], T([1.0, 0.0, 0.0]))
    assert lion.label.tolist() == [1] and lion.visits.tolist() == [1]
    other_q = labeled_batch([[0.45, 0.40, 0.15]], [1], [0], feats=[[0.0, 1.0]])
    lion.step(Passthrough(3), other_q, Progress(1, 10))
    # second visit, cosines [0, 1]: mean w = [0.5, 0.5] < τ, still ambiguous
    assert torch.allclose(lion.weights[0], T([0.5, 0.5, 0.0])) and lion.visits.tolist() == [2]
    lion.step(Passthrough(3), batch, Progress(2, 10))
    lion.step(Passthrough(3), batch, Progress(3, 10))
    # visits 3, 4: mean of [1, 0, 1, 1] = 0.75 < 0.8; a fifth visit gives 0.8 → relabel
    assert lion.label.tolist() == [1]
    lion.step(Passthrough(3), batch, Progress(4, 10))
    assert lion.label.tolist() == [0] and lion.visits.tolist() == [0]


def test_label_loss_keeps_training_an_ambiguous_sample_on_its_label():
    batch = labeled_batch([[0.45, 0.40, 0.15]], [1], [0])
    lion = one_ambiguous_sample_lion(ambiguous_loss="label", lambda_reliable=0.0)
    loss = lion.step(Passthrough(3), batch, Progress(0, 10)).loss.item()
    assert lion.ambiguous.tolist() == [True]  # it gathers evidence ...
    assert loss == pytest.approx(-math.log(0.40), rel=1e-6)  # ... and trains on label 1


def test_bank_keep_leaves_that_many_classes_out_of_the_bank():
    bank = torch.zeros(1, 4, dtype=torch.bool)
    probs = T([[0.001, 0.002, 0.003, 0.994]])
    assert grow_complementary(bank, probs, 0.05).sum().item() == 3
    assert grow_complementary(bank, probs, 0.05, keep=3).tolist() == [[True, False, False, False]]


def test_robust_with_every_switch_off_is_fixmatch():
    from lionfer.algorithms.fixmatch import FixMatch
    from lionfer.algorithms.hparams import FixMatchConfig

    off = {f"use_{part}": False for part in ("disambiguation", "negative_learning")}
    lion = make_lion([0, 1], recipe="robust", use_negative_consistency=False, **off)
    info = AlgorithmInfo(3, 2, 4, 2, T([0, 1]))
    fixmatch = FixMatch(FixMatchConfig(threshold=0.95), info)
    probs_w = [[0.96, 0.03, 0.01], [0.40, 0.58, 0.02]]  # one pseudo-label passes 0.95
    probs_s = [[0.70, 0.20, 0.10], [0.30, 0.50, 0.20]]
    feats = [[1.0, 0.0], [0.0, 1.0]]
    batch = make_batch(
        [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]], feats, [0, 1], [0, 1], probs_w, probs_s, feats, [0, 1]
    )
    ours = lion.step(Passthrough(3), batch, Progress(9, 10)).loss.item()
    theirs = fixmatch.step(Passthrough(3), batch, Progress(9, 10)).loss.item()
    assert ours == pytest.approx(theirs, rel=1e-6)


# ---- pieces that mutation testing found unchecked ----


def test_masked_mean_divides_by_the_selected_rows():
    from lionfer.algorithms.lion import masked_mean

    values = T([1.0, 2.0, 6.0])
    assert masked_mean(values, T([True, True, False])).item() == pytest.approx(1.5)
    assert masked_mean(values, T([False, False, False])).item() == 0.0
    assert masked_mean(values, None).item() == pytest.approx(3.0)


def test_epoch_of_counts_whole_epochs_from_one():
    from lionfer.algorithms.lion import epoch_of

    assert [epoch_of(s, 30) for s in (0, 29, 30, 45, 60)] == [1, 1, 2, 2, 3]
    assert isinstance(epoch_of(45, 30), int)


def test_initial_weights_are_normalised_per_row():
    probs = T([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    candidates = T([[True, False, True], [True, True, True]])
    normalised = initial_weights(probs, candidates, "normalised")
    assert torch.allclose(normalised, T([[0.6 / 0.7, 0.0, 0.1 / 0.7], [0.2, 0.5, 0.3]]))
    uniform = initial_weights(probs, candidates, "uniform")
    assert torch.allclose(uniform, T([[0.5, 0.0, 0.5], [1 / 3, 1 / 3, 1 / 3]]))


def test_softmax_similarity_is_zero_for_a_row_without_a_ready_candidate():
    features = T([[1.0, 0.0], [0.0, 1.0]])
    prototypes = T([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    ready = T([True, True, False])
    candidates = T([[True, True, False], [False, False, True]])
    sim = class_similarity(features, prototypes, ready, candidates, "softmax", 0.1)
    assert sim[1].tolist() == [0.0, 0.0, 0.0]
    assert sim[0].sum().item() == pytest.approx(1.0) and sim[0, 0] > 0.99


def test_eq9_joins_a_class_whose_share_equals_delta():
    bank = torch.zeros(1, 3, dtype=torch.bool)
    probs = T([[0.125, 0.375, 0.5]])  # exact in binary: 0.125 / 1.0 == δ
    assert grow_complementary(bank, probs, 0.125).tolist() == [[True, False, False]]


def test_bank_keep_counts_each_rows_own_remaining_classes():
    bank = T([[False, False, False, False], [True, False, False, False]])
    probs = T([[0.97, 0.01, 0.01, 0.01], [0.0, 0.98, 0.01, 0.01]])
    grown = grow_complementary(bank, probs, 0.05, keep=2)
    assert grown.sum(dim=1).tolist() == [2, 2]  # two classes always stay out of each bank
    assert grown[1].tolist() == [True, False, True, False]


def test_step_logs_its_rates_and_each_loss():
    lion, batch = make_lion([0, 1]), clear_and_ambiguous_batch()
    logs = lion.step(Passthrough(3), batch, Progress(5, 10)).logs
    figures = {k: float(v) for k, v in logs.items()}
    assert figures["clear_rate"] == pytest.approx(0.5)
    assert figures["ambiguous_rate"] == pytest.approx(0.5)
    assert figures["mask_rate"] == pytest.approx(0.5)
    assert figures["loss_sup"] == pytest.approx(-math.log(0.90), rel=1e-5)
    assert figures["loss_reliable"] == pytest.approx(-math.log(0.70), rel=1e-5)
    assert figures["loss_nl"] == pytest.approx(-(1 - 0.02), rel=1e-5)
    assert figures["loss_nc"] == pytest.approx(-math.log(1 - 0.20), rel=1e-5)


class CleanHead(Passthrough):
    """Passthrough whose training logits differ from its clean (no-dropout) logits: the clean
    ones are the rows' own, the training ones favour the last class."""

    def forward(self, x):
        out = super().forward(x)
        noisy = out.logits.detach().clone()
        noisy[:, -1] += 10.0
        return type(out)(noisy + 0 * self.scale, out.features, out.logits)


def test_labeled_decisions_use_the_head_without_dropout():
    lion = make_lion([0, 1], **quiet())
    probs_lb = [[0.90, 0.05, 0.05], [0.05, 0.90, 0.05]]  # both clear on the clean head
    batch = labeled_batch(probs_lb, [0, 1], [0, 1], feats=[[1.0, 0.0], [0.0, 1.0]])
    logs = lion.step(CleanHead(3), batch, Progress(5, 10)).logs
    assert float(logs["clear_rate"]) == 1.0 and float(logs["ambiguous_rate"]) == 0.0
    assert not lion.ambiguous[[0, 1]].any()


def test_eq7_an_unlabeled_image_at_exactly_gamma_is_reliable():
    probs_w = [[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]
    gamma = float(torch.log(T(probs_w[0])).softmax(dim=0).max())  # the step's own rounding
    lion = make_lion([0, 1], reliable_threshold=gamma, **quiet())
    batch = make_batch(
        [[0.9, 0.05, 0.05]], [[1.0, 0.0]], [0], [0], probs_w, probs_w, [[1.0, 0.0]] * 2, [0, 1]
    )
    out = lion.step(Passthrough(3), batch, Progress(5, 10))
    assert out.mask.tolist() == [True, False]


# ---- the bookkeeping around the equations: what feeds Eq. 3, the bank's growth, the logs ----


def test_eq1_feeds_a_relabeled_image_only_where_predicted_and_keeps_it_clear():
    """Margin rule 0.3, relabeled images not re-examined, ambiguity persisting once started.
    Rows: never relabeled and not predicted; relabeled at step 0, not predicted; relabeled at
    step 0 and predicted; relabeled at step 0 with a large margin against it; ambiguous."""
    lion = make_lion(
        [0] * 5,
        ambiguity_rule="margin",
        ambiguity_margin=0.3,
        reexamine_relabeled=False,
        ambiguity_persists=True,
    )
    lion.started = torch.tensor(True)
    lion.relabel_step[:] = T([-1, 0, 0, 0, -1])
    lion.ambiguous[4] = True
    probs = T(
        [
            [0.45, 0.55, 0.0],
            [0.45, 0.55, 0.0],
            [0.55, 0.45, 0.0],
            [0.10, 0.90, 0.0],
            [0.90, 0.10, 0.0],
        ]
    )
    clear, feeds = lion._examine_eq1(probs, T([0] * 5), T([0, 1, 2, 3, 4]))
    assert clear.tolist() == [True, True, True, True, False]
    assert feeds.tolist() == [True, False, True, False, False]


@pytest.mark.parametrize("nl, nc", [(True, False), (False, True)])
def test_the_bank_grows_by_delta_and_bank_keep_when_either_negative_term_reads_it(nl, nc):
    lion = make_lion(
        [0],
        num_unlabeled=2,
        use_negative_learning=nl,
        use_negative_consistency=nc,
        complementary_threshold=0.4,
        bank_keep=2,
    )
    # unlabeled image 1, unsure (0.5, 0.3, 0.2): class 2 joins its bank (0.2 ≤ 0.4); class 1
    # would too (0.3 / 0.8 = 0.375), but two classes must stay out
    unsure = [[0.5, 0.3, 0.2]]
    batch = make_batch(
        [[0.9, 0.05, 0.05]], [[1.0, 0.0]], [0], [0], unsure, unsure, [[0.0, 1.0]], [1]
    )
    lion.step(Passthrough(3), batch, Progress(0, 10))
    assert lion.bank.tolist() == [[False] * 3, [False, False, True]]


def test_the_clear_rate_at_the_start_is_the_clear_rate_not_the_fit_rate():
    # both rows are clear by the margin (their label is their top class) and under τ = 0.8, so
    # not fitted: clear rate 1, fit rate 0 when disambiguation begins (step 0)
    lion = make_lion([0, 1], ambiguity_rule="margin", ambiguity_margin=0.3, **quiet())
    probs_w, probs_s, feats = unlabeled_batch()
    batch = make_batch(
        [[0.5, 0.3, 0.2], [0.3, 0.5, 0.2]], feats, [0, 1], [0, 1], probs_w, probs_s, feats, [0, 1]
    )
    lion.step(Passthrough(3), batch, Progress(0, 10))
    assert lion.summary()["clear_rate_at_disambiguation"] == pytest.approx(1.0)


def test_before_the_start_every_labeled_row_counts_as_clear():
    lion = make_lion([0], disambiguation_start=0.5, **quiet())
    out = lion.step(Passthrough(3), labeled_batch([[0.4, 0.35, 0.25]], [0], [0]), Progress(0, 10))
    assert out.logs["clear_rate"].item() == 1.0 and out.logs["ambiguous_rate"].item() == 0.0


def test_candidate_loss_averages_over_the_ambiguous_rows_alone():
    """Row 0 is ambiguous (as in the test above), row 1 clear: the candidates' soft CE is row 0's
    alone, not halved by a clear row."""
    lion = make_lion(
        [1, 0],
        num_unlabeled=1,
        **quiet(ema_momentum=0.5, ambiguous_loss="candidates", lambda_reliable=0.0),
    )
    lion.prototypes[:] = T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    lion.prototype_ready[:] = True
    batch = labeled_batch([[0.45, 0.40, 0.15], [0.9, 0.05, 0.05]], [1, 0], [0, 1])
    out = lion.step(Passthrough(3), batch, Progress(0, 10))
    target = T([0.725, 0.2]) / 0.925
    expected = -(target * torch.log(T([0.45, 0.40]))).sum().item()
    assert out.logs["loss_ambiguous"].item() == pytest.approx(expected, rel=1e-5)
    assert out.logs["clear_rate"].item() == 0.5
    assert out.loss.item() == pytest.approx(expected - math.log(0.9), rel=1e-5)


def test_softmax_similarity_normalises_over_the_candidates_only():
    """Candidates {0, 1} of (0.45, 0.40, 0.15); cosines to the prototypes (1, 0, −1); T = 1: d =
    softmax over the candidates = (e, 1) / (e + 1), not over all three ready classes."""
    lion = one_ambiguous_sample_lion(similarity="softmax", similarity_temperature=1.0)
    lion.step(Passthrough(3), labeled_batch([[0.45, 0.40, 0.15]], [1], [0]), Progress(0, 10))
    d = T([math.e, 1.0]) / (math.e + 1)
    expected = 0.5 * T([0.45, 0.40]) + 0.5 * d
    assert torch.allclose(lion.weights[0], torch.cat([expected, T([0.0])]), atol=1e-6)


# ---- the equations' pieces on several rows at once ----


def test_candidate_loss_normalises_each_row_on_its_own():
    # row 0: weights (3, 1, 0) → target (0.75, 0.25, 0); row 1: (0, 0, 2) → (0, 0, 1)
    logits = torch.log(T([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]))
    weights = T([[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    loss = candidate_loss(logits, weights, T([True, True]))
    row0 = -(0.75 * math.log(0.5) + 0.25 * math.log(0.25))
    assert loss.item() == pytest.approx((row0 - math.log(0.5)) / 2, rel=1e-5)


def test_negative_consistency_is_a_mean_over_rows():
    probs_s = T([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    bank = T([[False, True, True], [True, False, False]])
    loss = negative_consistency_loss(bank, probs_s, T([True, True]))
    expected = (-2 * math.log(0.75) - math.log(0.8)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_prediction_and_given_candidates_row_by_row():
    probs = T([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    candidates = prediction_given_candidates(probs, T([1, 2]))
    assert candidates.tolist() == [[True, True, False], [False, False, True]]


def test_the_classifier_backs_a_relabel_row_by_row_from_exactly_its_confidence():
    probs = T([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5], [0.75, 0.25, 0.0]])
    winner, other = T([0, 2, 1]), T([True, True, True])
    blocked = unbacked_by_classifier(probs, winner, other, 0.5)
    assert blocked.tolist() == [False, False, True]  # 0.5 ≥ 0.5 backs; class 1 is not predicted


def test_a_fitted_start_at_exactly_its_threshold_begins():
    assert bool(start_when_fitted(0.1, T(0.5), 0.5))
    assert not bool(start_when_fitted(0.1, T(0.25), 0.5))


def test_decay_without_negative_learning_leaves_the_weights_alone():
    assert negative_weights(0.0, 0.1, 0.015, 5) == (0.0, 0.1)
