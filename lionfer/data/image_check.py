"""The check of every image a run will read, before training reads it: each file decoded once
(in threads), unreadable images and face boxes outside their image refused or, with
data.skip_bad, dropped and counted in a note; images smaller than MIN_IMAGE_SIDE warned of.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from lionfer.data.images import ImageError, check_image_file, named_warnings
from lionfer.errors import InputError

_SHOWN = 3  # how many unreadable or small images a message lists
MIN_IMAGE_SIDE = 16  # px; a smaller image (or face box) is used, with a warning
PROGRESS_FROM = 500  # image checks of this many files or more show a progress bar


@dataclass
class ImageCheck:
    """What check_images found: keep (N,) bool (False for unreadable images dropped with
    skip_bad), notes for the run, and warnings to raise (small images)."""

    keep: np.ndarray
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_images(images, part: str, skip_bad: bool, progress: bool = False) -> ImageCheck:
    """Check every image of an ImageSet once, before training reads it.

    In-memory arrays are checked by shape and type; files are decoded (in threads, with a progress
    bar from PROGRESS_FROM files on). An unreadable file is an ImageError listing the first few, or
    with skip_bad is dropped and counted in a note. Images whose shorter side is under
    MIN_IMAGE_SIDE pixels are used, with a warning.
    """
    if not images.is_files:
        return ImageCheck(np.ones(len(images), dtype=bool), [], _array_warnings(images, part))
    sizes, failures = _probe_files(images.images, part, progress)
    if images.boxes is not None:
        failures = _boxes_outside(images.boxes, sizes, failures)
    keep = np.array([error is None for error in failures], dtype=bool)
    bad = [(images.ids[i], failures[i]) for i in np.flatnonzero(~keep)]
    notes = []
    if bad:
        first = "; ".join(f"{name}: {error}" for name, error in bad[:_SHOWN])
        more = f" (and {len(bad) - _SHOWN} more)" if len(bad) > _SHOWN else ""
        if not skip_bad or len(bad) == len(images):
            raise ImageError(
                f"{len(bad)} of {len(images)} {part} images cannot be read. First: {first}{more}. "
                "Fix or remove them, or set data.skip_bad=true to skip unreadable images "
                "(they are counted in the run's notes)"
            )
        shown = ", ".join(name for name, _ in bad[:_SHOWN])
        notes.append(
            f"skipped {len(bad)} unreadable {part} images (data.skip_bad=true): {shown}{more}"
        )
    if images.boxes is not None:  # a face box is what training sees
        boxed = images.boxes[:, 2] > 0
        sizes[boxed] = images.boxes[boxed][:, 2:]
    small = [images.ids[i] for i in np.flatnonzero(keep & (sizes.min(axis=1) < MIN_IMAGE_SIDE))]
    return ImageCheck(keep, notes, _small_warning(small, len(images), part))


def _boxes_outside(boxes: np.ndarray, sizes: np.ndarray, failures: list) -> list:
    """failures, with an error for each readable image whose face box (x, y, w, h; w > 0) does
    not overlap it, upright or turned a quarter (an EXIF rotation): its crop would be all
    padding, a black image trained on as a face."""
    x, y, w, h = (boxes[:, k] for k in range(4))
    width, height = sizes[:, 0], sizes[:, 1]

    def misses(wide, high):
        return (x >= wide) | (y >= high) | (x + w <= 0) | (y + h <= 0)

    outside = (w > 0) & misses(width, height) & misses(height, width)
    return [
        error
        if error is not None or not outside[i]
        else (
            f"its face box (x {x[i]}, y {y[i]}, w {w[i]}, h {h[i]}) lies outside the "
            f"{width[i]}x{height[i]} image"
        )
        for i, error in enumerate(failures)
    ]


def _probe_files(paths, part: str, progress: bool) -> tuple[np.ndarray, list[str | None]]:
    """((N, 2) width and height, error message or None per file), decoded in a thread pool."""

    def probe(path) -> tuple[tuple[int, int], str | None]:
        try:
            return check_image_file(path), None
        except ImageError as error:
            return (0, 0), str(error)

    workers = min(8, os.cpu_count() or 1)
    show = progress and len(paths) >= PROGRESS_FROM
    with named_warnings(), ThreadPoolExecutor(workers) as pool:  # PIL's warnings name the file
        results = list(
            tqdm(
                pool.map(probe, paths),
                total=len(paths),
                desc=f"checking {part} images",
                disable=not show,
                unit="img",
            )
        )
    sizes = np.array([size for size, _ in results], dtype=np.int64).reshape(-1, 2)
    return sizes, [error for _, error in results]


def _array_warnings(images, part: str) -> list[str]:
    """In-memory images: (N, H, W) or (N, H, W, 3) uint8; all share one size."""
    array = images.images
    shape_ok = array.ndim == 3 or (array.ndim == 4 and array.shape[-1] == 3)
    if not shape_ok or array.dtype != np.uint8:
        raise InputError(
            f"{part} images are a {array.dtype} array of shape {array.shape}; in-memory images "
            "must be uint8 (N, H, W) or (N, H, W, 3)"
        )
    side = min(array.shape[1], array.shape[2])
    return _small_warning(list(images.ids) if side < MIN_IMAGE_SIDE else [], len(images), part)


def _small_warning(small: list[str], total: int, part: str) -> list[str]:
    if not small:
        return []
    shown = ", ".join(small[:_SHOWN]) + (
        f" (and {len(small) - _SHOWN} more)" if len(small) > _SHOWN else ""
    )
    return [
        f"{len(small)} of {total} {part} images are smaller than {MIN_IMAGE_SIDE} px on a side "
        f"({shown}); they are upscaled to data.image_size and carry little detail"
    ]
