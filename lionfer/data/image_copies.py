"""Images that are one image: one file by several paths (a link, a folder given twice),
byte-identical files, or equal in-memory arrays. What leaves unlabeled copies of labeled images
out, and finds images that appear twice. Files are compared by size, then by their last bytes,
and only then hashed whole, each at most once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def copies_of(paths: Sequence[str | Path], *others: Sequence[str | Path]) -> list[np.ndarray]:
    """For each list of `others`, (N,) bool: paths[i] is one of the files it lists, by another
    path (a link, a folder given twice) or as a byte-identical copy (compared as file_keys
    compares them, in one pass over every list: a file is hashed at most once); missing files
    are no copies (the image check reports them)."""
    mine, *theirs = file_keys([paths, *others])
    listed = [set(keys) for keys in theirs]
    return [np.array([key in keys for key in mine], dtype=bool) for keys in listed]


TAIL_BYTES = 4096  # a file's last bytes, read to tell same-size files apart before hashing


def file_keys(path_lists: Sequence[Sequence[str | Path]]) -> list[list[object]]:
    """A key per path of each list, equal for two paths exactly when they hold the same content:
    one file by several paths, or byte-identical files. Files are compared by size, then by a
    digest of their last TAIL_BYTES, and only then hashed whole, so a set of distinct files is
    mostly not read; each file is hashed at most once. A missing file gets a key of its own."""
    keys: list[list[object]] = []
    by_size: dict[int, list[tuple[int, int, str]]] = {}
    for s, paths in enumerate(path_lists):
        keys.append([])
        for i, path in enumerate(paths):
            real = os.path.realpath(path)
            size = _size(real)
            keys[s].append(("file", real) if size is not None else ("missing", s, i))
            if size is not None:
                by_size.setdefault(size, []).append((s, i, real))
    digests: dict[str, bytes | None] = {}
    for candidates in by_size.values():
        if len({real for _, _, real in candidates}) < 2:
            continue
        by_tail: dict[bytes, list[tuple[int, int, str]]] = {}
        for s, i, real in candidates:
            tail = _tail(real)
            if tail is not None:
                by_tail.setdefault(tail, []).append((s, i, real))
        for same_tail in by_tail.values():
            if len({real for _, _, real in same_tail}) < 2:
                continue
            for s, i, real in same_tail:
                if real not in digests:
                    digests[real] = _digest(real)
                if digests[real] is not None:
                    keys[s][i] = ("bytes", digests[real])
    return keys


def same_images(sets: Sequence) -> list[list[tuple[int, int]]]:
    """Groups of two or more entries, as (set number, entry number) over `sets` (ImageSets),
    that show the same image: files with the same content (file_keys) or equal in-memory
    arrays; where a set has face boxes, the box must match too. Missing files match nothing
    (the image check reports them)."""
    files = [s for s, images in enumerate(sets) if images.is_files]
    content = dict(zip(files, file_keys([sets[s].images for s in files]), strict=True))
    groups: dict[object, list[tuple[int, int]]] = {}
    for s, images in enumerate(sets):
        for i in range(len(images)):
            if images.is_files:
                key = content[s][i]
            else:
                array = np.ascontiguousarray(images.images[i])
                key = ("array", array.shape, hashlib.sha256(array.tobytes()).digest())
            box = None if images.boxes is None else tuple(int(v) for v in images.boxes[i])
            groups.setdefault((key, box), []).append((s, i))
    return [group for group in groups.values() if len(group) > 1]


def _tail(path: str) -> bytes | None:
    """A 16-byte digest of the file's last TAIL_BYTES (None where it cannot be read): the key
    that file_keys holds for every file of a size shared by others, so a million files of one
    size (BMP, PPM, uncompressed TIFF) hold 16 MB of keys rather than 4 GB of tails."""
    try:
        with open(path, "rb") as file:
            file.seek(max(0, os.fstat(file.fileno()).st_size - TAIL_BYTES))
            return hashlib.blake2b(file.read(), digest_size=16).digest()
    except OSError:
        return None


def _digest(path: str) -> bytes | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).digest()
    except OSError:
        return None


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None
