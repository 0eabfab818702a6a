"""Metrics against hand-computed numbers, including empty-class and no-relabel edge cases."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from lionfer.metrics import (
    accuracy,
    confusion_matrix,
    format_mean_std,
    macro_f1,
    mean_class_accuracy,
    mean_std,
    per_class_accuracy,
    relabel_metrics,
)

# Class 3 has no samples and is never predicted.
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]
CM = np.array([[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])


def test_confusion_matrix_rows_are_true_class():
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED, 4), CM)


def test_confusion_matrix_accepts_tensors():
    cm = confusion_matrix(torch.tensor(Y_TRUE), torch.tensor(Y_PRED), 4)
    np.testing.assert_array_equal(cm, CM)


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r"y_pred holds labels outside 0\.\.3: \[4\]"):
        confusion_matrix([0, 1], [0, 4], 4)
    with pytest.raises(ValueError, match="2 labels but y_pred has 3"):
        confusion_matrix([0, 1], [0, 1, 1], 4)


def test_accuracy_and_per_class():
    assert accuracy(CM) == pytest.approx(4 / 6)
    np.testing.assert_allclose(per_class_accuracy(CM), [2 / 3, 1 / 2, 1.0, np.nan])
    assert mean_class_accuracy(CM) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_macro_f1_hand_computed_and_matches_sklearn():
    # F1 = 2TP / (2TP + FP + FN): class 0 4/5, class 1 2/4, class 2 2/3; class 3 absent.
    assert macro_f1(CM) == pytest.approx((4 / 5 + 2 / 4 + 2 / 3) / 3)
    assert macro_f1(CM) == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))


def test_class_predicted_but_absent_counts_in_f1_not_in_mean_class_accuracy():
    cm = confusion_matrix([0, 0], [0, 1], 3)
    assert mean_class_accuracy(cm) == pytest.approx(0.5)
    assert math.isnan(per_class_accuracy(cm)[1])
    assert macro_f1(cm) == pytest.approx((2 / 3 + 0) / 2)


def test_empty_confusion_matrix_fails():
    with pytest.raises(ValueError, match="empty"):
        accuracy(np.zeros((3, 3), dtype=int))
    with pytest.raises(ValueError, match="empty"):
        mean_class_accuracy(np.zeros((3, 3), dtype=int))


def test_mean_std_uses_sample_std():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == pytest.approx(2.5)
    assert std == pytest.approx(math.sqrt(5 / 3))
    assert mean_std([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_format_mean_std():
    assert format_mean_std([0.67, 0.68, 0.69]) == "68.00±1.00"
    assert format_mean_std([0.6783]) == "67.83±0.00"
    assert format_mean_std([0.5, 0.6], scale=1, digits=3) == "0.550±0.071"


def test_relabel_metrics_hand_computed():
    given = [0, 1, 2, 3, 0, 1]
    true = [0, 2, 2, 1, 0, 1]  # items 1 and 3 were given wrong labels
    current = [0, 2, 1, 1, 1, 1]  # items 1, 2, 3, 4 relabeled; 1 and 3 to the truth
    assert relabel_metrics(given, current, true) == {
        "count": 4,
        "count_known": 4,  # the truth of every one is known
        "count_right": 2,  # items 1 and 3
        "precision": 0.5,
        "recall": 1.0,
        "wrong_given": 2,
        "given_accuracy": 4 / 6,  # items 0, 2, 4, 5 were given right
        "current_accuracy": 4 / 6,  # items 0, 1, 3, 5 are right now
        "accuracy_gain": 0.0,
        "broken": 2,  # items 2 and 4 were given right and changed
    }


def test_relabel_metrics_skip_unknown_truth_for_accuracy_but_count_every_change():
    out = relabel_metrics([0, 1, 2, 2], [1, 1, 0, 2], [1, -1, -1, 2])
    assert out["count"] == 2  # items 0 and 2 changed; item 2's truth is unknown
    assert out["count_known"] == 1 and out["count_right"] == 1  # item 0 alone, right
    assert out["precision"] == 1.0 and out["recall"] == 1.0 and out["wrong_given"] == 1
    assert out["given_accuracy"] == 0.5 and out["current_accuracy"] == 1.0
    assert out["accuracy_gain"] == 0.5


def test_relabel_metrics_without_truth_or_changes():
    assert relabel_metrics([0, 1, 2], [0, 2, 2]) == {"count": 1}
    unchanged = relabel_metrics([0, 1], [0, 1], [1, 1])
    assert unchanged["precision"] is None and unchanged["recall"] == 0.0
    assert unchanged["wrong_given"] == 1 and unchanged["accuracy_gain"] == 0.0
    clean = relabel_metrics([0, 1], [1, 1], [0, 1])
    assert clean["count"] == 1 and clean["precision"] == 0.0 and clean["recall"] is None
    assert clean["given_accuracy"] == 1.0 and clean["current_accuracy"] == 0.5


def test_relabel_metrics_by_error_type_broken_and_demoted_by_hand():
    #          0  1  2  3  4  5  6  7  8  9
    given = [0, 1, 2, 3, 0, 1, 2, 3, 4, 5]
    true = [0, 2, 2, 1, 1, 1, 0, 3, 0, -1]
    types = [0, 1, 0, 2, 2, 0, 1, 0, 2, 1]  # wrong: 1, 6 slips; 3, 4, 8 ambiguity
    current = [0, 2, 1, 3, 2, 1, 3, 0, 0, 4]
    demoted = [0, 0, 0, 0, 0, 0, 0, 1, 1, 0]  # 7 (right) and 8 (wrong) set aside
    out = relabel_metrics(given, current, true, types, demoted)
    # Changed: 1 (fixed), 2 (broken), 4 (to a third class), 6 (to a third class), 9 (no truth);
    # 7 and 8 are demoted, so they keep their given labels.
    assert out["count"] == 5
    assert out["precision"] == 0.25  # of 1, 2, 4, 6 only 1 is right now
    assert (out["count_known"], out["count_right"]) == (4, 1)  # 9's truth is unknown
    assert out["wrong_given"] == 5 and out["recall"] == 0.2  # 1 of 1, 3, 4, 6, 8
    assert out["given_accuracy"] == 4 / 9  # 0, 2, 5, 7
    assert out["current_accuracy"] == 4 / 9  # 0, 1, 5, 7 (7 with its given label)
    assert out["broken"] == 1  # item 2
    assert out["by_error_type"] == {
        "slip": {"wrong_given": 2, "fixed": 1, "changed": 2},  # 1, 6; item 9 has no truth
        "ambiguity": {"wrong_given": 3, "fixed": 0, "changed": 1},  # 3, 4, 8
    }
    assert out["demoted"] == {"count": 2, "wrong_given": 1}


def test_relabel_metrics_new_parts_are_optional():
    base = relabel_metrics([0, 1], [1, 1], [1, 1])
    assert "by_error_type" not in base and "demoted" not in base and base["broken"] == 0
    assert relabel_metrics([0, 1], [1, 0], demoted=[True, False]) == {
        "count": 1,
        "demoted": {"count": 1},
    }
    unknown = relabel_metrics([0, 1], [1, 1], [1, 1], error_types=[-1, -1])
    assert unknown["by_error_type"]["slip"] == {"wrong_given": 0, "fixed": 0, "changed": 0}
    # one of each per given label, or an error naming which
    for args, kwargs, what in [
        (([0, 1], [0]), {}, "1 current labels"),
        (([0, 1], [0, 1], [0, 1, 2]), {}, "3 true labels"),
        (([0, 1], [0, 1], [0, 1]), {"demoted": [True]}, "1 demoted flags"),
        (([0, 1], [0, 1], [0, 1]), {"error_types": [0]}, "1 error types"),
    ]:
        with pytest.raises(ValueError, match=f"^2 given labels but {what}$"):
            relabel_metrics(*args, **kwargs)


def test_labels_of_any_shape_are_read_as_one_column():
    column = np.array([[0], [0], [0], [1], [1], [2]])
    np.testing.assert_array_equal(confusion_matrix(column, np.array(Y_PRED), 4), CM)
    assert mean_std([[1.0, 2.0], [3.0, 4.0]]) == mean_std([1.0, 2.0, 3.0, 4.0])
    # the optional per-label flags and error types too
    given, current, true = [0, 1, 2], [1, 1, 0], [1, 1, 2]
    flat = relabel_metrics(given, current, true, [1, -1, 2], [False, False, True])
    columns = relabel_metrics(given, current, true, [[1], [-1], [2]], [[False], [False], [True]])
    assert columns == flat and flat["demoted"] == {"count": 1, "wrong_given": 0}


def test_errors_name_the_argument_and_the_problem():
    with pytest.raises(ValueError, match=r"^y_true holds labels outside 0\.\.1: \[2\]"):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match=r"outside 0\.\.1: \[-1, 2, 3, 4, 5\]$"):  # the first 5
        confusion_matrix([0] * 6, [-1, 2, 3, 4, 5, 6], 2)
    with pytest.raises(ValueError, match="^the confusion matrix is empty: no samples were"):
        accuracy(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="^mean_std needs at least one value$"):
        mean_std([])


def test_a_class_without_samples_gives_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(per_class_accuracy(CM)[3])


def test_relabel_metrics_with_no_truth_known_has_no_accuracy_gain():
    out = relabel_metrics([0, 1], [1, 1], [-1, -1])
    assert out["count"] == 1 and out["given_accuracy"] is None
    assert out["accuracy_gain"] is None and out["precision"] is None


def test_excess_agreement_z_by_hand():
    from lionfer.metrics import excess_agreement_z

    # 9/10 against 5/10: pooled 0.7, variance 0.7 · 0.3 · (1/10 + 1/10) = 0.042
    assert excess_agreement_z(9, 10, 5, 10) == pytest.approx(0.4 / 0.042**0.5)
    assert excess_agreement_z(5, 10, 9, 10) == pytest.approx(-0.4 / 0.042**0.5)
    # unequal sizes: 40/40 against 20/30, pooled 60/70
    pooled = 60 / 70
    variance = pooled * (1 - pooled) * (1 / 40 + 1 / 30)
    assert excess_agreement_z(40, 40, 20, 30) == pytest.approx((1 - 2 / 3) / variance**0.5)
    # no spread (all agree, or none) and empty sets: 0
    assert excess_agreement_z(10, 10, 4, 4) == 0.0
    assert excess_agreement_z(0, 10, 0, 4) == 0.0
    assert excess_agreement_z(0, 0, 3, 4) == 0.0 and excess_agreement_z(3, 4, 0, 0) == 0.0
    # one image a set is enough: 1/1 against 0/2, pooled 1/3, variance 1/3 · 2/3 · (1 + 1/2)
    assert excess_agreement_z(1, 1, 0, 2) == pytest.approx(1 / (1 / 3) ** 0.5)
    assert excess_agreement_z(0, 2, 1, 1) == pytest.approx(-(3**0.5))
