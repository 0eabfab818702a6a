"""FER2013 and FERPlus readers: 48x48 grayscale faces stored as pixel strings in fer2013.csv, held
in memory. Usage Training is train, PrivateTest is test; PublicTest (the validation set) is left
out of both. FERPlus relabels the same rows by ten annotators' votes in fer2013new.csv, reduced to
one label by the official majority rule (ferplus_majority).

`fer2013` with data.truth=ferplus is a benchmark of label noise with known truth: FER2013's own
labels are the given labels and the FERPlus majority is the truth (ferplus_truth); the test set is
labelled by the truth.
"""

from __future__ import annotations

import csv
import glob
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lionfer import labels
from lionfer.data.base import FERData, ImageSet
from lionfer.data.checks import (
    ARCHIVE_SUFFIXES,
    check_label_ids,
    drop_duplicates,
    not_utf8,
    parse_int,
    refuse_other_separators,
    refuse_variant,
    require_file,
    require_seven,
)
from lionfer.errors import InputError

SIDE = 48
FER_COLUMNS = ("emotion", "pixels", "Usage")
USAGES = ("Training", "PublicTest", "PrivateTest")
USAGE_OF = {usage.lower(): usage for usage in USAGES}  # Usage values are read in any case
# Real fer2013.csv: 35,887 rows = Training 28,709 + PublicTest 3,589 + PrivateTest 3,589.
SPLIT_OF_USAGE = {"Training": "train", "PrivateTest": "test"}
VOTE_COLUMNS = labels.FERPLUS_COLUMNS + ("unknown", "NF")
UNKNOWN, NOT_FACE = 8, 9  # vote columns that are not expressions
FER_FIX = (
    "Set data.root to the folder holding fer2013.csv (Kaggle 'Challenges in Representation "
    "Learning: Facial Expression Recognition Challenge'), or data.label_file to the CSV"
)
TRUTH_FIX = (
    "data.truth=ferplus reads FERPlus's fer2013new.csv (github.com/microsoft/FERPlus), "
    "row-aligned with fer2013.csv: put it beside fer2013.csv, or set "
    "data.truth= (empty) to train on FER2013 without truth"
)
FERPLUS_FIX = (
    "Set data.root to a folder holding fer2013.csv and FERPlus's fer2013new.csv "
    "(github.com/microsoft/FERPlus), or data.label_file to fer2013new.csv"
)
FER_COLUMNS_FIX = (
    "The Kaggle competition's train.csv and test.csv have no Usage column (test.csv no emotion "
    "either): use fer2013.csv, or the competition's icml_face_data.csv (emotion, Usage, pixels)"
)
ARCHIVES = {b"\x1f\x8b": "gzip", b"PK\x03\x04": "zip", b"7z\xbc\xaf": "7z", b"BZh": "bzip2"}


@dataclass
class FerRows:
    """The readable rows of fer2013.csv."""

    emotion: np.ndarray  # (N,) FER2013 emotion ids 0..6
    pixels: np.ndarray  # (N, 48, 48) uint8 grayscale
    usage: np.ndarray  # (N,) str: Training | PublicTest | PrivateTest
    rows: np.ndarray  # (N,) 0-based data-row index (FERPlus aligns on it)
    total: int  # data rows in the file, skipped ones included
    notes: list[str]


def load_fer2013(cfg, seed: int) -> FERData:
    """Read fer2013.csv (or cfg.label_file) under cfg.root; 7 classes."""
    require_seven(cfg, "fer2013")
    path = resolve(cfg, "fer2013", cfg.label_file or "fer2013.csv")
    require_csv(path, "FER2013 CSV", FER_FIX)
    fer = read_fer_csv(path, cfg.skip_bad)
    canonical = labels.to_canonical(fer.emotion, labels.FER2013)
    truth = error_types = None
    truth_notes = []
    if cfg.truth == "ferplus":
        votes_path = path.parent / "fer2013new.csv"
        require_csv(votes_path, "FERPlus votes", TRUTH_FIX)
        plus = read_ferplus_votes(votes_path)
        check_aligned(fer, plus, path, votes_path)
        truth, error_types = ferplus_truth(
            plus.image_names[fer.rows], plus.votes[fer.rows], canonical
        )
        truth_notes = truth_summary(fer.usage, truth, error_types)
    train, test, notes = split_by_usage(fer, canonical, "fer2013", truth, error_types)
    return FERData(
        name="fer2013",
        class_names=labels.class_names(7),
        train=train,
        test=test,
        split_rule="balanced",
        notes=fer.notes + truth_notes + notes,
    )


def load_ferplus(cfg, seed: int) -> FERData:
    """Read fer2013.csv and fer2013new.csv (or cfg.label_file) under cfg.root."""
    names = labels.class_names(cfg.num_classes)
    refuse_variant(cfg, "ferplus")
    fer_path = resolve(cfg, "ferplus", "fer2013.csv")
    require_csv(fer_path, "FER2013 CSV", FERPLUS_FIX)
    votes_path = resolve(cfg, "ferplus", cfg.label_file or "fer2013new.csv")
    require_csv(votes_path, "FERPlus votes", FERPLUS_FIX)
    fer = read_fer_csv(fer_path, cfg.skip_bad)
    plus = read_ferplus_votes(votes_path)
    check_aligned(fer, plus, fer_path, votes_path)
    image_names, votes = plus.image_names[fer.rows], plus.votes[fer.rows]
    keep, winner, dropped = ferplus_keep(image_names, votes, cfg.num_classes)
    unique, duplicate_notes = drop_duplicates(image_names[keep].tolist(), winner[keep], "ferplus")
    keep[np.flatnonzero(keep)[~unique]] = False
    notes = [f"ferplus: kept {int(keep.sum())} of {len(keep)} rows (official majority vote)"]
    notes += [f"ferplus: dropped {n} {reason}" for reason, n in dropped.items() if n]
    canonical = np.full(len(keep), labels.DROP, dtype=np.int64)
    canonical[keep] = labels.to_canonical(winner[keep], labels.FERPLUS, cfg.num_classes)
    train, test, split_notes = split_by_usage(fer, canonical, "ferplus")
    return FERData(
        name="ferplus",
        class_names=names,
        train=train,
        test=test,
        split_rule="balanced",
        notes=fer.notes + notes + duplicate_notes + split_notes,
    )


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """The official FERPlus majority label per row: (N, 10) votes -> (N,) column index, or -1.

    Votes of 1 or fewer are zeroed as outliers; the top column wins only with strictly more than
    half of the remaining votes (so ties and exact halves give -1). The winner may be 8 (unknown)
    or 9 (NF); the caller drops those.
    """
    votes = np.asarray(votes, dtype=np.float64)
    if votes.ndim != 2 or votes.shape[1] != len(VOTE_COLUMNS):
        raise ValueError(f"votes must be (N, {len(VOTE_COLUMNS)}), got {votes.shape}")
    kept = np.where(votes > 1, votes, 0.0)
    top = kept.max(axis=1)
    return np.where(top > 0.5 * kept.sum(axis=1), kept.argmax(axis=1), -1)


def ferplus_truth(
    image_names: np.ndarray, votes: np.ndarray, given: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The FERPlus truth of FER2013 rows and the error type of their given labels.

    image_names (N,), votes (N, 10) and given (N,) canonical FER2013 labels, row-aligned.
    truth (N,): the canonical class of the official majority (ferplus_majority: votes of 1 or
    fewer zeroed, the top column wins with strictly more than half of the rest), or -1 where
    FERPlus dropped the image (no image name) or the majority is missing (a tie or no column above
    half), unknown, NF or Contempt (FER2013 has seven classes: Contempt is dropped, as in the
    7-class FERPlus mode).
    error_types (N,) int8, codes of labels.ERROR_TYPES: "none" where given == truth; else, by the
    raw votes the given label's column got, "slip" for 0 or 1 (the outliers the majority rule
    discards) and "ambiguity" for 2 or more; -1 where the truth is unknown.
    """
    keep, winner, _ = ferplus_keep(np.asarray(image_names), votes, 7)
    truth = np.full(len(keep), labels.DROP, dtype=np.int64)
    truth[keep] = labels.to_canonical(winner[keep], labels.FERPLUS, 7)
    given = np.asarray(given, dtype=np.int64)
    column = labels.from_canonical(given, labels.FERPLUS)
    given_votes = np.asarray(votes)[np.arange(len(given)), column]
    none, slip, ambiguity = (labels.ERROR_TYPES.index(t) for t in ("none", "slip", "ambiguity"))
    error = np.where(given_votes >= 2, ambiguity, slip)
    error = np.where(given == truth, none, error)
    error = np.where(keep, error, -1).astype(np.int8)
    return truth, error


def truth_summary(usage: np.ndarray, truth: np.ndarray, error_types: np.ndarray) -> list[str]:
    """Notes on the FERPlus truth of the Training rows and on the test rows it labels."""
    train = usage == "Training"
    known = train & (truth != labels.DROP)
    codes = error_types[known]
    counts = {name: int((codes == code).sum()) for code, name in enumerate(labels.ERROR_TYPES)}
    wrong = counts["slip"] + counts["ambiguity"]
    test_rows = usage == "PrivateTest"
    return [
        f"fer2013: FERPlus majority truth for {int(known.sum())} of {int(train.sum())} training "
        f"images (the rest keep an unknown truth); {wrong} of their FER2013 labels differ from it "
        f"({counts['slip']} slips: 0-1 votes for the given label; {counts['ambiguity']} "
        "ambiguous: 2 or more)",
        f"fer2013: the test set is labelled by the FERPlus majority; "
        f"{int((test_rows & (truth == labels.DROP)).sum())} PrivateTest rows without one are left "
        "out",
    ]


def ferplus_keep(
    image_names: np.ndarray, votes: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(keep (N,) bool, winning column (N,), dropped count per reason) for FERPlus rows."""
    winner = ferplus_majority(votes)
    no_name = np.array([not name for name in image_names.tolist()], dtype=bool)
    reasons = {
        "rows without an image name (dropped by FERPlus)": no_name,
        "rows without a majority": ~no_name & (winner == -1),
        "rows whose majority is unknown": ~no_name & (winner == UNKNOWN),
        "rows whose majority is NF (not a face)": ~no_name & (winner == NOT_FACE),
    }
    if num_classes == 7:
        reasons["Contempt rows (7-class mode)"] = ~no_name & (winner == labels.CONTEMPT)
    keep = ~np.logical_or.reduce(list(reasons.values()))
    return keep, winner, {reason: int(mask.sum()) for reason, mask in reasons.items()}


def read_fer_csv(path: Path, skip_bad: bool) -> FerRows:
    """Parse fer2013.csv; a row with a wrong pixel string raises (or is skipped with skip_bad)."""
    emotion, usage, rows, lines, images, bad_lines = [], [], [], [], [], []
    total = 0
    for row, (line, fields) in enumerate(csv_records(path, FER_COLUMNS, FER_COLUMNS_FIX)):
        total = row + 1
        where = f"{path}, line {line}"
        usage_name = USAGE_OF.get(fields["Usage"].lower())
        if usage_name is None:
            raise ValueError(
                f"{where}: Usage is {fields['Usage']!r}, expected one of {USAGES}; fix that line"
            )
        value = parse_int(fields["emotion"], "emotion", where)
        pixels = parse_pixels(fields["pixels"])
        if pixels is None:
            if not skip_bad:
                raise ValueError(
                    f"{where}: pixels must be {SIDE * SIDE} integers in 0..255 separated by "
                    "spaces. Repair the row, or set data.skip_bad=true to skip it"
                )
            bad_lines.append(line)
            continue
        emotion.append(value)
        usage.append(usage_name)
        rows.append(row)
        lines.append(line)
        images.append(pixels)
    if not images:
        raise ValueError(f"{path} holds no usable rows; re-copy fer2013.csv")
    check_label_ids(emotion, labels.FER2013, str(path), lines)
    notes = []
    if bad_lines:
        notes.append(
            f"fer2013.csv: skipped {len(bad_lines)} rows with bad pixels (first: line "
            f"{bad_lines[0]})"
        )
    return FerRows(
        emotion=np.asarray(emotion, dtype=np.int64),
        pixels=np.stack(images),
        usage=np.asarray(usage),
        rows=np.asarray(rows, dtype=np.int64),
        total=total,
        notes=notes,
    )


def parse_pixels(text: str) -> np.ndarray | None:
    """48x48 uint8 from a string of 2,304 space-separated values, or None if it is not one."""
    try:
        # Older NumPy only warns on unparsable text (and stops reading); newer raises.
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        return None
    if values.size != SIDE * SIDE or values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(SIDE, SIDE)


@dataclass
class FerPlusVotes:
    """The rows of fer2013new.csv."""

    image_names: np.ndarray  # (N,) str, empty where FERPlus dropped the image
    usage: np.ndarray  # (N,) str
    votes: np.ndarray  # (N, 10) float: 8 emotions, unknown, NF
    lines: np.ndarray  # (N,) line number in the file


def read_ferplus_votes(path: Path) -> FerPlusVotes:
    """Parse fer2013new.csv; vote counts must be non-negative integers."""
    names, usage, votes, lines = [], [], [], []
    for line, fields in csv_records(path, ("Usage", "Image name") + VOTE_COLUMNS):
        where = f"{path}, line {line}"
        row = [parse_int(fields[c], c, where) for c in VOTE_COLUMNS]
        if min(row) < 0:
            raise ValueError(f"{where}: a vote count is negative ({row})")
        names.append(fields["Image name"])
        usage.append(USAGE_OF.get(fields["Usage"].lower(), fields["Usage"]))
        votes.append(row)
        lines.append(line)
    if not names:
        raise ValueError(f"{path} holds no rows; re-copy fer2013new.csv from FERPlus")
    return FerPlusVotes(
        np.asarray(names), np.asarray(usage), np.asarray(votes, dtype=np.float64), np.asarray(lines)
    )


def check_aligned(fer: FerRows, plus: FerPlusVotes, fer_path: Path, votes_path: Path) -> None:
    """fer2013new.csv must match fer2013.csv row by row: same count, same Usage, ferNNNNNNN.png."""
    if len(plus.usage) != fer.total:
        raise ValueError(
            f"{votes_path} has {len(plus.usage)} rows but {fer_path} has {fer.total}; FERPlus "
            "labels are row-aligned with fer2013.csv, so use the matching copies"
        )
    for row in fer.rows.tolist():
        number = re.fullmatch(r"fer(\d+)\.png", str(plus.image_names[row]))
        if number is not None and int(number.group(1)) != row:
            raise ValueError(
                f"{votes_path}, line {plus.lines[row]}: image {plus.image_names[row]} is on data "
                f"row {row}; the file is not row-aligned with {fer_path}"
            )
    mismatch = np.flatnonzero(plus.usage[fer.rows] != fer.usage)
    if len(mismatch):
        row = int(fer.rows[mismatch[0]])
        theirs, ours = str(plus.usage[row]), str(fer.usage[mismatch[0]])
        raise ValueError(
            f"{votes_path}, line {plus.lines[row]}: Usage {theirs!r} but {fer_path} says "
            f"{ours!r}; the files are not row-aligned"
        )


def split_by_usage(
    fer: FerRows,
    canonical: np.ndarray,
    name: str,
    truth: np.ndarray | None = None,
    error_types: np.ndarray | None = None,
) -> tuple[ImageSet, ImageSet, list[str]]:
    """Training rows -> train, PrivateTest -> test (DROP labels left out); PublicTest is noted.

    With truth (row-aligned with fer, -1 unknown): train images carry it as their true labels,
    with their error types, and the test set is labelled by it (rows without one left out)."""
    parts = {}
    for usage, split in SPLIT_OF_USAGE.items():
        given = truth if truth is not None and split == "test" else canonical
        idx = np.flatnonzero((fer.usage == usage) & (given != labels.DROP))
        if len(idx) == 0:
            raise ValueError(f"{name}: no usable {usage} rows; re-copy the full CSV")
        gray = fer.pixels[idx]
        parts[split] = ImageSet(
            images=np.repeat(gray[..., None], 3, axis=-1),  # (n, 48, 48, 3)
            labels=given[idx],
            true_labels=None if truth is None else truth[idx],
            ids=[f"fer{row:07d}.png" for row in fer.rows[idx].tolist()],
            error_types=None if error_types is None else error_types[idx],
        )
    public = int(((fer.usage == "PublicTest") & (canonical != labels.DROP)).sum())
    note = (
        f"{name}: {public} PublicTest rows (the validation set) are in neither train nor test; "
        "FERData has no validation field yet"
    )
    return parts["train"], parts["test"], [note]


def csv_records(
    path: Path, columns: tuple[str, ...], fix: str = ""
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, {column: stripped text}) per data row of a CSV with a header row, whose
    column names match in any case. fix: said after the columns a header lacks."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = [cell.strip() for cell in next(reader, [])]
            if not header:
                raise ValueError(f"{path} is empty; expected a header row {','.join(columns)}")
            refuse_other_separators(path, header, "the file must be")
            lower = [cell.lower() for cell in header]
            index = {
                c: header.index(c) if c in header else lower.index(c.lower())
                for c in columns
                if c.lower() in lower
            }
            missing = [c for c in columns if c not in index]
            if missing:
                raise ValueError(
                    f"{path}: the header {[cell[:24] for cell in header[:12]]} lacks the "
                    f"columns {missing}; expected {','.join(columns)}" + (f". {fix}" if fix else "")
                )
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise ValueError(
                        f"{path}, line {reader.line_num}: {len(row)} fields, expected "
                        f"{len(header)}; fix or delete that line"
                    )
                yield reader.line_num, {c: row[i].strip() for c, i in index.items()}
    except UnicodeDecodeError:
        raise not_text(path) from None


def not_text(path: Path) -> InputError:
    """The error for a CSV that is not UTF-8 text: an archive left packed (named by its first
    bytes, whatever the file's name), or the line of the first byte that is not UTF-8."""
    with path.open("rb") as file:
        head = file.read(8)
    kind = next((kind for magic, kind in ARCHIVES.items() if head.startswith(magic)), None)
    if kind:
        return InputError(
            f"{path} is a {kind} archive, not CSV text: unpack it and point data.root (or "
            "data.label_file) at the CSV it holds"
        )
    return not_utf8(path, "save the file as UTF-8 (or re-copy it from the release)")


def require_csv(path: Path, what: str, fix: str) -> Path:
    """require_file, whose error adds csv_hint's sentence on where the file may be instead."""
    return path if path.is_file() else require_file(path, what, fix + csv_hint(path))


def csv_hint(path: Path) -> str:
    """Where a missing CSV may be instead, as a sentence to add to the error, or "": in a folder
    beside it (the Kaggle fer2013.tar.gz unpacks into fer2013/; a clone of FERPlus holds
    fer2013new.csv), packed in an archive beside it, or, for fer2013.csv, as the Kaggle
    competition's icml_face_data.csv."""
    folder = path.parent
    if not folder.is_dir():
        return ""
    below = sorted(folder.glob(f"*/{glob.escape(path.name)}"))
    if below and path.name == "fer2013.csv":
        return f". Found {below[0]}: set data.root={below[0].parent}"
    if below:
        return f". Found {below[0]}: move it into {folder}"
    stem = path.name.split(".")[0]
    packed = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and p.name.startswith(stem) and p.suffix.lower() in ARCHIVE_SUFFIXES
    )
    if packed:
        return f". Found {packed[0]} in {folder}: unpack it (tar -xzf for .tar.gz, gunzip for .gz)"
    if path.name == "fer2013.csv" and (folder / "icml_face_data.csv").is_file():
        return (
            f". {folder} holds the Kaggle competition's icml_face_data.csv (emotion, Usage, "
            "pixels): set data.label_file=icml_face_data.csv"
        )
    return ""


def resolve(cfg, name: str, relative: str) -> Path:
    """A file under cfg.root (an absolute relative path stands alone)."""
    if not cfg.root and not Path(relative).is_absolute():
        raise ValueError(f"{name}: data.root is empty; set it to the dataset folder")
    return Path(cfg.root) / relative
