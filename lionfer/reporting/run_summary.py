"""A finished run's summary as text: what `lionfer train` prints at its end (format_summary),
the label-quality lines `lionfer train` and `lionfer evaluate` print, and that reports show for
each run."""

from __future__ import annotations

from pathlib import Path

from lionfer.reporting.label_flags import changed_labels
from lionfer.version import docs_page
from lionfer.words import counted


def label_quality_lines(summary: dict) -> list[str]:
    """The printed account of an algorithm that changes labels (empty for the others)."""
    relabel, quality = summary.get("relabel"), summary.get("label_quality")
    if not relabel:
        return []
    lines = [relabel_line(relabel, summary["num_labels"])]
    # a run that changed nothing still says how many wrong labels it left (the first line says
    # the rest)
    types = error_type_line(relabel) if changed_labels(relabel) else fixed_line(relabel)
    if types:
        lines.append(types)
    by_class = relabel_class_line(summary.get("evidence_by_class") or {})
    if by_class:
        lines.append(by_class)
    if quality:
        parts = [f"ambiguous now {_percent(quality.get('ambiguous_fraction'))}"]
        if quality.get("start_step", -1) >= 0:
            parts.append(f"disambiguation began at step {quality['start_step']}")
        if quality.get("prototype_acc") is not None:
            parts.append(f"nearest-prototype test accuracy {_percent(quality['prototype_acc'])}")
            parts.append(
                f"similarity own/other class {_decimal(quality['similarity_own'])}/"
                f"{_decimal(quality['similarity_other'])}"
            )
        lines.append("; ".join(parts))
        if quality.get("evidence_audit"):
            lines.append(evidence_audit_line(quality["evidence_audit"]))
        if quality.get("noise_check"):
            lines.append(noise_check_line(quality["noise_check"]))
        if quality.get("evidence_check"):
            lines.append(evidence_check_line(quality["evidence_check"], changed_labels(relabel)))
    return lines


def relabel_line(relabel: dict, num_labels: int) -> str:
    """'relabeled 12 of 100 labeled images: precision 75.0%, recall 40.0%; labels right 80.0% as
    given, 86.0% now', the figures against the truth where known; where the run changed no
    label, a sentence that says so."""
    of = f"of {counted(num_labels, 'labeled image')}"
    given, current = relabel.get("given_accuracy"), relabel.get("current_accuracy")
    if not changed_labels(relabel):  # "none demoted" where the algorithm demotes
        line = "no label changed, none demoted," if "demoted" in relabel else "no label changed,"
        line += f" {of}"
        if given is not None:
            line += f"; labels right {_percent(given)}"
        return line
    line = f"relabeled {relabel['count']} {of}"
    if given is None:
        return line
    rates = [
        f"{name} {_percent(relabel.get(key))}"
        for key, name in (("precision", "precision"), ("recall", "recall"))
        if relabel.get(key) is not None  # none relabeled, or no wrong label given
    ]
    known = relabel.get("count_known")  # absent from the summaries of runs made before it
    if relabel.get("precision") is not None and known is not None and known < relabel["count"]:
        rates[0] += f" (of the {known} of known truth)"
    line += f": {', '.join(rates)};" if rates else ";"
    return line + f" labels right {_percent(given)} as given, {_percent(current)} now"


def evidence_audit_line(audit: dict) -> str:
    """The evidence rule's audit (lion_report.audit_figures) in a sentence."""
    if not audit["images"]:
        return (
            "evidence audit: fewer than two labeled images could be held out (a class gives one "
            "from three labeled images on: one held out, two to judge), too few to tell whether "
            "the features have learnt the labels, so it could not be made and no label was "
            "changed; raise data.num_labels"
        )
    its = "its label" if audit["images"] == 1 else "their labels"
    line = (
        f"evidence audit: {counted(audit['images'], 'labeled image')} held out of training on {its}"
    )
    reads = audit.get("reads") or []  # absent from the summaries of runs made before it was kept
    if audit["read_step"] is None:
        line += " to the end: the run made no decision"
        return line + (f"; it ended after {_inconclusive(reads)}" if reads else "")
    waited = reads[:-1]
    # an audit that stopped the decisions was read, and no decision followed
    stopped = audit["z"] is not None and not audit["passed"]
    until = "the audit was read" if stopped else "the first decision"
    line += f" until {until}, at step {audit['read_step']}"
    if waited:
        line += f", after {_inconclusive(waited)}"
    if audit["z"] is None:
        return line + ", none of them seen by then: decisions went on"
    # the threshold and the rates are absent from the summaries of runs made before they were kept
    threshold = audit.get("threshold")
    rates = ""
    if audit.get("judged_agreement") is not None:
        rates = f"{audit['judged_agreement']:.0%} against {audit['audit_agreement']:.0%}, "
    if audit["passed"]:
        bound = f", at most {threshold:g}" if threshold is not None else ""
        return line + (
            f": the evidence named the others' given labels not far more often than theirs "
            f"({rates}z = {audit['z']:.1f}{bound}), so decisions went on"
        )
    bound = f", above {threshold:g}" if threshold is not None else ""
    return line + (
        f": the evidence named the others' given labels far more often than theirs "
        f"({rates}z = {audit['z']:.1f}{bound}); the features had learnt the labels, so no label "
        "was changed"
    )


def noise_check_line(check: dict) -> str:
    """The evidence rule's noise check (lion_report.noise_figures) in a sentence."""
    floor = f"under {check['noise_min'] * 100:g}% of them ruled out by the evidence"
    last = (
        f"last read at step {check['read_step']}: {check['rate']:.1%} ruled out, "
        f"z = {check['z']:.1f}"
    )
    reads, held = check["reads"], check["held"]
    rule = f"({floor}, z above {check['threshold']:g})"
    if not held:
        at = "its only read" if reads == 1 else f"none of its {reads} reads"
        return (
            f"noise check: at {at} did the given labels look nearly right {rule}, so it held no "
            f"decision back ({last})"
        )
    if held >= reads:  # read from the first step decisions could be made: none was made
        at = "its only read" if reads == 1 else f"all {reads} of its reads"
        return (
            f"noise check: at {at} the given labels looked nearly right {rule}, so it held "
            f"back every decision: no decision was made in the run ({last})"
        )
    ending = "; it held decisions back at the end" if check["holds"] else ""
    return (
        f"noise check: at {held} of its {reads} reads the given labels looked nearly right "
        f"{rule}, and no decision was made until the next read ({last}){ending}"
    )


def _inconclusive(reads: list) -> str:
    """'2 inconclusive reads (z = 2.3 at step 60, 2.7 at step 120)'."""
    each = ", ".join(f"{read['z']:.1f} at step {read['step']}" for read in reads)
    noun = "read" if len(reads) == 1 else "reads"
    return f"{len(reads)} inconclusive {noun} (z = {each})"


def evidence_check_line(check: dict, changed: bool = True) -> str:
    """The evidence check (lion_report.evidence_check) in a sentence, with what it means.
    changed: whether the run relabeled or demoted any image."""
    if check["labeled_agreement"] is None:  # no labeled image's head trains on its label
        return (
            "evidence check: could not be made: no labeled image's fold head trained on another "
            "image of its given label, so none could have that label named out of fold (the "
            "rule gives such an image no verdict); a class needs two labeled images for its "
            "evidence to be judged: raise data.num_labels"
        )
    line = (
        f"evidence check: out of fold, the heads name the given label of "
        f"{_percent(check['labeled_agreement'])} of labeled images and the label of "
        f"{_percent(check['test_agreement'])} of test images (z = {check['z']:.1f})"
    )
    if check["memorised"]:
        line += (
            ": the features have learnt the labeled images' labels, so the evidence cannot tell "
            "a wrong label from a right one"
        )
        if not changed:
            return line + " (this run changed no label)"
        return line + "; check this run's relabels by hand"
    return line + ": no sign that the evidence has learnt the labels"


def fixed_line(relabel: dict) -> str:
    """'wrong labels fixed: slips 5 of 12, ambiguous 3 of 20', the kinds the wrong labels hold;
    "" where they are not known by their kind (relabel_metrics' by_error_type) or none is
    wrong."""
    by_type = relabel.get("by_error_type")
    if not by_type:
        return ""
    fixed = [
        f"{name} {by_type[key]['fixed']} of {by_type[key]['wrong_given']}"
        for key, name in (("slip", "slips"), ("ambiguity", "ambiguous"))
        if by_type.get(key, {}).get("wrong_given")  # a kind of error the labels do not hold
        # (injected noise makes slips alone) is not listed
    ]
    return "wrong labels fixed: " + ", ".join(fixed) if fixed else ""


def error_type_line(relabel: dict) -> str:
    """'wrong labels fixed: slips 5 of 12, ambiguous 3 of 20; correct labels broken: 1; demoted
    8 (5 of them wrongly labeled)', from the parts of relabel_metrics that are there."""
    parts = [fixed] if (fixed := fixed_line(relabel)) else []
    if relabel.get("broken") is not None:
        parts.append(f"correct labels broken: {relabel['broken']}")
    demoted = relabel.get("demoted")
    if demoted and not demoted["count"]:
        parts.append("none demoted to unlabeled")
    elif demoted:
        text = f"demoted to unlabeled: {demoted['count']}"
        wrong = demoted.get("wrong_given")
        if wrong is not None and demoted["count"] == 1:
            text += " (wrongly labeled)" if wrong else " (rightly labeled)"
        elif wrong is not None:
            text += f" ({wrong} of them wrongly labeled)"
        parts.append(text)
    return "; ".join(parts)


def relabel_class_line(by_class: dict) -> str:
    """'relabeled to Sadness 6 (agreement 62%), Fear 11 (84%)', the classes relabels went to,
    lowest agreement first, with how many are right where known, from evidence_by_class; empty
    where no label was changed."""
    into = [(name, row) for name, row in by_class.items() if row["relabeled_to"]]
    if not into:
        return ""
    into.sort(key=lambda item: -1.0 if item[1]["agreement"] is None else item[1]["agreement"])
    cells = []
    for name, row in into:
        cell = f"{name} {row['relabeled_to']}"
        if row.get("relabeled_to_known"):
            cell += f" ({row['relabeled_to_right']} of {row['relabeled_to_known']} right)"
        cells.append(f"{cell}, agreement {_percent(row['agreement'])}")
    return (
        "relabeled to, least trusted first (agreement: how often the labels match the evidence "
        "where it names the class; the lower, the more of its relabels tend to be wrong): "
        + "; ".join(cells)
    )


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _decimal(value) -> str:
    """A figure that is None where nothing could be measured (no other class had a prototype)."""
    return "-" if value is None else f"{value:.2f}"


def format_summary(summary: dict, out: Path) -> str:
    lines = [
        f"run: {out}",
        f"{summary['algorithm']} on {summary['dataset']} ({summary['num_labels']} labels, "
        f"seed {summary['seed']}, {summary['steps']} steps)",
        f"test accuracy {summary['test_acc']:.4f} (EMA), {summary['test_acc_raw']:.4f} (raw); "
        f"mean class accuracy {summary['mean_class_acc']:.4f}",
    ]
    lines += label_quality_lines(summary)
    if "relabel" in summary:
        lines.append(f"corrected labels: {out / 'relabels.csv'}")
    from lionfer.reporting.collapse import LOST, summary_flags

    flags = summary_flags(summary)
    lines += [f"warning: {w}" for w in (*summary.get("warnings", []), *flags)]
    elr = elr_weight(out)
    if elr and any(flag.startswith(f"{LOST}:") for flag in flags):
        lines.append(
            f"hint: ELR (algorithm.lambda_elr={elr:g}) can hold a whole class away from its "
            "labels; train again with algorithm.lambda_elr=0 to see whether it does here "
            f"({docs_page('lion.md')}#more-labels-than-unlabeled-images-neutral-lost-again)"
        )
    return "\n".join(lines)


def elr_weight(out: Path) -> float:
    """The run's ELR weight (algorithm.lambda_elr) from its config.toml; 0 for a method or a
    LION rule without ELR (only the evidence rule has it), or a folder without the file."""
    import tomllib

    path = out / "config.toml"
    if not path.is_file():
        return 0.0
    try:  # TOML is UTF-8, whatever the locale's encoding; a damaged file gives no hint
        algorithm = tomllib.loads(path.read_bytes().decode("utf-8")).get("algorithm", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return 0.0
    if not isinstance(algorithm, dict) or algorithm.get("disambiguation") != "evidence":
        return 0.0
    return float(algorithm.get("lambda_elr", 0.0))
