"""Transform presets, RGB PIL image → normalised float tensor (3, S, S): weak, strong, evaluate.

All randomness comes from torch's global RNG (torchvision's transforms and Cutout here), so a
loader that reseeds it per sample gets identical views for identical seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch import Tensor
from torchvision import transforms as T

Transform = Callable[[Image.Image], Tensor]

# torchvision RandAugment, 2 ops at magnitude 10 of 31 (FixMatch's N=2; the released LION code
# uses 3 ops at random magnitudes from its own implementation, followed by Cutout as here).
RANDAUGMENT_OPS = 2
RANDAUGMENT_MAGNITUDE = 10


class Cutout:
    """Zero one square of side U(0, max_fraction)·size at a uniform centre (clipped at the border).

    Applied to the normalised tensor, so 0 is the dataset mean colour.
    """

    def __init__(self, max_fraction: float = 0.5):
        self.max_fraction = max_fraction

    def __call__(self, x: Tensor) -> Tensor:
        _, height, width = x.shape
        side = round(torch.rand(()).item() * self.max_fraction * min(height, width))
        cy = int(torch.randint(height, ()))
        cx = int(torch.randint(width, ()))
        y0, x0 = max(0, cy - side // 2), max(0, cx - side // 2)
        y1, x1 = min(height, cy - side // 2 + side), min(width, cx - side // 2 + side)
        x = x.clone()
        x[:, y0:y1, x0:x1] = 0.0
        return x

    def __repr__(self) -> str:
        return f"Cutout(max_fraction={self.max_fraction})"


def weak(size: int, mean: Sequence[float], std: Sequence[float]) -> Transform:
    """Resize → random translation by zero-padded crop (8 px at 224, scaled) → flip → normalise."""
    return T.Compose(
        [
            T.Resize((size, size)),
            T.RandomCrop(size, padding=max(1, round(size * 8 / 224)), padding_mode="constant"),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def strong(size: int, mean: Sequence[float], std: Sequence[float]) -> Transform:
    """RandAugment on the raw image, then the weak pipeline, then Cutout on the tensor."""
    return T.Compose(
        [
            T.RandAugment(num_ops=RANDAUGMENT_OPS, magnitude=RANDAUGMENT_MAGNITUDE),
            weak(size, mean, std),
            Cutout(0.5),
        ]
    )


def evaluate(size: int, mean: Sequence[float], std: Sequence[float]) -> Transform:
    """Resize → normalise; deterministic."""
    return T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(mean, std)])
