"""What a checkpoint keeps of the split its per-image state is indexed by (split_record), and the
check of a re-read split.json against it (check_run_split): the state of LION's complementary
label bank, the relabels and the other per-image tensors belongs to the images at those positions,
so a split.json from another seed, budget or dataset, or one edited by hand, would put it on other
images."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from lionfer.data.splits import Split
from lionfer.errors import InputError


def split_digest(split: Split) -> str:
    """First 16 hex chars of sha256 over the number of training images the split covers and its
    labeled, unlabeled and val index lists, in order: what per-image state is indexed by."""
    digest = hashlib.sha256()
    parts = {"labeled": split.labeled, "unlabeled": split.unlabeled, "val": split.val}
    digest.update(f"train {sum(len(p) for p in parts.values())}\n".encode())
    for name, indices in parts.items():
        digest.update(f"{name} {len(indices)}\n".encode())
        digest.update(np.asarray(indices, dtype="<i8").tobytes())
    return digest.hexdigest()[:16]


def ids_hash(ids: list[str] | None) -> str | None:
    """First 16 hex chars of sha256 over the extra unlabeled images' ids, in order; None for a
    split file that does not record them."""
    if ids is None:
        return None
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def split_record(split: Split) -> dict:
    """What a checkpoint keeps of its run's split: the digest of its index lists (split_digest),
    the labeled and val indices themselves (to say how many differ), and what the split file
    records of its making (seed, budget, the training and test lists' hashes, the extra
    unlabeled images)."""
    return {
        "digest": split_digest(split),
        "num_train": len(split.labeled) + len(split.unlabeled) + len(split.val),
        "labeled": np.asarray(split.labeled, dtype=np.int64).copy(),
        "val": np.asarray(split.val, dtype=np.int64).copy(),
        "seed": int(split.seed),
        "num_labels": int(split.num_labels),
        "source_hash": split.source_hash,
        "test_hash": split.test_hash,
        "extra_unlabeled": ids_hash(split.extra_unlabeled_ids),
    }


def _differing(name: str, then: np.ndarray, now: np.ndarray) -> str | None:
    """How the `name` images (an index list) differ from the run's, in words; None if they are
    the same, in the same order."""
    then, now = np.asarray(then, dtype=np.int64), np.asarray(now, dtype=np.int64)
    if len(then) == len(now) and np.array_equal(then, now):
        return None
    lost = len(np.setdiff1d(then, now))
    if len(then) == len(now):
        if not lost:
            return f"its {name} images are the run's, but listed in another order"
        return (
            f"its {name} images are not the ones the run trained on: {lost} of {len(then)} differ"
        )
    if not len(then):
        return f"it holds {len(now)} {name} images, the run's split none"
    return (
        f"it lists {len(now)} {name} images, the run's split {len(then)} ({lost} of the run's "
        "are not among them)"
    )


def split_differences(split: Split, record: dict) -> list[str]:
    """What differs between a split and the one a checkpoint recorded (split_record), in words;
    empty where they are the same."""
    found = []
    num_train = len(split.labeled) + len(split.unlabeled) + len(split.val)
    if num_train != record["num_train"]:
        found.append(f"it covers {num_train} training images, the run's {record['num_train']}")
    for name, key in (("labeled", "labeled"), ("validation", "val")):
        differs = _differing(name, record[key], getattr(split, key))
        if differs:
            found.append(differs)
    if not found and split_digest(split) != record["digest"]:
        found.append("its unlabeled images are not listed as the run's were")
    if split.source_hash != record["source_hash"]:
        found.append(
            f"it was made for other training images or labels (their hash {split.source_hash}, "
            f"the run's {record['source_hash']})"
        )
    if record["test_hash"] and split.test_hash and split.test_hash != record["test_hash"]:
        found.append("it was made beside other test images")
    extra = record.get("extra_unlabeled")
    if extra is not None and split.extra_unlabeled_ids is not None:
        if ids_hash(split.extra_unlabeled_ids) != extra:
            found.append("it lists other extra unlabeled images")
    return found


def settings_differences(split: Split, settings: dict) -> list[str]:
    """Where a checkpoint records no split (saved before it did): how a split differs from the
    one the run's settings (seed, data.num_labels, data.val_fraction, as config_values gives
    them) would have drawn. A run given data.split_file is not compared (its split was drawn
    with the file's settings); nor is a split of every image (-1: as an algorithm that uses
    every label draws it), on the budget."""
    if settings.get("data.split_file") or "seed" not in settings:
        return []
    found = []
    if split.seed != settings["seed"]:
        found.append(f"it was drawn with seed={split.seed}, the run has seed={settings['seed']}")
    budget = settings.get("data.num_labels")
    if budget is not None and split.num_labels not in (budget, -1):
        found.append(
            f"it was drawn with data.num_labels={split.num_labels}, the run has "
            f"data.num_labels={budget}"
        )
    fraction = settings.get("data.val_fraction")
    if fraction is not None and split.val_fraction is not None:
        if not np.isclose(fraction, split.val_fraction):
            found.append(
                f"it was drawn with data.val_fraction={split.val_fraction:g}, the run has "
                f"data.val_fraction={fraction:g}"
            )
    return found


def check_run_split(
    split: Split,
    record: dict | None,
    path: str | Path,
    reread: str,
    settings: dict | None = None,
) -> None:
    """A run's own split.json (at path), re-read to resume the run or to read its checkpoint's
    per-image state, must be the split the run trained on: the one its checkpoint recorded
    (split_record), or for a checkpoint saved before it recorded one, one drawn with the run's
    settings (settings_differences; nothing is compared without them). Refused otherwise, with
    what differs and the fix."""
    if record is not None:
        found = split_differences(split, record)
        if found and split.seed != record["seed"]:
            found.append(
                f"it was drawn with seed={split.seed}, the run's with seed={record['seed']}"
            )
        if found and split.num_labels != record["num_labels"]:
            found.append(
                f"it was drawn with data.num_labels={split.num_labels}, the run's with "
                f"data.num_labels={record['num_labels']}"
            )
    else:
        found = settings_differences(split, settings or {})
    if not found:
        return
    path = Path(path)
    run = path.parent
    fix = "put back the run's own split.json (the one it wrote when it began)"
    if reread == "resume":
        fix += f", or train as a new run (lionfer train {run / 'config.toml'} --out NEW)"
    raise InputError(
        f"{path} is not the split the run in {run} trained on: {'; '.join(found)}. The run's "
        "per-image state (such as LION's complementary label bank and relabels) is indexed by "
        f"position in the split, so it would land on other images: {fix}"
    )
