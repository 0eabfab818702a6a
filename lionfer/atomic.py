"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Content goes to `<name>.tmp` beside the target, is flushed to disk, and replaces the target with
os.replace; on any failure the temporary file is removed and the target is left as it was. A
failed write is raised as an OSError that names the target (`naming`): a failed write() names no
file, and a message that names none cannot say which disk is full.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from lionfer.errors import InputError


def named(error: OSError, path: str | Path, *temporary: str | Path) -> OSError:
    """`error` naming `path` where it names no file or one of the `temporary` files written for
    it (the target is the file the user knows); lionfer's own errors are left as they are. An
    error without an errno (a library's own words, such as numpy's `N requested and M written`)
    keeps its words as the reason."""
    if isinstance(error, InputError):
        return error
    if error.filename is not None and str(error.filename) not in {str(t) for t in temporary}:
        return error
    if error.errno is None and type(error) is not OSError:
        return error
    reason = error.strerror or str(error)
    return OSError(error.errno, reason, str(path))


@contextlib.contextmanager
def naming(path: str | Path, *temporary: str | Path) -> Iterator[None]:
    """Raise an OSError from inside again naming `path` (see `named`)."""
    try:
        yield
    except OSError as error:
        renamed = named(error, path, *temporary)
        if renamed is error:
            raise
        raise renamed from error


@contextlib.contextmanager
def replacing(path: str | Path, tmp: str | Path | None = None) -> Iterator[Path]:
    """Yield a temporary path to write (`tmp`, by default `<name>.tmp` beside `path`); on success
    it replaces `path`, on failure it is removed. An OSError that names no file, or the
    temporary one, is raised again naming `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp") if tmp is None else Path(tmp)
    try:
        with naming(path, tmp):
            yield tmp
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def flush_to_disk(handle: IO) -> None:
    """Flush Python's buffer and the OS cache of an open file."""
    handle.flush()
    os.fsync(handle.fileno())


def sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        flush_to_disk(handle)


def csv_text(rows: Iterable, lineterminator: str = "\r\n") -> str:
    """Rows as CSV text. A field holding a line break of either kind (\\r or \\n) is quoted
    whatever the line end: the csv module quotes only the characters of its own line end, so
    with "\\n" lines a file name holding a carriage return split its row in two for every
    reader."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow(row)
        buffer.seek(buffer.tell() - 2)  # the row's \r\n, replaced by the line end asked for
        buffer.write(lineterminator)
        buffer.truncate()
    return buffer.getvalue()


def write_csv_atomic(path: str | Path, rows: Iterable, lineterminator: str = "\r\n") -> None:
    """Rows as a UTF-8 CSV file (the csv module's \\r\\n line ends by default; csv_text),
    written whole or not at all."""
    write_bytes_atomic(path, csv_text(rows, lineterminator).encode("utf-8"))


def write_text_atomic(path: str | Path, text: str) -> None:
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        flush_to_disk(handle)
