"""Flags against silent collapse, for reports: pure rules from a finished run
(lionfer.reporting.runs.Run) to flags with their reasons. A run is flagged when its test predictions
fall on two or fewer classes, when its pseudo-labels stay near chance over the last half of
training, when its relabeling left the labeled set less accurate than given, when LION's
evidence check found its out-of-fold evidence memorised, or when one class is recalled less
often than a uniform guess would recall it; each flag names
the schedule term that drove the unlabeled loss, with numbers read from the run's own logs
(metrics.jsonl) and config. The rules and thresholds are documented in
docs/report-flags.md."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lionfer.reporting.label_flags import (
    EPS,
    _number,
    _pct,
    evidence_check,
    evidence_memorised,
    judged_relabel,
    labels_made_worse,
)
from lionfer.reporting.runs import Run
from lionfer.reporting.tables import column_key
from lionfer.version import docs_page

COLLAPSE_SHARE = 0.90  # (a): share of the test predictions ...
COLLAPSE_CLASSES = 2  # ... that fall on this many classes or fewer (judged where C > this)
CHANCE_FACTOR = 1.5  # (b): pseudo-label accuracy under CHANCE_FACTOR / C is chance
LATE = 0.5  # (b) and the terms' numbers read the logs of steps after this fraction of the run

COLLAPSED = "collapsed"
CHANCE = "pseudo-labels at chance"
WORSE = "labels made worse"
MEMORISED = "evidence memorised"
LOST = "class lost"
RULES = (COLLAPSED, CHANCE, WORSE, MEMORISED, LOST)
EXPLANATION = (
    f"A run is flagged (a) **{COLLAPSED}** when ≥ {COLLAPSE_SHARE:.0%} of its test predictions "
    f"(the confusion matrix's column sums) fall on {COLLAPSE_CLASSES} classes or fewer (judged "
    f"where C, the classes with test images, > {COLLAPSE_CLASSES}), (b) **{CHANCE}** when "
    "every pseudo-label accuracy "
    f"logged after {LATE:.0%} of its steps is under {CHANCE_FACTOR:g}/C (judged where the run "
    f"logs one there), and (c) **{WORSE}** when its labeled set ends less accurate than given "
    "(judged where the run changes labels and the true labels are known), and (d) "
    f"**{MEMORISED}** when LION's out-of-fold evidence agrees with the labeled set's given "
    "labels more than its heads agree with the test set's labels (z > 3, judged where the run "
    "reports the evidence check; it needs no true labels), and (e) "
    f"**{LOST}** when a class is recalled on fewer of its test images than 1/C, a uniform guess's "
    f"share (judged where C > {COLLAPSE_CLASSES} and the class has test images; a run flagged "
    f"{COLLAPSED} is not flagged {LOST} too). Each reason names "
    "the schedule term that drove the unlabeled loss, with its numbers over the last half of "
    "the run from metrics.jsonl and config.toml; "
    f"{docs_page('report-flags.md')} explains how to read them."
)


@dataclass(frozen=True)
class Flag:
    rule: str  # one of RULES
    evidence: str  # the numbers that broke the rule
    term: str  # the schedule term that dominated, with its numbers (the same for a run's flags)


def run_text(flags: list[Flag]) -> str:
    """A run's flags in one line: 'collapsed: ... | schedule term: ...' ('' for none)."""
    if not flags:
        return ""
    return " | ".join(
        [*(f"{f.rule}: {f.evidence}" for f in flags), f"schedule term: {flags[0].term}"]
    )


def _times(ratio: float) -> str:
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.0f}×"


def num_classes(run) -> int | None:
    """C: the run's classes (class_names, else the confusion matrix's size)."""
    names = run.summary.get("class_names") or run.summary.get("confusion_matrix") or []
    return len(names) or None


def steps(run) -> int | None:
    """The run's length in steps: summary.json's, else its last logged step."""
    logged = [e["step"] for e in run.trains if _number(e.get("step"))]
    return run.summary.get("steps") or (max(logged) if logged else None)


def late_logs(run) -> list[dict]:
    """The training logs of steps after LATE of the run, one per step (a resumed run logs some
    steps twice; the later line is the one training went on from), by step."""
    total = steps(run)
    if not total:
        return []
    by_step = {e["step"]: e for e in run.trains if _number(e.get("step"))}
    return [by_step[s] for s in sorted(by_step) if s > LATE * total]


def _mean(logs: list[dict], key: str) -> float | None:
    values = [e[key] for e in logs if _number(e.get(key))]
    return float(np.mean(values)) if values else None


def _ratio(logs: list[dict], loss: str, weight) -> float | None:
    """Σ weight·loss / Σ loss_sup over the logs; weight is a logged key or a number."""
    pairs = [
        (e[loss] * (e.get(weight) if isinstance(weight, str) else weight), e["loss_sup"])
        for e in logs
        if _number(e.get(loss))
        and _number(e.get("loss_sup"))
        and (not isinstance(weight, str) or _number(e.get(weight)))
    ]
    bottom = sum(sup for _, sup in pairs)
    return sum(top for top, _ in pairs) / bottom if pairs and bottom > 0 else None


# ---- the rules ----


def judged_matrix(run) -> np.ndarray | None:
    """The test confusion matrix rules (a) and (e) judge (floats), or None where the run has
    none or only COLLAPSE_CLASSES classes with test images (a folder of happy/ and sad/ faces is
    judged on those two, not on the seven FER classes its labels could name)."""
    cm = run.summary.get("confusion_matrix")
    if not cm:
        return None
    cm = np.asarray(cm, dtype=np.float64)
    return cm if tested_classes(cm) > COLLAPSE_CLASSES else None


def tested_classes(cm: np.ndarray) -> int:
    """The number of classes with test images (rows of the confusion matrix with a count)."""
    return int((cm.sum(axis=1) > 0).sum())


def matrix_names(run, cm: np.ndarray) -> list[str]:
    """The class names of the matrix's rows, its indices where the run's names do not fit."""
    return run.class_names if len(run.class_names) == len(cm) else [str(i) for i in range(len(cm))]


def class_lost(run) -> str | None:
    """Rule (e): the evidence when a class with test images is recalled on fewer than 1/C of
    them (C > COLLAPSE_CLASSES): each such class, its recall and where its images went; None
    otherwise, and where the run has no confusion matrix or only COLLAPSE_CLASSES classes."""
    cm = judged_matrix(run)
    if cm is None:
        return None
    names = matrix_names(run, cm)
    chance, parts = 1 / len(cm), []  # a uniform guess over the classes the model names
    for c, row in enumerate(cm):
        total = row.sum()
        if not total or row[c] / total >= chance - EPS:
            continue
        others = row.copy()
        others[c] = -1
        to = int(np.argmax(others))
        parts.append(
            f"{names[c]} recalled on {_pct(row[c] / total)} of its {int(total)} test "
            f"image{'s' * (int(total) != 1)} "
            f"(a uniform guess: {_pct(chance)}; {_pct(row[to] / total)} predicted {names[to]})"
        )
    return "; ".join(parts) or None


def collapsed(run) -> str | None:
    """Rule (a): the evidence when ≥ COLLAPSE_SHARE of the test predictions (the confusion
    matrix's column sums) fall on COLLAPSE_CLASSES classes or fewer; None otherwise, and where
    the run has no confusion matrix or only COLLAPSE_CLASSES classes. Predicted classes without
    test images (a FER head on a folder of some expressions) are said to be such, beside the
    classes the test set has."""
    cm = judged_matrix(run)
    if cm is None:
        return None
    predicted, total = cm.sum(axis=0), cm.sum()
    top = np.argsort(-predicted, kind="stable")[:COLLAPSE_CLASSES]
    top = [int(i) for i in top if predicted[i] > 0]
    share = predicted[top].sum() / total if total else 0.0
    if share < COLLAPSE_SHARE - EPS:
        return None
    names = matrix_names(run, cm)
    classes = ", ".join(f"{names[i]} {_pct(predicted[i] / total)}" for i in top)
    truth = cm.sum(axis=1)[top].sum() / total
    held = f"these classes hold {_pct(truth)} of the true labels"
    text = f"{_pct(share)} of {int(total)} test predictions on "
    untested = [names[i] for i in top if not cm[i].sum()]
    if not untested:
        return text + f"{len(top)} of {tested_classes(cm)} classes ({classes}; {held})"
    tested = [names[i] for i in np.flatnonzero(cm.sum(axis=1) > 0)]
    test_set = f"the test set's {len(tested)} classes are {', '.join(tested)}"
    on = f"{len(top)} class{'es' if len(top) > 1 else ''} ({classes})"
    if len(untested) == len(top):
        which = {1: "which has no", 2: "neither of which has"}.get(len(top), "none of which has")
        return text + f"{on}, {which} test images ({test_set})"
    verb = "has" if len(untested) == 1 else "have"
    return text + f"{on}, of which {', '.join(untested)} {verb} no test images ({test_set}; {held})"


def chance_pseudo_labels(run) -> str | None:
    """Rule (b): the evidence when every pseudo_label_acc logged after LATE of the run is under
    CHANCE_FACTOR / C; None otherwise, and where none is logged there (a method without
    pseudo-labels, unlabeled images without true labels, or no pseudo-label passed a mask)."""
    c, logs = num_classes(run), late_logs(run)
    accs = [e["pseudo_label_acc"] for e in logs if _number(e.get("pseudo_label_acc"))]
    if not c or not accs or max(accs) >= CHANCE_FACTOR / c:
        return None
    return (
        f"pseudo-label accuracy under {CHANCE_FACTOR:g}/C = {_pct(CHANCE_FACTOR / c)} at all "
        f"{len(accs)} logs after step {LATE * steps(run):.10g} of {steps(run)} "
        f"(highest {_pct(max(accs))})"
    )


# ---- the schedule terms: which logged keys name them, per method ----


@dataclass(frozen=True)
class Ramp:
    """A weight of the unlabeled loss that ramps up, logged each step."""

    symbol: str  # the paper's name of the weight
    key: str = "weight_unsup"  # logged weight
    config: str = "lambda_u"  # its final value in the config's [algorithm]

    def describe(self, run, logs: list[dict]) -> str | None:
        weights = [(e["step"], e[self.key]) for e in run.trains if _number(e.get(self.key))]
        if not weights:
            return None
        peak = max(w for _, w in weights)
        first = next((s for s, w in weights if w > 0), None)
        idle = [s for s, w in weights if w == 0 and (first is None or s < first)]
        target = run.params.get(self.config)
        given = f"; algorithm.{self.config} = {target:g}" if _number(target) else ""
        text = f"{self.symbol} ramped to {peak:g} ({self.key}{given})"
        if idle and steps(run):
            text += f" from {_pct(idle[-1] / steps(run))} of the run"
        ratio = _ratio(logs, "loss_unsup", self.key)
        if ratio is not None:
            text += f"; loss_unsup × weight was {_times(ratio)} loss_sup over the last half"
        return text


@dataclass(frozen=True)
class Threshold:
    """A confidence threshold on pseudo-labels: logged (adaptive) or fixed in the config."""

    key: str | None = None  # logged threshold; None: the config's value
    config: str | None = "threshold"
    weight: str | None = "lambda_u"  # fixed weight of the unlabeled loss; None: ramped elsewhere

    def describe(self, run, logs: list[dict]) -> str | None:
        c = num_classes(run)
        value, name = (_mean(logs, self.key), self.key) if self.key else (None, None)
        if value is None and self.config and _number(run.params.get(self.config)):
            value, name = float(run.params[self.config]), f"algorithm.{self.config}"
        mask, right = _mean(logs, "mask_rate"), _mean(logs, "pseudo_label_acc")
        if value is None and mask is None:
            return None
        parts = []
        if value is not None:
            parts.append(f"threshold at {value:.2f} ({name}){_near_chance(value, c)}")
        if mask is not None:
            parts.append(f"with mask {mask:.2f}")
        if right is not None:
            parts.append(f"while pseudo-labels {_pct(right)} right")
        text = " ".join(parts)
        if self.weight:
            text += _weighted("loss_unsup", logs, run.params, self.weight)
        return text + " over the last half"


def _weighted(loss: str, logs: list[dict], params: dict, weight: str) -> str:
    """'; loss_unsup × 4 (lambda_u) was 0.74× loss_sup' for a loss with a fixed weight in the
    config (× 1 where the config lacks it); '' where the loss is not logged."""
    value = params.get(weight)
    ratio = _ratio(logs, loss, float(value) if _number(value) else 1.0)
    if ratio is None:
        return ""
    shown = f" × {value:g} ({weight})" if _number(value) else ""
    return f"; {loss}{shown} was {_times(ratio)} loss_sup"


def _near_chance(threshold: float, c: int | None) -> str:
    """A threshold at or under 1/C passes every pseudo-label (a top probability is ≥ 1/C)."""
    if not c or threshold >= CHANCE_FACTOR / c:
        return ""
    return " ≤ 1/C, passing every pseudo-label" if threshold <= 1 / c + EPS else " ≈ 1/C"


@dataclass(frozen=True)
class Rates:
    """LION's shares of the batch: labeled images clear or ambiguous, unlabeled ones reliable."""

    rates: tuple[tuple[str, str], ...] = (
        ("clear_rate", "clear"),
        ("ambiguous_rate", "ambiguous"),
        ("mask_rate", "reliable"),
    )
    threshold: str = "reliable_threshold"  # γ
    loss: str = "loss_reliable"
    weight: str = "lambda_reliable"  # λ1

    def describe(self, run, logs: list[dict]) -> str | None:
        shown = [(name, _mean(logs, key)) for key, name in self.rates]
        shown = [f"{name} {value:.2f}" for name, value in shown if value is not None]
        if not shown:
            return None
        text = "rates " + ", ".join(shown)
        gamma = run.params.get(self.threshold)
        if _number(gamma):
            text += f" (γ = {gamma:g})"
        right = _mean(logs, "pseudo_label_acc")
        if right is not None:
            text += f" while pseudo-labels {_pct(right)} right"
        return text + _weighted(self.loss, logs, run.params, self.weight) + " over the last half"


# algorithm → its schedule terms, the one its loss scales most directly first
SCHEDULE_TERMS: dict[str, tuple] = {
    "pseudolabel": (Ramp("α_f"), Threshold(weight=None)),
    "mixmatch": (Ramp("λ_U"),),
    "marginmix": (Ramp("λ_U"),),
    "remixmatch": (Ramp("λ_U"),),
    "fixmatch": (Threshold(),),
    "uda": (Threshold(),),
    "flexmatch": (Threshold("threshold_mean"),),
    "adacm": (Threshold("threshold_mean"),),
    "freematch": (Threshold("threshold_global", config=None),),
    "softmatch": (Threshold("threshold_global", config=None),),  # μ_t, full weight from there
    "lion": (Rates(),),
}


def schedule_term(run) -> str:
    """The run's schedule terms (SCHEDULE_TERMS) with their numbers, the dominant one first; a
    generic account where no term is known or logged."""
    logs = late_logs(run)
    found = [t.describe(run, logs) for t in SCHEDULE_TERMS.get(run.algorithm, ())]
    found = [text for text in found if text]
    if found:
        return "; ".join(found)
    ratio = _ratio(logs, "loss_unsup", 1.0)
    if ratio is not None:
        return f"no schedule term known; loss_unsup was {_times(ratio)} loss_sup over the last half"
    return f"no schedule term of {run.algorithm or 'this method'} in its logs"


def _matrix_flags(run) -> list[tuple[str, str | None]]:
    """(rule, evidence or None) of the rules read from the test confusion matrix alone."""
    collapse = collapsed(run)
    # a collapse loses classes: said once
    return [(COLLAPSED, collapse), (LOST, None if collapse else class_lost(run))]


def run_flags(run) -> list[Flag]:
    """The flags of one run (empty for a healthy one)."""
    found = [
        *_matrix_flags(run),
        (CHANCE, chance_pseudo_labels(run)),
        (WORSE, labels_made_worse(run)),
        (MEMORISED, evidence_memorised(run)),
    ]
    found = [(rule, evidence) for rule, evidence in found if evidence]
    term = schedule_term(run) if found else ""
    return [Flag(rule, evidence, term) for rule, evidence in found]


def summary_flags(summary: dict) -> list[str]:
    """'class lost: Neutral recalled on 4% of ...' for each rule read from the test confusion
    matrix alone (collapsed, class lost) that a run's summary.json breaks: what the run prints
    when it ends, as `lionfer report` would flag it."""
    run = Run(Path(), "", "", 0, summary)  # the matrix's rules read nothing but the summary
    return [f"{rule}: {evidence}" for rule, evidence in _matrix_flags(run) if evidence]


def group_flags(runs, flags: dict) -> dict[tuple[str, str], str]:
    """{(method, column): 'collapsed in 3/3 seeds, pseudo-labels at chance in 1/3 seeds'} for
    the groups with a flagged run; flags maps each run's path to its run_flags."""
    groups: dict[tuple[str, str], list] = {}
    for run in runs:
        groups.setdefault((run.method, run.column), []).append(flags.get(run.path, []))
    out = {}
    for key, members in groups.items():
        counts = [(rule, sum(any(f.rule == rule for f in m) for m in members)) for rule in RULES]
        parts = [f"{rule} in {k}/{len(members)} seeds" for rule, k in counts if k]
        if parts:
            out[key] = ", ".join(parts)
    return out


def judged(runs) -> dict[str, int]:
    """How many runs each rule could judge (a confusion matrix of more than two classes;
    pseudo-label accuracy logged in the last half; relabel figures against true labels; an
    evidence check)."""
    return {
        COLLAPSED: sum(judged_matrix(r) is not None for r in runs),
        CHANCE: sum(
            bool(num_classes(r)) and any(_number(e.get("pseudo_label_acc")) for e in late_logs(r))
            for r in runs
        ),
        WORSE: sum(bool(judged_relabel(r)) for r in runs),
        MEMORISED: sum(bool(evidence_check(r)) for r in runs),
        LOST: sum(judged_matrix(r) is not None for r in runs),
    }


# ---- how the report shows them ----


def method_text(groups: dict, method: str, columns: list[str]) -> str:
    """A method's group_flags over the columns, each column named where there are several."""
    named = len(columns) > 1
    return "; ".join(
        f"{column}: {groups[method, column]}" if named else groups[method, column]
        for column in columns
        if (method, column) in groups
    )


def warnings(methods: list[str], groups: dict, report: Path) -> list[str]:
    """One line per flagged method, for the terminal."""
    lines = []
    for method in methods:
        columns = sorted((c for m, c in groups if m == method), key=column_key)
        if columns:
            text = "; ".join(f"on {c}: {groups[method, c]}" for c in columns)
            lines.append(f"warning: {method} {text}; see Flags in {report}")
    return lines


def records(runs, flags: dict) -> list[dict]:
    """The flagged runs as JSON records: folder, method, column, seed, flags (rule, evidence) and
    the schedule term."""
    return [
        {
            "folder": str(run.path),
            "method": run.method,
            "column": run.column,
            "seed": run.seed,
            "flags": [{"rule": f.rule, "evidence": f.evidence} for f in flags[run.path]],
            "term": flags[run.path][0].term,
        }
        for run in runs
        if flags.get(run.path)
    ]
