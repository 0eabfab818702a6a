"""The noise check of LION's evidence rule (lion_evidence.py), as pure functions: do the labeled
images' given labels look nearly right, as far as the evidence can tell?

The evidence e (M, C) is read as a model of the given labels with two parts: the evidence
sharpened or flattened by a temperature T, q = softmax(log e / T), which explains a label the
evidence finds likely or unsure, and a floor ρ / C under every class, which explains a label the
evidence rules out, at a rate ρ whatever the image:

    P(given = y | e) = (1 − ρ) q_y + ρ / C.

Both are fitted to the given labels by maximum likelihood (noise_floor_fit). Labels that are
right wherever the evidence is sure fit with ρ about 0, whatever the evidence's own errors on the
images it is unsure of (T takes those); slips on images it is sure of can only be fitted by
ρ > 0, about their share (ρ (C − 1) / C of the labels fall on a wrong class). The check asks
whether ρ is below a floor the rule needs (noise_min): the likelihood ratio of the best fit
against the best with ρ = noise_min, as a one-sided z (clean_z, positive where the fitted ρ is
below noise_min). Where it is above noise_z, the labels hold fewer errors the evidence can tell
than the rule's own mistakes would add, and the rule makes no decision.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

EVIDENCE_FLOOR = 1e-6  # log e of a class the evidence gives nothing: a finite logit
FIT_STEPS = 60  # L-BFGS iterations of each fit (at most two parameters: T and ρ)


def no_noise_read() -> torch.Tensor:
    """(4,) the noise check's last read where none was made: step -1, and no z, rate or
    temperature (-inf, which no two processes' states would compare unequal on, unlike NaN)."""
    return torch.tensor([-1.0, float("-inf"), float("-inf"), float("-inf")])


class NoiseFloor(NamedTuple):
    """A fit of the given labels by the evidence and a floor (module docstring)."""

    temperature: float  # T of the best fit
    rate: float  # ρ of the best fit: about the share of labels the evidence rules out
    clean_z: float  # one-sided z that ρ is below the rate asked about (0 where it is not)


def floor_log_likelihood(
    logits: torch.Tensor, labels: torch.Tensor, log_t: torch.Tensor, rate: torch.Tensor
) -> torch.Tensor:
    """() Σ_i log((1 − ρ) q_iy + ρ / C), q = softmax(logits / T), T = exp(log_t).
    logits (M, C), labels (M,), rate ρ: a () tensor in [0, 1]."""
    num_classes = logits.shape[1]
    q = torch.softmax(logits / log_t.exp(), dim=1).gather(1, labels[:, None])[:, 0]
    return torch.log((1 - rate) * q + rate / num_classes).sum()


def _maximise(objective, params: list[torch.Tensor]) -> float:
    """Maximise objective() over params in place with L-BFGS; returns its maximum."""
    optimiser = torch.optim.LBFGS(params, lr=1.0, max_iter=FIT_STEPS, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = -objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
        return float(objective().detach())


def fixed_rate_fit(logits: torch.Tensor, labels: torch.Tensor, rate: float) -> tuple[float, float]:
    """(log-likelihood, log T) of the best fit at a fixed rate ρ (logits: float64 on the CPU)."""
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    fixed = torch.tensor(rate, dtype=torch.float64)
    best = _maximise(lambda: floor_log_likelihood(logits, labels, log_t, fixed), [log_t])
    return best, float(log_t.detach())


def noise_floor_fit(evidence: torch.Tensor, labels: torch.Tensor, rate_min: float) -> NoiseFloor:
    """The best fit of labels (M,) by evidence (M, C) (module docstring), and the z that its ρ
    is below rate_min; float64 on the CPU, so that every process of a run gets the same
    numbers."""
    logits = evidence.detach().double().cpu().clamp_min(EVIDENCE_FLOOR).log()
    labels = labels.detach().long().cpu()
    at_min, log_t_min = fixed_rate_fit(logits, labels, rate_min)
    # ρ = sigmoid(a), started from the fit at rate_min
    log_t = torch.tensor(log_t_min, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(math.log(rate_min / (1 - rate_min)), dtype=torch.float64, requires_grad=True)
    best = _maximise(
        lambda: floor_log_likelihood(logits, labels, log_t, torch.sigmoid(a)), [log_t, a]
    )
    rate = float(torch.sigmoid(a.detach()))
    ratio = 2 * max(best - at_min, 0.0)
    return NoiseFloor(
        temperature=float(log_t.detach().exp()),
        rate=rate,
        clean_z=math.sqrt(ratio) if rate < rate_min else 0.0,
    )
