"""The report's flags on a run's labels (collapse.py holds the others and runs them all):
(c) its relabeling left the labeled set less accurate than given, (d) LION's evidence check
found its out-of-fold evidence memorised. Pure rules from a finished run
(lionfer.reporting.runs.Run) to the evidence of a flag, None where it does not hold; documented
in docs/report-flags.md."""

from __future__ import annotations

EPS = 1e-9  # so that exactly 90% (63 of 70) counts as 90%


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def judged_relabel(run) -> dict:
    """summary.json's relabel figures where they can be judged: given and current accuracy of
    the labeled set against the true labels (a method that changes labels, truth known)."""
    relabel = run.summary.get("relabel") or {}
    known = _number(relabel.get("given_accuracy")) and _number(relabel.get("current_accuracy"))
    return relabel if known else {}


def labels_made_worse(run) -> str | None:
    """Rule (c): the evidence when the labeled set ends less accurate than given (its relabels
    broke more correct labels than they fixed wrong ones); None otherwise, and where the run
    changes no labels or has no true labels."""
    relabel = judged_relabel(run)
    if not relabel or relabel["current_accuracy"] >= relabel["given_accuracy"] - EPS:
        return None
    count, precision = relabel.get("count"), relabel.get("precision")
    text = f"labels {_pct(relabel['given_accuracy'])} right as given → "
    text += f"{_pct(relabel['current_accuracy'])} at the end"
    if _number(count):
        text += f": {count:g} relabel{'' if count == 1 else 's'}"
        if _number(precision):
            text += f", {right_relabels(relabel)}"
    if _number(relabel.get("broken")):
        broken = relabel["broken"]
        text += f", {broken:g} correct label{'' if broken == 1 else 's'} broken"
    return text


def right_relabels(relabel: dict) -> str:
    """'3 of them right (15%)', or '2 of the 3 of known truth right (67%)' where the truth of
    some relabels is unknown (precision covers only the known ones), from summary.json's
    count_right and count_known; 'precision 15%' from a summary written before they were kept,
    whose count may hold relabels of unknown truth."""
    right, known = relabel.get("count_right"), relabel.get("count_known")
    precision = _pct(relabel["precision"])
    if not (_number(right) and _number(known)):
        return f"precision {precision}"
    if known == relabel["count"]:
        return f"{right:g} of them right ({precision})"
    return f"{right:g} of the {known:g} of known truth right ({precision})"


def changed_labels(relabel: dict) -> bool:
    """Whether the run relabeled or demoted any labeled image (summary.json's relabel)."""
    return relabel["count"] > 0 or bool((relabel.get("demoted") or {}).get("count"))


def evidence_check(run) -> dict:
    """summary.json's evidence check (LION's evidence rule), {} where the run has none."""
    quality = run.summary.get("label_quality") or {}
    check = quality.get("evidence_check") or {}
    return check if _number(check.get("z")) else {}


def evidence_memorised(run) -> str | None:
    """Rule (d): the evidence when the run's evidence check found its out-of-fold evidence
    memorised (memorised true: z above lion_report.MEMORISED_Z): its relabels are no evidence,
    or, where it relabeled and demoted nothing, that it changed no label (as its own evidence
    check line says); None otherwise, and where the run reports no evidence check."""
    check = evidence_check(run)
    if not check.get("memorised"):
        return None
    found = (
        f"out of fold, the heads name the given label of {_pct(check['labeled_agreement'])} of "
        f"labeled images and the label of {_pct(check['test_agreement'])} of test images "
        f"(z = {check['z']:.1f})"
    )
    relabel = run.summary.get("relabel") or {}
    if "count" in relabel and not changed_labels(relabel):  # its audit stopped them, say
        return found + ": the features had learnt the labels, but this run changed no label"
    return found + ": its relabels are not evidence"
