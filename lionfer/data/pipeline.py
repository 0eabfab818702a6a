"""From a DataConfig to the image sets a run uses: read the dataset, check every image once, inject
label noise if asked, split train into labeled / unlabeled (/ validation), and report per-class
counts. Also the one place where a reader's complaints about the user's files become InputError
(exit code 2); the table of dataset names is lionfer.data.datasets."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from lionfer.data.base import FERData, ImageSet
from lionfer.data.datasets import check_root
from lionfer.data.image_check import check_images
from lionfer.data.image_copies import copies_of, same_images
from lionfer.data.noise import (
    check_noise_fits,
    default_noise_map,
    image_features,
    inject_noise,
    outvoted_classes,
    parse_noise_map,
)
from lionfer.data.splits import Split, check_split_settings, load_split, make_split
from lionfer.errors import InputError, LabelBudgetError, MissingInputError
from lionfer.labels import ERROR_TYPES
from lionfer.registry import DATASETS

PARTS = ("train", "test", "unlabeled")
NONE, SLIP, UNKNOWN_TYPE = ERROR_TYPES.index("none"), ERROR_TYPES.index("slip"), -1


def read_dataset(cfg, seed: int) -> FERData:
    """Call the reader of cfg.dataset. Readers report bad data with ValueError (or InputError) and
    missing files with FileNotFoundError; both become InputError here, the one place where a
    dataset's own files are read, so the command line answers them with exit code 2."""
    check_root(cfg)  # from the config alone, as `lionfer sweep` checks its runs before any starts
    reader = DATASETS.get(cfg.dataset)
    try:
        return reader(cfg, seed)
    except InputError:
        raise
    except FileNotFoundError as error:
        raise MissingInputError(str(error)) from error
    except (ValueError, KeyError) as error:
        message = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
        named = message.startswith(f"{cfg.dataset}:")  # the reader named itself
        raise InputError(message if named else f"{cfg.dataset}: {message}") from error


def load_dataset(cfg, seed: int, check: tuple[str, ...] = PARTS, progress: bool = False):
    """Read cfg.dataset, check its images (the parts named in `check`; unreadable ones are an
    error, or dropped with cfg.skip_bad), leave out extra unlabeled images that are train or test
    images (drop_labeled_copies), note images that appear twice (copy_notes, where train is
    checked), then apply cfg.noise to the training labels (true
    labels are kept; the labels it changes become slips in error_types)."""
    data = read_dataset(cfg, seed)
    noisy_labels = cfg.noise != "none" and cfg.noise_rate > 0
    if noisy_labels:  # a noise the labels cannot carry is refused before the images are decoded
        mapping = None  # only asymmetric noise reads a map: the others need no default one
        if cfg.noise == "asymmetric":
            mapping = noise_map(cfg, data.num_classes, data.class_names)
        check_noise_fits(
            cfg.noise,
            cfg.noise_rate,
            mapping,
            data.train.labels,
            data.num_classes,
            data.class_names,
        )
    for part in check:
        check_part(data, part, cfg.skip_bad, progress)
    drop_labeled_copies(data)
    if "train" in check:
        data.notes += copy_notes(data)
    if noisy_labels:
        train = data.train
        truth = train.labels.copy() if train.true_labels is None else train.true_labels
        labeled = train.labels >= 0
        features = None
        if cfg.noise == "instance":
            features = image_features(train.subset(np.flatnonzero(labeled)))
        noisy = train.labels.copy()
        noisy[labeled] = inject_noise(
            train.labels[labeled],
            data.num_classes,
            cfg.noise,
            cfg.noise_rate,
            seed + 7919,
            mapping,
            features,
        )
        data.train = ImageSet(
            train.images,
            noisy,
            truth,
            train.ids,
            train.boxes,
            error_types=noise_error_types(train, noisy, truth),
        )
        flipped = int((noisy != train.labels).sum())
        data.notes.append(f"{cfg.noise} noise at rate {cfg.noise_rate}: {flipped} labels flipped")
        warn_outvoted_by_noise(cfg, data, train.labels, truth)
    elif cfg.noise != "none":  # a rate sweep's clean point
        data.notes.append(f"{cfg.noise} noise at rate 0: no label flipped")
    return data


def noise_map(cfg, num_classes: int, class_names=()) -> dict:
    """data.noise_map parsed (class ids, or names of class_names), or the dataset's default map
    (default_noise_map: none for classes that are not the FER expressions, by their names or by
    a folder's or manifest's data.class_map)."""
    if cfg.noise_map:
        return parse_noise_map(cfg.noise_map, num_classes, class_names)
    class_map = cfg.class_map if cfg.dataset in ("folder", "manifest") else {}
    return default_noise_map(cfg.dataset, class_names, class_map)


def warn_outvoted_by_noise(cfg, data: FERData, before: np.ndarray, truth: np.ndarray) -> None:
    """Warn where the noise left a class's training images labeled with another class more
    often than with their own (outvoted_classes), judged against the labels before the noise:
    the noise's own doing, not the dataset's label errors (an annotator's, which a class may
    have before any noise). Where those labels differ from the truth, the warning says so."""
    known = (before >= 0) & (truth >= 0)
    subject = "of {}" if (before == truth)[known].all() else "labeled {} before the noise"
    outvoted = outvoted_classes(before, data.train.labels, data.class_names, subject)
    if outvoted:
        warnings.warn(
            f"after {cfg.noise} noise at rate {cfg.noise_rate}, {'; '.join(outvoted)}: these "
            "labels no longer name their class; use a lower data.noise_rate",
            stacklevel=3,
        )


def noise_error_types(train: ImageSet, noisy: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """ERROR_TYPES codes of the labels after data.noise: a label the noise changed is a slip (none
    if it landed on the truth); an unchanged one keeps the dataset's own code, or where the
    dataset gives none, is `none` when it equals the truth and unknown (-1) otherwise."""
    before = train.labels
    if train.error_types is not None:
        codes = train.error_types.astype(np.int8).copy()
    else:
        codes = np.where((before >= 0) & (before == truth), NONE, UNKNOWN_TYPE).astype(np.int8)
    flipped = noisy != before
    codes[flipped] = np.where(noisy[flipped] == truth[flipped], NONE, SLIP)
    return codes


def drop_labeled_copies(data: FERData) -> None:
    """Leave out of data.unlabeled the images that are also train or test images (the same file,
    e.g. data.unlabeled_root holding the class folders, or a copy): a test image trained on as
    unlabeled would leak into training, and a train image is unlabeled or labeled already."""
    unlabeled = data.unlabeled
    if unlabeled is None or not unlabeled.is_files or not len(unlabeled):
        return
    of_train, of_test = copies_of(
        unlabeled.images, *(s.images if s.is_files else [] for s in (data.train, data.test))
    )
    copies = of_train | of_test
    if not copies.any():
        return
    first = ", ".join(str(unlabeled.images[i]) for i in np.flatnonzero(copies)[:3])  # files
    data.notes.append(
        f"left out {int(copies.sum())} of the {len(unlabeled)} extra unlabeled images: they are "
        f"also training or test images (the same file or a copy; {int(of_test.sum())} of them "
        f"test images). First: {first}"
    )
    data.unlabeled = unlabeled.subset(np.flatnonzero(~copies)) if not copies.all() else None


def copy_notes(data: FERData) -> list[str]:
    """Notes on images that appear more than once in train and test (the same file by two
    paths, a byte-identical copy, an equal array): copies in train that carry different labels
    (a copy with two labels trains on both), other repeats in train (the photo weighs more), test
    images that are also training images (test accuracy counts them as seen), and test copies
    with different labels. Nothing is dropped: the user decides which copy is right."""
    sets = [data.train, data.test]
    groups = same_images(sets)
    if not groups:
        return []
    entries = _CopyEntries(sets, data.class_names)
    notes = []
    for part, where in ((0, "training"), (1, "test")):
        within = [[e for e in g if e[0] == part] for g in groups]
        within = [g for g in within if len(g) > 1]
        if within:
            notes.append(_repeats_note(within, part, where, entries))
    shared = [g for g in groups if {s for s, _ in g} == {0, 1}]
    if shared:
        notes.append(_seen_in_training_note(shared, entries))
    return notes


@dataclass
class _CopyEntries:
    """The entries (s, i) of copy groups: image i of sets[s] (0 train, 1 test), by label."""

    sets: list[ImageSet]
    names: tuple[str, ...]

    def named(self, s: int, i: int) -> str:
        label = int(self.sets[s].labels[i])
        return f"{self.sets[s].ids[i]} ({self.names[label] if label >= 0 else 'no label'})"

    def label(self, entry: tuple[int, int]) -> int:
        s, i = entry
        return int(self.sets[s].labels[i])

    def labels_of(self, group) -> set[int]:
        return {self.label(e) for e in group if self.label(e) >= 0}

    def two_labels(self, group) -> str:
        """Two entries of a group under different labels, named."""
        first = next(e for e in group if self.label(e) >= 0)
        other = next(e for e in group if self.label(e) >= 0 and self.label(e) != self.label(first))
        return f"{self.named(*first)} and {self.named(*other)}"


def _repeats_note(within: list, part: int, where: str, entries: _CopyEntries) -> str:
    """The note on the groups of copies within one part (where: its name in the note)."""
    costs = {
        0: ("each copy trains on its own label", "those images weigh more in training"),
        1: ("test accuracy scores each copy by its own label", "they count twice in test accuracy"),
    }
    repeats = sum(len(g) - 1 for g in within)
    mixed = [g for g in within if len(entries.labels_of(g)) > 1]
    copies = counted(repeats, f"{where} image is a copy", f"{where} images are copies")
    photos = counted(len(within), "image appears", "images appear")
    note = (
        f"{copies} of another {where} image (the same file by another path, or "
        f"byte-identical; {photos} more than once)"
    )
    if mixed:
        carry = counted(len(mixed), "of these carries", "of these carry")
        note += (
            f": {carry} different labels, e.g. {entries.two_labels(mixed[0])}; "
            f"{costs[part][0]}, so keep the copy "
            "whose label is right and remove the others"
        )
    else:
        note += f", each with one label: {costs[part][1]}"
    return note


def _seen_in_training_note(shared: list, entries: _CopyEntries) -> str:
    """The note on the groups of copies in both train and test."""
    seen = sum(s == 1 for g in shared for s, _ in g)
    test = next(e for e in shared[0] if e[0] == 1)
    train = next(e for e in shared[0] if e[0] == 0)
    also = counted(
        seen, "test image is also a training image", "test images are also training images"
    )
    return (
        f"{also} (the same file or a byte-identical copy), e.g. the test image "
        f"{entries.named(*test)} is the training image {entries.named(*train)}: "
        "test accuracy counts them as seen images; remove one copy of each"
    )


def counted(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def check_part(data: FERData, part: str, skip_bad: bool, progress: bool) -> None:
    """Check every image of data.<part> once; drop unreadable ones when skip_bad (noted)."""
    images = getattr(data, part)
    if images is None or not len(images):
        return
    result = check_images(images, part, skip_bad, progress)
    data.notes += result.notes
    for message in result.warnings:
        warnings.warn(message, stacklevel=3)
    if not result.keep.all():
        setattr(data, part, images.subset(np.flatnonzero(result.keep)))


def concat(first: ImageSet, second: ImageSet | None) -> ImageSet:
    if second is None or len(second) == 0:
        return first
    if first.is_files != second.is_files:
        raise InputError("cannot mix in-memory images with image files in one set")
    images = (
        np.concatenate([first.images, second.images])
        if not first.is_files
        else list(first.images) + list(second.images)
    )

    def truth(s: ImageSet) -> np.ndarray:
        return s.true_labels if s.true_labels is not None else np.full(len(s), -1)

    boxes = None
    if first.boxes is not None or second.boxes is not None:
        boxes = np.concatenate(
            [s.boxes if s.boxes is not None else np.full((len(s), 4), -1) for s in (first, second)]
        )
    return ImageSet(
        images,
        np.concatenate([first.labels, second.labels]),
        np.concatenate([truth(first), truth(second)]),
        first.ids + second.ids,
        boxes,
    )


@dataclass
class RunData:
    data: FERData
    split: Split
    labeled: ImageSet  # given labels
    unlabeled: ImageSet  # labels hidden (-1); true_labels for diagnostics where known
    val: ImageSet | None
    test: ImageSet

    @property
    def num_classes(self) -> int:
        return self.data.num_classes


def build_run_data(
    cfg, seed: int, progress: bool = False, recheck: bool = True, reread: str = ""
) -> RunData:
    """The image sets of a run: the dataset read and checked, split by cfg.split_file or a new
    seeded split. progress: show a progress bar while a large set of image files is checked.
    recheck=False rebuilds a finished run's data without decoding every image again, unless
    data.skip_bad dropped images (the check must then drop the same ones). reread: "resume" or
    "finished" where cfg.split_file is the run's own split.json (load_split)."""
    check = PARTS if recheck or cfg.skip_bad else ()
    data = load_dataset(cfg, seed, check=check, progress=progress)
    split = choose_split(cfg, seed, data, reread)
    warn_unlabeled_classes(data, split, cfg.num_labels)
    note_labeled_quality(cfg, data, split)
    train = data.train
    hidden = train.subset(split.unlabeled)
    if hidden.true_labels is None:
        hidden.true_labels = hidden.labels.copy()  # the labels we hide are the best truth known
    hidden.labels = np.full(len(hidden), -1)
    unlabeled = concat(hidden, data.unlabeled)
    val = train.subset(split.val) if len(split.val) else None
    return RunData(data, split, train.subset(split.labeled), unlabeled, val, data.test)


def choose_split(cfg, seed: int, data: FERData, reread: str = "") -> Split:
    """cfg.split_file's split, checked against the data (load_split) and, given as a setting,
    against data.num_labels and data.val_fraction; else a new seeded split."""
    if cfg.split_file:
        split = load_split(cfg.split_file, data, reread)
        if not reread:
            check_split_settings(split, cfg, cfg.split_file)
        return split
    return make_split(data, cfg.num_labels, seed, cfg.val_fraction)


def warn_unlabeled_classes(data: FERData, split: Split, num_labels: int) -> None:
    """A class without a single labeled image cannot be learnt from labels: say so (a warning,
    and a note in the run)."""
    counts = np.bincount(data.train.labels[split.labeled], minlength=data.num_classes)
    empty = [data.class_names[c] for c in np.flatnonzero(counts == 0)]
    if not empty:
        return
    total = np.bincount(data.train.labels[data.train.labels >= 0], minlength=data.num_classes)
    without_images = [data.class_names[c] for c in np.flatnonzero(total == 0)]
    message = f"{len(empty)} of {data.num_classes} classes get no labeled image: {', '.join(empty)}"
    if without_images:
        verb = "has" if len(without_images) == 1 else "have"
        message += f" ({', '.join(without_images)} {verb} no training images at all)"
    if len(without_images) < len(empty):
        with_images = data.num_classes - len(without_images)
        message += (
            f"; data.num_labels={num_labels} is too small to label every class that has "
            f"images: give at least {with_images}"
        )
    tested = np.bincount(data.test.labels[data.test.labels >= 0], minlength=data.num_classes)
    untaught = [c for c in np.flatnonzero((counts == 0) & (tested > 0))]
    if untaught:  # the model never names a class it had no labeled image of
        shown = ", ".join(f"{data.class_names[c]} {int(tested[c])}" for c in untaught)
        message += (
            f"; the test images of {'that class' if len(untaught) == 1 else 'those classes'} "
            f"count as errors: a model never names a class it had no labeled image of ({shown})"
        )
    data.notes.append(message)
    warnings.warn(message, stacklevel=3)


def note_labeled_quality(cfg, data: FERData, split: Split) -> None:
    """Where the labeled images' true labels are known, how many of them are wrongly labeled (a
    note, for every method), and a warning (and note) naming each class whose labeled images
    are labeled with another class more often than with their own (outvoted_classes): a small
    budget can draw a labeled set noisier than the rate data.noise was checked against."""
    truth = data.train.true_labels
    if truth is None:
        return
    given, true = data.train.labels[split.labeled], truth[split.labeled]
    known = (true >= 0) & (given >= 0)
    if not known.any():
        return
    wrong = int((given[known] != true[known]).sum())
    share = f"{counted(wrong, 'is', 'are')} wrongly labeled ({wrong / known.sum():.0%})"
    if known.all():
        data.notes.append(f"of the {len(given)} labeled images, {share}")
    else:
        data.notes.append(
            f"of the {len(given)} labeled images, {int(known.sum())} have a known true label; "
            f"of these, {share}"
        )
    outvoted = outvoted_classes(true[known], given[known], data.class_names)
    if outvoted:
        lower = " or a lower data.noise_rate" if cfg.noise != "none" else ""
        message = (
            f"in the labeled set, {'; '.join(outvoted)}: these labels no longer name their "
            f"class; a larger data.num_labels{lower} gives a labeled set nearer the training "
            "set's label quality"
        )
        data.notes.append(message)
        warnings.warn(message, stacklevel=3)


def count_by_class(labels: np.ndarray, class_names) -> dict[str, int]:
    counts = {name: int((labels == c).sum()) for c, name in enumerate(class_names)}
    missing = int((labels < 0).sum())
    if missing:
        counts["(no label)"] = missing
    return counts


def dataset_stats(cfg, seed: int) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Per-class counts of train, test and the labeled / unlabeled split the config makes, and
    the notes: the dataset's (files ignored, entries dropped, classes merged or held out, as a
    run prints them), then why there is no split where there is none (data.num_labels above the
    training images, whose counts are still given, so that a user can choose it). Images are not
    decoded here (that is done when a run starts), so counts are of listed files."""
    data = load_dataset(cfg, seed, check=())
    notes = data.notes + copy_notes(data)
    names = data.class_names
    labels = data.train.labels
    stats = {
        "train": count_by_class(labels, names),
        "test": count_by_class(data.test.labels, names),
    }
    try:
        split = choose_split(cfg, seed, data)
    except LabelBudgetError as error:
        return stats, [*notes, f"no labeled/unlabeled split: {error}"]
    unlabeled = labels[split.unlabeled]
    if data.unlabeled is not None:
        unlabeled = np.concatenate([unlabeled, np.full(len(data.unlabeled), -1)])
    stats["labeled"] = count_by_class(labels[split.labeled], names)
    stats["unlabeled"] = count_by_class(unlabeled, names)
    if len(split.val):
        stats["val"] = count_by_class(labels[split.val], names)
    return stats, notes
