"""What LION reports (lion_report.py), from hand-made states: the label figures of an
evaluation, the figures of summary.json, the rows of relabels.csv and the low-clear-rate
warning."""

import math
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lionfer.algorithms import lion_report
from lionfer.algorithms.base import Probe
from lionfer.algorithms.lion_audit import no_audit
from lionfer.algorithms.lion_equations import cosine_to_prototypes, softmax_over_prototypes
from lionfer.algorithms.lion_report import (
    MEMORISED_Z,
    RELABEL_COLUMNS,
    audit_figures,
    evidence_check,
    label_figures,
    label_state,
    low_clear_message,
    mean_or_none,
    relabel_table,
    summary_figures,
)
from lionfer.errors import InputError


def T(x):
    return torch.tensor(x)


GIVEN = [0, 1, 1, 0]
# image 0 kept; image 1 relabeled 1 → 2 at step 12 (rightly); image 2 demoted (given 1, truly
# 0); image 3 changed 0 → 1 (truth unknown)
TRUTH = np.array([0, 2, 0, -1])
ERROR_TYPES = np.array([0, 1, 2, -1])  # none, slip, ambiguity, unknown


def lion_state(**changes):
    state = {
        "label": T([0, 2, 1, 1]),
        "ambiguous": T([True, False, True, False]),
        "candidates": T([[True, True, False], [False] * 3, [True, False, True], [False] * 3]),
        "started": T(True),
        "start_step": T(7),
        "clear_at_start": T(0.25),
        "prototypes": T([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]),
        "prototype_ready": T([True, True, False]),
        "bank": T([[False, True, True], [False] * 3, [True, False, False]]),
        "relabel_step": T([-1, 12, -1, -1]),
        "relabel_weights": T([[0.0] * 3, [0.1, 0.2, 0.7], [0.0] * 3, [0.0] * 3]),
        "demoted": T([False, False, True, False]),
    }
    return {**state, **changes}


def probe():
    parts = {
        "labeled": (T([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]), np.array(GIVEN)),
        "test": (T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), np.array([0, 1, 2])),
    }
    return Probe(TRUTH, parts.__getitem__, ERROR_TYPES)


def test_label_figures_of_an_evaluation_by_hand():
    figures = label_figures(lion_state(), T(GIVEN), probe(), cosine_to_prototypes)
    relabel = figures["relabel"]
    # images 1 and 3 changed (the demoted one counts with its given label); of the known, 1 of 1
    assert relabel["count"] == 2 and relabel["precision"] == 1.0
    assert relabel["by_error_type"] == {
        "slip": {"wrong_given": 1, "fixed": 1, "changed": 1},
        "ambiguity": {"wrong_given": 1, "fixed": 0, "changed": 0},
    }
    assert relabel["demoted"] == {"count": 1, "wrong_given": 1}
    quality = figures["label_quality"]
    assert quality["started"] is True and quality["start_step"] == 7
    assert quality["clear_rate_at_start"] == 0.25 and quality["ambiguous_fraction"] == 0.5
    # ambiguous images 0 and 2: their candidates hold the given label once (0), the true twice
    assert quality["candidates_hold_given"] == 0.5 and quality["candidates_hold_true"] == 1.0
    # own class = truth where known, else given: 0, 2, 0, 0; cosines to the ready prototypes
    # (1, 0), (0, 1), none for class 2: own 1, 0, 1, 0; the other ready classes, averaged: class
    # 1's 0, 0, 1 for images 0, 2, 3, and both classes' (0 + 1) / 2 for image 1 (own not ready)
    assert quality["similarity_own"] == 0.5 and quality["similarity_other"] == 0.375
    assert quality["prototype_acc"] == pytest.approx(2 / 3)  # (−1, 0) is nearest class 1


def test_label_figures_under_the_softmax_similarity_by_hand():
    similarity = partial(softmax_over_prototypes, temperature=1.0)
    quality = label_figures(lion_state(), T(GIVEN), probe(), similarity)["label_quality"]
    # softmax of the cosines over the ready classes 0 and 1: (e, 1) / (e + 1) for (1, 0), (1, e)
    # / (e + 1) for (0, 1); own classes 0, 2, 0, 0: e, 0, e, 1 over e + 1; the others 1, (1 +
    # e) / 2 (image 1's own class has no prototype: both are others), 1, e over e + 1
    e = math.e
    assert quality["similarity_own"] == pytest.approx((2 * e + 1) / (4 * (e + 1)))
    assert quality["similarity_other"] == pytest.approx((3 * e + 5) / (8 * (e + 1)))
    assert quality["prototype_acc"] == pytest.approx(2 / 3)


def test_similarity_other_averages_the_other_ready_classes_whether_the_own_is_ready_or_not():
    # (0.6, 0.8) lies at cosine 0.6 to (1, 0) and 0.8 to (0, 1); class 2 has no prototype. Own
    # class 2 (truth): both ready classes are others, (0.6 + 0.8) / 2 (it read 0.6 + 0.8 = 1.4)
    features = T([[0.6, 0.8], [0.6, 0.8], [0.6, 0.8]])
    parts = {"labeled": (features, np.array([0, 1, 1])), "test": probe().features("test")}
    truth, given = np.array([2, 1, 0]), np.array([0, 1, 1])
    labeled = Probe(truth, parts.__getitem__)
    state = lion_state(prototypes=T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    quality = lion_report.prototype_figures(state, labeled, truth, given, cosine_to_prototypes)
    # own 0 (no prototype), 0.8, 0.6; others 0.7, 0.6 (class 0), 0.8 (class 1)
    assert quality["similarity_own"] == pytest.approx((0 + 0.8 + 0.6) / 3)
    assert quality["similarity_other"] == pytest.approx((0.7 + 0.6 + 0.8) / 3)


def test_similarity_other_leaves_out_an_image_with_no_other_ready_class():
    d = np.array([[0.9, 0.0, 0.0], [0.3, 0.0, 0.0], [0.5, 0.0, 0.0]])
    ready = np.array([True, False, False])  # only class 0 has a prototype
    # image 0's own class is the only ready one: no other to compare; images 1 and 2 have 0
    assert lion_report.other_similarity(d, ready, np.array([0, 1, 2])) == pytest.approx(0.4)
    assert lion_report.other_similarity(d, ready, np.array([0, 0, 0])) is None
    assert lion_report.other_similarity(d, ~ready, np.array([0, 0, 0])) == 0.0


def test_the_nearest_prototype_is_nearest_in_angle_whatever_its_length():
    # a class's first update leaves its prototype at the feature's length: (3, 0) is longer than
    # (0, 1), but (0.6, 0.8) lies at cosine 0.6 to it and 0.8 to (0, 1)
    state = lion_state(prototypes=T([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    parts = {"labeled": probe().features("labeled"), "test": (T([[0.6, 0.8]]), np.array([1]))}
    figures = label_figures(state, T(GIVEN), Probe(TRUTH, parts.__getitem__), cosine_to_prototypes)
    assert figures["label_quality"]["prototype_acc"] == 1.0


def test_figures_of_an_empty_set_are_zero_not_nan():
    empty = lion_state(
        label=torch.zeros(0, dtype=torch.long),
        ambiguous=torch.zeros(0, dtype=torch.bool),
        candidates=torch.zeros(0, 3, dtype=torch.bool),
        prototype_ready=torch.zeros(3, dtype=torch.bool),
        bank=torch.zeros(0, 3, dtype=torch.bool),
        demoted=torch.zeros(0, dtype=torch.bool),
    )
    nothing = Probe(np.zeros(0, dtype=int), probe().features)
    quality = label_figures(empty, empty["label"], nothing, cosine_to_prototypes)["label_quality"]
    assert quality["ambiguous_fraction"] == 0.0
    assert summary_figures(empty, "paper")["clb"] == {"mean_size": 0.0, "samples_with_entries": 0}


def test_label_figures_before_the_start_have_no_clear_rate():
    state = lion_state(started=T(False), clear_at_start=T(-1.0))
    quality = label_figures(state, T(GIVEN), probe(), cosine_to_prototypes)["label_quality"]
    assert quality["started"] is False and quality["clear_rate_at_start"] is None


def test_summary_figures_by_hand():
    # the unlabeled truth 0, 1, 0: the bank rows hold {1, 2}, {}, {0}; one entry of three (image
    # 2's class 0) excludes the true class
    out = summary_figures(lion_state(), "evidence", [0, 1, 0])
    assert out["clb"] == {
        "mean_size": 1.0,
        "samples_with_entries": 2,
        "correct_fraction": pytest.approx(2 / 3),
    }
    assert out["recipe"] == "evidence" and out["ambiguous_now"] == 2 and out["demoted_now"] == 1
    assert out["clear_rate_at_disambiguation"] == 0.25
    assert out["warnings"] == [low_clear_message(0.25, 7)]


@pytest.mark.parametrize("started, clear", [(False, -1.0), (True, 0.5)])
def test_no_warning_before_the_start_or_with_half_the_images_clear(started, clear):
    out = summary_figures(lion_state(started=T(started), clear_at_start=T(clear)), "paper")
    assert "warnings" not in out
    assert out["clear_rate_at_disambiguation"] == (clear if started else None)


def test_low_clear_message_says_the_rate_and_the_step_where_known():
    assert "disambiguation at step 7 with only 75% of labeled" in low_clear_message(0.75, 7)
    assert "disambiguation with only 25% of labeled" in low_clear_message(0.25)
    assert mean_or_none(np.array([])) is None


def test_relabels_csv_rows_by_hand():
    labeled = SimpleNamespace(labels=np.array(GIVEN), ids=["a", "b", "c", "d"], true_labels=TRUTH)
    evidence = T([[0.5, 0.3, 0.2], [0.0, 0.1, 0.9], [0.25, 0.35, 0.4], [0.2, 0.7, 0.1]])
    header, rows = relabel_table(lion_state(evidence=evidence), labeled, ("X", "Y", "Z"))
    assert header == [*RELABEL_COLUMNS, "status", "w_x", "w_y", "w_z"]
    zeros = ["0.0000"] * 3
    assert rows == [
        [1, "b", 1, 2, 12, 2, "Y", "Z", "0.7000", "relabeled", "0.1000", "0.2000", "0.7000"],
        # demoted, never relabeled: no step or weight, and the evidence that keeps it aside
        [2, "c", 1, 1, "", 0, "Y", "Y", "", "demoted", "0.2500", "0.3500", "0.4000"],
        # its truth unknown (-1): empty, as `lionfer relabel` gives it
        [3, "d", 0, 1, "", "", "X", "Y", "0.0000", "relabeled", *zeros],
    ]
    # relabeled, then demoted: its relabel, as `lionfer relabel` gives it; no evidence kept: the
    # demoted image's w cells are empty
    state = lion_state(demoted=T([False, True, True, False]))
    header, rows = relabel_table(state, labeled, ("X", "Y", "Z"))
    assert rows[:2] == [
        [1, "b", 1, 2, 12, 2, "Y", "Z", "0.7000", "demoted", "0.1000", "0.2000", "0.7000"],
        [2, "c", 1, 1, "", 0, "Y", "Y", "", "demoted", "", "", ""],
    ]
    # a relabel at step 0 (in the first step) has its step, not an empty cell
    _, rows = relabel_table(lion_state(relabel_step=T([-1, 0, -1, -1])), labeled, ("X", "Y", "Z"))
    assert rows[0][4] == 0
    # a state without relabel steps or weights, and no truth: those cells are empty
    state = {"label": T([0, 2, 1, 1])}
    labeled.true_labels = None
    header, rows = relabel_table(state, labeled, ("X", "Y", "Z"))
    assert header == [*RELABEL_COLUMNS, "status"]
    assert rows == [
        [1, "b", 1, 2, "", "", "Y", "Z", "", "relabeled"],
        [3, "d", 0, 1, "", "", "X", "Y", "", "relabeled"],
    ]


# ---- the evidence check ----


class OffsetHeads(torch.nn.Module):
    """Two heads over 3 classes whose logits are the features themselves (head 0) and the
    features plus 5 for class 2 (head 1)."""

    def __init__(self):
        super().__init__()
        self.offset = torch.nn.Parameter(T([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]))

    def forward(self, features):
        return features[:, None, :] + self.offset


# labeled rows judged by their fold's head: head 0 names 0 and 1, head 1 names class 2 twice;
# all four given labels are named (head 0 alone names 2 of 4, head 1 alone 2 of 4)
CHECK_FEATURES = T([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 3.0, 0.0], [3.0, 0.0, 0.0]])
CHECK_GIVEN = np.array([0, 1, 2, 2])
CHECK_FOLDS = T([0, 0, 1, 1])
# test rows by the heads' mean p: [3, 0, 0] → 0 (0.51 against 0.46 for 2), [0, 3, 0] → 1,
# [0, 0, 3] → 2; the labels 0, 2, 2 and an unknown one: 2 of the 3 known named
CHECK_TEST = T([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
CHECK_TEST_LABELS = np.array([0, 2, 2, -1])


def check_probe(repeat: int = 1):
    parts = {
        "labeled": (CHECK_FEATURES.repeat(repeat, 1), CHECK_GIVEN),
        "test": (CHECK_TEST.repeat(repeat, 1), np.tile(CHECK_TEST_LABELS, repeat)),
    }
    return Probe(None, parts.__getitem__)


def test_the_evidence_check_compares_the_fold_heads_with_the_test_labels_by_hand():
    check = evidence_check(OffsetHeads(), CHECK_FOLDS, CHECK_GIVEN, check_probe())
    assert check["labeled_agreement"] == 1.0 and check["test_agreement"] == pytest.approx(2 / 3)
    # 4/4 against 2/3: pooled 6/7, variance 6/7 · 1/7 · (1/4 + 1/3)
    variance = 6 / 7 * (1 / 7) * (1 / 4 + 1 / 3)
    assert check["z"] == pytest.approx((1 - 2 / 3) / variance**0.5)  # 1.25
    assert check["memorised"] is False


def test_the_evidence_check_finds_memorised_evidence_beyond_z_3():
    given, folds = np.tile(CHECK_GIVEN, 10), CHECK_FOLDS.repeat(10)
    check = evidence_check(OffsetHeads(), folds, given, check_probe(repeat=10))
    # 40/40 against 20/30: pooled 60/70, variance 6/7 · 1/7 · (1/40 + 1/30); z = 3.94
    variance = 6 / 7 * (1 / 7) * (1 / 40 + 1 / 30)
    assert check["z"] == pytest.approx((1 - 2 / 3) / variance**0.5)
    assert check["z"] > MEMORISED_Z and check["memorised"] is True


def test_evidence_at_exactly_the_line_is_not_memorised(monkeypatch):
    z = evidence_check(OffsetHeads(), CHECK_FOLDS, CHECK_GIVEN, check_probe())["z"]
    monkeypatch.setattr(lion_report, "MEMORISED_Z", z)
    check = evidence_check(OffsetHeads(), CHECK_FOLDS, CHECK_GIVEN, check_probe())
    assert check["memorised"] is False  # memorised only above the line


def test_the_evidence_check_needs_test_labels_and_reaches_the_label_figures():
    parts = {"labeled": (CHECK_FEATURES, CHECK_GIVEN), "test": (CHECK_TEST, np.full(4, -1))}
    assert evidence_check(OffsetHeads(), CHECK_FOLDS, CHECK_GIVEN, Probe(None, parts.get)) is None
    state = lion_state(fold=T([0, 0, 1, 1]))
    quality = label_figures(state, T(GIVEN), probe(), cosine_to_prototypes)["label_quality"]
    assert "evidence_check" not in quality  # no heads: another rule
    state = lion_state(
        fold=CHECK_FOLDS, prototype_ready=T([False, False, False]), **no_audit(len(CHECK_GIVEN), 1)
    )
    figures = label_figures(
        state, T(CHECK_GIVEN), check_probe(), cosine_to_prototypes, OffsetHeads()
    )
    # the heads train on the state's labels 0, 2, 1, 1 less the demoted image 2: head 0 on image
    # 3 (label 1), head 1 on images 0 and 1 (labels 0, 2); image 0's head trains on no image
    # given its label 0, so the check leaves it out
    assert figures["label_quality"]["evidence_check"] == evidence_check(
        OffsetHeads(), CHECK_FOLDS, CHECK_GIVEN, check_probe(), JUDGED
    )


def test_the_evidence_check_counts_only_the_labeled_images_trained_on_their_labels():
    trained = np.array([True, True, False, True])  # image 2 in the open audit
    check = evidence_check(OffsetHeads(), CHECK_FOLDS, CHECK_GIVEN, check_probe(), trained)
    assert check["labeled_agreement"] == 1.0  # 3 of 3
    variance = 5 / 6 * (1 / 6) * (1 / 3 + 1 / 3)
    assert check["z"] == pytest.approx((1 - 2 / 3) / variance**0.5)
    given = np.array([0, 1, 0, 2])  # image 2's label is not named: it does not count
    assert evidence_check(OffsetHeads(), CHECK_FOLDS, given, check_probe(), trained) == check
    none = np.zeros(4, dtype=bool)
    assert evidence_check(OffsetHeads(), CHECK_FOLDS, CHECK_GIVEN, check_probe(), none) is None


# the images of lion_state's labels whose fold head (CHECK_FOLDS) trains on an image of their
# given label (CHECK_GIVEN), as the label figures count them: all but image 0
JUDGED = np.array([False, True, True, True])


def audit_state(step, z, passed=True):
    """Image 2 the audit, read at step (-1: not yet, so held out) with this z."""
    return lion_state(
        fold=CHECK_FOLDS,
        prototype_ready=T([False, False, False]),
        audit=T([False, False, True, False]),
        audit_step=T(step),
        audit_z=T(z),
        audit_passed=T(passed),
    )


def test_the_label_figures_report_the_audit_and_leave_its_open_images_out_of_the_check():
    figures = label_figures(
        audit_state(-1, float("-inf")),
        T(CHECK_GIVEN),
        check_probe(),
        cosine_to_prototypes,
        OffsetHeads(),
        3.0,
    )["label_quality"]
    assert figures["evidence_audit"] == {
        "images": 1,
        "read_step": None,
        "z": None,
        "threshold": 3.0,
        "passed": True,
    }
    trained = np.array([True, True, False, True])
    assert figures["evidence_check"] == evidence_check(
        OffsetHeads(), CHECK_FOLDS, CHECK_GIVEN, check_probe(), trained & JUDGED
    )
    figures = label_figures(
        audit_state(60, 4.5, passed=False),
        T(CHECK_GIVEN),
        check_probe(),
        cosine_to_prototypes,
        OffsetHeads(),
        2.5,
    )["label_quality"]
    assert figures["evidence_audit"] == {
        "images": 1,
        "read_step": 60,
        "z": 4.5,
        "threshold": 2.5,
        "passed": False,
    }
    assert figures["evidence_check"]["labeled_agreement"] == 1.0
    assert figures["evidence_check"] == evidence_check(
        OffsetHeads(), CHECK_FOLDS, CHECK_GIVEN, check_probe(), JUDGED
    )  # read: the audit trains on its labels and counts
    state = audit_state(-1, float("-inf"))
    state["audit"] = T([False] * 4)
    figures = label_figures(
        state, T(CHECK_GIVEN), check_probe(), cosine_to_prototypes, OffsetHeads(), 3.0
    )["label_quality"]
    assert "evidence_audit" not in figures  # no audit
    state["audit_passed"] = T(False)  # one asked for that no class could give an image to
    figures = label_figures(
        state, T(CHECK_GIVEN), check_probe(), cosine_to_prototypes, OffsetHeads(), 3.0
    )["label_quality"]
    assert figures["evidence_audit"] == {
        "images": 0,
        "read_step": None,
        "z": None,
        "threshold": 3.0,
        "passed": False,
    }


@pytest.mark.parametrize(
    "rates, kept",
    [
        ([0.0, 0.5], {"judged_agreement": 0.0, "audit_agreement": 0.5}),  # a rate of 0 is kept
        ([0.75, 0.0], {"judged_agreement": 0.75, "audit_agreement": 0.0}),
        ([-1.0, -1.0], {}),  # not read, or none of the audit seen
    ],
)
def test_the_audit_figures_carry_the_rates_its_z_compares_where_known(rates, kept):
    state = {**audit_state(60, 1.5), "audit_agreement": T(rates)}
    figures = audit_figures(state, 3.0)
    assert figures == {
        "images": 1,
        "read_step": 60,
        "z": 1.5,
        "threshold": 3.0,
        "passed": True,
        **kept,
    }


def test_the_audit_figures_list_every_read_made_in_order():
    trail = T([[60.0, 2.34], [120.0, 3.42], [-1.0, float("-inf")]])
    state = {**audit_state(120, 3.42, passed=False), "audit_trail": trail}
    assert audit_figures(state, 3.0)["reads"] == [
        {"step": 60, "z": pytest.approx(2.34)},
        {"step": 120, "z": pytest.approx(3.42)},
    ]
    # a read that saw none of the audit's images has no z; none made, no read listed
    trail = T([[60.0, float("-inf")], [-1.0, float("-inf")]])
    state = {**audit_state(60, float("-inf")), "audit_trail": trail}
    assert audit_figures(state, 3.0)["reads"] == [{"step": 60, "z": None}]
    state = {**audit_state(-1, float("-inf")), "audit_trail": T([[-1.0, float("-inf")]])}
    assert audit_figures(state, 3.0)["reads"] == []
    state = {**audit_state(-1, float("-inf")), "audit_trail": T([[0.0, 2.0], [-1.0, 0.0]])}
    assert audit_figures(state, 3.0)["reads"] == [{"step": 0, "z": 2.0}]  # a read at step 0


def test_an_audit_read_at_step_0_reports_step_0():
    state = audit_state(0, 1.5)
    figures = label_figures(
        state, T(CHECK_GIVEN), check_probe(), cosine_to_prototypes, OffsetHeads(), 3.0
    )["label_quality"]
    assert figures["evidence_audit"]["read_step"] == 0
    # read: its image counts in the check like any other
    assert figures["evidence_check"] == evidence_check(
        OffsetHeads(), CHECK_FOLDS, CHECK_GIVEN, check_probe(), JUDGED
    )


def evidence_state():
    """Seven labeled images given 0, 0, 1, 1, 2, 2, 1; image 1 relabeled 0 → 2, image 3 relabeled
    1 → 2, image 5 demoted, image 6 never visited. The evidence names class 0, 2, 0, 2, 2, 1, 1."""
    return {
        "label": T([0, 2, 1, 2, 2, 2, 1]),
        "demoted": T([False, False, False, False, False, True, False]),
        "evidence_visits": T([3, 3, 3, 3, 3, 3, 0]),
        "evidence": T(
            [
                [0.8, 0.1, 0.1],  # kept, given 0, named 0
                [0.1, 0.2, 0.7],
                [0.6, 0.3, 0.1],  # kept, given 1, named 0
                [0.1, 0.2, 0.7],
                [0.1, 0.1, 0.8],  # kept, given 2, named 2
                [0.2, 0.7, 0.1],  # demoted
                [0.1, 0.8, 0.1],  # never visited: no evidence
            ]
        ),
    }


GIVEN_7 = np.array([0, 0, 1, 1, 2, 2, 1])


def test_class_agreement_counts_only_the_images_kept_on_their_labels():
    state = evidence_state()
    current, demoted = state["label"].numpy(), state["demoted"].numpy()
    visited = state["evidence_visits"].numpy() > 0
    named, agree = lion_report.class_agreement(
        state["evidence"], GIVEN_7, current, demoted, visited
    )
    # kept and visited: images 0 (given 0, named 0), 2 (given 1, named 0), 4 (given 2, named 2)
    assert named.tolist() == [2, 0, 1] and agree.tolist() == [1, 0, 1]


def test_evidence_by_class_by_hand():
    truth = np.array([0, 2, 1, 0, 2, 2, 1])  # image 1's relabel is right, image 3's wrong
    figures = lion_report.evidence_by_class(evidence_state(), GIVEN_7, ("X", "Y", "Z"), truth)
    assert figures["X"] == {
        "named": 2,
        "agreement": 0.5,
        "relabeled_to": 0,
        "relabeled_to_known": 0,
        "relabeled_to_right": 0,
    }
    # the unvisited image 6 is no evidence for Y
    assert figures["Y"]["named"] == 0 and figures["Y"]["agreement"] is None
    # images 1 and 3 went to Z, one rightly; the demoted image 5 is not a relabel
    z = figures["Z"]
    assert (z["named"], z["agreement"]) == (1, 1.0)
    assert (z["relabeled_to"], z["relabeled_to_known"], z["relabeled_to_right"]) == (2, 2, 1)
    # the truth of image 1 unknown: it is not counted as known, nor as right
    truth[1] = -1
    z = lion_report.evidence_by_class(evidence_state(), GIVEN_7, ("X", "Y", "Z"), truth)["Z"]
    assert (z["relabeled_to"], z["relabeled_to_known"], z["relabeled_to_right"]) == (2, 1, 0)
    # without the truth, only what needs none
    assert set(lion_report.evidence_by_class(evidence_state(), GIVEN_7, "XYZ")["Z"]) == {
        "named",
        "agreement",
        "relabeled_to",
    }


def test_label_state_by_hand():
    given = np.array([0, 1, 2, 1])
    state = {
        "label": torch.tensor([0, 2, 2, 1]),
        "relabel_step": torch.tensor([-1, 7, -1, -1]),
        "ambiguous": torch.tensor([False, False, True, False]),
        "weights": torch.tensor([[0.0, 0, 0], [0, 0, 0], [0.4, 0, 0.6], [0, 0, 0]]),
        "relabel_weights": torch.tensor([[0.0, 0, 0], [0.1, 0.05, 0.85], [0, 0, 0], [0, 0, 0]]),
        "demoted": torch.tensor([False, False, False, True]),
        "evidence": torch.tensor([[0.7, 0.2, 0.1], [0, 0, 1], [0, 0, 1], [0.5, 0.1, 0.4]]),
    }
    table = label_state(state, given, 3)
    assert table["demoted"].tolist() == [False, False, False, True]
    np.testing.assert_allclose(table["w"][3], [0.5, 0.1, 0.4])  # demoted: the evidence now
    assert table["label"].tolist() == [0, 2, 2, 1] and table["step"].tolist() == [-1, 7, -1, -1]
    np.testing.assert_allclose(table["weight"], [np.nan, 0.85, np.nan, np.nan])
    np.testing.assert_allclose(table["w"][1], [0.1, 0.05, 0.85])  # at the relabel
    np.testing.assert_allclose(table["w"][2], [0.4, 0.0, 0.6])  # ambiguous now
    assert np.isnan(table["w"][0]).all()
    assert np.isnan(table["agreement"]).all()  # no evidence visits: no class agreement
    legacy = label_state({"label": state["label"], "relabel_weight": torch.tensor([0, 0.9, 0, 0])},
                         given, 3)  # fmt: skip
    np.testing.assert_allclose(legacy["weight"], [np.nan, 0.9, np.nan, np.nan])
    plain = label_state({}, given, 3)  # an algorithm that never changes labels
    assert plain["label"].tolist() == given.tolist() and np.isnan(plain["w"]).all()
    assert not plain["demoted"].any()
    with pytest.raises(InputError, match="covers 2 images but .* has 4"):
        label_state({"label": torch.tensor([0, 1])}, given, 3)
