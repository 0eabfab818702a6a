"""Label noise for studies: symmetric (to a uniformly chosen other class) or asymmetric (a fixed
class → class map, e.g. the FER confusions), injected with a seeded generator.

Pure functions of label arrays; the clean labels stay with the caller (as true_labels), so relabel
precision and recall can be measured against them.
"""

from __future__ import annotations

import numpy as np

from lionfer.errors import ConfigError

NOISE_KINDS: tuple[str, ...] = ("none", "symmetric", "asymmetric")
FER_CONFUSIONS: dict[int, int] = {1: 0, 2: 5, 4: 6}  # Fear→Surprise, Disgust→Anger, Sadness→Neutral
DIGIT_CONFUSIONS: dict[int, int] = {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}


def default_noise_map(dataset_name: str) -> dict[int, int]:
    """The asymmetric map used when the config gives none: digit confusions or FER confusions."""
    return dict(DIGIT_CONFUSIONS if dataset_name == "digits" else FER_CONFUSIONS)


def parse_noise_map(mapping: dict, num_classes: int) -> dict[int, int]:
    """A config map such as {"1": 0, "2": 5} (TOML keys are strings) → {1: 0, 2: 5}, checked."""
    parsed = {}
    for key, value in mapping.items():
        try:
            source, target = int(key), int(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"data.noise_map entry {key!r} = {value!r}: both sides must be class ids "
                '(integers), e.g. noise_map = {"1" = 0}'
            ) from None
        for class_id in (source, target):
            if not 0 <= class_id < num_classes:
                raise ConfigError(
                    f"data.noise_map entry {key!r} = {value!r}: class id {class_id} is outside "
                    f"0..{num_classes - 1} for a {num_classes}-class dataset"
                )
        if source == target:
            raise ConfigError(f"data.noise_map entry {key!r} = {value!r} maps a class to itself")
        parsed[source] = target
    return parsed


def inject_noise(
    labels: np.ndarray,
    num_classes: int,
    kind: str,
    rate: float,
    seed: int,
    class_map: dict[int, int] | None = None,
) -> np.ndarray:
    """A noisy copy of labels: each eligible label flips with probability `rate`.

    symmetric: every label is eligible and flips to a uniformly chosen other class.
    asymmetric: labels whose class is a key of class_map flip to class_map[class].
    Unknown labels (-1) are never touched.
    """
    if kind not in NOISE_KINDS:
        raise ConfigError(f"unknown noise kind {kind!r}; use one of {', '.join(NOISE_KINDS)}")
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"noise rate must be a probability in [0, 1], got {rate}")
    labels = np.asarray(labels, dtype=np.int64)
    known = labels >= 0
    if (labels[known] >= num_classes).any():
        raise ConfigError(f"labels must be in 0..{num_classes - 1} (or -1 for unknown)")
    if kind == "none":
        if rate != 0.0:
            raise ConfigError(
                f"noise rate {rate} given with noise kind 'none'; set the kind to symmetric or "
                "asymmetric, or the rate to 0"
            )
        return labels.copy()
    rng = np.random.default_rng(seed)
    flip = (rng.random(len(labels)) < rate) & known
    noisy = labels.copy()
    if kind == "symmetric":
        # An offset in 1..C-1 never lands on the label itself and is uniform over the others.
        offset = rng.integers(1, num_classes, len(labels))
        noisy[flip] = (labels[flip] + offset[flip]) % num_classes
        return noisy
    if class_map is None:
        raise ConfigError(
            "asymmetric noise needs a class_map (class id -> class id); "
            "pass default_noise_map(dataset_name) or parse_noise_map(cfg.noise_map, C)"
        )
    class_map = parse_noise_map(class_map, num_classes)
    table = np.arange(num_classes)
    for source, target in class_map.items():
        table[source] = target
    noisy[flip] = table[labels[flip]]
    return noisy
