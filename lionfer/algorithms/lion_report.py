"""What LION reports, all read from its state (Lion.state_dict()): the label-quality figures of an
evaluation (relabel metrics, candidate sets, Eq. 5's similarities, the prototypes), the figures
of summary.json (the complementary label bank, the start of disambiguation and its warning, the
evidence rule's agreement by class) and the relabel table (each labeled image's label state: the
rows of relabels.csv and of `lionfer relabel`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lionfer.algorithms.lion_audit import audit_held, no_agreement
from lionfer.algorithms.lion_evidence_rules import heads_trained
from lionfer.errors import InputError
from lionfer.metrics import excess_agreement_z, relabel_metrics

LOW_CLEAR_RATE = 0.5
# The evidence check: the out-of-fold evidence is flagged as memorised when it agrees with the
# labeled set's given labels more than the same heads agree with the test set's labels, by a
# one-sided two-proportion z above this (p < 0.0015).
MEMORISED_Z = 3.0


def low_clear_message(rate: float, step: int | None = None) -> str:
    at_step = "" if step is None else f" at step {step}"
    return (
        f"LION began label disambiguation{at_step} with only {100 * rate:.0f}% of labeled "
        "images clear; the others get no supervised loss until resolved, so training can "
        "collapse. Train longer, use the default algorithm.recipe=evidence, raise "
        "algorithm.disambiguation_start, or lower algorithm.clear_threshold."
    )


def never_started_message(cfg, fit_rate: float) -> str:
    """summary.json's warning where the prototypes' rule never began disambiguation, so that no
    label could change: what its start rule waited for (cfg: the run's LionConfig) and, for the
    "fitted" rule, the running share of labeled images fitted at the end (fit_rate)."""
    if cfg.start_rule == "fitted":
        reason = (
            f"it begins once {100 * cfg.fit_threshold:.0f}% of the labeled images are predicted "
            f"as their label with p >= {cfg.clear_threshold:g} (algorithm.fit_threshold), and "
            f"at the end {100 * fit_rate:.0f}% were; train longer or lower "
            "algorithm.fit_threshold"
        )
    else:
        reason = (
            f"it begins after {100 * cfg.disambiguation_start:.0f}% of the steps "
            "(algorithm.disambiguation_start), which the run's last step did not reach; lower "
            "algorithm.disambiguation_start"
        )
    return f"LION's label disambiguation never began, so no label was changed: {reason}"


def mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def label_figures(
    state: dict,
    given_labels: torch.Tensor,
    probe,
    similarity,
    heads=None,
    audit_z=None,
    noise_min: float = 0.0,
    noise_z: float = 0.0,
) -> dict:
    """Label-quality figures at an evaluation: how the labeled set's labels compare with the
    truth (where known), the candidate sets, Eq. 5's similarities and the prototypes, and with
    the evidence rule's cross-fitted heads (heads, None for the other rules) the evidence check
    and the audit (audit_z: the z above which it stops decisions), and its noise check where
    it has one (noise_min > 0, with noise_z: the z above which a read holds decisions back).
    similarity: the run's d(q, S_c) (features, prototypes, ready, candidates) → (N, C)."""
    given = given_labels.cpu().numpy()
    current = state["label"].cpu().numpy()
    truth = probe.true_labeled
    demoted = state["demoted"].cpu().numpy() if "demoted" in state else None
    relabel = relabel_metrics(given, current, truth, probe.error_types_labeled, demoted)
    ambiguous = state["ambiguous"].cpu().numpy()
    candidates = state["candidates"].cpu().numpy()
    rows = np.flatnonzero(ambiguous)
    started = state["started"]
    quality = {
        "started": bool(started),
        "start_step": int(state["start_step"]),
        "clear_rate_at_start": float(state["clear_at_start"]) if started else None,
        "ambiguous_fraction": float(ambiguous.mean()) if len(ambiguous) else 0.0,
        "candidates_hold_given": mean_or_none(candidates[rows, given[rows]]),
    }
    if truth is not None:
        known = rows[truth[rows] >= 0]
        quality["candidates_hold_true"] = mean_or_none(candidates[known, truth[known]])
    if bool(state["prototype_ready"].any()):
        quality.update(prototype_figures(state, probe, truth, given, similarity))
    if heads is not None:
        held = audit_held(state["audit"], state["audit_step"])
        quality["evidence_check"] = evidence_check(
            heads,
            state["fold"],
            given,
            probe,
            ~held.cpu().numpy(),
            judgeable(state, given, candidates.shape[1]),
        )
        # an audit held, or one asked for that no class had the labeled images to make
        if bool(state["audit"].any()) or not bool(state["audit_passed"]):
            quality["evidence_audit"] = audit_figures(state, audit_z)
        # a check that was read (the audit can stop decisions before its first read)
        if noise_min > 0 and int(state.get("noise_reads", torch.tensor([0]))[0]) > 0:
            quality["noise_check"] = noise_figures(state, noise_min, noise_z)
    return {"relabel": relabel, "label_quality": quality}


def noise_figures(state: dict, rate_min: float, threshold: float) -> dict:
    """The evidence rule's noise check (lion_noise.py), once read: its reads and those that held
    decisions back, the floor it asks about (noise_min) and the z above which a read holds them
    back (noise_z); and its last read: its step, its z, the fitted share of labels the evidence
    rules out (rate) and the fit's temperature, and whether it held decisions back."""
    step, z, rate, temperature = state["noise_read"].tolist()
    reads, held = state["noise_reads"].tolist()
    return {
        "reads": int(reads),
        "held": int(held),
        "noise_min": float(rate_min),
        "threshold": float(threshold),
        "read_step": int(step),
        "z": z,
        "rate": rate,
        "temperature": temperature,
        "holds": z > threshold,
    }


def audit_figures(state: dict, threshold: float) -> dict:
    """The evidence rule's audit: its size, the step it was read at and its z then (None before
    it was read, or where none of its images had been visited), the z above which it stops
    decisions (threshold, algorithm.audit_z), and whether decisions went on; with the rates its z
    compares, how often the evidence named the judged images' given labels and the audit's
    (judged_agreement, audit_agreement), where the state keeps them; and every read made, its
    step and z (reads: those before the read that concluded were inconclusive, and all of them
    were where the run ended before one concluded)."""
    z = float(state["audit_z"])
    step = int(state["audit_step"])
    figures = {
        "images": int(state["audit"].sum()),
        "read_step": step if step >= 0 else None,
        "z": z if np.isfinite(z) else None,
        "threshold": float(threshold),
        "passed": bool(state["audit_passed"]),
    }
    judged, audit = state.get("audit_agreement", no_agreement()).tolist()
    if judged >= 0:  # both are kept, or neither (-1)
        figures.update(judged_agreement=judged, audit_agreement=audit)
    if "audit_trail" in state:  # every read in order; all but a concluding last inconclusive
        figures["reads"] = [
            {"step": int(read_step), "z": read_z if np.isfinite(read_z) else None}
            for read_step, read_z in state["audit_trail"].tolist()
            if read_step >= 0
        ]
    return figures


def evidence_check(
    heads,
    folds: torch.Tensor,
    given: np.ndarray,
    probe,
    trained: np.ndarray | None = None,
    can_judge: np.ndarray | None = None,
) -> dict | None:
    """Whether the heads' out-of-fold evidence is out of sample in fact. Each labeled image's
    fold head never trained on it, but the features it reads come from a backbone that trained
    on every given label; where the backbone has learnt them by heart, the heads name an image's
    given label whether it is right or wrong. Out of sample, the heads can agree with the given
    labels no more than with the labels of images no part of the model trained on: the test
    set's (the same annotation where they are noisy alike; the truth, which a classifier better
    than chance matches at least as often, where the test labels are true). So: the fold head's
    agreement with the given labels, the heads' (mean p) agreement with the test labels, and
    the one-sided z of the first above the second; memorised when z > MEMORISED_Z. trained
    (M,) bool: the labeled images whose labels the model trains on (default all). can_judge
    (M,) bool (judgeable; default all): an image whose fold head trains on no other image of its
    given label cannot have it named, so it is left out of the labeled agreement as the rule
    gives it no verdict; where none is left, labeled_agreement and z are None and memorised
    false: the check could not be made. None without trained images or test labels."""
    features, _ = probe.features("labeled")
    test_features, test_labels = probe.features("test")
    test_labels = np.asarray(test_labels)
    known = test_labels >= 0
    num_test = int(known.sum())
    trained = np.ones(len(given), dtype=bool) if trained is None else trained
    num_trained = int(trained.sum())
    if not num_trained or not num_test:
        return None
    weight = next(heads.parameters())
    with torch.no_grad():
        logits = heads(features.to(weight))  # (N, K, C)
        rows = torch.arange(len(given), device=logits.device)
        judged = logits[rows, folds.to(logits.device)].argmax(dim=1).cpu().numpy()
        test = heads(test_features.to(weight)).softmax(dim=2).mean(dim=1).argmax(dim=1)
    hits_test = int((test.cpu().numpy()[known] == test_labels[known]).sum())
    counted = trained if can_judge is None else trained & can_judge
    num_counted = int(counted.sum())
    if not num_counted:  # no image its head could judge: the check cannot be made
        return {
            "labeled_agreement": None,
            "test_agreement": hits_test / num_test,
            "z": None,
            "memorised": False,
        }
    hits_labeled = int(((judged == given) & counted).sum())
    z = excess_agreement_z(hits_labeled, num_counted, hits_test, num_test)
    return {
        "labeled_agreement": hits_labeled / num_counted,
        "test_agreement": hits_test / num_test,
        "z": z,
        "memorised": z > MEMORISED_Z,
    }


def judgeable(state: dict, given: np.ndarray, num_classes: int) -> np.ndarray:
    """(M,) bool: the labeled images whose fold's head trains on some other image of their given
    label (heads_trained over the state's labels and the rows not set aside: demoted, or in the
    audit before its read), from an evidence rule's state; all where the state has no folds.
    The evidence of the others cannot name their label: it is no evidence for or against it."""
    given = np.asarray(given)
    if state.get("fold") is None or state.get("label") is None:
        return np.ones(len(given), dtype=bool)
    folds, labels = state["fold"].cpu().long(), state["label"].cpu().long()
    aside = torch.zeros(len(labels), dtype=torch.bool)
    if state.get("demoted") is not None:
        aside |= state["demoted"].cpu().bool()
    if state.get("audit") is not None and state.get("audit_step") is not None:
        aside |= audit_held(state["audit"].cpu(), state["audit_step"].cpu())
    # the folds' heads (the state keeps no K; a head of no fold judges no image)
    num_heads = int(folds.max()) + 1 if len(folds) else 1
    counts = heads_trained(folds, labels, ~aside, num_heads, num_classes)
    return (counts[folds, torch.as_tensor(given, dtype=torch.long)] > 0).numpy()


def prototype_figures(state: dict, probe, truth, given, similarity) -> dict:
    """Eq. 5's similarity for the own class and the others (own = true class where known;
    other_similarity), and the test accuracy of the nearest-prototype classifier."""
    prototypes, ready = state["prototypes"], state["prototype_ready"]
    features, _ = probe.features("labeled")
    d = similarity(features.to(prototypes), prototypes, ready, None).cpu().numpy()
    own_class = np.where(truth >= 0, truth, given) if truth is not None else given
    own = d[np.arange(len(own_class)), own_class]
    test_features, test_labels = probe.features("test")
    cosine = F.normalize(test_features.to(prototypes), dim=1) @ F.normalize(prototypes, dim=1).T
    nearest = cosine.masked_fill(~ready, float("-inf")).argmax(dim=1)
    return {
        "similarity_own": float(own.mean()),
        "similarity_other": other_similarity(d, ready.cpu().numpy(), own_class),
        "prototype_acc": float((nearest.cpu().numpy() == test_labels).mean()),
    }


def other_similarity(d: np.ndarray, ready: np.ndarray, own_class: np.ndarray) -> float | None:
    """The mean over the images of d (N, C) averaged over the classes with a prototype (ready,
    (C,)) other than the image's own (own_class, (N,)), whether its own has one or not. An image
    with no such class is left out; None where every image is."""
    other = np.repeat(ready[None, :].astype(bool), len(d), axis=0)
    other[np.arange(len(d)), own_class] = False
    count = other.sum(axis=1)
    some = count > 0
    return mean_or_none(np.where(other, d, 0.0)[some].sum(axis=1) / count[some])


def summary_figures(state: dict, recipe: str, true_unlabeled=None) -> dict:
    """summary.json's LION figures: the complementary label bank (its share of entries that
    exclude the true class, where known), the images ambiguous or demoted now, and the clear
    rate when disambiguation began (with a warning when it was low)."""
    bank = state["bank"]
    sizes = bank.sum(dim=1).float()
    clb = {
        "mean_size": float(sizes.mean()) if len(sizes) else 0.0,
        "samples_with_entries": int((sizes > 0).sum()),
    }
    if true_unlabeled is not None:
        truth = torch.as_tensor(true_unlabeled, device=bank.device)
        known = (truth >= 0).nonzero(as_tuple=True)[0]
        entries = int(bank[known].sum())
        wrong = int(bank[known, truth[known]].sum())  # the bank excludes the true class
        clb["correct_fraction"] = 1.0 - wrong / entries if entries else None
    out = {"recipe": recipe, "clb": clb, "ambiguous_now": int(state["ambiguous"].sum())}
    if "demoted" in state:
        out["demoted_now"] = int(state["demoted"].sum())
    started, start = bool(state["started"]), float(state["clear_at_start"])
    out["clear_rate_at_disambiguation"] = start if started else None
    if started and start < LOW_CLEAR_RATE:
        out["warnings"] = [low_clear_message(start, int(state["start_step"]))]
    return out


def class_agreement(
    evidence: torch.Tensor | np.ndarray,
    given: np.ndarray,
    current: np.ndarray,
    demoted: np.ndarray,
    visited: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(named, agree), (C,) each: of the labeled images kept on their given labels (not relabeled,
    not demoted, visited), how many the evidence names as class c (its argmax), and how many of
    those were given c. agree / named is how far the evidence's c can be trusted: where it is low,
    the evidence names c for faces of other classes, and relabels to c are wrong more often. It
    needs no truth."""
    num_classes = evidence.shape[1]
    kept = (current == given) & ~demoted & visited
    named = torch.as_tensor(evidence).argmax(dim=1).cpu().numpy()[kept]
    agree = named == given[kept]
    return (
        np.bincount(named, minlength=num_classes),
        np.bincount(named[agree], minlength=num_classes),
    )


def evidence_by_class(state: dict, given: np.ndarray, names, truth=None) -> dict:
    """summary.json's evidence_by_class: for each class, the evidence's agreement with the given
    labels where it names the class (class_agreement: named, agreement, None where it names it for
    no kept image; an image whose fold head trains on no other image of its label, judgeable,
    is left out: its evidence cannot name its label), and the labels changed to it
    (relabeled_to; demoted images excepted), with, where the truth is passed, how many of those
    have a known truth (relabeled_to_known) and how many of those are right
    (relabeled_to_right)."""
    given = np.asarray(given)
    truth = None if truth is None else np.asarray(truth)
    current = state["label"].cpu().numpy()
    demoted = state["demoted"].cpu().numpy().astype(bool)
    visited = state["evidence_visits"].cpu().numpy() > 0
    visited &= judgeable(state, given, len(names))  # evidence that can name the label
    named, agree = class_agreement(state["evidence"], given, current, demoted, visited)
    changed = (current != given) & ~demoted
    figures = {}
    for c, name in enumerate(names):
        into = changed & (current == c)
        row = {
            "named": int(named[c]),
            "agreement": float(agree[c] / named[c]) if named[c] else None,
            "relabeled_to": int(into.sum()),
        }
        if truth is not None:
            known = into & (truth >= 0)
            row["relabeled_to_known"] = int(known.sum())
            row["relabeled_to_right"] = int((known & (truth == c)).sum())
        figures[name] = row
    return figures


# relabels.csv: these columns, then status (relabeled | demoted), then w_<class> (label_state's w)
RELABEL_COLUMNS = (
    "index",
    "id",
    "given_label",
    "current_label",
    "step",
    "true_label",
    "given_name",
    "current_name",
    "weight",
)


def relabel_table(state: dict, labeled, names) -> tuple[list[str], list[list]]:
    """(header, rows) of relabels.csv from an algorithm's state (label_state): one row per
    labeled image whose current label differs from the given one (status relabeled) or that
    training set aside as unlabeled (status demoted), with the step and winning weight of its
    relabel (empty where it was never relabeled) and its w_<class> (empty where there are none).
    labeled: the run's labeled ImageSet (labels, ids, true_labels); names: the class names."""
    given = labeled.labels
    table = label_state(state, given, len(names))
    current, demoted, w = table["label"], table["demoted"], table["w"]
    truth = labeled.true_labels
    # a state that keeps no candidate weights (no relabel_weights) has no w columns
    listed = "relabel_weights" in state
    rows = []
    for i in np.flatnonzero((current != given) | demoted):
        step, weight = table["step"][i], table["weight"][i]
        row_weights = ["" if np.isnan(v) else f"{v:.4f}" for v in w[i]] if listed else []
        rows.append(
            [
                int(i),
                labeled.ids[i],
                int(given[i]),
                int(current[i]),
                int(step) if step >= 0 else "",
                int(truth[i]) if truth is not None and truth[i] >= 0 else "",  # -1: unknown
                names[given[i]],
                names[current[i]],
                "" if np.isnan(weight) else f"{weight:.4f}",
                "demoted" if demoted[i] else "relabeled",
                *row_weights,
            ]
        )
    weight_columns = [f"w_{name.lower()}" for name in names] if listed else []
    return [*RELABEL_COLUMNS, "status", *weight_columns], rows


def label_state(algorithm: dict, given: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Per labeled image: label, step (-1 never), weight (NaN: none), w (M, C; NaN rows: none),
    ambiguous, demoted and, for a relabeled image of the evidence recipe, agreement: the class
    agreement (class_agreement) of its new class (NaN otherwise, or where the evidence names that
    class for no kept image); from an algorithm state dict (LION's keys; absent keys mean no
    relabeling). w: the candidate weights at the relabel for a relabeled image (the evidence
    recipe: its evidence then), the current ones for one ambiguous now, the evidence now for one
    demoted now (the running evidence that keeps it set aside). The rows of relabels.csv and of
    `lionfer relabel`."""
    m = len(given)

    def get(key):
        value = algorithm.get(key)
        return None if value is None else value.detach().cpu().numpy()

    label = get("label")
    if label is not None and len(label) != m:
        raise InputError(
            f"the checkpoint's label state covers {len(label)} images but the run's labeled set "
            f"has {m}: the dataset changed since training (check data.root)"
        )
    label = given.copy() if label is None else label.astype(np.int64)
    step = get("relabel_step")
    step = np.full(m, -1) if step is None else step
    ambiguous = get("ambiguous")
    ambiguous = np.zeros(m, dtype=bool) if ambiguous is None else ambiguous.astype(bool)
    demoted = get("demoted")
    demoted = np.zeros(m, dtype=bool) if demoted is None else demoted.astype(bool)
    changed = label != given
    w = np.full((m, num_classes), np.nan)
    at_relabel, current, evidence = get("relabel_weights"), get("weights"), get("evidence")
    if current is not None:
        w[ambiguous & ~changed] = current[ambiguous & ~changed]
    if evidence is not None:
        w[demoted & ~changed] = evidence[demoted & ~changed]
    if at_relabel is not None:
        w[changed] = at_relabel[changed]
    agreement = np.full(m, np.nan)  # of the class a relabeled image went to (evidence recipe)
    visits = get("evidence_visits")
    if evidence is not None and visits is not None:
        judged = (visits > 0) & judgeable(algorithm, given, num_classes)
        named, agree = class_agreement(evidence, given, label, demoted, judged)
        per_class = np.where(named > 0, agree / np.maximum(named, 1), np.nan)
        relabeled = changed & ~demoted
        agreement[relabeled] = per_class[label[relabeled]]
    weight = np.full(m, np.nan)
    if at_relabel is not None:
        weight[changed] = at_relabel[changed, label[changed]]
    elif get("relabel_weight") is not None:  # older state: only the weight that crossed τ
        weight[changed] = get("relabel_weight")[changed]
    return {
        "label": label,
        "step": step,
        "ambiguous": ambiguous,
        "demoted": demoted,
        "w": w,
        "weight": weight,
        "agreement": agreement,
    }
