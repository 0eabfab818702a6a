"""Canonical class order and every dataset's label map, as data.

Canonical order is RAF-DB's id minus one (what LION and Ada-CM train on):
0 Surprise, 1 Fear, 2 Disgust, 3 Happiness, 4 Sadness, 5 Anger, 6 Neutral, and 7 Contempt only in
an 8-class mode. Each map sends a dataset's own id to a canonical id, or to DROP.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "Surprise",
    "Fear",
    "Disgust",
    "Happiness",
    "Sadness",
    "Anger",
    "Neutral",
)
CLASS_NAMES_8: tuple[str, ...] = CLASS_NAMES + ("Contempt",)
SHORT_NAMES: tuple[str, ...] = ("SU", "FE", "DI", "HA", "SA", "AN", "NE", "CO")
CONTEMPT = 7
DROP = -1
# How a given label came about, where a dataset knows (ImageSet.error_types holds the index):
# right, a slip (a mistake the image does not explain) or ambiguity (the image supports it too).
ERROR_TYPES: tuple[str, ...] = ("none", "slip", "ambiguity")

# dataset id -> canonical id (DROP: not one of the classes). Contempt maps to CONTEMPT; readers in
# 7-class mode turn it into DROP.
RAFDB_FILE = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6}  # list_patition_label.txt, 1-based
RAFDB_ZERO = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6}  # two-column lists used by Ada-CM/LION
AFFECTNET = {0: 6, 1: 3, 2: 4, 3: 0, 4: 1, 5: 2, 6: 5, 7: CONTEMPT, 8: DROP, 9: DROP, 10: DROP}
FER2013 = {0: 5, 1: 2, 2: 1, 3: 3, 4: 4, 5: 0, 6: 6}  # also ExpW
EXPW = FER2013
FERPLUS_COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
FERPLUS = {0: 6, 1: 3, 2: 0, 3: 4, 4: 5, 5: 2, 6: 1, 7: CONTEMPT}
CKPLUS = {0: 6, 1: 5, 2: CONTEMPT, 3: 2, 4: 1, 5: 3, 6: 4, 7: 0}
# SFEW ships one folder per class, named; never rely on alphabetical folder order.
SFEW_FOLDERS = {
    "Surprise": 0,
    "Fear": 1,
    "Disgust": 2,
    "Happy": 3,
    "Sad": 4,
    "Angry": 5,
    "Neutral": 6,
}

# Names a user's folders may carry, lower-cased, for the folder and manifest readers.
NAME_ALIASES = {
    "surprise": 0,
    "surprised": 0,
    "su": 0,
    "fear": 1,
    "fearful": 1,
    "afraid": 1,
    "scared": 1,
    "fe": 1,
    "disgust": 2,
    "disgusted": 2,
    "di": 2,
    "happiness": 3,
    "happy": 3,
    "joy": 3,
    "ha": 3,
    "sadness": 4,
    "sad": 4,
    "sa": 4,
    "anger": 5,
    "angry": 5,
    "an": 5,
    "neutral": 6,
    "calm": 6,
    "ne": 6,
    "contempt": CONTEMPT,
    "co": CONTEMPT,
}


def class_names(num_classes: int) -> tuple[str, ...]:
    """The canonical names for a 7- or 8-class FER problem."""
    if num_classes == 7:
        return CLASS_NAMES
    if num_classes == 8:
        return CLASS_NAMES_8
    raise ValueError(f"FER datasets have 7 or 8 classes, not {num_classes}")


def to_canonical(ids, table: dict[int, int], num_classes: int = 7) -> np.ndarray:
    """Map dataset ids to canonical ids; unknown ids raise, Contempt is DROP in 7-class mode."""
    ids = np.asarray(ids, dtype=np.int64)
    out = np.empty_like(ids)
    for i, value in enumerate(ids.tolist()):
        if value not in table:
            raise ValueError(f"label id {value} is not in this dataset's map {sorted(table)}")
        mapped = table[value]
        out[i] = DROP if (mapped == CONTEMPT and num_classes == 7) else mapped
    return out


def from_canonical(ids, table: dict[int, int]) -> np.ndarray:
    """Map canonical ids back to a dataset's own ids (the inverse of to_canonical)."""
    inverse = {v: k for k, v in table.items() if v != DROP}
    return np.asarray([inverse[int(i)] for i in np.asarray(ids).tolist()], dtype=np.int64)


def class_map_id(value: int | str) -> int:
    """The class id a data.class_map value gives: an integer, or its digits (-1 drops the class),
    or an expression's name (class_from_name)."""
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        return class_from_name(value)
    return int(value)


def class_from_name(name: str) -> int:
    """Canonical id for a class name such as 'happy', 'Anger' or 'SU'."""
    key = name.strip().lower()
    if key not in NAME_ALIASES:
        raise ValueError(
            f"unknown class name {name!r}; use one of {', '.join(CLASS_NAMES)} "
            "or give a class_map (name -> canonical id)"
        )
    return NAME_ALIASES[key]
