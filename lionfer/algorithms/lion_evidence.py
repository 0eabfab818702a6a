"""The evidence rule of LION's labeled side (disambiguation = "evidence", lionfer's own, the
default recipe), as pure functions: K cross-fitted heads give each labeled image a running
out-of-fold prediction (its evidence); Confident Learning's per-class thresholds turn it into a
verdict on the image's label (keep, relabel to a class, or demote the image to unlabeled),
carried out once it holds for min_visits visits in a row; ELR keeps the model near its early
predictions meanwhile. Lion (lion.py) holds the per-image state and calls these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lionfer.algorithms.lion_equations import cosine_to_prototypes, masked_mean

KEEP, DEMOTE = -2, -1  # evidence verdicts that are not a class

# the per-image state of the evidence rule, saved after LION's own (Lion.state_dict)
EVIDENCE_STATE = (
    "fold",
    "evidence",
    "evidence_visits",
    "elr_target",
    "verdict",
    "streak",
    "demoted",
    "bank_lb",
)


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
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    order = order[torch.sort(labels[order].cpu(), stable=True).indices]  # by class, shuffled within
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return rank % folds


def training_heads(folds: torch.Tensor, num_heads: int, set_aside: torch.Tensor) -> torch.Tensor:
    """(B, K) true where head k trains on the row: every head but its fold's, none for a row set
    aside (demoted)."""
    trains = folds[:, None] != torch.arange(num_heads, device=folds.device)
    return trains & ~set_aside[:, None]


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
    evidence: torch.Tensor, labels: torch.Tensor, thresholds: torch.Tensor, against_ratio: float
) -> torch.Tensor:
    """(B,) each row's verdict on its label: KEEP (-2), DEMOTE (-1) or a class to relabel to.

    Against the label y: e_y < against_ratio · t_y. For class j ≠ y, the most likely other one:
    e_j ≥ t_j and e_j > e_y (Confident Learning's off-diagonal). Against and for j: relabel to
    j; against and for no class: demote; otherwise keep."""
    own = evidence.gather(1, labels[:, None])[:, 0]
    others = evidence.scatter(1, labels[:, None], float("-inf"))
    best, other = others.max(dim=1)
    against = own < against_ratio * thresholds[labels]
    for_other = (best >= thresholds[other]) & (best > own)
    return torch.where(against, torch.where(for_other, other, DEMOTE), KEEP)


def any_class(verdict, features, prototypes, ready) -> torch.Tensor:
    """evidence_agreement "none": (B,) the verdicts as they are."""
    return verdict


def nearest_prototype_agrees(verdict, features, prototypes, ready) -> torch.Tensor:
    """evidence_agreement "prototype": (B,) a relabel also needs the nearest class prototype
    (Eq. 3) to be the new class; one it does not name becomes a demotion."""
    similarity = cosine_to_prototypes(features, prototypes, ready)
    nearest = similarity.masked_fill(~ready, float("-inf")).argmax(dim=1)
    return torch.where((verdict >= 0) & (nearest != verdict), DEMOTE, verdict)


AGREEMENTS = {"none": any_class, "prototype": nearest_prototype_agrees}


def streak_update(
    streak: torch.Tensor, previous: torch.Tensor, verdict: torch.Tensor
) -> torch.Tensor:
    """(B,) visits in a row with the same verdict (SELFIE-style consistency): +1 when it repeats,
    1 when it changes."""
    return torch.where(verdict == previous, streak + 1, torch.ones_like(streak))
