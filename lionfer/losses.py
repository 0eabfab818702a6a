"""Loss functions shared by several algorithms: pure functions of tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, normalise: str = "masked"
) -> torch.Tensor:
    """Cross-entropy over the rows where mask is true.

    normalise="masked" divides by the number of selected rows (LION's Eq. 2 and Eq. 8);
    "all" divides by the batch size (FixMatch's convention). No selected row gives a zero that
    still belongs to the graph, so backward() works on every step.
    """
    mask = mask.to(logits.dtype)
    per_sample = F.cross_entropy(logits, targets, reduction="none")  # (B,)
    if normalise == "all":
        return (per_sample * mask).sum() / max(len(mask), 1)
    return (per_sample * mask).sum() / mask.sum().clamp_min(1)  # no host sync


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of H(targets, softmax(logits)) = −Σ_c targets_c log p_c; targets (B, C)
    are probability rows (mixed one-hots, sharpened guesses)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()
