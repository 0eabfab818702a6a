"""LION's equations (Du et al., IJCAI 2023, Eqs. 1-11) as pure functions of detached tensors, and
beside each equation the variants its rules choose between (LionConfig's rule fields): one named
function per choice, gathered in a table by the choice's name. Lion resolves each rule once,
when it is built, so its step compares no names. Eq. 12, the total loss, is written in
Lion.step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lionfer.losses import masked_cross_entropy

# ---- when disambiguation begins (start_rule) ----


def start_after_fraction(fraction: float, fit_rate: torch.Tensor, at: float) -> torch.Tensor:
    """start_rule "fraction": () true once `at` of the run's steps are done."""
    return torch.full_like(fit_rate, fraction >= at, dtype=torch.bool)


def start_when_fitted(fraction: float, fit_rate: torch.Tensor, threshold: float) -> torch.Tensor:
    """start_rule "fitted": () true once the running fraction of labeled images predicted as
    their label with confidence ≥ τ reaches `threshold`."""
    return fit_rate >= threshold


# ---- Eq. 1: clear or ambiguous (ambiguity_rule) ----


def split_clear(probs: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 1: (B,) true where max p ≥ τ and argmax p equals the current label."""
    confidence, predicted = probs.max(dim=1)
    return (confidence >= tau) & (predicted == labels)


def disputed_by_confidence(probs: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """ambiguity_rule "confidence" (Eq. 1): (B,) true where the image is not clear."""
    return ~split_clear(probs, labels, tau)


def disputed_by_margin(probs: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """ambiguity_rule "margin" (the released code): (B,) true where max p − p_label > margin, the
    model prefers another class by that much."""
    return probs.max(dim=1).values - probs.gather(1, labels[:, None])[:, 0] > margin


# ---- Eq. 2 and what an ambiguous image trains on (ambiguous_loss) ----


def loss_on_clear(logits, labels, clear, started) -> torch.Tensor:
    """Eq. 2: L_S over the clear rows once disambiguation has begun, over every row before."""
    full = F.cross_entropy(logits, labels)
    return torch.where(started, masked_cross_entropy(logits, labels, clear), full)


def loss_on_every_label(logits, labels, clear, started) -> torch.Tensor:
    """ambiguous_loss "label": every row trains on its label; ambiguity only gathers evidence."""
    return F.cross_entropy(logits, labels)


def candidate_loss(logits, weights, ambiguous) -> torch.Tensor:
    """ambiguous_loss "candidates": soft cross-entropy of the ambiguous rows toward their
    candidate weights (B, C), clipped at 0 and normalised."""
    positive = weights.clamp_min(0)  # cosine similarities can be negative
    target = positive / positive.sum(dim=1, keepdim=True).clamp_min(1e-12)
    log_probs = logits.float().log_softmax(dim=1)
    return masked_mean(-(target * log_probs).sum(dim=1), ambiguous)


SUPERVISED_LOSSES = {
    "none": loss_on_clear,
    "candidates": loss_on_clear,
    "label": loss_on_every_label,
}
AMBIGUOUS_LOSSES = {"none": None, "candidates": candidate_loss, "label": None}


# ---- Eq. 3 ----


def update_prototypes(
    prototypes: torch.Tensor,
    ready: torch.Tensor,
    features: torch.Tensor,
    classes: torch.Tensor,
    selected: torch.Tensor,
    phi: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3 over the selected rows in batch order: a class's first update sets S_c = q, later
    ones S_c ← normalise(φ S_c + (1 − φ) q). Returns new (prototypes (C, D), ready (C,)).

    Exactly the per-sample loop, vectorised over classes: the rows are laid out by their rank
    within their class, then round j applies every class's j-th update at once (a class's
    updates are sequential, so there are B rounds of 5 small tensor ops and no host sync).
    """
    b, num_classes = len(features), prototypes.shape[0]
    onehot = F.one_hot(classes, num_classes) * selected[:, None]  # (B, C)
    rank = (onehot.cumsum(dim=0) * onehot).sum(dim=1) - 1  # (B,) j-th update of its class
    slot = torch.where(selected, rank, b)  # unselected rows land in a spare slot, dropped
    q = prototypes.new_zeros(b + 1, num_classes, prototypes.shape[1])  # (B+1, C, D)
    q[slot, classes] = features.to(prototypes.dtype)
    has = torch.zeros(b + 1, num_classes, dtype=torch.bool, device=ready.device)
    has[slot, classes] = True
    q, has = q[:b], has[:b]
    first = has[0] & ~ready  # a class's first update ever: S_c = q, no mixing
    prototypes = torch.where(first[:, None], q[0], prototypes)
    mix = torch.cat([(has[0] & ready)[None], has[1:]])[..., None]  # (B, C, 1)
    for weighted, this in zip(((1 - phi) * q).unbind(0), mix.unbind(0), strict=True):
        mixed = F.normalize(torch.add(weighted, prototypes, alpha=phi), dim=1)
        prototypes = torch.where(this, mixed, prototypes)
    return prototypes, ready | has[0]


# ---- Eq. 4: the candidate set (candidate_rule) and its first weights (weight_init) ----


def candidate_set(
    probs: torch.Tensor, mu: float, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 4: (B, C) candidates = {argmax p} ∪ {c : p_c ≥ μ}, plus the label where given."""
    rows = torch.arange(len(probs), device=probs.device)
    candidates = probs >= mu
    candidates[rows, probs.argmax(dim=1)] = True
    if labels is not None:
        candidates[rows, labels] = True
    return candidates


def threshold_candidates(probs: torch.Tensor, labels: torch.Tensor, mu: float) -> torch.Tensor:
    """candidate_rule "threshold" (Eq. 4): {argmax p} ∪ {c : p_c ≥ μ}."""
    return candidate_set(probs, mu)


def threshold_given_candidates(
    probs: torch.Tensor, labels: torch.Tensor, mu: float
) -> torch.Tensor:
    """candidate_rule "threshold_given": Eq. 4's set and the given label."""
    return candidate_set(probs, mu, labels)


def prediction_given_candidates(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """candidate_rule "prediction_given" (the released code): {argmax p, the given label}."""
    rows = torch.arange(len(probs), device=probs.device)
    candidates = torch.zeros_like(probs, dtype=torch.bool)
    candidates[rows, probs.argmax(dim=1)] = True
    candidates[rows, labels] = True
    return candidates


def weights_from_probs(probs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """weight_init "probs" (Eq. 4): w = p on the candidates, 0 off the set."""
    return probs * candidates.to(probs.dtype)


def weights_normalised(probs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """weight_init "normalised": p over the candidates, summing to 1."""
    weights = weights_from_probs(probs, candidates)
    return weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)


def weights_uniform(probs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """weight_init "uniform": 1 / number of candidates."""
    on = candidates.to(probs.dtype)
    return on / on.sum(dim=1, keepdim=True)


WEIGHT_INITS = {
    "probs": weights_from_probs,
    "normalised": weights_normalised,
    "uniform": weights_uniform,
}


def initial_weights(probs: torch.Tensor, candidates: torch.Tensor, rule: str) -> torch.Tensor:
    """Weights of a fresh candidate set by the name of their rule (WEIGHT_INITS)."""
    return WEIGHT_INITS[rule](probs, candidates)


# ---- Eq. 5: the similarity d (similarity) and the weights' step (weight_update) ----


def cosine_to_prototypes(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    ready: torch.Tensor,
    candidates: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """similarity "cosine", d(q, S_c) of Eq. 5: (B, C) cosines, 0 for a class without a
    prototype (candidates and temperature play no part)."""
    cosine = F.normalize(features, dim=1) @ F.normalize(prototypes, dim=1).T  # (B, C)
    return cosine * ready.to(cosine.dtype)


def softmax_over_prototypes(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    ready: torch.Tensor,
    candidates: torch.Tensor | None,
    temperature: float,
) -> torch.Tensor:
    """similarity "softmax": (B, C) softmax of cos / T over the candidates (all classes with a
    prototype when candidates is None); 0 for a row with no such class."""
    cosine = cosine_to_prototypes(features, prototypes, ready)
    allowed = ready.expand_as(cosine) if candidates is None else candidates & ready
    logits = (cosine / temperature).masked_fill(~allowed, float("-inf"))
    similarity = logits.softmax(dim=1)
    return torch.nan_to_num(similarity, nan=0.0)  # rows with no allowed class


SIMILARITIES = {"cosine": cosine_to_prototypes, "softmax": softmax_over_prototypes}


def class_similarity(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    ready: torch.Tensor,
    candidates: torch.Tensor | None,
    kind: str,
    temperature: float,
) -> torch.Tensor:
    """d(q, S_c) of Eq. 5, (B, C), by the name of its rule (SIMILARITIES)."""
    return SIMILARITIES[kind](features, prototypes, ready, candidates, temperature)


def constant_momentum(visits: torch.Tensor, dtype: torch.dtype, phi: float) -> float:
    """weight_update "ema" (Eq. 5): φ on every visit."""
    return phi


def running_mean_momentum(visits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """weight_update "mean": (B, 1) φ = 1 − 1/visits, so that w is the mean of d over the visits
    since the image turned ambiguous, whatever the schedule's length."""
    step_size = 1.0 / visits.clamp_min(1).to(dtype)[:, None]
    return 1.0 - step_size


def update_weights(
    weights: torch.Tensor, candidates: torch.Tensor, similarity: torch.Tensor, phi
) -> torch.Tensor:
    """Eq. 5: w_c ← φ w_c + (1 − φ) d(q, S_c) on candidates; 0 outside the candidate set."""
    updated = phi * weights + (1 - phi) * similarity
    return torch.where(candidates, updated, torch.zeros_like(updated))


# ---- Eq. 6 ----


def relabel_decision(weights: torch.Tensor, candidates: torch.Tensor):
    """Eq. 6: (largest candidate weight (B,), its class (B,))."""
    return weights.masked_fill(~candidates, float("-inf")).max(dim=1)


def unbacked_by_classifier(probs, winner, other, confidence: float) -> torch.Tensor:
    """relabel_confidence > 0: (B,) true where a relabel to another class (other) lacks the
    classifier's backing, which must predict the winner with p ≥ confidence."""
    p_winner = probs.gather(1, winner[:, None])[:, 0]
    agree = (probs.argmax(dim=1) == winner) & (p_winner >= confidence)
    return other & ~agree


def never_blocked(probs, winner, other) -> torch.Tensor:
    """relabel_confidence = 0: (B,) no relabel needs the classifier's backing."""
    return torch.zeros_like(other)


# ---- Eq. 8 (reliable_loss_norm) ----


def loss_over_reliable(logits_s, pseudo_labels, reliable) -> torch.Tensor:
    """reliable_loss_norm "reliable", Eq. 8: CE of the strong view, mean over reliable rows."""
    return masked_cross_entropy(logits_s, pseudo_labels, reliable, "masked")


def loss_over_batch(logits_s, pseudo_labels, reliable) -> torch.Tensor:
    """reliable_loss_norm "batch" (the released code, FixMatch): the same sum over the batch."""
    return masked_cross_entropy(logits_s, pseudo_labels, reliable, "all")


RELIABLE_LOSSES = {"reliable": loss_over_reliable, "batch": loss_over_batch}


# ---- Eqs. 9-11 ----


def grow_complementary(
    bank_rows: torch.Tensor, probs: torch.Tensor, delta: float, keep: int = 1
) -> torch.Tensor:
    """Eq. 9, progressive: over the classes not yet in the bank, renormalise p; while the smallest
    renormalised probability is ≤ δ and more than `keep` classes remain, add it and repeat.

    The loop adds the remaining classes in ascending order of p (ties: lower class first) and
    stops at the first that fails, so it is one sort and prefix sums over the batch, no loop.
    """
    num_classes = probs.shape[1]
    remaining = ~bank_rows
    order = torch.where(remaining, probs, float("inf")).argsort(dim=1, stable=True)  # (B, C)
    candidate = remaining.gather(1, order)  # the remaining classes first, ascending
    smallest = probs.gather(1, order) * candidate
    mass = smallest.flip(1).cumsum(dim=1).flip(1).clamp_min(1e-12)  # what remains at round k
    left = remaining.sum(dim=1, keepdim=True) - torch.arange(num_classes, device=probs.device)
    add = candidate & (smallest / mass <= delta) & (left > keep)
    add = add.cumprod(dim=1).bool()  # only the unbroken run from the smallest
    return bank_rows | torch.zeros_like(bank_rows).scatter(1, order, add)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of values (B,) over the rows where mask is true; 0 (with a graph) when none."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)


def negative_learning_loss(bank_rows, probs_w, mask=None) -> torch.Tensor:
    """Eq. 10: mean over (masked) samples of −Σ_c ȳ_c (1 − p_w,c)."""
    return masked_mean(-(bank_rows.to(probs_w.dtype) * (1 - probs_w)).sum(dim=1), mask)


def negative_consistency_loss(bank_rows, probs_s, mask=None) -> torch.Tensor:
    """Eq. 11: mean over (masked) samples of −Σ_c ȳ_c log(1 − p_s,c), clamped for stability."""
    log_complement = torch.log((1 - probs_s).clamp_min(1e-6))
    return masked_mean(-(bank_rows.to(probs_s.dtype) * log_complement).sum(dim=1), mask)


def negative_weights(
    lambda_negative: float, lambda_consistency: float, decay: float, epoch: int
) -> tuple[float, float]:
    """(λ2, λ3) of Eq. 12 in an epoch: with a decay (the released code), λ2 falls by `decay`
    every epoch and λ3 in proportion, down to 0."""
    scale = 1.0
    if decay > 0 and lambda_negative > 0:
        scale = max(0.0, 1 - decay * epoch / lambda_negative)
    return scale * lambda_negative, scale * lambda_consistency


# ---- the pieces every equation shares ----


def clean_probs(out) -> torch.Tensor:
    """Detached probabilities of the head without dropout (the decision probabilities)."""
    logits = out.clean_logits if out.clean_logits is not None else out.logits
    return logits.detach().float().softmax(dim=1)


def epoch_of(step: int, epoch_steps: int) -> int:
    """1-based epoch of a 0-based step (the released code's per-epoch schedules)."""
    return step // epoch_steps + 1
