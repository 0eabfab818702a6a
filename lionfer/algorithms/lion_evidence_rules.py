"""The evidence rule of LION's labeled side as pure functions (its class, EvidenceDisambiguation,
is in lion_evidence.py): K cross-fitted heads and their folds, the out-of-fold evidence, ELR's
losses and targets, Confident Learning's per-class thresholds, the verdict on a label (keep,
relabel to a class, demote), the prototypes' agreement and the verdicts' streaks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lionfer.algorithms.lion_audit import shuffled_by_class
from lionfer.algorithms.lion_equations import cosine_to_prototypes, masked_mean

KEEP, DEMOTE = -2, -1  # evidence verdicts that are not a class


class CrossFitHeads(torch.nn.Module):
    """K cosine classifiers on the detached feature q: head k trains on every fold but k, so its
    prediction for an image of fold k comes from labels other than that image's own."""

    def __init__(self, folds: int, num_classes: int, feature_dim: int, scale: float):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(folds, num_classes, feature_dim, generator=generator)
        self.weight = torch.nn.Parameter(0.01 * weight)  # (K, C, D)
        self.scale = scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, K, C) logits s · cos(q, w_kc) of every head for every row."""
        q = F.normalize(features, dim=1)
        return self.scale * torch.einsum("bd,kcd->bkc", q, F.normalize(self.weight, dim=2))


def stratified_folds(labels: torch.Tensor, folds: int, seed: int = 0) -> torch.Tensor:
    """(M,) a fold in [0, folds) per image, each class dealt round-robin over the folds in a
    seeded random order, so every fold holds every class alike."""
    order = shuffled_by_class(labels, seed)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return rank % folds


def training_heads(folds: torch.Tensor, num_heads: int, set_aside: torch.Tensor) -> torch.Tensor:
    """(B, K) true where head k trains on the row: every head but its fold's, none for a row set
    aside (demoted)."""
    trains = folds[:, None] != torch.arange(num_heads, device=folds.device)
    return trains & ~set_aside[:, None]


def heads_trained(
    folds: torch.Tensor,
    labels: torch.Tensor,
    trains: torch.Tensor,
    num_heads: int,
    num_classes: int,
) -> torch.Tensor:
    """(K, C) how many images labeled c head k trains on: those that train (trains (M,), not set
    aside) outside fold k (training_heads). A head that trains on none of class c cannot name
    it: its p for c is no evidence for c, and its p against c no evidence against."""
    onehot = F.one_hot(labels, num_classes).float() * trains[:, None]  # (M, C)
    per_fold = torch.zeros(num_heads, num_classes, device=labels.device)
    per_fold.index_add_(0, folds.to(labels.device), onehot)
    return per_fold.sum(dim=0) - per_fold  # (C,) broadcast over the K folds


def cross_fit_loss(logits_heads: torch.Tensor, labels: torch.Tensor, trains: torch.Tensor):
    """Mean CE of the heads (logits (B, K, C)) on the rows each trains on (trains (B, K))."""
    per_head = F.cross_entropy(
        logits_heads.flatten(0, 1),
        labels.repeat_interleave(logits_heads.shape[1]),
        reduction="none",
    ).view_as(trains)
    return (per_head * trains).sum() / trains.sum().clamp_min(1)


# ---- whose prediction is an image's evidence (evidence_heads) ----


def out_of_fold_head(folds: torch.Tensor, num_heads: int) -> torch.Tensor:
    """evidence_heads "out_of_fold": (B,) the head of the row's fold, which never trained on it."""
    return folds


def in_sample_head(folds: torch.Tensor, num_heads: int) -> torch.Tensor:
    """evidence_heads "in_sample" (an ablation of the cross-fitting): (B,) the next fold's head,
    which trained on the row."""
    return (folds + 1) % num_heads


JUDGING_HEADS = {"out_of_fold": out_of_fold_head, "in_sample": in_sample_head}


def judged_probs(logits_heads: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """(B, C) detached p of head heads[i] for row i."""
    rows = torch.arange(len(heads), device=heads.device)
    return logits_heads.detach()[rows, heads].softmax(dim=1)


def visit_average(
    previous: torch.Tensor, current: torch.Tensor, seen: torch.Tensor, momentum: float
) -> torch.Tensor:
    """(B, C) a running average over an image's visits: the current value on its first visit
    (seen (B, 1) false), then momentum · previous + (1 − momentum) · current."""
    return torch.where(seen, momentum * previous + (1 - momentum) * current, current)


def elr_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ELR (Liu et al., NeurIPS 2020): mean over masked rows of log(1 − ⟨p, t⟩), t an image's
    running target. Its gradient pulls p toward t, the model's early predictions, so that fitting
    a label that contradicts them (memorising it) meets resistance."""
    probs = logits.float().softmax(dim=1).clamp(1e-4, 1 - 1e-4)
    probs = probs / probs.sum(dim=1, keepdim=True)
    agreement = (probs * targets).sum(dim=1)
    return masked_mean(torch.log((1 - agreement).clamp_min(1e-4)), mask)


def soft_target_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
    """elr_form "soft": mean over masked rows of the cross-entropy toward t, −Σ t log p. Alone
    its minimum is p = t (elr_loss's: p on t's most likely class); beside λ_s L_S it trains p
    toward (λ_s y + λ t) / (λ_s + λ)."""
    log_probs = logits.float().log_softmax(dim=1)
    return masked_mean(-(targets * log_probs).sum(dim=1), mask)


ELR_FORMS = {"log": elr_loss, "soft": soft_target_loss}


def own_predictions(own, evidence, thresholds) -> torch.Tensor:
    """elr_target "own": (B, C) ELR's early-learning targets, the image's own running p."""
    return own


def out_of_fold_evidence(own, evidence, thresholds) -> torch.Tensor:
    """elr_target "evidence": (B, C) the image's out-of-fold evidence."""
    return evidence


def calibrated_evidence(own, evidence: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """elr_target "calibrated": (B, C) the out-of-fold evidence read against each class's
    threshold (class_thresholds, (C,)) as the verdicts read it, e_j / t_j, renormalised: a class
    the heads find hard weighs in the target as it does in the rule."""
    scaled = evidence / thresholds.clamp_min(1e-6)
    return scaled / scaled.sum(dim=1, keepdim=True)


ELR_TARGETS = {
    "own": own_predictions,
    "evidence": out_of_fold_evidence,
    "calibrated": calibrated_evidence,
}


# ---- the verdicts ----


def class_thresholds(
    evidence: torch.Tensor, labels: torch.Tensor, active: torch.Tensor
) -> torch.Tensor:
    """(C,) Confident Learning's per-class thresholds: t_j = mean evidence for j over the active
    images labeled j (1/C for a class without one)."""
    num_classes = evidence.shape[1]
    onehot = F.one_hot(labels, num_classes).to(evidence.dtype) * active[:, None]  # (M, C)
    count = onehot.sum(dim=0)
    total = (onehot * evidence).sum(dim=0)
    return torch.where(count > 0, total / count.clamp_min(1), 1.0 / num_classes)


def evidence_verdict(
    evidence: torch.Tensor,
    labels: torch.Tensor,
    thresholds: torch.Tensor,
    against_ratio: float,
    margin: float,
) -> torch.Tensor:
    """(B,) each row's verdict on its label: KEEP (-2), DEMOTE (-1) or a class to relabel to.

    Against the label y: e_y < against_ratio · t_y. For class j ≠ y, the most likely other one:
    e_j ≥ t_j and e_j > e_y (Confident Learning's off-diagonal), and e_j ≥ margin · e_k for every
    other class k ∉ {y, j} (one class, not a split between two). Against and for j: relabel to
    j; against and for no class: demote; otherwise keep."""
    own = evidence.gather(1, labels[:, None])[:, 0]
    others = evidence.scatter(1, labels[:, None], float("-inf"))
    best, other = others.max(dim=1)
    runner_up = others.topk(2, dim=1).values[:, 1].clamp_min(0)  # -inf: only the label's column
    against = own < against_ratio * thresholds[labels]
    for_other = (best >= thresholds[other]) & (best > own) & (best >= margin * runner_up)
    return torch.where(against, torch.where(for_other, other, DEMOTE), KEEP)


def within_known_classes(
    verdict: torch.Tensor, labels: torch.Tensor, known: torch.Tensor
) -> torch.Tensor:
    """(B,) the verdicts a row's judging head can give: none (KEEP) where it trains on no image
    of the row's label, whose evidence against the label is then no evidence; a demotion
    instead of a relabel to a class it trains on no image of. known (B, C): the judging head
    of each row trains on some image of class c (heads_trained > 0)."""
    knows_label = known.gather(1, labels[:, None])[:, 0]
    knows_new = known.gather(1, verdict.clamp_min(0)[:, None])[:, 0]
    verdict = torch.where((verdict >= 0) & ~knows_new, DEMOTE, verdict)
    return torch.where(knows_label, verdict, KEEP)


def any_class(verdict, features, prototypes, ready) -> torch.Tensor:
    """evidence_agreement "none": (B,) the verdicts as they are."""
    return verdict


def nearest_prototype_agrees(verdict, features, prototypes, ready) -> torch.Tensor:
    """evidence_agreement "prototype": (B,) a relabel also needs the nearest class prototype
    (Eq. 3) to be the new class; one it does not name becomes a demotion, as does every relabel
    while no class has a prototype (no witness, not class 0's)."""
    similarity = cosine_to_prototypes(features, prototypes, ready)
    nearest = similarity.masked_fill(~ready, float("-inf")).argmax(dim=1)
    agrees = (nearest == verdict) & ready.any()
    return torch.where((verdict >= 0) & ~agrees, DEMOTE, verdict)


AGREEMENTS = {"none": any_class, "prototype": nearest_prototype_agrees}


def streak_update(
    streak: torch.Tensor, previous: torch.Tensor, verdict: torch.Tensor
) -> torch.Tensor:
    """(B,) visits in a row with the same verdict (SELFIE-style consistency): +1 when it repeats,
    1 when it changes."""
    return torch.where(verdict == previous, streak + 1, torch.ones_like(streak))
