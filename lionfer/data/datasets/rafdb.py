"""RAF-DB basic (7 classes, 12,271 train / 3,068 test) in either layout it circulates in.

Format A, as the database ships: EmoLabel/list_patition_label.txt (`train_00001.jpg 5`, ids 1-7)
with Image/aligned/<stem>_aligned.jpg or Image/original/<name>. Format B, the Ada-CM/LION copy:
labels/RAF_{train,test}_label2.txt (ids 0-6) with images under images/{train,test}/.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from lionfer import labels as L
from lionfer.data.base import FERData, ImageSet
from lionfer.data.checks import (
    IMAGE_EXTENSIONS,
    IMAGE_KINDS,
    check_label_ids,
    check_listed_files,
    drop_duplicates,
    first_match,
    read_utf8,
    require_file,
)

LIST_A = Path("EmoLabel") / "list_patition_label.txt"  # sic: "patition"
LISTS_B = (Path("labels") / "RAF_train_label2.txt", Path("labels") / "RAF_test_label2.txt")
VARIANTS = ("aligned", "original")
LAYOUTS = (
    "format A (official): ROOT/EmoLabel/list_patition_label.txt and ROOT/Image/aligned/ "
    "(or Image/original/); format B (Ada-CM/LION): ROOT/labels/RAF_train_label2.txt, "
    "ROOT/labels/RAF_test_label2.txt and ROOT/images/train/, ROOT/images/test/"
)


def read_list(
    path: Path, min_columns: int, max_columns: int
) -> tuple[list[str], list[int], list[int]]:
    """(names, ids, line numbers) of a whitespace-separated `name id [...]` list; blank lines are
    skipped, anything else malformed raises naming the file and line."""
    names, ids, lines = [], [], []
    text = read_utf8(path, "save the list as UTF-8 (or re-copy it from the release)")
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if not (min_columns <= len(parts) <= max_columns) or not _is_int(parts[1]):
            raise ValueError(
                f"{path}, line {number}: expected '<image name> <label id>', got {line.strip()!r}; "
                "fix or delete that line"
            )
        names.append(parts[0])
        ids.append(int(parts[1]))
        lines.append(number)
    if not names:
        raise ValueError(f"{path} holds no entries; it should list '<image name> <label id>' lines")
    return names, ids, lines


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def detect_format(root: Path, label_file: str) -> str:
    """'A' or 'B' from what lies in root; a root holding neither raises listing both layouts."""
    if not root.is_dir():
        raise FileNotFoundError(f"RAF-DB root {root} is not a folder. Expected {LAYOUTS}")
    if label_file:
        if (root / "Image").is_dir():
            return "A"
        if (root / "images").is_dir():
            return "B"
    elif (root / LIST_A).is_file():
        return "A"
    elif all((root / p).is_file() for p in LISTS_B):
        return "B"
    raise FileNotFoundError(
        f"{root} does not look like RAF-DB. Expected {LAYOUTS}. data.root must be the folder "
        "that holds EmoLabel/ and Image/ (often named 'basic'), or labels/ and images/"
        + layout_hint(root)
    )


def layout_hint(root: Path) -> str:
    """What to do with a root that holds RAF-DB in another place or form, or "" when unknown."""
    for child in (root / "basic", root / "Basic"):
        if (child / LIST_A).is_file():
            return f". {root} holds the basic subset one folder down: set data.root={child}"
    for base in (root, root / "DATASET"):
        train = base / "train"
        if train.is_dir() and {p.name for p in train.iterdir() if p.is_dir()} & set("1234567"):
            return (
                f". {base} holds one folder per RAF-DB label id (train/1 ... train/7, as the "
                f"Kaggle copy ships): read it with data.dataset=folder data.root={base} "
                "'data.class_map={1=0,2=1,3=2,4=3,5=4,6=5,7=6}' (RAF-DB id minus 1)"
            )
    return ""


def pick_variant(root: Path, variant: str) -> str:
    """The image folder to read: variant, or the one of Image/aligned, Image/original there is."""
    if variant and variant not in VARIANTS:
        raise ValueError(f"RAF-DB data.variant must be one of {VARIANTS} or empty, not {variant!r}")
    if variant:
        folder = root / "Image" / variant
        if folder.is_dir():
            return variant
        present = [v for v in VARIANTS if (root / "Image" / v).is_dir()]
        fixes = [f"set data.variant={v} (or leave it empty) to read it" for v in present[:1]]
        if (root / "Image" / f"{variant}.zip").is_file():
            fixes.insert(0, f"extract {variant}.zip in {root / 'Image'}")
        holds = f"; {root / 'Image'} holds {present[0]}/ instead" if present else ""
        fix = " or ".join(fixes) or "data.root must be the folder that holds EmoLabel/ and Image/"
        raise FileNotFoundError(
            f"RAF-DB data.variant={variant}, but the folder {folder} does not exist{holds}: {fix}"
        )
    if (root / "Image" / "aligned").is_dir():
        return "aligned"
    if (root / "Image" / "original").is_dir():
        return "original"
    archives = [p.name for p in sorted((root / "Image").glob("*.zip")) if p.stem in VARIANTS]
    fix = "data.root must be the folder that holds EmoLabel/ and Image/"
    if archives:
        fix = (
            f"Extract {' or '.join(archives)} in {root / 'Image'} (each unpacks into a folder "
            "of its name)"
        )
    raise FileNotFoundError(
        f"RAF-DB images not found: expected the folder {root / 'Image' / 'aligned'} or "
        f"{root / 'Image' / 'original'}. {fix}"
    )


def image_stem(name: str, variant: str) -> str:
    """The file name, less its extension, of a listed image in the variant's folder: the aligned
    file of train_00001.jpg is train_00001_aligned, its original train_00001. A list that names
    the aligned files already (train_00001_aligned.jpg) gets the same stems."""
    stem = name.split(".")[0]
    if variant == "aligned":
        return stem if stem.endswith("_aligned") else f"{stem}_aligned"
    return stem.removesuffix("_aligned")


def image_index(folder: Path) -> dict[str, str]:
    """The visible image files in folder by lower-case stem (the name up to its first dot), read
    once: copies circulate as .jpg, .JPG or .png. Where two files share a stem, .jpg wins."""
    try:
        with os.scandir(folder) as entries:
            names = [
                e.name
                for e in entries
                if not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
                and e.is_file()
            ]
    except OSError:
        return {}
    index: dict[str, str] = {}
    for name in sorted(names, key=lambda n: (os.path.splitext(n)[1].lower() != ".jpg", n)):
        index.setdefault(name.split(".")[0].lower(), name)
    return index


def image_paths_a(root: Path, names: list[str], variant: str) -> list[Path]:
    """The image file of each listed name in Image/<variant>/, whatever its image extension and
    its case; a name without one gets <folder>/<stem>.*, which names what was looked for."""
    folder = root / "Image" / variant
    index = image_index(folder)
    paths = []
    for name in names:
        stem = image_stem(name, variant)
        found = index.get(stem.lower())
        paths.append(folder / (found if found is not None else f"{stem}.*"))
    return paths


def images_fix(expected: Path, image_root: Path) -> str:
    """The fix for a list none of whose images exist, where the first one lies elsewhere under
    image_root (one or two folders off, as an archive unpacked into a folder of its own name
    leaves it), or a note of what was looked for, where expected ends in .* (any image
    extension); "" when it is nowhere near."""
    name = glob.escape(expected.name)
    if expected.suffix == ".*":
        name = glob.escape(expected.stem) + ".*"
    found = first_match(image_root, (name, f"*/{name}", f"*/*/{name}"))
    if found is not None and found != expected:
        return (
            f"The first one is at {found}: move the images of {found.parent} into {expected.parent}"
        )
    if expected.suffix != ".*":
        return ""
    return (
        f"Each was looked for in {expected.parent} by its name with any image extension "
        f"({IMAGE_KINDS}, any case). data.root is probably wrong: point it at the dataset folder "
        "as it ships (or pick data.variant to match the image folder you have)"
    )


def _resolve(root: Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else root / path


def read_format_a(
    cfg, root: Path
) -> tuple[list[Path], list[str], np.ndarray, np.ndarray, list[str]]:
    """(paths, names, canonical labels, keep, notes) of every entry in the list, train and test;
    keep is False for a repeated entry."""
    list_path = _resolve(root, cfg.label_file) if cfg.label_file else root / LIST_A
    require_file(
        list_path,
        "RAF-DB label list",
        "data.root must be the folder that holds "
        "EmoLabel/ and Image/, or set data.label_file to the list's path",
    )
    names, ids, lines = read_list(list_path, 2, 2)
    check_label_ids(ids, L.RAFDB_FILE, str(list_path), lines)
    for name, number in zip(names, lines, strict=True):
        if not name.startswith(("train", "test")):
            raise ValueError(
                f"{list_path}, line {number}: {name!r} starts with neither 'train' nor 'test', "
                "so its split is unknown; fix or delete that line"
            )
    labels = L.to_canonical(ids, L.RAFDB_FILE)
    keep, dup_notes = drop_duplicates(names, labels, str(list_path), lines, written=ids)
    variant = pick_variant(root, cfg.variant)
    paths = image_paths_a(root, names, variant)
    notes = [f"rafdb: format A, {variant} images, list {list_path}"] + dup_notes
    return paths, names, labels, keep, notes


def read_format_b(
    cfg, root: Path
) -> tuple[list[Path], list[str], np.ndarray, np.ndarray, list[str]]:
    """Like read_format_a; names are prefixed with their split ('train/x.jpg')."""
    if cfg.variant:
        raise ValueError(
            f"data.variant={cfg.variant!r} applies to RAF-DB format A only; format B (labels/, "
            "images/) ships one image folder per split. Leave data.variant empty"
        )
    list_paths = [root / p for p in LISTS_B]
    if cfg.label_file:  # "train.txt" or "train.txt,test.txt"
        override = [_resolve(root, p.strip()) for p in cfg.label_file.split(",")]
        if len(override) > 2:
            raise ValueError(
                f"data.label_file={cfg.label_file!r}: format B takes 'train_list' or "
                "'train_list,test_list'"
            )
        list_paths[: len(override)] = override
    paths, names, labels, keep, dup_notes = [], [], [], [], []
    for split, list_path in zip(("train", "test"), list_paths, strict=True):
        require_file(
            list_path,
            f"RAF-DB {split} list",
            "data.root must hold labels/ and "
            "images/ (format B), or set data.label_file='train.txt,test.txt'",
        )
        split_names, split_ids, lines = read_list(list_path, 2, 3)
        check_label_ids(split_ids, L.RAFDB_ZERO, str(list_path), lines)
        split_labels = L.to_canonical(split_ids, L.RAFDB_ZERO)
        split_keep, split_notes = drop_duplicates(
            split_names, split_labels, str(list_path), lines, written=split_ids
        )
        labels.append(split_labels)
        keep.append(split_keep)
        dup_notes += split_notes
        paths += [root / "images" / split / name for name in split_names]
        names += [f"{split}/{name}" for name in split_names]
    notes = [f"rafdb: format B, lists {list_paths[0]} and {list_paths[1]}"] + dup_notes
    return paths, names, np.concatenate(labels), np.concatenate(keep), notes


def load(cfg, seed: int) -> FERData:
    """Read RAF-DB from cfg.root; the test set is the official 3,068-image test split."""
    if cfg.num_classes != 7:
        raise ValueError("RAF-DB has 7 classes (no Contempt); set data.num_classes=7")
    root = Path(cfg.root).expanduser()
    layout = detect_format(root, cfg.label_file)
    reader = read_format_a if layout == "A" else read_format_b
    paths, names, labels, keep, notes = reader(cfg, root)
    fix = ""
    if paths and not paths[0].is_file():  # only a list none of whose images exist needs it
        fix = images_fix(paths[0], root / ("Image" if layout == "A" else "images"))
    exists, missing_notes = check_listed_files(paths, cfg.skip_bad, "rafdb", fix)
    keep &= exists
    is_train = np.array([n.startswith("train") for n in names]) & keep
    is_test = np.array([n.startswith("test") for n in names]) & keep
    if not is_train.any() or not is_test.any():
        raise ValueError(
            f"RAF-DB list has {int(is_train.sum())} train and {int(is_test.sum())} test entries; "
            "both are needed. Check data.label_file"
        )
    return FERData(
        name="rafdb",
        class_names=L.CLASS_NAMES,
        train=_image_set(paths, names, labels, is_train, test=False),
        test=_image_set(paths, names, labels, is_test, test=True),
        split_rule="rafdb",
        notes=notes + missing_notes,
    )


def _image_set(paths, names, labels, mask, test: bool) -> ImageSet:
    index = np.flatnonzero(mask)
    chosen = labels[index]
    return ImageSet(
        images=[str(paths[i]) for i in index],
        labels=chosen,
        true_labels=chosen.copy() if test else None,  # test labels are the reference
        ids=[names[i] for i in index],
    )
