"""MixMatch (Berthelot et al., NeurIPS 2019).

- Label guessing: average the predictions on K weak views of each unlabeled image (no gradient)
  and sharpen the average with temperature T: q = q̄^{1/T} / Σ_c q̄_c^{1/T}.
- MixUp: the labeled images (one-hot targets) and the K·B unlabeled views (target q) form one
  pool; each item is mixed with a random partner, λ' = max(λ, 1 − λ), λ ~ Beta(α, α), so the
  mixed item stays closer to itself.
- L = H(y', p(x')) on the mixed labeled part + λ_U(t) · (1/C)‖q' − p(u')‖² on the mixed unlabeled
  part, λ_U ramped up linearly.

Reference: D. Berthelot, N. Carlini, I. Goodfellow, N. Papernot, A. Oliver, C. Raffel, "MixMatch:
A Holistic Approach to Semi-Supervised Learning", NeurIPS 2019. Codes differ from each other on
λ: the authors' code draws one λ per mixed item, the popular PyTorch port and USB one per batch;
lionfer follows the authors (per item). The guessing pass normalises with its own batch's
statistics but leaves BatchNorm's running statistics as they were, as the authors' code and USB
do (the PyTorch port lets it update them). The mixed labeled and unlabeled parts go through one
concatenated forward pass, whose statistics BatchNorm records; the codes cut the mixed pool into
chunks of B_l images normalised one by one and record one chunk: the authors' first interleaved
chunk (a share of each part), USB's mixed labeled chunk. USB's configs use α = 0.5 (lionfer: the
paper's 0.75) and ramp λ_U over the first 40% of the run. λ_U ramps up over the paper's first
16,000 steps, which at the FER protocol's 16,000-step run is the whole run (`rampup = 1.0`, as in
the PyTorch port); 1/64 of a short run lets λ_U = 100 act on near-random guesses and collapses the
network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lionfer.algorithms.base import (
    Algorithm,
    Batch,
    Progress,
    StepOutput,
    forward_views,
    frozen_bn_statistics,
    step_generator,
    to_device,
)
from lionfer.algorithms.hparams import MixMatchConfig
from lionfer.losses import soft_cross_entropy


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, C) rows raised to 1/T and renormalised; T → 0 approaches one-hot."""
    powered = probs ** (1.0 / temperature)
    return powered / powered.sum(dim=1, keepdim=True)


def sample_beta(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """(n,) draws of Beta(α, α) as G1 / (G1 + G2), G ~ Gamma(α); torch.distributions takes no
    generator, so the Gamma sampler it uses is called directly."""
    concentration = torch.full((2, n), float(alpha), dtype=torch.float64)
    gammas = torch._standard_gamma(concentration, generator=generator)
    total = gammas.sum(dim=0)
    lam = torch.where(total > 0, gammas[0] / total.clamp(min=1e-300), 0.5)
    return lam.float()


def draw_mixup(n: int, alpha: float, generator: torch.Generator):
    """Per-item λ' = max(λ, 1 − λ), λ ~ Beta(α, α), and a random partner for each of n items."""
    lam = sample_beta(alpha, n, generator)
    return torch.maximum(lam, 1.0 - lam), torch.randperm(n, generator=generator)


def mixup(x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, partner: torch.Tensor):
    """x' = λ' x + (1 − λ') x[partner] and the same for the targets y (N, C); lam is (N,)."""
    lam = to_device(lam, x.device)
    lam_x = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    lam_y = lam.to(y.device, y.dtype).view(-1, 1)
    partner = to_device(partner, x.device)
    return lam_x * x + (1 - lam_x) * x[partner], lam_y * y + (1 - lam_y) * y[partner]


def guess_labels(logits_views, temperature: float) -> torch.Tensor:
    """Sharpened mean of the softmax over K views of the same images, (B, C), no gradient."""
    probs = torch.stack([logits.detach().float().softmax(dim=1) for logits in logits_views])
    return sharpen(probs.mean(dim=0), temperature)


def mix_pool(batch: Batch, targets_ulb: torch.Tensor, views, num_classes: int, alpha: float):
    """Mix the pool [x_lb; views...] with targets [one-hot y; q per view] (MixMatch's MixUp)."""
    targets_lb = F.one_hot(batch.y_lb, num_classes).float()
    inputs = torch.cat([batch.x_lb, *views])
    targets = torch.cat([targets_lb, *[targets_ulb] * len(views)])
    lam, partner = draw_mixup(len(inputs), alpha, step_generator())
    return mixup(inputs, targets, lam, partner)


class MixMatch(Algorithm):
    config_class = MixMatchConfig
    views = ("weak", "weak")  # K = 2 augmentations per unlabeled image

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        cfg, comm, num_labeled = self.cfg, self.comm, len(batch.y_lb)
        with torch.no_grad(), frozen_bn_statistics(model):
            guesses = forward_views(model, *batch.x_ulb, comm=comm)
            targets_ulb = guess_labels([logits for logits, _ in guesses], cfg.temperature)
        whole = batch.gathered(comm)  # MixUp partners come from the whole global batch
        mixed_x, mixed_y = mix_pool(
            whole, targets_ulb, whole.x_ulb, self.info.num_classes, cfg.alpha
        )
        (logits_x, _), (logits_u, _) = forward_views(
            model, comm.local(mixed_x[:num_labeled]), comm.local(mixed_x[num_labeled:]), comm=comm
        )
        loss_sup = soft_cross_entropy(logits_x, mixed_y[:num_labeled])
        # (1/C)‖q' − p‖² averaged over the mixed unlabeled items = mean squared error per entry
        loss_unsup = F.mse_loss(logits_u.float().softmax(dim=1), mixed_y[num_labeled:])
        weight = cfg.lambda_u * progress.ramp(cfg.rampup)
        logs = {
            "loss_sup": loss_sup.detach(),
            "loss_unsup": loss_unsup.detach(),
            "weight_unsup": weight,
        }
        pseudo_labels = targets_ulb.argmax(dim=1)
        mask = torch.ones_like(pseudo_labels, dtype=torch.bool)  # every guess is used (softly)
        return StepOutput(loss_sup + weight * loss_unsup, logs, pseudo_labels, mask)
