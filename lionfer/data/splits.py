"""Semi-supervised splits: per-class labeled budgets (the RAF-DB protocol table or class-balanced),
seeded labeled / unlabeled / validation index sets, and split files that pin them down exactly.

A Split indexes FERData.train. Its source hash (ids + given labels) ties it to one label list, and
it lists the ids of the extra unlabeled images (FERData.unlabeled), so a split file cannot silently
be reused on other data: per-sample state such as LION's complementary label bank is indexed by
position in these sets. What a checkpoint keeps of its run's split, and the check of a re-read
split.json against that, are in split_record.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lionfer.atomic import write_text_atomic
from lionfer.data.base import FERData, ImageSet
from lionfer.errors import ConfigError, InputError, LabelBudgetError, MissingInputError

# Ada-CM / LION RAF-DB protocol: Fear (canonical id 1) is capped; the other six classes share the
# rest equally. The released codes hard-code these numbers.
RAFDB_FEAR_BUDGET = {100: 10, 400: 40, 1000: 100, 2000: 200, 4000: 250}
FEAR = 1
RULES = ("rafdb", "balanced")


def labeled_budget(
    rule: str, num_labels: int, class_counts, class_names: tuple[str, ...] | list[str]
) -> np.ndarray:
    """Labeled images per class, (C,) int64, for a total budget; -1 labels everything."""
    counts = np.asarray(class_counts, dtype=np.int64)
    total = int(counts.sum())
    if len(counts) != len(class_names):
        raise ValueError(f"{len(counts)} class counts but {len(class_names)} class names")
    if rule not in RULES:
        raise InputError(f"unknown split rule {rule!r}; use one of {', '.join(RULES)}")
    if num_labels == -1:
        return counts.copy()
    if num_labels <= 0:
        raise ConfigError(f"num_labels must be positive or -1 (all labeled), got {num_labels}")
    if num_labels > total:
        raise LabelBudgetError(
            f"data.num_labels={num_labels} exceeds the {total} labeled training images; "
            "lower data.num_labels or use -1 to label every training image"
        )
    if rule == "rafdb":
        return _rafdb_budget(num_labels, counts, class_names)
    return _balanced_budget(num_labels, counts)


# How to draw other budgets of RAF-DB's images: the rafdb rule is its reader's, not a setting.
BALANCED_WAY = (
    "list the images in a manifest (data.dataset=manifest: a CSV of path, label and split, "
    "beside them), whose budgets are class-balanced"
)


def _rafdb_budget(num_labels: int, counts: np.ndarray, class_names) -> np.ndarray:
    if num_labels not in RAFDB_FEAR_BUDGET:
        raise ConfigError(
            f"data.num_labels={num_labels} is not a RAF-DB protocol budget; supported budgets are "
            f"{sorted(RAFDB_FEAR_BUDGET)}. For another budget, {BALANCED_WAY}"
        )
    if len(counts) != 7 or class_names[FEAR] != "Fear":
        raise InputError(
            f"the rafdb split rule needs the 7 canonical classes with Fear at id {FEAR}, got "
            f"{list(class_names)}; {BALANCED_WAY}"
        )
    fear = RAFDB_FEAR_BUDGET[num_labels]
    budget = np.full(7, (num_labels - fear) // 6, dtype=np.int64)
    budget[FEAR] = fear
    short = [c for c in range(7) if counts[c] < budget[c]]
    if short:
        detail = "; ".join(
            f"{class_names[c]} has {counts[c]} images but needs {budget[c]}" for c in short
        )
        # Never shrink a budget silently: the protocol's numbers would no longer mean anything.
        raise ConfigError(
            f"the RAF-DB budget {num_labels} cannot be filled: {detail}. Use a smaller "
            f"data.num_labels, or {BALANCED_WAY}"
        )
    return budget


def _balanced_budget(num_labels: int, counts: np.ndarray) -> np.ndarray:
    """N // C per class; classes short of their share give all they have and the rest is spread
    over the others; a final remainder goes one each to the open classes with most images."""
    budget = np.zeros_like(counts)
    remaining = num_labels
    while remaining > 0:
        open_classes = np.flatnonzero(budget < counts)
        share, extra = divmod(remaining, len(open_classes))
        if share == 0:
            # stable sort on -count: ties go to the lower class id
            order = open_classes[np.argsort(-counts[open_classes], kind="stable")]
            budget[order[:extra]] += 1
            break
        add = np.minimum(share, counts[open_classes] - budget[open_classes])
        budget[open_classes] += add
        remaining -= int(add.sum())
    return budget


@dataclass(frozen=True, eq=False)
class Split:
    """Indices into FERData.train: labeled, unlabeled and val (possibly empty), all sorted."""

    labeled: np.ndarray
    unlabeled: np.ndarray
    val: np.ndarray
    seed: int
    rule: str
    num_labels: int
    per_class: dict[str, int] = field(default_factory=dict)
    source_hash: str = ""
    extra_unlabeled_ids: list[str] | None = None  # ids of FERData.unlabeled; None: not recorded
    val_fraction: float | None = None  # None: not recorded (a split file from before)
    test_hash: str = ""  # source_hash of the test set; "": not recorded
    num_test: int | None = None

    def counts(self) -> dict[str, int]:
        return {
            "labeled": len(self.labeled),
            "unlabeled": len(self.unlabeled),
            "val": len(self.val),
        }

    def save(self, path: str | Path) -> None:
        payload = {
            "seed": self.seed,
            "rule": self.rule,
            "num_labels": self.num_labels,
            "source_hash": self.source_hash,
            "counts": self.counts(),
            "per_class": self.per_class,
            "labeled": self.labeled.tolist(),
            "unlabeled": self.unlabeled.tolist(),
            "val": self.val.tolist(),
            "extra_unlabeled_ids": self.extra_unlabeled_ids,
            "val_fraction": self.val_fraction,
            "test_hash": self.test_hash,
            "num_test": self.num_test,
        }
        write_text_atomic(Path(path), json.dumps(payload, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Split:
        path = Path(path)
        if path.is_dir():
            raise InputError(
                f"split file {path} is a folder; data.split_file must name a split.json file "
                "written by an earlier run (e.g. RUN/split.json)"
            )
        if not path.is_file():
            raise MissingInputError(
                f"split file not found: {path}; data.split_file must name a split.json "
                "written by an earlier run"
            )
        try:
            payload = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"split file {path} is not valid JSON: {error}") from error
        if not isinstance(payload, dict):
            raise InputError(
                f"split file {path} holds no JSON object; it was not written by lionfer"
            )
        keys = ("labeled", "unlabeled", "val", "seed", "rule", "num_labels", "source_hash")
        missing = [k for k in keys if k not in payload]
        if missing:
            raise InputError(f"split file {path} lacks {missing}; it was not written by lionfer")
        return cls(
            labeled=np.asarray(payload["labeled"], dtype=np.int64),
            unlabeled=np.asarray(payload["unlabeled"], dtype=np.int64),
            val=np.asarray(payload["val"], dtype=np.int64),
            seed=int(payload["seed"]),
            rule=str(payload["rule"]),
            num_labels=int(payload["num_labels"]),
            per_class={str(k): int(v) for k, v in payload.get("per_class", {}).items()},
            source_hash=str(payload["source_hash"]),
            extra_unlabeled_ids=_ids_or_none(payload.get("extra_unlabeled_ids"), path),
            val_fraction=_number_or_none(payload.get("val_fraction"), float),
            test_hash=str(payload.get("test_hash") or ""),
            num_test=_number_or_none(payload.get("num_test"), int),
        )


def _ids_or_none(value, path: Path) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InputError(f"split file {path}: extra_unlabeled_ids must be a list; it is corrupt")
    return [str(v) for v in value]


def _number_or_none(value, kind):
    return None if value is None else kind(value)


def source_hash(train: ImageSet) -> str:
    """First 16 hex chars of sha256 over (id, given label) pairs, in order, in UTF-8 (a file name
    that is not UTF-8, held with surrogate escapes, by its own bytes)."""
    digest = hashlib.sha256()
    for image_id, label in zip(train.ids, train.labels.tolist(), strict=True):
        digest.update(f"{image_id}\t{label}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def stratified_pick(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of round(fraction * n_c) images drawn from each class c; labels < 0 are
    never picked."""
    labels = np.asarray(labels, dtype=np.int64)
    picked = []
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        take = int(np.floor(fraction * len(members) + 0.5))
        picked.append(rng.permutation(members)[:take])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded stratified hold-out (e.g. a test set for data without one): sorted indices."""
    return stratified_pick(labels, fraction, np.random.default_rng(seed))


def hold_out(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(rest, held out): images split by stratified_holdout, e.g. into train and a test set for
    data that ships without one. Both parts keep the original order."""
    held = stratified_holdout(images.labels, fraction, seed)
    rest = np.ones(len(images), dtype=bool)
    rest[held] = False
    return images.subset(np.flatnonzero(rest)), images.subset(held)


def make_split(
    data: FERData, num_labels: int, seed: int, val_fraction: float = 0.0, rule: str | None = None
) -> Split:
    """Carve a stratified val set (if val_fraction > 0), then label budget[c] images of each class
    after a seeded shuffle; the rest of train is unlabeled. rule defaults to data.split_rule."""
    rule = rule or data.split_rule
    labels = data.train.labels
    rng = np.random.default_rng(seed)
    val = stratified_pick(labels, val_fraction, rng) if val_fraction > 0 else np.zeros(0, np.int64)
    remaining = np.ones(len(labels), dtype=bool)
    remaining[val] = False
    num_classes = len(data.class_names)
    counts = np.bincount(labels[remaining & (labels >= 0)], minlength=num_classes)
    if len(val) and num_labels > counts.sum():
        raise LabelBudgetError(
            f"data.num_labels={num_labels} exceeds the {counts.sum()} labeled training images "
            f"left after data.val_fraction={val_fraction} set {len(val)} aside for validation; "
            "lower data.num_labels or data.val_fraction, or use -1 to label every training image"
        )
    budget = labeled_budget(rule, num_labels, counts, data.class_names)
    labeled = []
    for c in range(num_classes):
        members = np.flatnonzero(remaining & (labels == c))
        labeled.append(rng.permutation(members)[: budget[c]])
    labeled = np.sort(np.concatenate(labeled)).astype(np.int64)
    is_unlabeled = remaining.copy()
    is_unlabeled[labeled] = False
    return Split(
        labeled=labeled,
        unlabeled=np.flatnonzero(is_unlabeled).astype(np.int64),
        val=val.astype(np.int64),
        seed=seed,
        rule=rule,
        num_labels=num_labels,
        per_class={name: int(budget[c]) for c, name in enumerate(data.class_names)},
        source_hash=source_hash(data.train),
        extra_unlabeled_ids=extra_unlabeled_ids(data),
        val_fraction=float(val_fraction),
        test_hash=source_hash(data.test),
        num_test=len(data.test),
    )


def extra_unlabeled_ids(data: FERData) -> list[str]:
    return [] if data.unlabeled is None else list(data.unlabeled.ids)


REREADS = ("", "resume", "finished")


def load_split(path: str | Path, data: FERData, reread: str = "") -> Split:
    """A saved split, checked against this dataset: the training list (hash and index ranges),
    the extra unlabeled images and the test set. reread: "" for a split file given as
    data.split_file, "resume" for a run's own split read to continue it, "finished" for a
    finished run's, read to evaluate it. Another test set is refused on resume (the run's
    evaluations would mix two), noted otherwise. A split file from before a check adds a note
    saying what is not checked."""
    if reread not in REREADS:
        raise ValueError(f"reread must be one of {REREADS}, not {reread!r}")
    split = Split.load(path)
    n = len(data.train)
    parts = np.concatenate([split.labeled, split.unlabeled, split.val])
    expected = source_hash(data.train)
    if split.source_hash != expected and reread:
        raise InputError(
            f"the training images or their labels changed since the run in {Path(path).parent} "
            f"started ({len(parts)} images then, {n} now; the {data.name} training list's hash "
            f"was {split.source_hash}, it is {expected}). Per-image state is indexed by "
            "position, so it would land on other images: restore the dataset as it was, or "
            f"train on it as a new run (lionfer train {Path(path).parent / 'config.toml'} "
            "--out NEW)"
        )
    if split.source_hash != expected:
        raise InputError(
            f"split file {path} was made for another dataset or label list (hash "
            f"{split.source_hash}, this {data.name} training list has {expected}); "
            "use the split made for this data, or drop data.split_file to make a new one"
        )
    if len(parts) and (parts.min() < 0 or parts.max() >= n):
        raise InputError(f"split file {path} has indices outside 0..{n - 1}; it is corrupt")
    if len(np.unique(parts)) != len(parts) or len(parts) != n:
        raise InputError(
            f"split file {path} must cover the {n} training images exactly once "
            f"(it lists {len(parts)} indices, {len(np.unique(parts))} distinct); it is corrupt"
        )
    if not check_extra_unlabeled(split, data, path):
        split = dataclasses.replace(split, extra_unlabeled_ids=extra_unlabeled_ids(data))
    check_test_set(split, data, path, reread)
    if not reread and split.test_hash:  # a new run records the test set it is tested on
        test_hash = source_hash(data.test)
        if test_hash != split.test_hash:
            split = dataclasses.replace(split, test_hash=test_hash, num_test=len(data.test))
    return split


def check_test_set(split: Split, data: FERData, path: str | Path, reread: str) -> None:
    """The test images and labels must be those the split was made with, where it records them
    (test_hash): refused on resume, a note (and a warning) otherwise. A split file given as
    data.split_file to a new run keeps its training split; the run then has its own test set,
    which it records."""
    if not split.test_hash or split.test_hash == source_hash(data.test):
        return
    then = "" if split.num_test is None else f"{split.num_test} then, "
    counts = f"({then}{len(data.test)} now)"
    run = Path(path).parent
    if reread == "resume":
        raise InputError(
            f"the test images or their labels changed since the run in {run} started {counts}: "
            "its evaluations so far are of the old ones. Restore them, or train on the new "
            f"ones as a new run (lionfer train {run / 'config.toml'} --out NEW)"
        )
    if reread == "finished":
        note = (
            f"the test images or their labels are not those the run in {run} was evaluated on "
            f"{counts}: these figures are of the test set as it is now, not comparable with "
            "the run's own"
        )
    else:
        note = (
            f"split file {path} was made beside other test images or labels {counts}: this run "
            "is tested on the test set as it is now"
        )
    data.notes.append(note)
    warnings.warn(note, stacklevel=3)


def check_split_settings(split: Split, cfg, path: str | Path) -> None:
    """A split file given as data.split_file fixes the labeled images: data.num_labels and
    data.val_fraction must be those it was made with (a run of another budget would carry the
    budget's name with the file's labels, and one asking for validation would be selected on
    the test set). data.num_labels=-1 (every image labeled, as an algorithm that uses every
    label asks) is left to the algorithm's own check."""
    if cfg.num_labels != -1 and cfg.num_labels != split.num_labels:
        raise InputError(
            f"data.num_labels={cfg.num_labels}, but split file {path} labels "
            f"{len(split.labeled)} images (made with data.num_labels={split.num_labels}): set "
            f"data.num_labels={split.num_labels} to train on it, or drop data.split_file to "
            f"draw a split of {cfg.num_labels}"
        )
    if split.val_fraction is not None:
        differs = not np.isclose(cfg.val_fraction, split.val_fraction)
        made = f"data.val_fraction={split.val_fraction:g}"
    else:  # a split file from before val_fraction was recorded: whether it holds any
        differs = (cfg.val_fraction > 0) != (len(split.val) > 0)
        made = f"data.val_fraction={'0' if not len(split.val) else 'above 0'}"
    if differs:
        holds = f"holds {len(split.val)} validation images" if len(split.val) else "holds none"
        raise InputError(
            f"data.val_fraction={cfg.val_fraction:g}, but split file {path} {holds} (made with "
            f"{made}): set data.val_fraction as it was made to use it, or drop data.split_file "
            "to draw a new split"
        )


def check_extra_unlabeled(split: Split, data: FERData, path: str | Path) -> bool:
    """The extra unlabeled images must be the ones, in the order, the split was made with.
    False (and a note) for a split file that does not record them."""
    current = extra_unlabeled_ids(data)
    if split.extra_unlabeled_ids is None:
        note = (
            f"split file {path} predates the unlabeled-set check: the {len(current)} extra "
            "unlabeled images are not checked against it"
        )
        data.notes.append(note)
        warnings.warn(note, stacklevel=3)
        return False
    saved = list(split.extra_unlabeled_ids)
    if saved == current:
        return True
    missing = sorted(set(saved) - set(current))
    new = sorted(set(current) - set(saved))
    detail = (
        f"missing: {_first(missing)}; new: {_first(new)}"
        if missing or new
        else "the same images in another order"
    )
    raise InputError(
        f"the unlabeled images changed since split file {path} was made ({len(saved)} then, "
        f"{len(current)} now; {detail}). Per-image state is indexed by position, so it would "
        "land on other images: restore the unlabeled folder, or start a new run (without "
        "data.split_file)"
    )


def _first(names: list[str], shown: int = 3) -> str:
    if not names:
        return "none"
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
