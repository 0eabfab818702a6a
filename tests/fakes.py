"""Test doubles shared by the algorithm tests: a model whose outputs the test chooses, and a
process group of two whose other process mirrors this one."""

import torch
import torch.nn.functional as F
from torch import nn

from lionfer.algorithms.base import AlgorithmInfo, Batch
from lionfer.distributed import Comm
from lionfer.models import Output

T = torch.tensor


class Passthrough(nn.Module):
    """A 'model' whose input rows are [logits (C) | features (D)], so every probability in a
    step is chosen by the test. The scale parameter gives the loss a graph."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        c = self.num_classes
        return Output(x[:, :c] * self.scale, F.normalize(x[:, c:], dim=1))


def rows(probs, features=None):
    """Inputs for Passthrough: logits = log(probs), so softmax returns probs exactly; features
    default to a constant unit vector."""
    probs = torch.as_tensor(probs, dtype=torch.float32)
    if features is None:
        features = torch.ones(len(probs), 2)
    return torch.cat([torch.log(probs), torch.as_tensor(features, dtype=torch.float32)], dim=1)


def info(num_classes=3, given=(0, 1, 2, 0), num_unlabeled=6, feature_dim=2):
    return AlgorithmInfo(num_classes, len(given), num_unlabeled, feature_dim, T(given))


class CopiesOnTwoProcesses(Comm):
    """One of two processes, the other holding copies of this one's images: each view's
    gathered rows are its own twice, in rank order."""

    world_size = 2

    def gather_views(self, tensor, sizes):
        return [torch.cat([rows, rows]) for rows in torch.split(tensor, list(sizes))]


def global_batch(labeled_probs, unlabeled_probs):
    """A step's batch on one of CopiesOnTwoProcesses: this process's one labeled image (class 0)
    and its unlabeled images (weak and strong views alike), with the labels and indices of the
    global batch, this process's rows then the other's."""
    n = 2 * len(unlabeled_probs)
    return Batch(
        rows([labeled_probs]),
        T([0, 0]),
        T([0, 1]),
        rows(unlabeled_probs),
        rows(unlabeled_probs),
        T(list(range(n))),
    )
