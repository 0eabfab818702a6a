"""One step of any registered algorithm on a tiny network: the harness of the contract tests
(tests/test_algorithms.py, tests/test_algorithm_steps.py)."""

import torch

import lionfer.algorithms  # noqa: F401  (registers the algorithms)
from lionfer.algorithms.base import AlgorithmInfo, Batch
from lionfer.config_sections import ModelConfig
from lionfer.models import build_model
from lionfer.registry import ALGORITHMS

# Logs each method must report (besides loss_sup, which every method reports).
EXPECTED_LOGS = {
    "supervised": set(),
    "fullysupervised": set(),
    "lion": {"mask_rate", "loss_reliable", "clear_rate", "ambiguous_rate", "loss_nl", "loss_nc"},
    "fixmatch": {"loss_unsup", "mask_rate"},
    "pseudolabel": {"loss_unsup", "mask_rate", "weight_unsup"},
    "mixmatch": {"loss_unsup", "weight_unsup"},
    "uda": {"loss_unsup", "mask_rate", "tsa_kept"},
    "remixmatch": {"loss_unsup", "loss_u1", "loss_rot", "weight_unsup"},
    "marginmix": {"loss_unsup", "weight_unsup", "centroids_ready"},
    "adacm": {"loss_unsup", "loss_contrast", "mask_rate", "threshold_mean"},
    "flexmatch": {"loss_unsup", "mask_rate", "threshold_mean"},
    "freematch": {"loss_unsup", "loss_fair", "mask_rate", "threshold_global"},
    "softmatch": {"loss_unsup", "mask_rate", "full_weight_rate", "threshold_global"},
}

NUM_CLASSES, B_LB, B_ULB, SIZE = 3, 4, 4, 16


def tiny_model():
    cfg = ModelConfig(name="cnn_small", pretrained="", dropout=0.5)
    return build_model(cfg, NUM_CLASSES)


def tiny_info(model):
    return AlgorithmInfo(NUM_CLASSES, 6, 8, model.feature_dim, torch.tensor([0, 1, 2, 0, 1, 2]))


def tiny_batch(views, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_ulb = tuple(torch.randn(B_ULB, 3, SIZE, SIZE, generator=g) for _ in views)
    return Batch.from_views(
        torch.randn(B_LB, 3, SIZE, SIZE, generator=g),
        torch.tensor([0, 1, 2, 1]),
        torch.tensor([0, 1, 2, 3]),
        views,
        x_ulb,
        torch.tensor([0, 3, 5, 7]) if views else None,
    )


def build(name, model):
    cls = ALGORITHMS.get(name)
    return cls(ALGORITHMS.entry(name).config(), tiny_info(model))
