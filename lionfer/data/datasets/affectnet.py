"""AffectNet reader: the original CSV release (Manually_Annotated_file_lists, faces cropped by the
listed face box) and the newer pre-cropped .npy release (train_set/, val_set/). The validation set
is the test set, as in every paper: the official test set was never released. Expression ids map
through labels.AFFECTNET; None, Uncertain and Non-Face (and Contempt in 7-class mode) are dropped.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lionfer import labels
from lionfer.data.base import FERData, ImageSet
from lionfer.data.checks import (
    ARCHIVE_SUFFIXES,
    check_label_ids,
    check_listed_files,
    drop_duplicates,
    is_image_file,
    not_utf8,
    parse_int,
    refuse_other_separators,
    require_dir,
    require_file,
)
from lionfer.errors import MissingInputError
from lionfer.words import counted

CSV_LISTS = "Manually_Annotated_file_lists"
CSV_IMAGES = "Manually_Annotated_Images"
CSV_FILES = {"train": "training.csv", "test": "validation.csv"}
CSV_COLUMNS = (
    "subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
    "facial_landmarks", "expression", "valence", "arousal",
)  # fmt: skip
NEEDED = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression")
BOX_COLUMNS = NEEDED[1:5]
NPY_FOLDERS = {"train": "train_set", "test": "val_set"}
LAYOUTS = (
    f"csv: {CSV_LISTS}/training.csv and validation.csv with {CSV_IMAGES}/<subDirectory_filePath>",
    "npy: train_set/ and val_set/, each with images/<i>.jpg and annotations/<i>_exp.npy",
)
DROP_REASONS = {7: "Contempt (7-class mode)", 8: "None", 9: "Uncertain", 10: "Non-Face"}
NPY_HEADER = re.compile(r"'descr':\s*'(?P<descr>[^']+)'.*'shape':\s*\((?P<shape>[^)]*)\)")
EMPTY_BOX = "empty face box (width or height <= 0)"
NO_BOX = "rows without a face box (face_x, face_y, face_width or face_height empty or NaN)"
OUTSIDE_BOX = "face boxes outside the image (ending left of or above it)"
MISSING = ("", "nan")  # how pandas and spreadsheets write an empty number


@dataclass
class Listing:
    """One split as its list gives it, before any filtering."""

    paths: list[str]  # image files
    expression: np.ndarray  # (N,) AffectNet expression ids 0..10
    boxes: np.ndarray | None  # (N, 4) x, y, w, h; None for pre-cropped images
    ids: list[str]  # name per entry, unique within the release
    notes: list[str]
    no_box: np.ndarray | None = None  # (N,) bool: a face box field is empty or NaN
    lines: list[int] | None = None  # line of each entry in its list (the CSV release)
    source: str = ""  # the list read (the CSV release)


def load(cfg, seed: int) -> FERData:
    """Read AffectNet from cfg.root; cfg.variant "csv" | "npy" | "" (detect the layout)."""
    names = labels.class_names(cfg.num_classes)
    if not cfg.root:
        raise ValueError(
            f"affectnet: data.root is empty; set it to the AffectNet folder ({'; '.join(LAYOUTS)})"
        )
    if cfg.label_file:
        raise ValueError(
            "affectnet: data.label_file is not used (the release layout fixes both lists); "
            "leave it empty"
        )
    root = require_dir(cfg.root, "AffectNet root", "Set data.root to the AffectNet folder")
    variant = detect_variant(root, cfg.variant)
    notes = [
        f"affectnet: {variant} release"
        + ("; faces cropped by the listed face box" if variant == "csv" else "; pre-cropped faces"),
        "affectnet: the validation set is the test set (the official test set was never released)",
    ]
    parts = {}
    if variant == "csv":
        image_dir, dir_notes = csv_image_dir(root)
        notes += dir_notes
    for split in ("train", "test"):
        if variant == "csv":
            listing = read_csv_list(root / CSV_LISTS / CSV_FILES[split], image_dir)
        else:
            listing = read_npy_split(root / NPY_FOLDERS[split], cfg.skip_bad)
        parts[split], split_notes = build_set(listing, cfg.num_classes, cfg.skip_bad, split)
        notes += listing.notes + split_notes
    train, leak_notes = drop_test_images(parts["train"], parts["test"])
    return FERData(
        name="affectnet",
        class_names=names,
        train=train,
        test=parts["test"],
        split_rule="balanced",
        notes=notes + leak_notes,
    )


def detect_variant(root: Path, variant: str) -> str:
    """Which release lies under root: "csv" or "npy" (variant, when given, must match)."""
    if variant not in ("", "csv", "npy"):
        raise ValueError(
            f"affectnet: data.variant must be csv, npy or empty (detect), not {variant!r}"
        )
    found = [
        name
        for name, marker in (("csv", CSV_LISTS), ("npy", NPY_FOLDERS["train"]))
        if (root / marker).is_dir()
    ]
    if variant:
        if variant not in found:
            raise FileNotFoundError(
                f"affectnet: data.variant={variant} but {root} does not hold that layout. "
                f"Expected one of: {'; '.join(LAYOUTS)}"
            )
        return variant
    if not found:
        fix = "Point data.root at the folder that holds them"
        if (root / CSV_FILES["train"]).is_file():
            fix = f"{root} holds the lists themselves: set data.root={root.parent}"
        raise FileNotFoundError(
            f"affectnet: {root} holds neither AffectNet layout. Expected one of: "
            f"{'; '.join(LAYOUTS)}. {fix}"
        )
    if len(found) == 2:
        raise ValueError(f"affectnet: {root} holds both layouts; set data.variant to csv or npy")
    return found[0]


def csv_image_dir(root: Path) -> tuple[Path, list[str]]:
    """The folder the CSV lists' paths are relative to, and a note where it is not
    root/Manually_Annotated_Images itself: unpacked one folder deeper, as the archives of the
    release often are (Manually_Annotated/Manually_Annotated_Images/,
    Manually_Annotated_Images/Manually_Annotated_Images/)."""
    direct = root / CSV_IMAGES
    if direct.is_dir():
        inner = direct / CSV_IMAGES
        entries = [e.name for e in os.scandir(direct) if not e.name.startswith(".")]
        if entries == [CSV_IMAGES] and inner.is_dir():
            return inner, [f"affectnet: images read from {inner} (unpacked one folder deeper)"]
        return direct, []
    below = sorted(c / CSV_IMAGES for c in root.iterdir() if (c / CSV_IMAGES).is_dir())
    if len(below) == 1:
        return below[0], [f"affectnet: images read from {below[0]}"]
    fix = f"Expected the CSV release layout ({LAYOUTS[0]})"
    archives = sorted(
        p.name
        for p in root.iterdir()
        if p.is_file()
        and p.name.startswith("Manually_Annotated")
        and p.suffix.lower() in ARCHIVE_SUFFIXES
    )
    if archives:
        fix = f"Extract {', '.join(archives)} in {root} so that it holds {CSV_IMAGES}/"
    elif below:
        fix = f"Several folders hold {CSV_IMAGES}/ ({', '.join(map(str, below))}): keep one"
    raise MissingInputError(
        f"AffectNet image folder not found: expected the folder {direct}. {fix}"
    )


def read_csv_list(path: Path, image_dir: Path) -> Listing:
    """Parse training.csv or validation.csv (a header row, or the nine columns in release order).
    A face box field that is empty or NaN marks the row as having no box (Listing.no_box)."""
    require_file(path, "AffectNet list", f"Expected the CSV release layout ({LAYOUTS[0]})")
    require_dir(
        image_dir, "AffectNet image folder", f"Expected the CSV release layout ({LAYOUTS[0]})"
    )
    names: list[str] = []
    values: list[list[int]] = []  # face_x, face_y, face_width, face_height, expression
    no_box: list[bool] = []
    lines: list[int] = []
    notes: list[str] = []
    index: dict[str, int] | None = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if index is None:
                    index, is_header = column_index(row, path)
                    if is_header:
                        continue
                    notes.append(f"affectnet: {path.name} has no header row; read in release order")
                where = f"{path}, line {reader.line_num}"
                if len(row) <= max(index.values()):
                    raise ValueError(
                        f"{where}: {len(row)} fields, expected {len(CSV_COLUMNS)}; fix or delete "
                        "that line"
                    )
                box = [row[index[c]] for c in BOX_COLUMNS]
                missing = any(cell.strip().lower() in MISSING for cell in box)
                if missing:
                    box = [0] * 4
                else:
                    box = [parse_int(v, c, where) for v, c in zip(box, BOX_COLUMNS, strict=True)]
                names.append(row[index["subDirectory_filePath"]].strip())
                values.append(box + [parse_int(row[index["expression"]], "expression", where)])
                no_box.append(missing)
                lines.append(reader.line_num)
    except UnicodeDecodeError:
        fix = "save the list as UTF-8 (or re-copy it from the AffectNet release)"
        raise not_utf8(path, fix) from None
    if not names:
        raise ValueError(f"{path} lists no images; re-copy it from the AffectNet release")
    table = np.asarray(values, dtype=np.int64)
    check_label_ids(table[:, 4], labels.AFFECTNET, str(path), lines)
    prefix = os.path.join(image_dir, "")  # plain string joins: pathlib costs ~2 s per 100k rows
    paths = [prefix + n for n in names]
    no_box_mask = np.asarray(no_box, dtype=bool)
    return Listing(paths, table[:, 4], table[:, :4], names, notes, no_box_mask, lines, str(path))


def column_index(row: list[str], path: Path) -> tuple[dict[str, int], bool]:
    """Position of each column the reader needs, and whether row is the header (its names in
    any case)."""
    cells = [cell.strip() for cell in row]
    lower = [cell.lower() for cell in cells]
    if CSV_COLUMNS[0].lower() in lower:
        missing = [c for c in NEEDED if c.lower() not in lower]
        if missing:
            raise ValueError(
                f"{path}: the header lacks the columns {missing}; expected {CSV_COLUMNS}"
            )
        return {c: lower.index(c.lower()) for c in NEEDED}, True
    if len(cells) == len(CSV_COLUMNS):
        return {c: CSV_COLUMNS.index(c) for c in NEEDED}, False
    refuse_other_separators(path, cells, "AffectNet lists are")
    raise ValueError(
        f"{path}: the first row is neither the header {','.join(CSV_COLUMNS)} nor a row of "
        f"{len(CSV_COLUMNS)} fields; this is not an AffectNet list"
    )


def read_npy_split(folder: Path, skip_bad: bool) -> Listing:
    """List folder/annotations/<i>_exp.npy with its folder/images/<i>.jpg, in numeric order of i."""
    fix = f"Expected the .npy release layout ({LAYOUTS[1]})"
    image_dir = require_dir(folder / "images", "AffectNet image folder", fix)
    annotation_dir = require_dir(folder / "annotations", "AffectNet annotation folder", fix)
    suffix = "_exp.npy"
    stems = sorted(
        (
            e.name[: -len(suffix)]
            for e in os.scandir(annotation_dir)
            if e.name.endswith(suffix) and not e.name.startswith(".")  # ._0_exp.npy: macOS
        ),
        key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s),
    )
    if not stems:
        raise FileNotFoundError(f"affectnet: {annotation_dir} holds no <i>_exp.npy files. {fix}")
    kept, expression, unreadable = [], [], []
    for stem in stems:
        try:
            expression.append(read_expression(annotation_dir / f"{stem}{suffix}"))
            kept.append(stem)
        except ValueError:
            if not skip_bad:
                raise
            unreadable.append(stem)
    notes = []
    if unreadable:
        first = annotation_dir / f"{unreadable[0]}{suffix}"
        count = len(unreadable)
        notes.append(f"affectnet {folder.name}: skipped {count} unreadable annotations ({first})")
    for stem, value in zip(kept, expression, strict=True):
        if value not in labels.AFFECTNET:
            raise ValueError(
                f"{annotation_dir / (stem + suffix)}: label id {value} is out of range; valid ids "
                f"are {sorted(labels.AFFECTNET)}. Check that this is an AffectNet annotation"
            )
    listed = set(stems)
    unlabeled = sum(
        1
        for e in os.scandir(image_dir)
        if Path(e.name).stem not in listed and is_image_file(Path(e.path))
    )
    if unlabeled:
        notes.append(
            f"affectnet {folder.name}: ignored {counted(unlabeled, 'image')} without an _exp.npy"
        )
    ids = [f"{folder.name}/images/{stem}.jpg" for stem in kept]
    paths = [str(image_dir / f"{stem}.jpg") for stem in kept]
    return Listing(paths, np.asarray(expression, dtype=np.int64), None, ids, notes)


def read_expression(path: Path) -> int:
    """The expression id in one <i>_exp.npy: an int or a string such as '3', of one element."""
    try:
        data = path.read_bytes()
        value = small_npy(data)
        if value is None:
            value = np.load(io.BytesIO(data), allow_pickle=False)
        value = np.asarray(value).reshape(-1)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(
            f"cannot read {path}: {error}. Re-copy it, or set data.skip_bad=true to skip it"
        ) from error
    if value.size != 1:
        raise ValueError(f"{path}: expected one expression id, found {value.size} values")
    item = value[0].item()
    text = item.decode() if isinstance(item, bytes) else str(item)
    return parse_int(text, "expression", str(path))


def small_npy(data: bytes) -> np.ndarray | None:
    """The array in a plain .npy file's bytes, or None when np.load must decide.

    np.load spends ~200 us per file parsing the header with ast.literal_eval; the .npy release
    has ~290k annotation files, so this reads the common case directly (about 10x faster).
    """
    if not data.startswith(b"\x93NUMPY") or len(data) < 10:
        return None
    width = 2 if data[6] == 1 else 4  # header length field: uint16 in v1, uint32 in v2/v3
    start = 8 + width
    end = start + int.from_bytes(data[8:start], "little")
    header = NPY_HEADER.search(data[start:end].decode("latin1"))
    if header is None:
        return None
    try:
        dtype = np.dtype(header["descr"])
    except TypeError:
        return None
    count = int(np.prod([int(n) for n in header["shape"].replace(",", " ").split()]))
    if dtype.hasobject or len(data) - end != count * dtype.itemsize:
        return None
    return np.frombuffer(data, dtype=dtype, count=count, offset=end)


def affectnet_keep(
    expression: np.ndarray,
    boxes: np.ndarray | None,
    num_classes: int,
    no_box: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """Which entries are faces of the classes in use: (keep (N,) bool, dropped count per reason).
    A row of a class in use is dropped without a box (no_box), with an empty box, or with a box
    that ends left of or above the image (no pixel of it in the image); each reason is counted."""
    canonical = labels.to_canonical(expression, labels.AFFECTNET, num_classes)
    keep = canonical != labels.DROP
    dropped = {
        reason: int(np.sum(~keep & (expression == value))) for value, reason in DROP_REASONS.items()
    }
    if boxes is not None:
        if no_box is not None:
            missing = keep & no_box
            dropped[NO_BOX] = int(missing.sum())
            keep &= ~missing
        # HSEmotion skips face_width < 0; a zero-sized box would crop to nothing, so it goes too.
        empty = keep & ((boxes[:, 2] <= 0) | (boxes[:, 3] <= 0))
        dropped[EMPTY_BOX] = int(empty.sum())
        keep &= ~empty
        outside = keep & ((boxes[:, 0] + boxes[:, 2] <= 0) | (boxes[:, 1] + boxes[:, 3] <= 0))
        dropped[OUTSIDE_BOX] = int(outside.sum())
        keep &= ~outside
    return keep, {reason: n for reason, n in dropped.items() if n}


def build_set(
    listing: Listing, num_classes: int, skip_bad: bool, split: str
) -> tuple[ImageSet, list[str]]:
    """Filter one split (classes, boxes, duplicates, missing files) into an ImageSet."""
    where = f"affectnet {split}"
    keep, dropped = affectnet_keep(listing.expression, listing.boxes, num_classes, listing.no_box)
    notes = [f"{where}: dropped {n} {reason}" for reason, n in dropped.items()]
    # training.csv lists one Happy file twice: 283,902 7-class rows give 283,901 images.
    idx = np.flatnonzero(keep)
    unique, more = drop_duplicates(
        [listing.ids[i] for i in idx],
        listing.expression[idx],
        listing.source or where,
        None if listing.lines is None else [listing.lines[i] for i in idx],
    )
    idx = idx[unique]
    exists, missing = check_listed_files([listing.paths[i] for i in idx], skip_bad, where)
    idx = idx[exists]
    if len(idx) == 0:
        raise ValueError(f"{where}: no image of the {num_classes} classes is left to use")
    image_set = ImageSet(
        images=[listing.paths[i] for i in idx],
        labels=labels.to_canonical(listing.expression[idx], labels.AFFECTNET, num_classes),
        ids=[listing.ids[i] for i in idx],
        boxes=None if listing.boxes is None else listing.boxes[idx],
    )
    summary = f"{where}: kept {len(idx)} of {len(keep)} listed faces"
    return image_set, [summary] + notes + more + missing


def drop_test_images(train: ImageSet, test: ImageSet) -> tuple[ImageSet, list[str]]:
    """Remove training entries that name a test image, so the test set stays unseen."""
    test_ids = set(test.ids)
    clean = np.array([i not in test_ids for i in train.ids], dtype=bool)
    if clean.all():
        return train, []
    leaked = int((~clean).sum())
    note = f"affectnet: dropped {leaked} training entries that are also test images"
    return train.subset(np.flatnonzero(clean)), [note]
