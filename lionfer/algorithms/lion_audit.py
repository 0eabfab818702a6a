"""The audit of LION's evidence rule (lion_evidence.py), as pure functions: the labeled images it
holds out of training on their labels until it is read (audit_rows, audit_held), its counts for
the read (audit_counts, read with excess_agreement_z), and its state where there is none
(no_audit, no_trail, no_agreement). Also the seeded order by class that both the audit and the
evidence rule's folds are dealt from (shuffled_by_class).
"""

from __future__ import annotations

import torch

MIN_AUDIT = 2  # the fewest images an audit is made of; fewer: none, and no decision in the run
NO_Z = float("-inf")  # the audit's z before it is read, or where none of it was seen (not NaN,
# which no two processes' states would compare equal on)


def shuffled_by_class(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """(M,) the images' indices ordered by class, in a seeded random order within each class."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    return order[torch.sort(labels[order].cpu(), stable=True).indices]


def audit_rows(labels: torch.Tensor, fraction: float, seed: int = 1) -> torch.Tensor:
    """(M,) bool: the audit, round(fraction · n_c) of the n_c images labeled c for every class c
    (at least one where fraction > 0 and the class has three), drawn in a seeded order. It
    leaves at least two images of every class to judge: stratified_folds deals them to two
    folds, so that the head judging each trains on the other (heads_trained). Fewer than
    MIN_AUDIT images in all make no audit (none)."""
    audit = torch.zeros(len(labels), dtype=torch.bool)
    if fraction <= 0 or not len(labels):
        return audit
    order = shuffled_by_class(labels, seed)
    ranked = labels[order].cpu()
    counts = torch.bincount(ranked)
    start = torch.cumsum(counts, dim=0) - counts  # each class's first place in order
    rank = torch.arange(len(order)) - start[ranked]  # place within its class
    wanted = (fraction * counts.double()).round().long()
    wanted = torch.where(counts >= 3, wanted.clamp_min(1), wanted)
    wanted = torch.minimum(wanted, (counts - 2).clamp_min(0))  # two of each class to judge
    audit[order] = rank < wanted[ranked]
    # one image cannot stop decisions whatever the evidence says of it (20 judged images named
    # at 85%, it missed: z = 2.1, under audit_z's 3), so it cannot let them go on either
    return audit if audit.sum() >= MIN_AUDIT else torch.zeros_like(audit)


def audit_held(audit: torch.Tensor, audit_step: torch.Tensor) -> torch.Tensor:
    """Audit images that train as unlabeled ones: all of them until the audit is read (its step
    is -1 until then), none after."""
    return audit & (audit_step < 0)


def no_audit(m: int, reads: int) -> dict[str, torch.Tensor]:
    """The audit's state where there is none (evidence_audit = 0, or a state saved before it),
    for a run that reads it up to `reads` times."""
    return {
        "audit": torch.zeros(m, dtype=torch.bool),
        "audit_step": torch.full((), -1, dtype=torch.long),
        "audit_z": torch.full((), NO_Z),
        "audit_passed": torch.tensor(True),
        "audit_agreement": no_agreement(),
        "audit_trail": no_trail(reads),
    }


def no_trail(reads: int, step: int = -1, z: float = NO_Z) -> torch.Tensor:
    """(reads, 2) the audit's reads in order, each its step and z; (-1, NO_Z) where a read was
    not made. step, z: a first read to record (a state saved before the trail was kept)."""
    trail = torch.tensor([[-1.0, NO_Z]]).repeat(reads, 1)
    if step >= 0:
        trail[0] = torch.tensor([float(step), z])
    return trail


def no_agreement() -> torch.Tensor:
    """(2,) the audit's agreement rates where it has none (not read, none seen, or a state saved
    before they were kept): -1, which no rate is."""
    return torch.full((2,), -1.0)


def audit_counts(
    evidence: torch.Tensor, labels: torch.Tensor, judged: torch.Tensor, audit: torch.Tensor
) -> tuple[int, int, int, int] | None:
    """(hits, images) of the judged images (those whose labels the model trains on), then of the
    audit's (whose labels no part of it trains on): how often the evidence names their labels,
    for the audit's one-sided z (excess_agreement_z). None while either set is empty.
    evidence (M, C), the rest (M,): labels as given, for judged and audit alike."""
    named = evidence.argmax(dim=1) == labels
    n_judged, n_audit = int(judged.sum()), int(audit.sum())
    if not n_judged or not n_audit:
        return None
    return int((named & judged).sum()), n_judged, int((named & audit).sum()), n_audit
