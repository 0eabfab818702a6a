"""SoftMatch, a truncated Gaussian weight on every pseudo-label (Chen et al., ICLR 2023).

- No pseudo-label is thrown away: each gets a weight λ(p) = λ_max · exp(−(max p − μ_t)² / (2σ_t²))
  below μ_t and λ_max from μ_t up (Eq. 5), a soft version of a confidence threshold.
- μ_t and σ_t² are EMAs (m = 0.999) of the mean and unbiased variance of max p over the weak
  views of the unlabeled batch (Eqs. 6-7), from μ = 1/C and σ² = 1, so early on every weight
  is near λ_max and the curve narrows as the model grows confident.
- Uniform alignment (Eq. 8): the weight reads max UA(p), UA(p) = Normalize(p · u(C) / p̂), with
  p̂ an EMA of the mean weak prediction, so classes the model under-predicts are not down-weighted.
- L = L_s + mean_b λ(p_b) · CE(p_s,b, argmax p_b), λ_max = λ_u = 1.

Reference: H. Chen, R. Tao, Y. Fan, Y. Wang, J. Wang, B. Schiele, X. Xie, B. Raj, M. Savvides,
"SoftMatch: Addressing the Quantity-Quality Trade-off in Semi-supervised Learning", ICLR 2023.
Settled where Eq. 5, Algorithm 1 and the two codes (TorchSSL, which ran the paper's tables, and
USB) differ: the weight's σ is σ_t / n_sigma with n_sigma = 2 (§4.1 divides the variance by 4,
as both codes do; n_sigma = 1 is Eq. 5 as printed). The pseudo-label is the argmax of the
unaligned p (§3.2 and both codes: UA changes the weight, not the label). μ_t and σ_t² come from
the unaligned max p (Algorithm 1 and TorchSSL; USB takes them after UA). UA's target is the
uniform u(C) (the paper and USB's dist_uniform; TorchSSL aligns to the labeled predictions),
uniform over the classes with a labeled image where some have none (a folder of some FER
classes: as p̂ of a class never predicted fades, over many thousands of steps, p/p̂ would
grow toward 1 there and UA would flatten every weight toward 0), and p̂ starts uniform
(TorchSSL; USB starts from the first batch). As in Algorithm 1 and both codes every EMA takes
the current batch before its weights are made. mask_rate logs the mean weight (the paper's
quantity, Eq. 3); the step's mask marks the full-weight images (max UA(p) ≥ μ_t).
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
    labeled_classes,
)
from lionfer.algorithms.hparams import SoftMatchConfig


def update_estimates(mu, var, p_model, probs_w: torch.Tensor, momentum: float):
    """EMAs of the mean (μ_t) and unbiased variance (σ_t²) of max p, and of the mean prediction
    (p̂), over the weak views probs_w (B, C); returns the new (μ_t, σ_t², p̂). A batch of one
    image adds a variance of 0."""
    confidence = probs_w.max(dim=1).values
    batch_var = confidence.var(correction=1 if len(confidence) > 1 else 0)
    return (
        momentum * mu + (1 - momentum) * confidence.mean(),
        momentum * var + (1 - momentum) * batch_var,
        momentum * p_model + (1 - momentum) * probs_w.mean(dim=0),
    )


def uniform_alignment(
    probs_w: torch.Tensor, p_model: torch.Tensor, target: torch.Tensor | None = None
) -> torch.Tensor:
    """UA(p) = Normalize(p · u / p̂), row by row, (B, C); u the target distribution (C,),
    uniform u(C) by default."""
    u = 1.0 / probs_w.shape[1] if target is None else target
    aligned = probs_w * u / p_model
    return aligned / aligned.sum(dim=1, keepdim=True)


def truncated_gaussian_weight(
    confidence: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, n_sigma: float
) -> torch.Tensor:
    """λ(p)/λ_max = exp(−(max p − μ_t)² / (2σ_t² / n_sigma²)) where max p < μ_t, else 1, (B,)."""
    gaussian = torch.exp(-((confidence - mu) ** 2) / (2 * var / n_sigma**2))
    return torch.where(confidence < mu, gaussian, torch.ones_like(confidence))


class SoftMatch(Algorithm):
    config_class = SoftMatchConfig
    views = ("weak", "strong")
    device_buffers = ("alignment_target",)

    def __init__(self, cfg: SoftMatchConfig, info):
        super().__init__(cfg, info)
        c = info.num_classes
        self.prob_max_mu = torch.tensor(1.0 / c)  # μ_t
        self.prob_max_var = torch.tensor(1.0)  # σ_t²
        self.p_model = torch.full((c,), 1.0 / c)  # p̂
        labeled = labeled_classes(info).float()
        self.alignment_target = labeled / labeled.sum().clamp(min=1)  # u, (C,)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "prob_max_mu": self.prob_max_mu,
            "prob_max_var": self.prob_max_var,
            "p_model": self.p_model,
        }

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        cfg = self.cfg
        (logits_lb, _), (logits_ulb_w, _), (logits_ulb_s, _) = forward_views(
            model, batch.x_lb, batch.x_ulb_w, batch.x_ulb_s, comm=self.comm
        )
        loss_sup = F.cross_entropy(logits_lb, batch.y_lb)
        probs_w = logits_ulb_w.detach().float().softmax(dim=1)  # (B, C)
        self.prob_max_mu, self.prob_max_var, self.p_model = update_estimates(
            self.prob_max_mu, self.prob_max_var, self.p_model, probs_w, cfg.ema
        )
        pseudo_labels = probs_w.argmax(dim=1)
        if cfg.uniform_alignment:
            aligned = uniform_alignment(probs_w, self.p_model, self.alignment_target)
            confidence = aligned.max(dim=1).values
        else:
            confidence = probs_w.max(dim=1).values
        weight = truncated_gaussian_weight(
            confidence, self.prob_max_mu, self.prob_max_var, cfg.n_sigma
        )
        per_image = F.cross_entropy(logits_ulb_s.float(), pseudo_labels, reduction="none")
        loss_unsup = (weight * per_image).mean()
        full = confidence >= self.prob_max_mu
        logs = {
            "loss_sup": loss_sup.detach(),
            "loss_unsup": loss_unsup.detach(),
            "mask_rate": weight.mean(),
            "full_weight_rate": full.float().mean(),
            "threshold_global": self.prob_max_mu,
            "threshold_var": self.prob_max_var,
        }
        return StepOutput(loss_sup + cfg.lambda_u * loss_unsup, logs, pseudo_labels, full)
