"""Pure evaluation metrics on label arrays and confusion matrices, seed summaries, relabel quality.

Inputs may be numpy arrays, lists or CPU tensors; confusion matrices have rows = true class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


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


def fraction(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if hits.size else None


def relabel_metrics(given: Any, current: Any, true: Any = None) -> dict[str, Any]:
    """How many labels were changed and, where the truth is known (true ≥ 0), how well.

    count: samples whose current label differs from the given one.
    precision: of those, the fraction now equal to the true label (None when count is 0).
    recall: of the wrongly given labels, the fraction now equal to the true label (None if none).
    wrong_given: the number of given labels that differ from the true ones.
    given_accuracy, current_accuracy: the fraction of given / current labels equal to the truth;
    accuracy_gain: current − given (positive when relabeling fixed more than it broke).
    """
    given, current = as_labels(given), as_labels(current)
    if given.shape != current.shape:
        raise ValueError(f"{given.size} given labels but {current.size} current labels")
    changed = current != given
    if true is None:
        return {"count": int(changed.sum())}
    true = as_labels(true)
    if true.shape != given.shape:
        raise ValueError(f"{given.size} given labels but {true.size} true labels")
    count = int(changed.sum())
    known = true >= 0
    given, current, true, changed = given[known], current[known], true[known], changed[known]
    wrong = given != true
    given_accuracy, current_accuracy = fraction(given == true), fraction(current == true)
    return {
        "count": count,
        "precision": fraction(current[changed] == true[changed]),
        "recall": fraction(current[wrong] == true[wrong]),
        "wrong_given": int(wrong.sum()),
        "given_accuracy": given_accuracy,
        "current_accuracy": current_accuracy,
        "accuracy_gain": None if given_accuracy is None else current_accuracy - given_accuracy,
    }
