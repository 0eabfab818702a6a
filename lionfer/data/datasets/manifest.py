"""A CSV manifest of images: header `path,label` plus optional `split` (train | test | unlabeled),
`true_label` and a face box `x,y,w,h`. Labels are class names or canonical ids; an empty label (or
-1) marks an unlabeled image. This is also what `lionfer prepare` writes for its face cache.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lionfer import labels as L
from lionfer.data.base import FERData, ImageSet
from lionfer.data.checks import (
    IMAGE_EXTENSIONS,
    check_label_ids,
    check_listed_files,
    drop_duplicates,
    read_utf8,
    require_file,
)
from lionfer.data.datasets.folder import holdout_test, resolve_classes
from lionfer.errors import InputError

REQUIRED = ("path", "label")
BOX = ("x", "y", "w", "h")
SOURCE = "source"  # the photo a crop came from (`lionfer prepare`): read past, unnoted
KNOWN = REQUIRED + ("split", "true_label", SOURCE) + BOX
SPLITS = ("train", "test", "unlabeled")
# A label written as a number: "3", "+3", "3.0" (pandas writes "3.0" to a column with a gap)
NUMBER = re.compile(r"[+-]?(\d+)(?:\.(\d*))?")


@dataclass
class Row:
    line: int
    path: str
    label: str
    split: str
    true_label: str
    box: tuple[int, int, int, int] | None


def find_csv(root: str, label_file: str) -> Path:
    """cfg.root is the CSV itself, or a folder holding manifest.csv (or data.label_file)."""
    path = Path(root).expanduser()
    if path.is_dir():
        path = path / (label_file or "manifest.csv")
    return require_file(
        path,
        "image manifest",
        "data.root must be a CSV with header 'path,label[,split,true_label,x,y,w,h]' or a "
        "folder holding manifest.csv",
    )


def read_rows(path: Path) -> tuple[list[Row], list[str]]:
    """Rows of the manifest, checked field by field; errors name the file and line."""
    text = read_utf8(
        path,
        "save the manifest as UTF-8 (in Excel: 'CSV UTF-8'; in pandas: to_csv(..., "
        "encoding='utf-8'))",
    )
    delimiter = _delimiter(next((line for line in text.splitlines() if line.strip()), ""))
    with io.StringIO(text, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        # the first line that is not blank (blank lines are skipped, before the header too)
        first = next((fields for fields in reader if any(f.strip() for f in fields)), [])
        header, at = [h.strip().lower() for h in first], f"line {max(reader.line_num, 1)}"
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            looks = any(Path(h).suffix in IMAGE_EXTENSIONS for h in header)
            hint = "; it looks like a row: add the line 'path,label' above it" if looks else ""
            raise InputError(
                f"{path}, {at}: the header lacks {missing}; it must start with 'path,label' "
                f"(optional columns: split, true_label, x, y, w, h), got {header}{hint}"
            )
        has_box = [c in header for c in BOX]
        if any(has_box) and not all(has_box):
            raise InputError(f"{path}, {at}: a face box needs all four columns x, y, w, h")
        notes = [] if delimiter == "," else [f"manifest: read as separated by {delimiter!r}"]
        unknown = [c for c in header if c not in KNOWN]
        if unknown:
            notes.append(f"manifest: ignored the columns {unknown}")
        rows = []
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise InputError(
                    f"{path}, line {reader.line_num}: {len(fields)} fields but the header has "
                    f"{len(header)}; fix that line (quote paths that contain commas)"
                )
            rows.append(
                _row(
                    dict(zip(header, (f.strip() for f in fields), strict=True)),
                    reader.line_num,
                    path,
                    all(has_box),
                )
            )
    if not rows:
        raise InputError(f"{path} lists no images; add rows 'path,label'")
    return rows, notes


def _delimiter(header: str) -> str:
    """ "," unless the header line holds no comma but a semicolon (spreadsheets in locales with a
    decimal comma save CSV so) or a tab."""
    if "," in header:
        return ","
    return next((d for d in (";", "\t") if d in header), ",")


def _label_text(text: str, column: str, where: str) -> str:
    """A label as written, a number in canonical form ("3.0" and "+3" -> "3"); a number that is
    no whole class id is an error."""
    number = NUMBER.fullmatch(text)
    if not number:
        return text
    if number.group(2) and number.group(2).strip("0"):
        raise InputError(
            f"{where}: {column} {text!r} is a number but not a class id; write a class name or "
            "a canonical id 0-7 (-1 or empty: unlabeled)"
        )
    return str(int(text.partition(".")[0]))


def _row(values: dict[str, str], line: int, path: Path, has_box: bool) -> Row:
    where = f"{path}, line {line}"
    if not values["path"]:
        raise InputError(f"{where}: empty path")
    split = values.get("split", "").lower() or "train"
    if split not in SPLITS:
        raise InputError(f"{where}: split {split!r} must be one of {', '.join(SPLITS)}")
    box = None
    if has_box and not any(values[c] for c in BOX):
        box = (0, 0, 0, 0)  # no box on this row: the whole image
    elif has_box:
        try:
            box = tuple(int(values[c]) for c in BOX)
        except ValueError:
            raise InputError(
                f"{where}: x, y, w, h must be integers (pixels), all four or none (the whole image)"
            ) from None
        if box[2] <= 0 or box[3] <= 0:
            raise InputError(f"{where}: the face box width and height must be positive")
    label = _label_text(values["label"], "label", where)
    label = "" if label == str(L.DROP) else label  # -1: unlabeled
    if split == "test" and not label:
        raise InputError(f"{where}: a test image needs a label (it is the reference)")
    true_label = _label_text(values.get("true_label", ""), "true_label", where)
    return Row(line, values["path"], label, split, true_label, box)


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def label_space(rows: list[Row], class_map: dict, num_classes: int, source: Path):
    """(class names, function label text -> class id, notes), from the labels that occur.
    Numbers are canonical ids, unless class_map has numbers among its keys: then it maps them."""
    texts = {r.label for r in rows} | {r.true_label for r in rows}
    mapped = any(_is_int(str(key).strip()) for key in class_map)  # numbers are the file's own
    names = sorted(t for t in texts if t not in ("", "-1") and (mapped or not _is_int(t)))
    numbered = [
        (int(t), r.line)
        for r in rows
        for t in (r.label, r.true_label)
        if _is_int(t) and (not mapped or t == "-1")
    ]
    ids = [i for i, _ in numbered]
    check_label_ids(ids, range(-1, 8), str(source), [line for _, line in numbered])
    places = {}
    for row in reversed(rows):  # each name's first line
        places.update({t: f"{source}, line {row.line}" for t in (row.label, row.true_label)})
    class_names, mapping, notes = resolve_classes(names, class_map, num_classes, places)
    generic = class_names not in (L.CLASS_NAMES, L.CLASS_NAMES_8)
    if generic and len(ids):
        line, text = next(
            (r.line, t)
            for r in rows
            for t in (r.label, r.true_label)
            if t in mapping and t.strip().lower() not in L.NAME_ALIASES
        )
        raise InputError(
            f"{source}, line {line}: label {text!r} is neither a FER class name nor a canonical "
            "id, while other rows use canonical ids; give a data.class_map"
        )
    # lionfer prepare's own manifest (prepare.json beside it) writes canonical ids: no guess
    prepared = (source.parent / "prepare.json").is_file()
    if not generic and L.CONTEMPT in ids and num_classes != 8 and not prepared:
        notes.append(_contempt_id(numbered, source))
    if not generic and (L.CONTEMPT in ids or num_classes == 8):
        class_names = L.CLASS_NAMES_8

    def to_id(text: str) -> int:
        if not text or text == "-1":
            return -1
        return mapping[text] if text in mapping else int(text)

    return class_names, to_id, notes


def _contempt_id(numbered: list[tuple[int, int]], source: Path) -> str:
    """The note for label id 7 (Contempt) where data.num_classes is 7; ids 1-7 without a 0
    (RAF-DB's, 1 Surprise ... 7 Neutral) are an error: read as canonical ids, every label would
    be the next class."""
    sevens = [line for i, line in numbered if i == L.CONTEMPT]
    if not any(i == 0 for i, _ in numbered):
        raise InputError(
            f"{source}, line {sevens[0]}: label id 7 is Contempt in lionfer's canonical ids (0 "
            "Surprise ... 6 Neutral, 7 Contempt), yet no label is 0: the ids look 1-based, as "
            "RAF-DB numbers its classes (1 Surprise ... 7 Neutral), which would make every label "
            "the next class. Map them with 'data.class_map={1=0,2=1,3=2,4=3,5=4,6=5,7=6}' (id "
            "minus 1), or set data.num_classes=8 if they are canonical ids and 7 is Contempt"
        )
    return (
        f"manifest: {len(sevens)} labels are id 7, Contempt in the canonical ids 0-7 (first on "
        f"line {sevens[0]}), so the data has 8 classes: set data.num_classes=8 to confirm, "
        "correct those labels if 7 is a mistake, or map the ids with data.class_map if the file "
        "numbers its classes otherwise"
    )


def load(cfg, seed: int) -> FERData:
    """Read the manifest at cfg.root; without test rows, 20% of labeled train is held out."""
    source = find_csv(cfg.root, cfg.label_file)
    rows, notes = read_rows(source)
    class_names, to_id, label_notes = label_space(rows, cfg.class_map, cfg.num_classes, source)
    notes += label_notes
    paths = resolve_paths(rows, source, cfg.allow_outside_root)
    files = [str(path) for path in paths]  # 'a.png', './a.png' and 'x/../a.png' are one file
    _check_split_conflicts(rows, files, source)
    labels = np.array([to_id(r.label) for r in rows], dtype=np.int64)
    keep, kept_notes = _rows_kept(rows, paths, files, labels, source, cfg.skip_bad)
    notes += kept_notes
    split = np.array([r.split for r in rows])
    is_train = keep & (split == "train") & (labels >= 0)
    is_unlabeled = keep & ((split == "unlabeled") | ((split == "train") & (labels < 0)))
    is_test = keep & (split == "test")
    truth = _truth(rows, to_id, labels, is_unlabeled)
    has_truth = any(r.true_label for r in rows)
    if not is_train.any():
        raise InputError(
            f"{source} has no labeled training images; give some rows a label (a train row "
            "with an empty label, or -1, is unlabeled)"
        )
    part = _ImageSetMaker(rows, paths, labels, truth, has_truth)
    train = part.make(is_train)
    if is_test.any():
        test = part.make(is_test, test=True)
    else:
        train, test, note = holdout_test(train, cfg.data_seed)
        notes.append(note)
    unlabeled = part.make(is_unlabeled, unlabeled=True) if is_unlabeled.any() else None
    return FERData(
        name="manifest",
        class_names=class_names,
        train=train,
        test=test,
        unlabeled=unlabeled,
        split_rule="balanced",
        notes=notes,
    )


def _rows_kept(
    rows: list[Row],
    paths: list[Path],
    files: list[str],
    labels: np.ndarray,
    source: Path,
    skip_bad: bool,
) -> tuple[np.ndarray, list[str]]:
    """(which rows load keeps, notes on those it leaves out): a second row of one image, a
    missing or unreadable file (skip_bad) and a label whose class data.class_map drops."""
    keep, dup_notes = drop_duplicates(
        files,
        labels,
        str(source),
        [r.line for r in rows],
        written=[_shown(r.label) for r in rows],  # 'happy' and '3' are one class
        named=[r.path for r in rows],
    )
    exists, missing_notes = check_listed_files(
        paths,
        skip_bad,
        "manifest",
        f"Image paths are read relative to the manifest's folder {source.parent}: keep the "
        "manifest beside the images it lists",
    )
    notes = dup_notes + missing_notes
    keep &= exists
    dropped = keep & np.array([bool(r.label) for r in rows]) & (labels == L.DROP)
    if dropped.any():
        notes.append(f"manifest: dropped {int(dropped.sum())} rows whose class maps to -1")
        keep &= ~dropped
    return keep, notes


def _truth(rows: list[Row], to_id, labels: np.ndarray, is_unlabeled: np.ndarray) -> np.ndarray:
    """Each row's true class (-1 unknown). A row's truth is its true_label. An unlabeled row's
    label, if one is given, survives only as its truth (diagnostics). A labeled row without a
    true_label has no known truth, even where other rows give theirs (a prepared cache gives its
    test rows'): its label is what is judged, not the truth."""
    given_truth = np.array([to_id(r.true_label) for r in rows], dtype=np.int64)
    hidden_label = np.where(is_unlabeled & (labels >= 0), labels, -1)
    return np.where(given_truth >= 0, given_truth, hidden_label)


def resolve_paths(rows: list[Row], source: Path, allow_outside: bool) -> list[Path]:
    """Each row's image path, relative to the manifest's folder (absolute paths stand alone).
    A path that leaves that folder ('../../x', '/elsewhere/x') is refused unless allow_outside:
    a manifest from somewhere else must not make lionfer read arbitrary files."""
    folder = Path(os.path.abspath(source.parent))
    paths = [Path(os.path.normpath(folder / _local(row.path, folder))) for row in rows]
    if allow_outside:
        return paths
    outside = [
        row for row, path in zip(rows, paths, strict=True) if not path.is_relative_to(folder)
    ]
    if outside:
        first = outside[0]
        raise InputError(
            f"{source}, line {first.line}: the image path {first.path!r} points outside the "
            f"manifest's folder {folder} ({len(outside)} "
            f"{'row does' if len(outside) == 1 else 'rows do'}). Paths must stay inside it: "
            "move the images (or the manifest) so they do, or set data.allow_outside_root=true "
            "if you trust this manifest"
        )
    return paths


def _local(path: str, folder: Path) -> str:
    """A path written on Windows ('img\\a.png') read where '/' separates folders, unless a file
    of that very name exists (a backslash is a legal character of a POSIX file name)."""
    if "\\" not in path or os.sep == "\\" or (folder / path).exists():
        return path
    return path.replace("\\", "/")


def _check_split_conflicts(rows: list[Row], files: list[str], source: Path) -> None:
    """An image listed in two splits (files: each row's resolved path) would leak test images
    into training."""
    first: dict[str, Row] = {}
    for row, file in zip(rows, files, strict=True):
        seen = first.setdefault(file, row)
        if seen.split != row.split:
            raise InputError(
                f"{source}: {row.path!r} is listed as {seen.split} (line {seen.line}) and as "
                f"{row.split} (line {row.line}); keep one of the two rows"
            )


def _shown(label: str) -> str:
    return repr(label) if label else "no label"


@dataclass
class _ImageSetMaker:
    rows: list[Row]
    paths: list[Path]
    labels: np.ndarray
    truth: np.ndarray
    has_truth: bool

    def make(self, mask: np.ndarray, test: bool = False, unlabeled: bool = False) -> ImageSet:
        index = np.flatnonzero(mask)
        labels = self.labels[index]
        if test:
            true_labels = labels.copy()  # test labels are the reference
        elif (unlabeled or self.has_truth) and (self.truth[index] >= 0).any():
            true_labels = self.truth[index]
        else:
            true_labels = None
        boxes = None
        if self.rows and self.rows[0].box is not None:
            boxes = np.array([self.rows[i].box for i in index], dtype=np.int64).reshape(-1, 4)
        return ImageSet(
            images=[str(self.paths[i]) for i in index],
            labels=np.full(len(index), -1) if unlabeled else labels,
            true_labels=true_labels,
            ids=[self.rows[i].path for i in index],
            boxes=boxes,
        )
