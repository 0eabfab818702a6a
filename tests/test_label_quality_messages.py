"""The label-quality messages of a run that changes labels, from fabricated summaries and states:
counts of one in the singular, the evidence check where no head could judge an image, the
audit and noise check where no decision was made, a run that changed no label, the right
relabels where some truth is unknown (summary.json, `lionfer report`, `lionfer relabel`)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lionfer.algorithms import lion_report
from lionfer.algorithms.base import Probe
from lionfer.algorithms.lion_audit import no_audit
from lionfer.algorithms.lion_equations import cosine_to_prototypes
from lionfer.reporting import collapse as K
from lionfer.reporting.run_summary import (
    error_type_line,
    evidence_audit_line,
    evidence_check_line,
    fixed_line,
    label_quality_lines,
    noise_check_line,
)
from lionfer.reporting.runs import Run


def T(x):
    return torch.tensor(x)


# ---- counts of one ----

AUDIT = {"read_step": 60, "z": 0.5, "threshold": 3.0, "passed": True}


def test_an_audit_of_one_image_reads_in_the_singular():
    assert evidence_audit_line({**AUDIT, "images": 1}).startswith(
        "evidence audit: 1 labeled image held out of training on its label until the first "
        "decision, at step 60"
    )
    assert evidence_audit_line({**AUDIT, "images": 2}).startswith(
        "evidence audit: 2 labeled images held out of training on their labels until"
    )


NOISE = {
    "noise_min": 0.035,
    "threshold": 1.645,
    "read_step": 120,
    "z": 0.0,
    "rate": 0.1,
    "temperature": 0.4,
    "holds": False,
}


def test_a_noise_check_read_once_reads_in_the_singular():
    line = noise_check_line({**NOISE, "reads": 1, "held": 0})
    assert line.startswith("noise check: at its only read did the given labels look nearly right")
    line = noise_check_line({**NOISE, "reads": 1, "held": 1, "z": 2.5, "holds": True})
    assert line.startswith("noise check: at its only read the given labels looked nearly right")
    assert "1 reads" not in line


def test_one_demoted_image_reads_in_the_singular():
    wrong = error_type_line({"count": 2, "demoted": {"count": 1, "wrong_given": 1}})
    assert wrong == "demoted to unlabeled: 1 (wrongly labeled)"
    right = error_type_line({"count": 2, "demoted": {"count": 1, "wrong_given": 0}})
    assert right == "demoted to unlabeled: 1 (rightly labeled)"
    two = error_type_line({"count": 2, "demoted": {"count": 2, "wrong_given": 1}})
    assert two == "demoted to unlabeled: 2 (1 of them wrongly labeled)"


def test_one_labeled_image_reads_in_the_singular():
    line = label_quality_lines({"num_labels": 1, "relabel": {"count": 1}})[0]
    assert line == "relabeled 1 of 1 labeled image"


# ---- where no decision was made ----


def test_an_audit_that_stopped_every_decision_says_when_it_was_read_not_decided():
    audit = {
        **AUDIT,
        "images": 10,
        "read_step": 240,
        "z": 3.3,
        "passed": False,
        "reads": [{"step": 120, "z": 2.4}, {"step": 240, "z": 3.3}],
    }
    line = evidence_audit_line(audit)
    assert line.startswith(
        "evidence audit: 10 labeled images held out of training on their labels until the audit "
        "was read, at step 240, after 1 inconclusive read (z = 2.4 at step 120): "
    )
    assert "first decision" not in line and line.endswith("so no label was changed")


def test_a_noise_check_that_held_every_read_says_no_decision_was_made_in_the_run():
    line = noise_check_line({**NOISE, "reads": 90, "held": 90, "z": 2.5, "holds": True})
    assert line == (
        "noise check: at all 90 of its reads the given labels looked nearly right (under 3.5% of "
        "them ruled out by the evidence, z above 1.645), so it held back every decision: no "
        "decision was made in the run (last read at step 120: 10.0% ruled out, z = 2.5)"
    )
    some = noise_check_line({**NOISE, "reads": 90, "held": 3})
    assert "no decision was made until the next read" in some


def test_a_run_that_changed_no_label_says_so_in_a_plain_sentence():
    relabel = {
        "count": 0,
        "precision": None,
        "recall": None,
        "wrong_given": 0,
        "given_accuracy": 1.0,
        "current_accuracy": 1.0,
        "broken": 0,
        "demoted": {"count": 0, "wrong_given": 0},
    }
    lines = label_quality_lines({"num_labels": 100, "relabel": relabel})
    assert lines == ["no label changed, none demoted, of 100 labeled images; labels right 100.0%"]
    # an algorithm that never demotes does not say it demoted none
    plain = {k: v for k, v in relabel.items() if k != "demoted"}
    assert label_quality_lines({"num_labels": 100, "relabel": plain})[0].startswith(
        "no label changed, of 100 labeled images"
    )
    # demoted only: no precision of relabels that are not there
    demoted = {**relabel, "recall": 0.0, "demoted": {"count": 2, "wrong_given": 1}}
    lines = label_quality_lines({"num_labels": 100, "relabel": demoted})
    assert lines[0] == (
        "relabeled 0 of 100 labeled images: recall 0.0%; labels right 100.0% as given, 100.0% now"
    )
    assert (
        lines[1] == "correct labels broken: 0; demoted to unlabeled: 2 (1 of them wrongly labeled)"
    )


# ---- the evidence check: images no head could judge ----


class OffsetHeads(torch.nn.Module):
    """Two heads over 3 classes: the features themselves (head 0), and plus 5 for class 2
    (head 1)."""

    def __init__(self):
        super().__init__()
        self.offset = torch.nn.Parameter(T([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]))

    def forward(self, features):
        return features[:, None, :] + self.offset


GIVEN = np.array([0, 1, 2, 2])
# head 0 trains on fold 1 (labels 1, 2), head 1 on fold 0 (labels 0, 2): images 0 and 1 are
# judged by a head that trains on no image of their label, images 2 and 3 by one that does
FOLDS = T([0, 1, 0, 1])
# their fold heads name 1 (image 0, given 0), 2 (image 1, given 1), 2 and 2 (images 2, 3)
FEATURES = T([[0.0, 3.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
TEST = T([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])


def check_probe():
    parts = {"labeled": (FEATURES, GIVEN), "test": (TEST, np.array([0, 1, 2]))}
    return Probe(None, parts.__getitem__)


def evidence_rule_state(folds=FOLDS, demoted=(False,) * 4):
    m = len(GIVEN)
    return {
        "label": T(GIVEN),
        "ambiguous": T([False] * m),
        "candidates": T([[False] * 3] * m),
        "started": T(True),
        "start_step": T(0),
        "clear_at_start": T(1.0),
        "prototypes": torch.zeros(3, 3),
        "prototype_ready": T([False] * 3),
        "fold": folds,
        "demoted": T(list(demoted)),
        **no_audit(m, 1),
    }


def evidence_check_of(state) -> dict:
    figures = lion_report.label_figures(
        state, T(GIVEN), check_probe(), cosine_to_prototypes, OffsetHeads(), 3.0
    )
    return figures["label_quality"]["evidence_check"]


def test_the_evidence_check_leaves_out_the_images_whose_head_cannot_name_their_label():
    check = evidence_check_of(evidence_rule_state())
    # images 2 and 3 only: both named (counting all four: 2 of 4)
    assert check["labeled_agreement"] == 1.0
    assert check["test_agreement"] == 1.0  # the heads' mean p names 0, 1, 2
    assert check["z"] == pytest.approx(0.0) and check["memorised"] is False
    # image 3 demoted: head 0 trains on no image labeled 2 now, so image 2 is left out too
    check = evidence_check_of(evidence_rule_state(demoted=(False, False, False, True)))
    assert check["labeled_agreement"] == 1.0  # image 3 alone


def test_an_image_set_aside_trains_no_head_so_others_of_its_label_may_go_unjudged():
    """judgeable: a demoted image, or one the audit holds before its read, trains no head.
    FOLDS 0, 1, 0, 1 and labels 0, 1, 2, 2: images 2 and 3 (label 2) are judged by heads that
    train on each other; set image 3 aside and image 2's head trains on no image labeled 2."""
    assert lion_report.judgeable(evidence_rule_state(), GIVEN, 3).tolist() == [
        False,
        False,
        True,
        True,
    ]
    demoted = evidence_rule_state(demoted=(False, False, False, True))
    assert lion_report.judgeable(demoted, GIVEN, 3).tolist() == [False, False, False, True]
    held = {**evidence_rule_state(), "audit": T([False, False, False, True])}  # not read yet
    assert lion_report.judgeable(held, GIVEN, 3).tolist() == [False, False, False, True]
    read = {**held, "audit_step": T(5)}  # read: it trains on its label again
    assert lion_report.judgeable(read, GIVEN, 3).tolist() == [False, False, True, True]


def test_where_no_head_trains_on_another_image_of_a_label_the_check_cannot_be_made():
    # folds 0, 0, 1, 1: head 0 trains on labels 2, 2 and head 1 on 0, 1: no image is judged
    state = evidence_rule_state(folds=T([0, 0, 1, 1]))
    check = evidence_check_of(state)
    assert check == {
        "labeled_agreement": None,
        "test_agreement": 1.0,
        "z": None,
        "memorised": False,
    }
    line = evidence_check_line(check, changed=False)
    assert line.startswith("evidence check: could not be made: no labeled image's fold head ")
    assert "z =" not in line and "no sign" not in line and "raise data.num_labels" in line
    summary = {"num_labels": 4, "relabel": {"count": 0}, "label_quality": {"evidence_check": check}}
    assert label_quality_lines(summary)[-1] == line
    # nor is it judged by `lionfer report`
    run = Run(Path(), "", "", 0, {**summary, "algorithm": "lion"})
    assert K.evidence_memorised(run) is None and not K.evidence_check(run)


def by_class_state():
    """Five labeled images given 0, 0, 1, 2, 1 in folds 0, 1, 2, 0, 1 (three heads); image 4
    relabeled 1 → 0. Head 0 trains on labels 0, 1, 0 (images 1, 2, 4), head 1 on 0, 1, 2 and head
    2 on 0, 0, 2, 0: image 2 (given 1, fold 2) and image 3 (given 2, fold 0) have a head that
    trains on no image of their label. The evidence names 0, 0, 0, 1, 0."""
    return {
        "label": T([0, 0, 1, 2, 0]),
        "fold": T([0, 1, 2, 0, 1]),
        "demoted": T([False] * 5),
        "evidence_visits": T([3] * 5),
        "evidence": T(
            [
                [0.8, 0.1, 0.1],
                [0.7, 0.2, 0.1],
                [0.6, 0.3, 0.1],  # cannot name its label 1
                [0.2, 0.7, 0.1],  # cannot name its label 2
                [0.8, 0.1, 0.1],  # relabeled to 0
            ]
        ),
        "relabel_weights": T([[0.0] * 3] * 3 + [[0.0] * 3, [0.8, 0.1, 0.1]]),
    }


BY_CLASS_GIVEN = np.array([0, 0, 1, 2, 1])


def test_class_agreement_leaves_out_the_images_whose_head_cannot_name_their_label():
    figures = lion_report.evidence_by_class(by_class_state(), BY_CLASS_GIVEN, "XYZ")
    # counted: images 0 and 1, both named 0 (counting 2 too: 2 of 3); image 3 names no Y
    assert (figures["X"]["named"], figures["X"]["agreement"]) == (2, 1.0)
    assert (figures["Y"]["named"], figures["Y"]["agreement"]) == (0, None)
    assert figures["X"]["relabeled_to"] == 1
    # the relabel table's agreement of image 4's new class is the same
    table = lion_report.label_state(by_class_state(), BY_CLASS_GIVEN, 3)
    assert table["agreement"][4] == 1.0 and np.isnan(table["agreement"][:4]).all()


def test_one_labeled_image_a_class_gives_no_class_an_agreement():
    state = {
        "label": T([0, 1, 2]),
        "fold": T([0, 1, 2]),
        "demoted": T([False] * 3),
        "evidence_visits": T([2] * 3),
        "evidence": T([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]]),
    }
    figures = lion_report.evidence_by_class(state, np.array([0, 1, 2]), "XYZ")
    assert all(row["named"] == 0 and row["agreement"] is None for row in figures.values())


# ---- the relabels of a memorised run ----


def memorised_run(relabel: dict) -> Run:
    check = {"labeled_agreement": 0.91, "test_agreement": 0.747, "z": 3.5, "memorised": True}
    summary = {"relabel": relabel, "label_quality": {"evidence_check": check}}
    return Run(Path(), "lion", "", 0, summary)


def test_a_memorised_run_that_changed_no_label_is_not_said_to_have_relabeled():
    evidence = K.evidence_memorised(memorised_run({"count": 0, "demoted": {"count": 0}}))
    assert evidence == (
        "out of fold, the heads name the given label of 91% of labeled images and the label of "
        "75% of test images (z = 3.5): the features had learnt the labels, but this run changed "
        "no label"
    )
    for relabel in ({"count": 3}, {"count": 0, "demoted": {"count": 2}}):
        evidence = K.evidence_memorised(memorised_run(relabel))
        assert evidence.endswith("(z = 3.5): its relabels are not evidence")


# ---- right relabels where some truth is unknown ----


def test_the_label_figures_count_the_right_relabels_among_those_of_known_truth():
    given = np.array([0, 1, 2, 0, 1, 2])
    state = {
        **evidence_rule_state(),
        "label": T([1, 1, 0, 2, 2, 2]),  # images 0, 2, 3 and 4 relabeled
        "demoted": T([False, False, False, False, True, False]),  # image 4 demoted
        "ambiguous": T([False] * 6),
        "candidates": T([[False] * 3] * 6),
    }
    truth = np.array([1, 1, 1, -1, 2, 2])  # image 0 relabeled rightly, 2 wrongly, 3 unknown
    parts = {"labeled": (torch.zeros(6, 3), given), "test": (TEST, np.array([0, 1, 2]))}
    figures = lion_report.label_figures(
        state, T(given), Probe(truth, parts.__getitem__), cosine_to_prototypes
    )
    relabel = figures["relabel"]
    assert relabel["count"] == 3 and relabel["precision"] == 0.5
    assert (relabel["count_known"], relabel["count_right"]) == (2, 1)


def test_the_precision_printed_says_over_how_many_relabels_where_some_truth_is_unknown():
    relabel = {
        "count": 4,
        "precision": 1 / 3,
        "recall": 0.1,
        "given_accuracy": 0.7,
        "current_accuracy": 0.65,
        "count_known": 3,
        "count_right": 1,
    }
    line = label_quality_lines({"num_labels": 40, "relabel": relabel})[0]
    assert line.startswith(
        "relabeled 4 of 40 labeled images: precision 33.3% (of the 3 of known truth), recall 10.0%;"
    )
    every = {**relabel, "count_known": 4}
    assert "precision 33.3%, recall" in label_quality_lines({"num_labels": 40, "relabel": every})[0]


def worse_run(**counts) -> Run:
    relabel = {
        "count": 4,
        "precision": 2 / 3,
        "given_accuracy": 0.8,
        "current_accuracy": 0.75,
        "broken": 1,
        **counts,
    }
    return Run(Path(), "lion", "", 0, {"relabel": relabel})


def test_labels_made_worse_counts_the_right_relabels_of_known_truth():
    # 4 relabels, 3 of known truth, 2 of those right: not round(4 · 2/3) = 3
    evidence = K.labels_made_worse(worse_run(count_known=3, count_right=2))
    assert evidence == (
        "labels 80% right as given → 75% at the end: 4 relabels, 2 of the 3 of known truth "
        "right (67%), 1 correct label broken"
    )
    evidence = K.labels_made_worse(worse_run(count_known=4, count_right=3, precision=0.75))
    assert ": 4 relabels, 3 of them right (75%)," in evidence
    # a summary written before the counts were kept: the precision alone
    assert ": 4 relabels, precision 67%, 1 correct" in K.labels_made_worse(worse_run())


# ---- `lionfer relabel` where some truth is unknown ----


def relabel_row(index, given, current, truth, demoted=False):
    return {
        "index": index,
        "given_label": given,
        "current_label": current,
        "true_label": truth,
        "changed": current != given and not demoted,
        "ambiguous": False,
        "demoted": demoted,
    }


def test_lionfer_relabel_counts_the_truth_over_the_images_where_it_is_known(monkeypatch, tmp_path):
    from lionfer.inference import audit

    rows = [
        relabel_row(0, 0, 1, 1),  # right
        relabel_row(1, 0, 2, 1),  # wrong
        relabel_row(2, 1, 2, None),  # truth unknown
        relabel_row(3, 1, 1, None),  # kept
        relabel_row(4, 2, 2, 0, demoted=True),  # wrongly labeled
        relabel_row(5, 2, 2, 2, demoted=True),  # rightly labeled
        relabel_row(6, 0, 0, None, demoted=True),
    ]
    columns = ["index", "given_label", "current_label", "true_label"]
    monkeypatch.setattr(audit, "relabel_rows", lambda run, checkpoint: (columns, rows))
    report = audit.write_relabel_table("run", tmp_path / "labels.csv")
    assert report.summary() == (
        "7 labeled images, 3 relabeled (1 of the 2 with a known true label to it), 0 ambiguous "
        "now, 3 demoted to unlabeled (1 of the 2 with a known true label wrongly labeled) -> "
        f"{tmp_path / 'labels.csv'}"
    )
    # the truth known for all: as before; for none: no truth counts
    known = [{**r, "true_label": r["given_label"] if r["true_label"] is None else r["true_label"]}
             for r in rows]  # fmt: skip
    monkeypatch.setattr(audit, "relabel_rows", lambda run, checkpoint: (columns, known))
    said = audit.write_relabel_table("run", tmp_path / "all.csv").summary()
    assert "3 relabeled (1 to the true label)" in said
    assert "3 demoted to unlabeled (1 of them wrongly labeled)" in said
    unknown = [{**r, "true_label": None} for r in rows]
    monkeypatch.setattr(audit, "relabel_rows", lambda run, checkpoint: (columns, unknown))
    said = audit.write_relabel_table("run", tmp_path / "none.csv").summary()
    assert said.startswith("7 labeled images, 3 relabeled, 0 ambiguous now, 3 demoted to ")


def test_a_run_that_changed_no_label_still_counts_the_wrong_labels_it_left():
    relabel = {
        "count": 0,
        "precision": None,
        "recall": 0.0,
        "wrong_given": 12,
        "given_accuracy": 0.88,
        "current_accuracy": 0.88,
        "broken": 0,
        "demoted": {"count": 0, "wrong_given": 0},
        "by_error_type": {
            "slip": {"wrong_given": 5, "fixed": 0, "changed": 0},
            "ambiguity": {"wrong_given": 7, "fixed": 0, "changed": 0},
        },
    }
    lines = label_quality_lines({"num_labels": 100, "relabel": relabel})
    assert lines[0].startswith("no label changed, none demoted, of 100 labeled images")
    assert lines[1] == "wrong labels fixed: slips 0 of 5, ambiguous 0 of 7"


def test_a_kind_of_error_the_labels_do_not_hold_is_not_listed():
    """Injected noise makes slips alone: 'ambiguous 0 of 0' says nothing."""
    by_type = {
        "slip": {"wrong_given": 9, "fixed": 4, "changed": 5},
        "ambiguity": {"wrong_given": 0, "fixed": 0, "changed": 0},
    }
    assert fixed_line({"by_error_type": by_type}) == "wrong labels fixed: slips 4 of 9"
    clean = {k: {"wrong_given": 0, "fixed": 0, "changed": 0} for k in by_type}
    assert fixed_line({"by_error_type": clean}) == ""
    assert error_type_line({"by_error_type": clean, "broken": 2}) == "correct labels broken: 2"
