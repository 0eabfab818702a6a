"""The in-memory description of a dataset: image sets with canonical labels, and the FERData bundle.

Every reader returns a FERData. Labels are canonical ids (see lionfer.labels); -1 marks an image
without a label. True (latent) labels, where a dataset knows them, are for diagnostics only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from lionfer.data.images import open_image


@dataclass
class ImageSet:
    """Images with their given labels: one part of a dataset.

    images: a uint8 array (N, H, W, 3) or (N, H, W) held in memory, or a list of file paths.
    labels: (N,) int64 given labels, canonical ids, -1 where unknown.
    true_labels: (N,) int64 latent truth where known (synthetic data, injected noise), else None.
    ids: a path or id per image, for reports; defaults to the position.
    boxes: (N, 4) int face boxes (x, y, w, h) to crop path images with, or None.
    error_types: (N,) int8 codes of ERROR_TYPES saying how each given label came about (-1
        unknown), where the dataset knows it (synthetic annotators, injected noise, vote counts).
    """

    images: np.ndarray | list[str]
    labels: np.ndarray
    true_labels: np.ndarray | None = None
    ids: list[str] | None = None
    boxes: np.ndarray | None = None
    error_types: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.images)
        if len(self.labels) != n:
            raise ValueError(f"{n} images but {len(self.labels)} labels")
        if self.true_labels is not None:
            self.true_labels = np.asarray(self.true_labels, dtype=np.int64)
            if len(self.true_labels) != n:
                raise ValueError(f"{n} images but {len(self.true_labels)} true labels")
        if self.ids is None:
            self.ids = (
                [str(p) for p in self.images] if self.is_files else [str(i) for i in range(n)]
            )
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.int64).reshape(n, 4)
        if self.error_types is not None:
            self.error_types = np.asarray(self.error_types, dtype=np.int8)
            if len(self.error_types) != n:
                raise ValueError(f"{n} images but {len(self.error_types)} error types")

    @property
    def is_files(self) -> bool:
        return not isinstance(self.images, np.ndarray)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> Image.Image:
        """Image i as an RGB PIL image (cropped to its box where one is given)."""
        if not self.is_files:
            array = self.images[i]
            image = Image.fromarray(array)
            return image if image.mode == "RGB" else image.convert("RGB")
        image = open_image(self.images[i])
        if self.boxes is not None and self.boxes[i, 2] > 0:  # (0, 0, 0, 0): the whole image
            x, y, w, h = (int(v) for v in self.boxes[i])
            image = image.crop((max(x, 0), max(y, 0), x + w, y + h))
        return image

    def subset(self, indices: np.ndarray) -> ImageSet:
        indices = np.asarray(indices, dtype=np.int64)
        images = self.images[indices] if not self.is_files else [self.images[i] for i in indices]
        return ImageSet(
            images=images,
            labels=self.labels[indices],
            true_labels=None if self.true_labels is None else self.true_labels[indices],
            ids=[self.ids[i] for i in indices],
            boxes=None if self.boxes is None else self.boxes[indices],
            error_types=None if self.error_types is None else self.error_types[indices],
        )


@dataclass
class FERData:
    """What a dataset reader returns.

    train: training images with their given labels (the split into labeled and unlabeled parts is
    made later, from these labels). test: held-out images with true labels. unlabeled: extra images
    that never had labels (e.g. a folder of unlabeled photos), or None.
    split_rule: how labeled budgets are spread over classes ("balanced" or "rafdb").
    """

    name: str
    class_names: tuple[str, ...]
    train: ImageSet
    test: ImageSet
    unlabeled: ImageSet | None = None
    split_rule: str = "balanced"
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
