"""Shared checks for dataset readers: expected files and folders, listed files that are missing,
duplicate entries, out-of-range label ids, number fields and config options a reader cannot use,
and the image files a folder holds. Each failure names the file (and line) and the fix; with
data.skip_bad missing files are dropped instead and counted in a note. Copies of one image are
found in image_copies.py; every image a run will read is checked in image_check.py.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import features

from lionfer.data.images import RAW_SUFFIXES, path_text, raw_note
from lionfer.errors import ConfigError, InputError, MissingInputError
from lionfer.words import counted

# The image files read from folders, for training and for predict. HEIC/HEIF need the optional
# pillow-heif (registered in lionfer.data.images when installed); without it such a file is
# listed and fails with a message that says so. Icons and Netpbm files are read as any other
# image; JPEG 2000 where this Pillow has its decoder (OpenJPEG, in Pillow's wheels).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
    | {".avif", ".heic", ".heif", ".ico", ".ppm", ".pgm", ".pbm", ".pnm"}
    | ({".jp2", ".j2k"} if features.check_codec("jpg_2000") else set())
)
IMAGE_KINDS = ", ".join(sorted(suffix[1:] for suffix in IMAGE_EXTENSIONS))  # for messages
_SHOWN = 3  # how many offending entries an error message lists


def require_file(path: str | Path, what: str, fix: str) -> Path:
    """The path if it is a file, else MissingInputError naming it (path_text), what it is, and
    the fix."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{what} not found: expected the file {path_text(path)}. {fix}")
    return path


def require_dir(path: str | Path, what: str, fix: str) -> Path:
    """The path if it is a folder, else MissingInputError naming it (path_text), what it is, and
    the fix."""
    path = Path(path)
    if path.is_file():
        raise MissingInputError(f"{what}: {path_text(path)} is a file, not a folder. {fix}")
    if not path.is_dir():
        raise MissingInputError(f"{what} not found: expected the folder {path_text(path)}. {fix}")
    return path


def require_seven(cfg, name: str) -> None:
    """A dataset without a Contempt class and without layout variants (7-class mode only)."""
    if cfg.num_classes != 7:
        raise ConfigError(f"{name} has no Contempt class; set data.num_classes=7")
    refuse_variant(cfg, name)


def refuse_variant(cfg, name: str) -> None:
    """Only AffectNet ships in more than one layout."""
    if cfg.variant:
        raise ConfigError(f"{name}: data.variant is not used; leave it empty (got {cfg.variant!r})")


# what a download left packed is named with (an archive of the images or a list)
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".7z", ".rar", ".bz2")


def first_match(root: Path, patterns: Sequence[str]) -> Path | None:
    """The first path under root matching one of the glob patterns, tried in order (sorted
    within a pattern): where a listed file lies when it is not where it is expected."""
    for pattern in patterns:
        found = next(iter(sorted(Path(root).glob(pattern))), None)
        if found is not None:
            return found
    return None


def refuse_other_separators(path: Path, first_row: Sequence[str], what: str) -> None:
    """ValueError for a CSV whose first row (parsed at commas) is one cell holding semicolons or
    tabs: a spreadsheet saved it with another separator. what: "AffectNet lists are", ..."""
    if len(first_row) == 1 and any(d in first_row[0] for d in ";\t"):
        raise ValueError(
            f"{path}: the first row {first_row[0][:60]!r} holds no comma; {what} comma-separated "
            "(a spreadsheet may have saved it with semicolons or tabs): re-copy it from the release"
        )


def read_utf8(path: Path, fix: str) -> str:
    """The file as UTF-8 text (a byte order mark dropped); a file in another encoding (UTF-16
    from Windows Notepad, a legacy code page) raises not_utf8's error, whose fix is `fix`."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise not_utf8(path, fix, data) from None


def not_utf8(path: Path, fix: str, data: bytes | None = None) -> InputError:
    """The error for a file that is not UTF-8 text, naming the line and value of its first byte
    that is not (data: the file's bytes, read here where not given), then the fix."""
    data = Path(path).read_bytes() if data is None else data
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return InputError(
            f"{path}, line {line}: byte 0x{data[error.start]:02x} is not UTF-8 text; {fix}"
        )
    return InputError(f"{path} is not UTF-8 text; {fix}")


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
        raise InputError(
            f"{where}: {column} is {text.strip()!r}, expected an integer; fix or delete that line"
        )
    return int(number)


def parse_float(text: str, column: str, where: str) -> float:
    """A number field; anything else names the place and the column."""
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"{where}: {column} is {text!r}, expected a number; fix or delete that line"
        ) from None


def check_listed_files(
    paths: Sequence[str | Path], skip_bad: bool, dataset: str, fix: str = ""
) -> tuple[np.ndarray, list[str]]:
    """Which listed files exist: (kept_mask (N,) bool, notes).

    All missing → the root is wrong (error; fix: what to check, where the dataset's root is not
    the answer). Some missing → error, or dropped with skip_bad.
    """
    exists = np.fromiter((Path(p).is_file() for p in paths), dtype=bool, count=len(paths))
    missing = [str(p) for p, ok in zip(paths, exists, strict=True) if not ok]
    if not missing:
        return exists, []
    folders = [p for p in missing if Path(p).is_dir()]
    if folders and not skip_bad:  # not missing: a list names images, one a row
        raise MissingInputError(
            f"{dataset}: {len(folders)} listed "
            + (
                "entry is a folder, not an image file"
                if len(folders) == 1
                else "entries are folders, not image files"
            )
            + " (first: "
            f"{folders[0]}); list each image file on its own row, or set data.skip_bad=true "
            "to skip them"
        )
    if len(missing) == len(paths):
        raise MissingInputError(
            f"{dataset}: none of the {len(paths)} listed images exist (the first expected is "
            f"{missing[0]}). "
            + (
                fix
                or "data.root is probably wrong: point it at the dataset folder as it ships (or "
                "pick data.variant to match the image folder you have)"
            )
        )
    if not skip_bad:
        shown = ", ".join(missing[:_SHOWN])
        raise MissingInputError(
            f"{dataset}: {len(missing)} of {len(paths)} listed images "
            f"{'is' if len(missing) == 1 else 'are'} missing "
            f"(first: {shown}). Restore them or set data.skip_bad=true to skip them"
        )
    note = f"{dataset}: skipped {counted(len(missing), 'missing file')} (first: {missing[0]})"
    return exists, [note]


def drop_duplicates(
    names: Sequence[str],
    labels: Sequence[int] | None = None,
    source: str = "",
    lines: Sequence[int] | None = None,
    *,
    written: Sequence[object] | None = None,
    named: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Keep each name's first entry: (keep_mask (N,) bool, notes).

    With labels given, a name listed twice with different labels is an error (which one is right
    cannot be guessed), naming both places: lines[i] where the file's line numbers are given,
    else "entry i + 1", and both labels: written[i] where the labels as the file writes them are
    given (labels may be ids mapped from them), else labels[i]. named[i]: the entry's name as the
    file writes it, where names are normalised ('a.png' and './a.png' one file); the second is
    named too where it is written otherwise.
    """

    def place(i: int) -> str:
        return f"line {lines[i]}" if lines is not None else f"entry {i + 1}"

    def label(i: int) -> str:
        return str(written[i] if written is not None else labels[i])

    def alias(i: int, j: int) -> str:
        return f" as {named[i]!r}" if named is not None and named[i] != named[j] else ""

    keep = np.zeros(len(names), dtype=bool)
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            j = first[name]
            if labels is not None and int(labels[i]) != int(labels[j]):
                shown = named[j] if named is not None else name
                raise InputError(
                    f"{source or 'label list'}: {shown!r} is listed twice with different labels "
                    f"({label(j)} on {place(j)}, {label(i)}{alias(i, j)} on {place(i)}); "
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
    """Raise InputError at the first id not in valid, naming the file, its 1-based line and the
    valid ids. lines: the line number of each id (default: entry i is on line i + 1)."""
    valid_set = {int(v) for v in valid}
    for i, value in enumerate(np.asarray(ids).tolist()):
        if int(value) not in valid_set:
            line = lines[i] if lines is not None else i + 1
            raise InputError(
                f"{source}, line {line}: label id {value} is out of range; valid ids are "
                f"{sorted(valid_set)}. Check that this is the right label file for the dataset"
            )


def is_image_file(path: Path) -> bool:
    """A visible file with an image extension (hidden files such as .DS_Store are not). A link
    to a missing file counts, so that the image check names it where the image would otherwise
    vanish from the data without a word."""
    visible = not path.name.startswith(".")
    broken_link = path.is_symlink() and not path.exists()
    return visible and path.suffix.lower() in IMAGE_EXTENSIONS and (path.is_file() or broken_link)


def list_images(folder: str | Path, recursive: bool = False) -> tuple[list[Path], int]:
    """(sorted image files in folder, number of other entries ignored). Hidden files and folders
    and files with other extensions are ignored; with recursive, subfolders are searched too,
    symbolic links to folders included (each real folder once, so a link loop ends). An image
    whose path is not UTF-8 is refused (not_utf8_names)."""
    folder = Path(folder)
    entries = walk_files(folder) if recursive else folder.iterdir()
    images, ignored = [], 0
    for path in entries:
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts[:-1]):
            ignored += path.is_file()  # inside a hidden folder such as .ipynb_checkpoints
        elif is_image_file(path):
            images.append(path)
        elif path.is_file():
            ignored += 1
    not_utf8_names(images)
    return sorted(images), ignored


def not_utf8_names(paths: Sequence[Path]) -> None:
    """Refuse image files whose path is not UTF-8 (a Latin-1 name from an old zip, CD or Windows
    share, which Python holds with surrogate escapes): a run's files (relabels.csv, prepare's
    manifest.csv) could not name them."""
    bad = [p for p in paths if path_text(p) != str(p)]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise InputError(
            f"{path_text(bad[0])}{more}: the file name is not UTF-8 (a byte shown as \\xNN), "
            "which the run's files cannot hold; rename it in UTF-8 (`convmv -f latin1 -t utf8 -r "
            "--notest FOLDER` renames every such name below a folder)"
        )


def raw_photos(*folders: Path | None) -> str:
    """raw_note for the camera RAW photos the folders hold (searched recursively, hidden files
    and folders left out), which are no image files here."""
    count = sum(
        p.suffix.lower() in RAW_SUFFIXES and p.is_file() and is_visible(p, folder)
        for folder in folders
        if folder is not None
        for p in walk_files(folder)
    )
    return raw_note(count)


def is_visible(path: Path, root: Path) -> bool:
    """Whether path, below root, is neither a hidden file nor in a hidden folder."""
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def walk_files(folder: Path) -> Iterator[Path]:
    """Every entry under folder, following links to folders (Path.rglob does not before Python
    3.13, which left the images of a linked folder out without a word)."""
    seen = {os.path.realpath(folder)}
    for parent, folders, files in os.walk(folder, followlinks=True):
        for name in sorted(folders):
            real = os.path.realpath(os.path.join(parent, name))
            if real in seen:
                folders.remove(name)  # a loop, or a second link to a folder already listed
            seen.add(real)
        for name in files + folders:
            yield Path(parent, name)
