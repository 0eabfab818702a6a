"""A predictor's inputs: image and video files, folders (searched recursively), glob patterns
and images in memory, gathered into Sources in order, each file once."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from lionfer.data.checks import IMAGE_EXTENSIONS, IMAGE_KINDS, is_visible, walk_files
from lionfer.data.images import RAW_SUFFIXES, broken_link, raw_note, to_rgb
from lionfer.errors import InputError
from lionfer.inference.video import VIDEO_KINDS, is_clip, is_video_file

GLOB_CHARS = frozenset("*?[")
ORIENTATION_TAG = 0x0112  # EXIF


@dataclass(frozen=True, eq=False)
class Source:
    """One input: an image file, a video file, or an image given in memory."""

    name: str  # the `source` column
    kind: str  # "image" | "video" | "memory"
    path: Path | None = None
    image: Image.Image | None = None


def collect_sources(inputs: Iterable[Any]) -> tuple[list[Source], int, int]:
    """(sources in order without duplicates, files in folders/globs ignored as not images or
    videos, how many of those are camera RAW photos). Paths may be files, folders (searched
    recursively) or glob patterns; PIL images and uint8 arrays (H, W), (H, W, 3|4) or a stack
    (N, H, W, 3) are in-memory images, named memory:0, memory:1, ... in order. A RAW photo given
    by its path is a source (its row says what to do with it)."""
    sources, seen, ignored, raw, in_memory = [], set(), 0, 0, 0
    for item in inputs:
        if isinstance(item, Image.Image | np.ndarray):
            for image in memory_images(item):
                sources.append(Source(f"memory:{in_memory}", "memory", image=image))
                in_memory += 1
            continue
        if not isinstance(item, str | Path):
            raise InputError(
                f"cannot predict on a {type(item).__name__}: give paths, PIL images or arrays"
            )
        paths, skipped, skipped_raw = _expand_path(str(item))
        ignored, raw = ignored + skipped, raw + skipped_raw
        for path in paths:
            if (key := located(path)) not in seen:  # photos/a.jpg and /abs/photos/a.jpg: once
                seen.add(key)
                kind = "video" if is_clip(path) else "image"  # an animated image is a clip
                sources.append(Source(str(path), kind, path=path))
    return sources, ignored, raw


def refuse_reading(out: Path, sources: list[Source], model: str | Path) -> None:
    """Refuse an existing --out that is one of the files a job reads, by any of its names (a link,
    a hard link): an input photo or video, or the model, would be replaced by the predictions."""
    if not out.exists():
        return
    written = os.stat(out)
    named = [(s.path, "one of the inputs") for s in sources if s.path is not None]
    for path, what in [*named, (Path(model), "the model")]:
        try:
            read = os.stat(path)
        except OSError:  # a broken link: its row says so
            continue
        if (read.st_dev, read.st_ino) == (written.st_dev, written.st_ino):
            raise InputError(
                f"--out {out} is {what} ({path}); predictions written there would replace it: "
                "choose another --out"
            )


def located(path: Path) -> Path:
    """The absolute path of a file with the symbolic links of its folders resolved but not its
    own: one key for photos/a.jpg, ./photos/../photos/a.jpg and /abs/photos/a.jpg, while a link
    the user made stays a file of its own, where it is."""
    return Path(os.path.realpath(path.parent)) / path.name


def _expand_path(item: str) -> tuple[list[Path], int, int]:
    path = Path(item)
    if path.is_file():
        return [path], 0, 0
    if path.is_dir():
        found, ignored, raw = _media_files(p for p in walk_files(path) if is_visible(p, path))
        if not found:
            raise InputError(
                f"folder {path} holds no images or videos ({ignored} other files{raw_note(raw)}); "
                f"looked recursively for images ({IMAGE_KINDS}) and videos ({VIDEO_KINDS})"
            )
        return found, ignored, raw
    if GLOB_CHARS & set(item):
        matches = [Path(p) for p in glob.glob(item, recursive=True)]
        found, ignored, raw = _media_files(
            q
            for m in matches
            for q in ([m] if not m.is_dir() else (p for p in walk_files(m) if is_visible(p, m)))
        )
        if not found:
            raise InputError(f"no images or videos match {item!r}")
        return found, ignored, raw
    if broken := broken_link(path):
        raise InputError(f"input {broken}; fix the link or remove it")
    raise InputError(f"input not found: {path} (give image or video files, folders or globs)")


def _media_files(paths: Iterable[Path]) -> tuple[list[Path], int, int]:
    """(the image and video files among paths, sorted; how many other files there were; how
    many of those are camera RAW photos: not read, as a camera saves a JPEG beside each or they
    are to be exported). A symbolic link whose target is missing is kept, to be reported as
    unreadable."""
    found, ignored, raw = [], 0, 0
    for path in paths:
        if path.is_dir() or not (path.is_file() or path.is_symlink()):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS or is_video_file(path):
            found.append(path)
        else:
            ignored += 1
            raw += path.suffix.lower() in RAW_SUFFIXES
    return sorted(found), ignored, raw


def memory_images(item: Image.Image | np.ndarray) -> list[Image.Image]:
    if isinstance(item, Image.Image):
        return [to_rgb(_upright(item))]
    if item.dtype != np.uint8 or item.ndim not in (2, 3, 4):
        raise InputError(
            f"arrays must be uint8 RGB images (H, W, 3), grayscale (H, W) or a stack (N, H, W, 3);"
            f" got dtype {item.dtype}, shape {item.shape}"
        )
    if item.ndim == 4:
        return [image for array in item for image in memory_images(array)]
    if item.ndim == 3 and item.shape[2] not in (3, 4):
        raise InputError(f"an image array needs 3 (RGB) or 4 (RGBA) channels, shape {item.shape}")
    return [to_rgb(Image.fromarray(item))]


def _upright(image: Image.Image) -> Image.Image:
    """A PIL image turned as its EXIF orientation tag says (a phone photo from Image.open), as
    the file's path would be read; ImageOps.exif_transpose drops the tag, so never twice."""
    if image.getexif().get(ORIENTATION_TAG, 1) == 1:
        return image
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError):  # a damaged file's lazy load: its row reports the error
        return image


# ---- faces, frames and batches ----
