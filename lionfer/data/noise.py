"""Label noise for studies: symmetric (to a uniformly chosen other class), asymmetric (a fixed
class → class map, e.g. the FER confusions) or instance-dependent (each image its own flip rate
and its own likely wrong class, drawn from its pixels as in Xia et al., NeurIPS 2020), injected
with a seeded generator.

Pure functions of label arrays; the clean labels stay with the caller (as true_labels), so relabel
precision and recall can be measured against them.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

import numpy as np
from PIL import Image

from lionfer.errors import ConfigError, did_you_mean
from lionfer.labels import CLASS_NAMES, CLASS_NAMES_8, DROP, NAME_ALIASES, class_map_id

NOISE_KINDS: tuple[str, ...] = ("none", "symmetric", "asymmetric", "instance")
INSTANCE_RATE_SD = 0.1  # sd of the per-image flip rates around the noise rate (Xia et al.)
INSTANCE_SIDE = 16  # instance noise reads each image as INSTANCE_SIDE² gray pixels
FER_CONFUSIONS: dict[int, int] = {1: 0, 2: 5, 4: 6}  # Fear→Surprise, Disgust→Anger, Sadness→Neutral
DIGIT_CONFUSIONS: dict[int, int] = {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}


def default_noise_map(
    dataset_name: str, class_names: Sequence[str] = (), class_map: dict | None = None
) -> dict[int, int]:
    """The asymmetric map used when the config gives none: the digit confusions for digits, the
    FER confusions where the classes are the FER expressions (class_names the canonical names,
    or not given, and no class_map numbering them its own way: own_numbered). Other classes
    have none: ConfigError naming them, with a data.noise_map that a user could write."""
    if dataset_name == "digits":
        return dict(DIGIT_CONFUSIONS)
    if class_names and tuple(class_names) not in (CLASS_NAMES, CLASS_NAMES_8):
        raise ConfigError(
            f"data.noise=asymmetric without data.noise_map: the classes {listed(class_names)} "
            "are not the FER expressions, so they have no default confusion map (the defaults "
            "are the FER confusions and the digits'). Set data.noise_map to the pairs to flip, "
            "by your classes' names"
            + (
                f", e.g. {example_noise_map(class_names)}"
                if len(class_names) > 1
                else " (asymmetric noise flips a class to another: these data have one class)"
            )
        )
    own = own_numbered(class_map or {})
    if own:
        raise ConfigError(renumbered_without_map(class_map, own))
    return dict(FER_CONFUSIONS)


def class_map_ids(class_map: dict) -> dict:
    """The canonical id data.class_map gives each class it keeps (a value of digits or an
    expression's name; the reader has checked them), by its key."""
    ids = {key: class_map_id(value) for key, value in class_map.items()}
    return {key: class_id for key, class_id in ids.items() if class_id != DROP}


def own_numbered(class_map: dict) -> list:
    """The keys of a folder's or manifest's data.class_map that number their class their own
    way: named otherwise than the expression of the id they get ("cat" = 0, "happy" = 0). A
    class given its expression by name ("cat" = "Happiness") keeps the FER meaning, and so does
    a number of a file's own (a manifest's 1-7 mapped to 0-6, as for RAF-DB's ids)."""
    own = []
    for key, class_id in class_map_ids(class_map).items():
        name = str(key).strip()
        by_name = not str(class_map[key]).strip().lstrip("-").isdigit()
        number = name.lstrip("+-").isdigit()
        if not (by_name or number or NAME_ALIASES.get(name.lower()) == class_id):
            own.append(key)
    return own


def renumbered_without_map(class_map: dict, own: list) -> str:
    """The error for asymmetric noise without data.noise_map on classes data.class_map numbers
    its own way (own: their keys), with a data.noise_map in the ids it gives them."""
    ids = class_map_ids(class_map)
    source = own[0]
    target = next((k for k, i in ids.items() if i != ids[source]), None)
    numbered = ", ".join(f"{key} = {ids[key]}" for key in own)
    if target is None:  # one id for every class: no other class to flip to
        example = " (asymmetric noise flips a class to another: it gives every class one id)"
    else:
        pair = f'data.noise_map={{"{ids[source]}" = {ids[target]}}}'
        example = f", e.g. {shlex.quote(pair)} (flips {source} labels to {target})"
    return (
        f"data.noise=asymmetric without data.noise_map: data.class_map numbers classes its own "
        f"way ({numbered}), not as the FER expressions of those ids, so they have no default "
        "confusion map. Set data.noise_map to the pairs to flip by the ids data.class_map "
        f"gives{example}; or, if the "
        "classes are FER expressions, map each to its expression by name in data.class_map "
        f'({source} = "{CLASS_NAMES_8[ids[source]]}") to flip them by the FER confusions'
    )


def listed(class_names: Sequence[str], most: int = 12) -> str:
    """The class names joined, the first `most` of a longer list and how many there are."""
    if len(class_names) <= most:
        return ", ".join(class_names)
    return f"{', '.join(class_names[:most])}, ... ({len(class_names)} classes)"


def example_noise_map(class_names: Sequence[str]) -> str:
    """A data.noise_map setting, quoted for a shell, that flips the first class to the second,
    and what it does. A class named by a whole number is written as its id (map_side reads
    such a side as an id)."""
    ids = (0, 1 % len(class_names))
    sides = (
        str(i) if class_names[i].strip().lstrip("-").isdecimal() else class_names[i] for i in ids
    )
    pair = " = ".join(json.dumps(side, ensure_ascii=False) for side in sides)
    source, target = (class_names[i] for i in ids)
    return f"{shlex.quote(f'data.noise_map={{{pair}}}')} (flips {source} labels to {target})"


def parse_noise_map(
    mapping: dict, num_classes: int, class_names: tuple[str, ...] | list[str] = ()
) -> dict[int, int]:
    """A config map such as {"1": 0, "2": 5} (TOML keys are strings) or, with the data's
    class_names, {"Sadness": "Neutral"} → {1: 0, 2: 5}, checked. A side written as an integer is
    a class id; any other is a class name, matched without regard to case."""
    parsed = {}
    for key, value in mapping.items():
        source, target = (
            map_side(side, key, value, num_classes, class_names) for side in (key, value)
        )
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


def map_side(side, key, value, num_classes: int, class_names) -> int:
    """One side of a data.noise_map entry as a class id: an integer (or its digits), or the
    name of one of class_names, matched without regard to case."""
    if isinstance(side, (int, np.integer)) and not isinstance(side, bool):
        return int(side)
    text = str(side).strip()
    if text.lstrip("-").isdecimal() and text.isascii():
        return int(text)
    by_name = {name.casefold(): i for i, name in enumerate(class_names)}
    if text.casefold() in by_name:
        return by_name[text.casefold()]
    if not class_names:
        raise ConfigError(
            f"data.noise_map entry {key!r} = {value!r}: both sides must be class ids "
            f'(integers 0..{num_classes - 1}, not names), e.g. noise_map = {{"1" = 0}}'
        )
    raise ConfigError(
        f"data.noise_map entry {key!r} = {value!r}: {text!r} is not a class of this data "
        f"(its classes: {', '.join(class_names)}; or ids 0..{num_classes - 1})."
        + did_you_mean(text, class_names)
    )


def inject_noise(
    labels: np.ndarray,
    num_classes: int,
    kind: str,
    rate: float,
    seed: int,
    class_map: dict[int, int] | None = None,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """A noisy copy of labels: each eligible label flips with probability `rate`.

    symmetric: every label is eligible and flips to a uniformly chosen other class.
    asymmetric: labels whose class is a key of class_map flip to class_map[class].
    instance: see instance_noise; needs features, one row per label (image_features).
    Unknown labels (-1) are never touched, and no label flips to a class that has no label here
    (a class of the label space the data lacks). A rate at which a wrong class would be as
    likely a label as the true one is refused (check_noise_fits).
    """
    labels, known = _checked_labels(labels, num_classes, kind, rate)
    if kind == "none":
        return labels.copy()
    present = np.unique(labels[known])  # the classes a label can flip to
    check_rate(kind, rate, len(present))
    rng = np.random.default_rng(seed)
    if kind == "instance":
        if features is None or len(features) != len(labels):
            raise ConfigError("instance noise needs features, one row per label (image_features)")
        return instance_noise(
            labels, np.asarray(features, dtype=np.float64), num_classes, rate, rng
        )
    flip = (rng.random(len(labels)) < rate) & known
    if kind == "symmetric":
        return _flip_symmetric(labels, flip, present, rng)
    return _flip_asymmetric(labels, flip, num_classes, class_map, present)


def _checked_labels(
    labels: np.ndarray, num_classes: int, kind: str, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """(labels as int64, which are known: not -1), once inject_noise's kind, rate and labels are
    checked (ConfigError)."""
    if kind not in NOISE_KINDS:
        raise ConfigError(f"unknown noise kind {kind!r}; use one of {', '.join(NOISE_KINDS)}")
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"noise rate must be a probability in [0, 1], got {rate}")
    labels = np.asarray(labels, dtype=np.int64)
    known = labels >= 0
    if (labels[known] >= num_classes).any():
        raise ConfigError(f"labels must be in 0..{num_classes - 1} (or -1 for unknown)")
    if kind == "none" and rate != 0.0:
        raise ConfigError(
            f"noise rate {rate} given with noise kind 'none'; set the kind to symmetric or "
            "asymmetric, or the rate to 0"
        )
    return labels, known


def _flip_symmetric(
    labels: np.ndarray, flip: np.ndarray, present: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A copy of labels, those where flip holds moved to a uniformly chosen other class among
    the present ones."""
    noisy = labels.copy()
    # An offset in 1..P-1 among the P present classes never lands on the label itself and is
    # uniform over the others (with every class present, P = C and positions are ids).
    position = np.searchsorted(present, labels)
    offset = rng.integers(1, len(present), len(labels))
    noisy[flip] = present[(position[flip] + offset[flip]) % len(present)]
    return noisy


def _flip_asymmetric(
    labels: np.ndarray,
    flip: np.ndarray,
    num_classes: int,
    class_map: dict[int, int] | None,
    present: np.ndarray,
) -> np.ndarray:
    """A copy of labels, those where flip holds moved by class_map (checked_map)."""
    noisy = labels.copy()
    if class_map is None:
        raise ConfigError(
            "asymmetric noise needs a class_map (class id -> class id); "
            "pass default_noise_map(dataset_name) or parse_noise_map(cfg.noise_map, C)"
        )
    table = np.arange(num_classes)
    for source, target in checked_map(class_map, num_classes, present).items():
        table[source] = target
    noisy[flip] = table[labels[flip]]
    return noisy


MAP_FIX = (
    "where data.noise_map is empty, the map is the dataset's default (the FER confusions "
    f"{FER_CONFUSIONS} for FER classes); set data.noise_map to pairs of this data's class names "
    "or ids (a folder's or manifest's other classes are numbered alphabetically)"
)


def map_fix(with_labels: Sequence[int], class_names: Sequence[str] = ()) -> str:
    """MAP_FIX, with an example pair of two classes that have training labels (by name where
    class_names name both and neither name is a whole number, which map_side reads as an id;
    and by id): none where fewer than two have labels."""
    if len(with_labels) < 2:
        return MAP_FIX
    target, source = with_labels[:2]
    examples = [f'{{"{source}" = {target}}}']
    names = [class_names[i] for i in (source, target) if i < len(class_names)]
    if len(names) == 2 and not any(n.strip().lstrip("-").isdecimal() for n in names):
        quoted = [json.dumps(n, ensure_ascii=False) for n in names]
        examples.insert(0, f"{{{quoted[0]} = {quoted[1]}}}")
    return f"{MAP_FIX}, e.g. {' or '.join(examples)}"


def checked_map(
    class_map: dict, num_classes: int, present: np.ndarray, class_names: Sequence[str] = ()
) -> dict[int, int]:
    """The asymmetric map, parsed, checked against the classes with labels: a class with labels
    must map to a class with labels (a flip must not invent a class the data lacks), and some
    class of the map must have labels (else the noise flips nothing). Pairs of classes without
    labels are inert: the FER confusions stay usable on a folder with some of the classes. The
    errors name the classes by class_names where given ("Sadness (4)"), else by id."""
    with_labels = sorted(set(present.tolist()))
    fix = map_fix(with_labels, class_names)
    try:
        parsed = parse_noise_map(class_map, num_classes, class_names)
    except ConfigError as error:
        raise ConfigError(f"asymmetric noise: {error}; {fix}") from None
    having = ", ".join(class_label(c, class_names) for c in with_labels)
    for source, target in parsed.items():
        if source in with_labels and target not in with_labels:
            raise ConfigError(
                f"asymmetric noise would flip {pair_label(source, target, class_names)}, but "
                f"{class_label(target, class_names)} has no training labels (classes with "
                f"labels: {having}); {fix}"
            )
    if not set(with_labels) & set(parsed):
        pairs = ", ".join(pair_label(s, t, class_names) for s, t in parsed.items())
        raise ConfigError(
            f"asymmetric noise with the map {pairs} would flip no label: none of its classes "
            f"has training labels (classes with labels: {having}); {fix}"
        )
    return parsed


def class_label(class_id: int, class_names: Sequence[str] = ()) -> str:
    """A class as errors name it: "Sadness (4)", or "class 4" without names."""
    if 0 <= class_id < len(class_names):
        return f"{class_names[class_id]} ({class_id})"
    return f"class {class_id}"


def pair_label(source: int, target: int, class_names: Sequence[str] = ()) -> str:
    """A pair of an asymmetric map as errors name it: "Sadness (4) → Neutral (6)"."""
    return f"{class_label(source, class_names)} → {class_label(target, class_names)}"


def check_noise_fits(
    kind: str,
    rate: float,
    class_map: dict | None,
    labels: np.ndarray,
    num_classes: int,
    class_names: Sequence[str] = (),
) -> None:
    """The checks inject_noise makes of a noise against the labels it would change (the rate, and
    an asymmetric map, its errors naming class_names), made alone: the pipeline makes them before
    it decodes any image."""
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels[labels >= 0])
    check_rate(kind, rate, len(present))
    if kind == "asymmetric" and class_map is not None:
        checked_map(class_map, num_classes, present, class_names)


def check_rate(kind: str, rate: float, num_present: int) -> None:
    """ConfigError for a noise that labels of num_present classes cannot carry: symmetric and
    instance noise from (P - 1)/P (the true class no likelier a label than each other one; for
    instance noise, whose wrong labels gather on a few classes, less likely than some), and
    asymmetric noise from 0.5 (a mapped class labeled wrongly as often as rightly, or more).
    Below these a class can still lose its most frequent label to another by chance or, with
    instance noise, by the images it holds: outvoted_classes finds those after the draw."""
    if rate == 0.0:
        return
    if kind in ("symmetric", "instance") and num_present < 2:
        raise ConfigError(
            f"{kind} noise needs labels of at least 2 classes to flip between; these labels "
            f"have {num_present}"
        )
    if kind in ("symmetric", "instance") and rate >= (num_present - 1) / num_present:
        reason = (
            f"on {num_present} classes the true class would be no likelier a label than each "
            "other one"
        )
        if kind == "instance":
            reason += " even were the wrong labels spread evenly (instance noise gathers them)"
        limit = f"below {rate_bound(num_present - 1, num_present)}"
    elif kind == "asymmetric" and rate >= 0.5:
        reason = "a mapped class's images would be labeled as the class it maps to no less often"
        reason += " than as their own class"
        limit = "below 0.5"
    else:
        return
    raise ConfigError(
        f"data.noise_rate={rate} is too high for {kind} noise: {reason}, so the labels would no "
        f"longer name the classes. Use a rate {limit}"
    )


def rate_bound(numerator: int, denominator: int) -> str:
    """A bound on the rate as messages print it: its decimal where 3 places hold it ("0.75"),
    else the fraction and its decimal cut, not rounded, to 3 places ("2/3 (0.666...)"): a
    printed bound is never above the true one."""
    thousandths = numerator * 1000 // denominator
    decimal = f"{thousandths / 1000:g}"
    if thousandths * denominator == numerator * 1000:
        return decimal
    return f"{numerator}/{denominator} ({decimal}...)"


def outvoted_classes(
    reference: np.ndarray, labels: np.ndarray, class_names: Sequence[str], subject: str = "of {}"
) -> list[str]:
    """Each class c whose images (those of reference class c) carry some other label more often
    than c in `labels`, as "the images of Fear are labeled Surprise more often than Fear (40
    against 31)": such a class's labels no longer name it. subject formats the class name
    after "the images " ("of {}" by default; e.g. "labeled {} before the noise"). Images with
    an unknown label (-1) in either array are left out; classes in id order."""
    reference = np.asarray(reference, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    known = (reference >= 0) & (labels >= 0)
    c = len(class_names)
    counts = np.bincount(reference[known] * c + labels[known], minlength=c * c).reshape(c, c)
    phrases = []
    for own, row in enumerate(counts):
        others = row.copy()
        others[own] = -1
        other = int(np.argmax(others))  # the first of a tie
        if others[other] > row[own]:
            phrases.append(
                f"the images {subject.format(class_names[own])} are labeled "
                f"{class_names[other]} more often than {class_names[own]} ({others[other]} "
                f"against {row[own]})"
            )
    return phrases


def instance_noise(
    labels: np.ndarray,
    features: np.ndarray,
    num_classes: int,
    rate: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Instance-dependent noise (Xia et al., "Part-dependent label noise", NeurIPS 2020, the
    generator most noisy-label studies call IDN). Image n gets a flip rate q_n from a normal
    around `rate` (sd INSTANCE_RATE_SD) truncated to [0, 1], and class c a random map W_c (d × C,
    standard normal entries). An image x labeled c keeps its label with probability 1 − q_n and
    otherwise moves to class j ≠ c with the softmax over j ≠ c of x·W_c: which wrong class, and
    how likely a flip is, depend on the image. rate 0 changes nothing (the truncated normal
    around 0 has a mean of 0.08); at rate 0.2 about 20% of labels flip."""
    labels = np.asarray(labels, dtype=np.int64)
    known = labels >= 0
    if rate == 0.0 or not known.any():
        return labels.copy()
    q = rng.normal(rate, INSTANCE_RATE_SD, len(labels))
    outside = (q < 0) | (q > 1)
    while outside.any():  # truncation by redrawing: the normal restricted to [0, 1]
        q[outside] = rng.normal(rate, INSTANCE_RATE_SD, int(outside.sum()))
        outside = (q < 0) | (q > 1)
    maps = rng.standard_normal((num_classes, features.shape[1], num_classes))
    logits = np.zeros((len(labels), num_classes))
    for c in range(num_classes):
        rows = labels == c
        logits[rows] = features[rows] @ maps[c]
    present = np.unique(labels[known])
    logits[:, np.setdiff1d(np.arange(num_classes), present)] = -np.inf  # no label to invent
    rows = np.flatnonzero(known)
    logits[rows, labels[rows]] = -np.inf
    logits[rows] -= logits[rows].max(axis=1, keepdims=True)
    p = np.exp(logits[rows])
    p *= (q[rows] / p.sum(axis=1))[:, None]
    p[np.arange(len(rows)), labels[rows]] = 1.0 - q[rows]
    draws = rng.random(len(rows))[:, None]
    chosen = (np.cumsum(p, axis=1) < draws).sum(axis=1)
    noisy = labels.copy()
    noisy[rows] = np.minimum(chosen, present[-1])  # a draw past a sum of 1 − 1e-16
    return noisy


def image_features(images, side: int = INSTANCE_SIDE) -> np.ndarray:
    """(N, side²) float: each image of an ImageSet (face box applied) as gray pixels at side ×
    side, standardised to mean 0 and sd 1 per image (a flat image is all zeros): what instance
    noise reads."""
    rows = np.zeros((len(images), side * side))
    for i in range(len(images)):
        gray = images.load(i).convert("L").resize((side, side), Image.BILINEAR)
        pixels = np.asarray(gray, dtype=np.float64).ravel()
        sd = pixels.std()
        rows[i] = (pixels - pixels.mean()) / sd if sd > 0 else 0.0
    return rows
