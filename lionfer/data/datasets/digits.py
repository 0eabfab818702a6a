"""scikit-learn's bundled handwritten digits (1,797 real 8×8 images, 10 classes) as a small dataset.

It ships inside scikit-learn, so nothing is downloaded. Images are upscaled to image_size and made
RGB; the seeded stratified split is 75% train / 25% test. Label noise is injected later (noise.py).
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from lionfer.data.base import FERData, ImageSet

DIGIT_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
TEST_FRACTION = 0.25
MAX_INK = 16.0  # load_digits pixel values run 0..16


def bilinear_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights resampling a length-`source` signal to `target` samples.

    Pixel centres are aligned as in PIL and torch (align_corners=False); edges are clamped.
    """
    position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, source - 1)
    frac = position - low
    weights = np.zeros((target, source))
    np.add.at(weights, (np.arange(target), low), 1.0 - frac)
    np.add.at(weights, (np.arange(target), high), frac)
    return weights


def upscale(images: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) grey values in 0..16 → (N, size, size, 3) uint8, bilinear."""
    rows = bilinear_matrix(images.shape[1], size)
    cols = bilinear_matrix(images.shape[2], size)
    grey = np.einsum("ih,nhw,jw->nij", rows, images.astype(np.float64), cols)
    grey = np.clip(grey * (255.0 / MAX_INK) + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def split_indices(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/test indices (each sorted), TEST_FRACTION in test."""
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels, random_state=seed
    )
    return np.sort(train), np.sort(test)


def load(cfg, seed: int = 0) -> FERData:
    """Digits upscaled to cfg.image_size, split by cfg.data_seed; labels are the true labels."""
    if cfg.image_size < 8:
        raise ValueError(f"digits are 8x8; set data.image_size to 8 or more, not {cfg.image_size}")
    digits = load_digits()
    images = upscale(digits.images, cfg.image_size)
    labels = digits.target.astype(np.int64)
    ids = [f"digit_{i:04d}" for i in range(len(labels))]

    def part(indices: np.ndarray) -> ImageSet:
        return ImageSet(
            images[indices], labels[indices], labels[indices], [ids[i] for i in indices]
        )

    train, test = split_indices(labels, cfg.data_seed)
    return FERData(
        name="digits",
        class_names=DIGIT_NAMES,
        train=part(train),
        test=part(test),
        split_rule="balanced",
        notes=[f"sklearn load_digits: {len(train)} train / {len(test)} test, seed {cfg.data_seed}"],
    )
