"""Shared checks for dataset readers: expected files and folders, listed files that are missing,
duplicate entries, out-of-range label ids, number fields and config options a reader cannot use.
Each failure names the file (and line) and the fix; with data.skip_bad the missing files are
dropped instead and counted in a note.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
_SHOWN = 3  # how many offending entries an error message lists


def require_file(path: str | Path, what: str, fix: str) -> Path:
    """The path if it is a file, else FileNotFoundError naming it, what it is, and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: expected the file {path}. {fix}")
    return path


def require_dir(path: str | Path, what: str, fix: str) -> Path:
    """The path if it is a folder, else FileNotFoundError naming it, what it is, and the fix."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: expected the folder {path}. {fix}")
    return path


def require_seven(cfg, name: str) -> None:
    """A dataset without a Contempt class and without layout variants (7-class mode only)."""
    if cfg.num_classes != 7:
        raise ValueError(f"{name} has no Contempt class; set data.num_classes=7")
    refuse_variant(cfg, name)


def refuse_variant(cfg, name: str) -> None:
    """Only AffectNet ships in more than one layout."""
    if cfg.variant:
        raise ValueError(f"{name}: data.variant is not used; leave it empty (got {cfg.variant!r})")


def parse_int(text: str, column: str, where: str) -> int:
    """An integer field ("3" or "3.0"); anything else names the place and the column."""
    try:
        return int(text)  # exact for any size, where float() would round past 2**53
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise ValueError(f"{where}: {column} is {text.strip()!r}, expected an integer")
    return int(number)


def parse_float(text: str, column: str, where: str) -> float:
    """A number field; anything else names the place and the column."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {column} is {text!r}, expected a number") from None


def check_listed_files(
    paths: Sequence[str | Path], skip_bad: bool, dataset: str
) -> tuple[np.ndarray, list[str]]:
    """Which listed files exist: (kept_mask (N,) bool, notes).

    All missing → the root is wrong (error). Some missing → error, or dropped with skip_bad.
    """
    exists = np.fromiter((Path(p).is_file() for p in paths), dtype=bool, count=len(paths))
    missing = [str(p) for p, ok in zip(paths, exists, strict=True) if not ok]
    if not missing:
        return exists, []
    if len(missing) == len(paths):
        raise FileNotFoundError(
            f"{dataset}: none of the {len(paths)} listed images exist (the first expected is "
            f"{missing[0]}). data.root is probably wrong: point it at the dataset folder as it "
            "ships (or pick data.variant to match the image folder you have)"
        )
    if not skip_bad:
        shown = ", ".join(missing[:_SHOWN])
        raise FileNotFoundError(
            f"{dataset}: {len(missing)} of {len(paths)} listed images are missing "
            f"(first: {shown}). Restore them or set data.skip_bad=true to skip them"
        )
    note = f"{dataset}: skipped {len(missing)} missing files (first: {missing[0]})"
    return exists, [note]


def drop_duplicates(
    names: Sequence[str], labels: Sequence[int] | None = None, source: str = ""
) -> tuple[np.ndarray, list[str]]:
    """Keep each name's first entry: (keep_mask (N,) bool, notes).

    With labels given, a name listed twice with different labels is an error (which one is right
    cannot be guessed).
    """
    keep = np.zeros(len(names), dtype=bool)
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            j = first[name]
            if labels is not None and int(labels[i]) != int(labels[j]):
                raise ValueError(
                    f"{source or 'label list'}: {name!r} is listed twice with different labels "
                    f"({labels[j]} on entry {j + 1}, {labels[i]} on entry {i + 1}); "
                    "remove the wrong entry"
                )
            continue
        first[name] = i
        keep[i] = True
    duplicates = len(names) - int(keep.sum())
    if duplicates == 0:
        return keep, []
    where = f" in {source}" if source else ""
    return keep, [f"dropped {duplicates} duplicate entries{where} (each kept once)"]


def check_label_ids(
    ids: Sequence[int] | np.ndarray,
    valid: Collection[int],
    source: str,
    lines: Sequence[int] | None = None,
) -> None:
    """Raise ValueError at the first id not in valid, naming the file, its 1-based line and the
    valid ids. lines: the line number of each id (default: entry i is on line i + 1)."""
    valid_set = {int(v) for v in valid}
    for i, value in enumerate(np.asarray(ids).tolist()):
        if int(value) not in valid_set:
            line = lines[i] if lines is not None else i + 1
            raise ValueError(
                f"{source}, line {line}: label id {value} is out of range; valid ids are "
                f"{sorted(valid_set)}. Check that this is the right label file for the dataset"
            )


def is_image_file(path: Path) -> bool:
    """A visible file with an image extension (hidden files such as .DS_Store are not)."""
    visible = not path.name.startswith(".")
    return visible and path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def list_images(folder: str | Path, recursive: bool = False) -> tuple[list[Path], int]:
    """(sorted image files in folder, number of other entries ignored). Hidden files and folders
    and files with other extensions are ignored; with recursive, subfolders are searched too."""
    folder = Path(folder)
    entries = folder.rglob("*") if recursive else folder.iterdir()
    images, ignored = [], 0
    for path in entries:
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts[:-1]):
            ignored += path.is_file()  # inside a hidden folder such as .ipynb_checkpoints
        elif is_image_file(path):
            images.append(path)
        elif path.is_file():
            ignored += 1
    return sorted(images), ignored
