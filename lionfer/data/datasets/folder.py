"""A user's own images, one folder per class: ROOT/<class>/* or ROOT/train/<class>/* and
ROOT/test/<class>/*. FER expression names (or data.class_map) give the canonical label space; other
folder names become a general image classifier with the folders as classes, sorted alphabetically.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path

import numpy as np

from lionfer import labels as L
from lionfer.data.base import FERData, ImageSet
from lionfer.data.checks import IMAGE_KINDS, is_image_file, list_images, raw_photos, require_dir
from lionfer.data.splits import hold_out
from lionfer.errors import ConfigError, InputError, MissingInputError
from lionfer.words import counted

MAC_METADATA = "__MACOSX"  # what macOS adds to a zip it makes: AppleDouble ._ files only

HOLDOUT = 0.2  # test fraction held out when the data has no test split
VAL_NAMES = ("val", "valid", "validation")  # a validation folder, as other tools lay data out


def resolve_classes(
    names: list[str], class_map: dict, num_classes: int, places: dict[str, str] | None = None
) -> tuple[tuple[str, ...], dict[str, int], list[str]]:
    """(class names, name -> class id, notes) for the class names found in the data.

    class_map (name -> canonical id or FER name; -1 drops the class) wins; then FER names and
    aliases ('happy', 'angry'); otherwise the names themselves, sorted, are the classes (names
    that differ only in case or surrounding spaces are one class). A name one typo away from a
    FER name beside FER names is an error naming it (places[name]: where it occurs).
    """
    if class_map:
        mapping = {name: _map_lookup(name, class_map) for name in names}
    elif all(name.strip().lower() in L.NAME_ALIASES for name in names):
        mapping = {name: L.class_from_name(name) for name in names}
    else:
        _refuse_misspelt(names, places or {})
        _warn_mixed(names)
        return _general_classes(names)
    eight = num_classes == 8 or L.CONTEMPT in mapping.values()
    notes = []
    if eight and num_classes != 8:
        named = next(name for name, c in mapping.items() if c == L.CONTEMPT)
        notes.append(
            f"the class {named!r} is Contempt, AffectNet's eighth expression: the model has "
            f"its eight classes ({', '.join(L.CLASS_NAMES_8)}); map it to -1 in data.class_map "
            "to train on the seven"
        )
    return (L.CLASS_NAMES_8 if eight else L.CLASS_NAMES), mapping, notes


def _refuse_misspelt(names: list[str], places: dict[str, str]) -> None:
    """Names that are all FER expressions but one misspelt one would silently make a general
    classifier of different classes: refuse that one, with the FER name it is close to."""
    known = [name for name in names if name.strip().lower() in L.NAME_ALIASES]
    if not known:
        return
    full_names = [alias for alias in L.NAME_ALIASES if len(alias) > 2]  # not 'su', 'ha', ...
    for name in names:
        key = name.strip().lower()
        close = difflib.get_close_matches(key, full_names, n=1, cutoff=0.8)
        if key not in L.NAME_ALIASES and close:
            where = f"{places[name]}: " if name in places else ""
            raise ConfigError(
                f"{where}class {name!r} is not a FER expression name (did you mean "
                f"{close[0]!r}?), while {sorted(known)} are: correct its spelling, or give a "
                "data.class_map with every class name to train other classes"
            )


def _warn_mixed(names: list[str]) -> None:
    """FER names beside other names make general classes: the FER classes, their canonical ids
    and a FER model's head are not used. Likely a stray label, so say it where it is seen."""
    fer = sorted({n for n in names if n.strip().lower() in L.NAME_ALIASES})
    other = sorted({n for n in names if n.strip().lower() not in L.NAME_ALIASES})
    if fer:
        warnings.warn(
            f"class names {other} are not FER expressions while {fer} are: training general "
            "classes in alphabetical order, not the FER classes. To train the FER classes, give "
            "a data.class_map that maps every class name to a FER class, or to -1 to drop it "
            f"({other[0]!r} = -1)",
            stacklevel=2,
        )


def _general_classes(names: list[str]) -> tuple[tuple[str, ...], dict[str, int], list[str]]:
    """Classes named by the data, in alphabetical order; 'Cat', 'cat' and 'cat ' are one."""
    spellings: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        spellings.setdefault(name.strip().lower(), []).append(name)
    shown = {key: variants[0].strip() for key, variants in spellings.items()}
    generic = tuple(sorted(shown.values()))
    ids = {name: generic.index(shown[name.strip().lower()]) for name in names}
    notes = [
        f"class names {list(generic)} are not all FER expressions and no data.class_map was "
        "given: treating them as general classes, ids in alphabetical order"
    ]
    merged = [variants for variants in spellings.values() if len(variants) > 1]
    if merged:
        notes.append(f"class names that differ only in case or spaces are one class: {merged}")
    return generic, ids, notes


def _map_lookup(name: str, class_map: dict) -> int:
    lowered = {str(k).strip().lower(): v for k, v in class_map.items()}
    if name not in class_map and name.strip().lower() not in lowered:
        raise ConfigError(
            f"class {name!r} is not in data.class_map (keys: {sorted(map(str, class_map))}); "
            "add it, mapping to a canonical id 0-7 or -1 to drop it"
        )
    value = L.class_map_id(class_map.get(name, lowered.get(name.strip().lower())))
    if value != L.DROP and not 0 <= value <= L.CONTEMPT:
        raise ConfigError(
            f"data.class_map[{name!r}] = {value}: canonical ids are 0-6 "
            f"({', '.join(L.CLASS_NAMES)}), 7 Contempt, or -1 to drop the class"
        )
    return value


def scan_split(folder: Path, unlabeled: Path | None = None) -> tuple[dict[str, list[Path]], int]:
    """(class name -> image files found recursively in folder/<class>/, entries ignored).
    Hidden entries and a zip's macOS metadata folder (MAC_METADATA) are no classes, nor is the
    folder given as data.unlabeled_root (unlabeled, resolved), whose images are read as
    unlabeled ones wherever it lies."""
    classes, ignored = {}, 0
    # data.unlabeled_root below this folder is no class; this folder itself, or one above it,
    # still holds its classes (their images left out of the unlabeled ones as copies)
    inside = unlabeled is not None and unlabeled.parent.is_relative_to(folder.resolve())
    unlabeled = unlabeled if inside else None
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            ignored += child.is_file()  # .DS_Store beside the class folders
            continue
        if child.name == MAC_METADATA and child.is_dir():
            ignored += sum(f.is_file() for f in child.rglob("*"))
            continue
        if unlabeled is not None and child.resolve() == unlabeled:
            continue
        if child.is_dir():
            found, skipped = list_images(child, recursive=True)
            classes[child.name] = _not_under(found, unlabeled)
            ignored += skipped
        else:
            ignored += 1
    return classes, ignored


def scan_beside(
    root: Path, splits: tuple[Path, ...], unlabeled: Path | None
) -> tuple[dict[str, int], int, list[Path]]:
    """What root holds beside its split folders, which is not read: (folder name -> images found
    recursively in it, other files, those folders). Hidden folders are no data; images under
    data.unlabeled_root (unlabeled), read as unlabeled, are not counted, nor images lying
    directly in root."""
    images, ignored, folders = {}, 0, []
    for child in sorted(root.iterdir()):
        if child in splits or (child.name.startswith(".") and not child.is_file()):
            continue
        if child.is_dir():
            found, other = list_images(child, recursive=True)
            found = _not_under(found, unlabeled)
            if found:
                images[child.name] = len(found)
            ignored += other
            folders.append(child)
        elif not is_image_file(child):
            ignored += 1
    return images, ignored, folders


def _not_under(paths: list[Path], folder: Path | None) -> list[Path]:
    if folder is None:
        return paths
    return [p for p in paths if not p.resolve().is_relative_to(folder)]


def left_out_notes(
    root: Path, train_dir: Path | None, test_dir: Path | None, beside: dict[str, int], loose
) -> list[str]:
    """Notes naming the images that are not read (beside: folder -> images, from scan_beside;
    loose: folder -> images lying directly in it), and what to do to read them."""
    notes = []
    if beside:
        splits = " and ".join(f"{d.name}/" for d in (train_dir, test_dir) if d)
        shown = ", ".join(f"{name}/ ({count} images)" for name, count in beside.items())
        val = next((name for name in beside if name.lower() in VAL_NAMES), None)
        fixes = [
            f"move them into {train_dir.name}/<class>/ to train on them (data.val_fraction sets "
            "validation images aside from train)",
            "set data.unlabeled_root to their folder to use them without labels",
        ]
        if val and not test_dir:
            fixes.insert(0, f"rename {val}/ to test/ to test on its images")
        notes.append(
            f"left out {sum(beside.values())} images beside {splits} in {root}: {shown}. Only "
            f"the class folders in train/ and test/ are read: {', '.join(fixes[:-1])}, or "
            f"{fixes[-1]}"
        )
    for folder, images in loose.items():
        if images:
            classes = train_dir if folder == root and train_dir else folder
            notes.append(
                f"left out {counted(len(images), 'image')} lying directly in "
                f"{folder}, in no class folder: "
                f"put each in its class's folder ({classes}/<class>/), or images without a label "
                "in a folder given as data.unlabeled_root"
            )
    return notes


def find_child(root: Path, *names: str) -> Path | None:
    """The subfolder of root whose name matches one of names, ignoring case."""
    wanted = {n.lower() for n in names}
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name.lower() in wanted:
            return child
    return None


def image_set(paths: list[Path], labels, root: Path, test: bool) -> ImageSet:
    labels = np.asarray(labels, dtype=np.int64)
    return ImageSet(
        images=[str(p) for p in paths],
        labels=labels,
        true_labels=labels.copy() if test else None,  # test labels are the reference
        ids=[p.relative_to(root).as_posix() for p in paths],
    )


def holdout_test(train: ImageSet, seed: int) -> tuple[ImageSet, ImageSet, str]:
    """Split a seeded stratified HOLDOUT fraction of train off as the test set."""
    rest, test = hold_out(train, HOLDOUT, seed)
    if not len(test):
        per_class = np.bincount(train.labels[train.labels >= 0]).max(initial=0)
        raise InputError(
            f"too few labeled images to hold out a test set: {HOLDOUT:.0%} of each class rounds "
            f"to none (the largest class has {per_class}); add a test split (ROOT/test/<class>/ "
            "folders, or manifest rows with split=test), or at least 3 images per class"
        )
    test.true_labels = test.labels.copy()
    note = (
        f"no test split: held out a stratified {HOLDOUT:.0%} of train as test "
        f"({len(test)} images, data.data_seed={seed})"
    )
    return rest, test, note


def read_unlabeled(folder: str) -> tuple[ImageSet, str]:
    root = require_dir(
        Path(folder).expanduser(),
        "unlabeled image folder",
        "data.unlabeled_root must be a folder of images (searched recursively)",
    )
    paths, ignored = list_images(root, recursive=True)
    raw = raw_photos(root) if ignored else ""
    if not paths:
        raise MissingInputError(
            f"no images ({IMAGE_KINDS}) found under data.unlabeled_root={root}"
            + (f" ({counted(ignored, 'other file')}{raw})" if raw else "")
        )
    unlabeled = ImageSet(
        images=[str(p) for p in paths],
        labels=np.full(len(paths), -1),
        ids=[f"unlabeled/{p.relative_to(root).as_posix()}" for p in paths],
    )
    return (
        unlabeled,
        f"{counted(len(paths), 'unlabeled image')} from {root} "
        f"({counted(ignored, 'other file')} ignored{raw})",
    )


def load(cfg, seed: int) -> FERData:
    """Read a class-per-folder image tree; without a test/ folder, 20% of train is held out."""
    root = require_dir(
        Path(cfg.root).expanduser(),
        "image folder",
        "data.root must hold one folder per class (ROOT/<class>/*.jpg), or train/ and test/ "
        "folders that do",
    )
    train_dir, test_dir = _split_folders(root)
    unlabeled_dir = Path(cfg.unlabeled_root).expanduser().resolve() if cfg.unlabeled_root else None
    train_files, ignored = scan_split(train_dir or root, unlabeled_dir)
    test_files, test_ignored = scan_split(test_dir, unlabeled_dir) if test_dir else ({}, 0)
    if not any(train_files.values()):
        _refuse_no_class_images(train_dir or root, ignored)
    places = {name: f"folder {test_dir / name}" for name in test_files}
    places.update({name: f"folder {(train_dir or root) / name}" for name in train_files})
    class_names, mapping, notes = resolve_classes(
        sorted(set(train_files) | set(test_files)), cfg.class_map, cfg.num_classes, places
    )
    train, test, held_out = _train_and_test(
        train_files, test_files, mapping, root, test_dir, cfg.data_seed
    )
    notes += held_out
    dropped = sorted(name for name, c in mapping.items() if c == L.DROP)
    if dropped:
        notes.append(f"dropped the classes {dropped} (data.class_map maps them to -1)")
    notes += _unread_notes(root, train_dir, test_dir, unlabeled_dir, ignored + test_ignored)
    unlabeled = None
    if cfg.unlabeled_root:
        unlabeled, note = read_unlabeled(cfg.unlabeled_root)
        notes.append(note)
    return FERData(
        name="folder",
        class_names=class_names,
        train=train,
        test=test,
        unlabeled=unlabeled,
        split_rule="balanced",
        notes=notes,
    )


def _split_folders(root: Path) -> tuple[Path | None, Path | None]:
    """root's train/ and test/ folders (None where it has none); test/ alone is refused."""
    train_dir = find_child(root, "train")
    test_dir = find_child(root, "test")
    if test_dir and not train_dir:
        raise MissingInputError(
            f"{root} has a test/ folder but no train/ folder; put the training class folders "
            "under ROOT/train/, or move the class folders up to ROOT/<class>/"
        )
    return train_dir, test_dir


def _refuse_no_class_images(folder: Path, ignored: int) -> None:
    """The error for a train folder with no image in a class folder (ignored: the other files
    scan_split counted), saying where the images it has directly would go."""
    loose, _ = list_images(folder)
    hint = (
        f"; its {len(loose)} images lie in it directly: put each class's images in a folder "
        "named by the class, and images without a label in another folder given as "
        "data.unlabeled_root"
        if loose
        else ""
    )
    raw = raw_photos(folder) if ignored else ""
    raise MissingInputError(
        f"no images found in class folders under {folder}; expected "
        f"ROOT/<class>/<image>.jpg ({IMAGE_KINDS}) or ROOT/train/<class>/<image>.jpg{hint}"
        + (f" ({counted(ignored, 'other file')}{raw})" if raw else "")
    )


def _train_and_test(
    train_files: dict[str, list[Path]],
    test_files: dict[str, list[Path]],
    mapping: dict[str, int],
    root: Path,
    test_dir: Path | None,
    seed: int,
) -> tuple[ImageSet, ImageSet, list[str]]:
    """(train, test, notes): test/'s images, or without a test/ folder a stratified HOLDOUT of
    train (noted); an empty test/ is refused."""
    train = _collect(train_files, mapping, root, test=False)
    if not test_dir:
        train, test, note = holdout_test(train, seed)
        return train, test, [note]
    test = _collect(test_files, mapping, root, test=True)
    if not len(test):
        raise MissingInputError(
            f"no test images found in class folders under {test_dir}; put them in "
            f"{test_dir}/<class>/, or remove the empty {test_dir.name}/ folder to hold out "
            f"{HOLDOUT:.0%} of train as test"
        )
    return train, test, []


def _unread_notes(
    root: Path,
    train_dir: Path | None,
    test_dir: Path | None,
    unlabeled_dir: Path | None,
    ignored: int,
) -> list[str]:
    """Notes on the files of the tree that give no image: folders beside train/ and test/,
    images in no class folder, and hidden or non-image files (ignored: those scan_split
    counted, the images lying directly in a split folder among them)."""
    beside, other, beside_dirs = ({}, 0, [])
    if train_dir:
        beside, other, beside_dirs = scan_beside(root, (train_dir, test_dir), unlabeled_dir)
    loose = {d: list_images(d)[0] for d in (root, train_dir, test_dir) if d}  # in no class folder
    unread = {d: _not_under(images, unlabeled_dir) for d, images in loose.items()}
    notes = left_out_notes(root, train_dir, test_dir, beside, unread)
    # scan_split counted the images lying directly in a split folder among the ignored files
    ignored += other - sum(len(loose[d]) for d in (train_dir or root, test_dir) if d)
    if ignored:
        raw = raw_photos(train_dir or root, test_dir, *beside_dirs)
        files = "file" if ignored == 1 else "files"
        notes.append(f"ignored {ignored} hidden or non-image {files}{raw}")
    return notes


def _collect(files: dict[str, list[Path]], mapping: dict[str, int], root: Path, test: bool):
    paths, labels = [], []
    for name, class_paths in files.items():
        if mapping[name] == L.DROP:
            continue
        paths += class_paths
        labels += [mapping[name]] * len(class_paths)
    return image_set(paths, labels, root, test)
