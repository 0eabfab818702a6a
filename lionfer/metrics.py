"""Pure evaluation metrics on label arrays and confusion matrices, seed summaries, relabel quality.

Inputs may be numpy arrays, lists or CPU tensors; confusion matrices have rows = true class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lionfer.labels import ERROR_TYPES


def as_labels(values: Any) -> np.ndarray:
    return np.asarray(values).astype(np.int64, copy=False).reshape(-1)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts, cm[t, p] = number of samples of true class t predicted as p."""
    y_true, y_pred = as_labels(y_true), as_labels(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise ValueError(
                f"{name} holds labels outside 0..{num_classes - 1}: {sorted(set(bad.tolist()))[:5]}"
            )
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def check_nonempty(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.sum() == 0:
        raise ValueError("the confusion matrix is empty: no samples were evaluated")
    return cm


def accuracy(cm: np.ndarray) -> float:
    cm = check_nonempty(cm)
    return float(np.trace(cm) / cm.sum())


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class; NaN for a class with no samples."""
    cm = np.asarray(cm)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def mean_class_accuracy(cm: np.ndarray) -> float:
    """Mean of per-class accuracies over the classes that have samples."""
    return float(np.nanmean(per_class_accuracy(check_nonempty(cm))))


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over classes present in the truth or the predictions (sklearn's average='macro')."""
    cm = check_nonempty(cm)
    tp = np.diag(cm).astype(np.float64)
    denominator = cm.sum(axis=0) + cm.sum(axis=1)  # 2TP + FP + FN
    present = denominator > 0
    return float(np.mean(2 * tp[present] / denominator[present]))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1); std 0.0 for a single value."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("mean_std needs at least one value")
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return float(np.mean(values)), std


def format_mean_std(values: Sequence[float], scale: float = 100, digits: int = 2) -> str:
    """'67.83±0.64' for accuracies given as fractions."""
    mean, std = mean_std(values)
    return f"{mean * scale:.{digits}f}±{std * scale:.{digits}f}"


def excess_agreement_z(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """The two-proportion z statistic (pooled variance) of hits_a / n_a above hits_b / n_b:
    positive when the first agreement rate is the higher. 0.0 where the pooled rate is 0 or 1
    (both sets agree everywhere or nowhere) and where a set is empty."""
    if n_a <= 0 or n_b <= 0:
        return 0.0
    pooled = (hits_a + hits_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return 0.0
    return float((hits_a / n_a - hits_b / n_b) / np.sqrt(variance))


def fraction(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if hits.size else None


# The wrong-label types of lionfer.labels.ERROR_TYPES, by code.
ERROR_TYPE_CODES = {name: ERROR_TYPES.index(name) for name in ("slip", "ambiguity")}


def relabel_metrics(
    given: Any, current: Any, true: Any = None, error_types: Any = None, demoted: Any = None
) -> dict[str, Any]:
    """How many labels were changed and, where the truth is known (true ≥ 0), how well.

    count: samples whose current label differs from the given one (demoted ones excepted).
    count_known, count_right: of those, the ones whose true label is known, and of these the
    ones now equal to it (count includes changes of unknown truth: count · precision is not the
    number right).
    precision: count_right / count_known (None when count_known is 0).
    recall: of the wrongly given labels, the fraction now equal to the true label (None if none).
    wrong_given: the number of given labels that differ from the true ones.
    given_accuracy, current_accuracy: the fraction of given / current labels equal to the truth;
    accuracy_gain: current − given (positive when relabeling fixed more than it broke).
    broken: the number of correctly given labels that were changed.

    error_types (optional, (M,) ERROR_TYPES codes, -1 unknown) adds by_error_type = {"slip":
    {...}, "ambiguity": {...}}, each with wrong_given (wrong given labels of that type), fixed
    (of those, now equal to the truth) and changed (labels of that type whose current label
    differs from the given one). demoted (optional, (M,) bool: labeled images that training set
    aside as unlabeled) adds demoted = {"count": n, "wrong_given": k}; a demoted image counts
    with its given label (in current_accuracy, recall and the rest) and never as changed.
    Without the truth, the result is {"count": ...} (and demoted's count where given).
    """
    given = as_labels(given)
    current = _as_long_as(given, as_labels(current), "current labels")
    if demoted is not None:
        demoted = _as_long_as(given, np.asarray(demoted, dtype=bool).reshape(-1), "demoted flags")
        current = np.where(demoted, given, current)
    changed = current != given
    if true is None:
        out: dict[str, Any] = {"count": int(changed.sum())}
        if demoted is not None:
            out["demoted"] = {"count": int(demoted.sum())}
        return out
    true = _as_long_as(given, as_labels(true), "true labels")
    if error_types is not None:
        codes = np.asarray(error_types).astype(np.int64).reshape(-1)
        error_types = _as_long_as(given, codes, "error types")
    count = int(changed.sum())
    known = true >= 0
    given, current, true, changed = given[known], current[known], true[known], changed[known]
    wrong = given != true
    given_accuracy, current_accuracy = fraction(given == true), fraction(current == true)
    right = current[changed] == true[changed]
    out = {
        "count": count,
        "count_known": int(changed.sum()),
        "count_right": int(right.sum()),
        "precision": fraction(right),
        "recall": fraction(current[wrong] == true[wrong]),
        "wrong_given": int(wrong.sum()),
        "given_accuracy": given_accuracy,
        "current_accuracy": current_accuracy,
        "accuracy_gain": None if given_accuracy is None else current_accuracy - given_accuracy,
        "broken": int((changed & ~wrong).sum()),
    }
    if error_types is not None:
        out["by_error_type"] = _by_error_type(error_types[known], wrong, changed, current == true)
    if demoted is not None:
        out["demoted"] = {
            "count": int(demoted.sum()),
            "wrong_given": int((demoted[known] & wrong).sum()),
        }
    return out


def _as_long_as(given: np.ndarray, values: np.ndarray, what: str) -> np.ndarray:
    """values, refused unless there is one for each given label."""
    if values.shape != given.shape:
        raise ValueError(f"{given.size} given labels but {values.size} {what}")
    return values


def _by_error_type(
    codes: np.ndarray, wrong: np.ndarray, changed: np.ndarray, right: np.ndarray
) -> dict[str, dict[str, int]]:
    """relabel_metrics' by_error_type from the labels' ERROR_TYPES codes and (M,) masks: wrongly
    given, changed, and now equal to the truth."""
    return {
        name: {
            "wrong_given": int((wrong & (codes == code)).sum()),
            "fixed": int((wrong & (codes == code) & right).sum()),
            "changed": int((changed & (codes == code)).sum()),
        }
        for name, code in ERROR_TYPE_CODES.items()
    }
