"""Margin-Mix (Florea et al., ECCV 2020 Workshops), an approximation: its loss and its use of
class centroids are not published, so this is MixMatch with the two ideas its abstract states.

- MixMatch underneath: K weak views, sharpened guesses, MixUp across labeled and unlabeled images,
  cross-entropy on the mixed labeled part and λ_U · L2 on the mixed unlabeled part.
- Large margin: the mixed labeled part is trained on logits with an additive margin m taken off
  each class in proportion to its target weight, z − m·y', so the true class has to win by m.
- Self-labeling by centroids: μ_c, an EMA of the labeled images' embeddings per class, gives a
  second guess softmax(cos(f̄(u), μ_c) / s_d) from the distance between an unlabeled image's
  mean embedding and each centroid; the guess that is mixed is
  Sharpen((1 − ω)·q̄ + ω·centroid guess, T) once every class with labeled images has a
  centroid (q̄ alone before); a class without any gets no centroid and no share of that guess.

Reference: C. Florea, M. Badea, L. Florea, A. Racoviteanu, C. Vertan, "Margin-Mix: Semi-Supervised
Learning for Face Expression Recognition", ECCV 2020 Workshops. No code was released; the paper's
margin loss, distance and weights are unknown. lionfer's choices (ours): the margin acts on the
network's own linear head (not a separate cosine classifier), so the evaluated classifier is the
one the margin trains; the distance is the cosine distance to the normalised centroids; the
centroids come from the unmixed labeled images of each step. λ_U = 75 over a whole-run ramp are
those of the MixMatch port it was built on. As in lionfer's MixMatch, the guessing pass (labeled
images and the K views) leaves BatchNorm's running statistics as they were and the mixed pass
records its statistics. Treat its numbers as "Margin-Mix (approximation)".
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
    labeled_classes,
)
from lionfer.algorithms.hparams import MarginMixConfig
from lionfer.algorithms.mixmatch import guess_labels, mix_pool, sharpen
from lionfer.losses import soft_cross_entropy


def margin_logits(logits: torch.Tensor, targets: torch.Tensor, margin: float) -> torch.Tensor:
    """Additive margin: z − m·y' (B, C), so CE on it asks the target to lead by m."""
    return logits - margin * targets.to(logits.dtype)


def update_centroids(
    centroids: torch.Tensor,
    ready: torch.Tensor,
    features: torch.Tensor,
    labels: torch.Tensor,
    momentum: float,
) -> None:
    """In place: each class present in the batch moves μ_c ← φ μ_c + (1 − φ)·(batch class mean);
    a class seen for the first time takes the batch mean."""
    onehot = F.one_hot(labels, len(centroids)).to(features.dtype)  # (B, C)
    counts = onehot.sum(dim=0)  # (C,)
    means = (onehot.T @ features) / counts.clamp(min=1)[:, None]  # (C, D)
    present = (counts > 0)[:, None]
    moved = torch.where(ready[:, None], momentum * centroids + (1 - momentum) * means, means)
    centroids.copy_(torch.where(present, moved, centroids))
    ready |= counts > 0


def centroid_guess(
    features: torch.Tensor,
    centroids: torch.Tensor,
    temperature: float,
    ready: torch.Tensor | None = None,
) -> torch.Tensor:
    """softmax(−d(f, μ_c) / s_d) with the cosine distance d = 1 − cos; (B, C). With ready (C,)
    over the classes with a centroid only (0 for the others; 0 everywhere without any)."""
    cosine = F.normalize(features, dim=1) @ F.normalize(centroids, dim=1).T
    logits = -(1.0 - cosine) / temperature
    if ready is not None:
        logits = logits.masked_fill(~ready, float("-inf"))
    return torch.nan_to_num(logits.softmax(dim=1), nan=0.0)


class MarginMix(Algorithm):
    config_class = MarginMixConfig
    views = ("weak", "weak")
    device_buffers = ("labeled_classes",)

    def __init__(self, cfg: MarginMixConfig, info):
        super().__init__(cfg, info)
        self.centroids = torch.zeros(info.num_classes, info.feature_dim)  # (C, D) μ_c
        self.centroid_ready = torch.zeros(info.num_classes, dtype=torch.bool)
        # (C,) the classes with labeled images, the only ones that can get a centroid
        self.labeled_classes = labeled_classes(info)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"centroids": self.centroids, "centroid_ready": self.centroid_ready}

    def _guess(self, model, batch: Batch) -> torch.Tensor:
        cfg = self.cfg
        with frozen_bn_statistics(model):
            (_, features_lb), *ulb = forward_views(model, batch.x_lb, *batch.x_ulb, comm=self.comm)
        update_centroids(
            self.centroids,
            self.centroid_ready,
            features_lb.float(),
            batch.y_lb,
            cfg.centroid_momentum,
        )
        probs = guess_labels([logits for logits, _ in ulb], temperature=1.0)  # plain mean
        features = torch.stack([f.float() for _, f in ulb]).mean(dim=0)
        ready = self.centroid_ready
        by_centroid = centroid_guess(features, self.centroids, cfg.distance_temperature, ready)
        weight = cfg.centroid_weight * self._centroids_ready().float()
        return sharpen((1 - weight) * probs + weight * by_centroid, cfg.temperature)

    def _centroids_ready(self) -> torch.Tensor:
        """() every class with labeled images has a centroid: a class without any never gets
        one, and waiting for it would keep the centroid guess off for the whole run."""
        return (self.centroid_ready | ~self.labeled_classes).all()

    def step(self, model, batch: Batch, progress: Progress) -> StepOutput:
        cfg, comm, num_labeled = self.cfg, self.comm, len(batch.y_lb)
        with torch.no_grad():
            targets_ulb = self._guess(model, batch)
        whole = batch.gathered(comm)  # MixUp partners come from the whole global batch
        mixed_x, mixed_y = mix_pool(
            whole, targets_ulb, whole.x_ulb, self.info.num_classes, cfg.alpha
        )
        (logits_x, _), (logits_u, _) = forward_views(
            model, comm.local(mixed_x[:num_labeled]), comm.local(mixed_x[num_labeled:]), comm=comm
        )
        targets_x = mixed_y[:num_labeled]
        loss_sup = soft_cross_entropy(margin_logits(logits_x, targets_x, cfg.margin), targets_x)
        loss_unsup = F.mse_loss(logits_u.float().softmax(dim=1), mixed_y[num_labeled:])
        weight = cfg.lambda_u * progress.ramp(cfg.rampup)
        logs = {
            "loss_sup": loss_sup.detach(),
            "loss_unsup": loss_unsup.detach(),
            "weight_unsup": weight,
            "centroids_ready": (self.centroid_ready & self.labeled_classes).sum()
            / self.labeled_classes.sum().clamp(min=1),  # no boolean index: no host sync
        }
        pseudo_labels = targets_ulb.argmax(dim=1)
        mask = torch.ones_like(pseudo_labels, dtype=torch.bool)  # every guess is used (softly)
        return StepOutput(loss_sup + weight * loss_unsup, logs, pseudo_labels, mask)
