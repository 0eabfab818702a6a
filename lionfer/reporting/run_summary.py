"""A finished run's summary as text: what `lionfer train` prints at its end (format_summary),
the label-quality lines `lionfer train` and `lionfer evaluate` print, and that reports show for
each run."""

from __future__ import annotations

from pathlib import Path

from lionfer.version import docs_page


def label_quality_lines(summary: dict) -> list[str]:
    """The printed account of an algorithm that changes labels (empty for the others)."""
    relabel, quality = summary.get("relabel"), summary.get("label_quality")
    if not relabel:
        return []
    lines = [f"relabeled {relabel['count']} of {summary['num_labels']} labeled images"]
    if relabel.get("given_accuracy") is not None:
        lines[0] += (
            f": precision {_percent(relabel['precision'])}, recall {_percent(relabel['recall'])};"
            f" labels right {_percent(relabel['given_accuracy'])} as given, "
            f"{_percent(relabel['current_accuracy'])} now"
        )
    types = error_type_line(relabel)
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
            changed = relabel["count"] > 0 or bool((relabel.get("demoted") or {}).get("count"))
            lines.append(evidence_check_line(quality["evidence_check"], changed))
    return lines


def evidence_audit_line(audit: dict) -> str:
    """The evidence rule's audit (lion_report.audit_figures) in a sentence."""
    if not audit["images"]:
        return (
            "evidence audit: no class had the three labeled images it needs (one held out, two "
            "to judge), so it could not be made and no label was changed"
        )
    line = f"evidence audit: {audit['images']} labeled images held out of training on their labels"
    reads = audit.get("reads") or []  # absent from the summaries of runs made before it was kept
    if audit["read_step"] is None:
        line += " to the end: the run made no decision"
        return line + (f"; it ended after {_inconclusive(reads)}" if reads else "")
    waited = reads[:-1]
    line += f" until the first decision, at step {audit['read_step']}"
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
    if not held:
        return (
            f"noise check: at none of its {reads} reads did the given labels look nearly right "
            f"({floor}, z above {check['threshold']:g}), so it held no decision back ({last})"
        )
    ending = "; it held decisions back at the end" if check["holds"] else ""
    return (
        f"noise check: at {held} of its {reads} reads the given labels looked nearly right "
        f"({floor}, z above {check['threshold']:g}), and no decision was made until the next "
        f"read ({last}){ending}"
    )


def _inconclusive(reads: list) -> str:
    """'2 inconclusive reads (z = 2.3 at step 60, 2.7 at step 120)'."""
    each = ", ".join(f"{read['z']:.1f} at step {read['step']}" for read in reads)
    noun = "read" if len(reads) == 1 else "reads"
    return f"{len(reads)} inconclusive {noun} (z = {each})"


def evidence_check_line(check: dict, changed: bool = True) -> str:
    """The evidence check (lion_report.evidence_check) in a sentence, with what it means.
    changed: whether the run relabeled or demoted any image."""
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


def error_type_line(relabel: dict) -> str:
    """'wrong labels fixed: slips 5 of 12, ambiguous 3 of 20; correct labels broken: 1; demoted
    8 (5 of them wrongly labeled)', from the parts of relabel_metrics that are there."""
    parts = []
    by_type = relabel.get("by_error_type")
    if by_type:
        fixed = [
            f"{name} {by_type[key]['fixed']} of {by_type[key]['wrong_given']}"
            for key, name in (("slip", "slips"), ("ambiguity", "ambiguous"))
            if key in by_type
        ]
        parts.append("wrong labels fixed: " + ", ".join(fixed))
    if relabel.get("broken") is not None:
        parts.append(f"correct labels broken: {relabel['broken']}")
    demoted = relabel.get("demoted")
    if demoted:
        text = f"demoted to unlabeled: {demoted['count']}"
        if demoted.get("wrong_given") is not None:
            text += f" ({demoted['wrong_given']} of them wrongly labeled)"
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
