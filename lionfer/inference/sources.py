"""A predictor's inputs: image and video files, folders (searched recursively), glob patterns
and images in memory, gathered into Sources in order, each file once. An image in memory is
decoded here, once: a damaged file PIL opened lazily becomes a source with its error, as the
same file given by its path would."""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lionfer.data.checks import IMAGE_EXTENSIONS, IMAGE_KINDS, is_visible, walk_files
from lionfer.data.images import (
    RAW_SUFFIXES,
    broken_link,
    raw_note,
    special_file,
    to_rgb,
    upright,
)
from lionfer.errors import InputError
from lionfer.inference.video import TRANSPORT_STREAM, VIDEO_KINDS, is_clip, is_video_file
from lionfer.words import counted

GLOB_CHARS = frozenset("*?[")
ORIENTATION_TAG = 0x0112  # EXIF


@dataclass(frozen=True, eq=False)
class Source:
    """One input: an image file, a video file, or an image given in memory."""

    name: str  # the `source` column
    kind: str  # "image" | "video" | "memory"
    path: Path | None = None
    image: Image.Image | None = None
    error: str = ""  # an image in memory that cannot be decoded: why (its row's error)


class UndecodableImage(InputError):
    """A PIL image in memory whose pixels cannot be decoded: a damaged or cut-short file that
    Image.open read lazily (it reads the header only), or an image closed before use."""


# Items that are one input however iterable they are: a string's or bytes' elements, or an
# array's rows, are not inputs.
SINGLE_ITEMS = (str, bytes, bytearray, memoryview, os.PathLike, Image.Image, np.ndarray)


def input_items(images: Any) -> list[Any]:
    """The inputs of an argument that is one input or many: a path, a PIL image or an array
    alone is one; a list, a tuple or any other iterable (a generator, a pandas Series) holds
    them. None and other objects are one item each, for the caller to refuse by their type
    (described)."""
    if isinstance(images, SINGLE_ITEMS) or not isinstance(images, Iterable):
        return [images]
    return list(images)


def described(item: Any) -> str:
    """What an item that is no input is, for an error message: 'None', 'a PosixPath', ...; bytes
    with how to read them."""
    if item is None:
        return "None"
    if isinstance(item, bytes | bytearray | memoryview):
        return (
            f"a {type(item).__name__} object (a file's bytes: open them first, "
            "PIL.Image.open(io.BytesIO(data)))"
        )
    return f"a {type(item).__name__}"


def collect_sources(inputs: Iterable[Any]) -> tuple[list[Source], Counter, int]:
    """(sources in order without duplicates, the files in folders/globs ignored as not images or
    videos counted by extension (ignored_kinds names them), how many of those are camera RAW
    photos). Paths may be files, folders (searched recursively) or glob patterns; PIL images and
    uint8 arrays (H, W), (H, W, 3|4) or a stack (N, H, W, 3) are in-memory images, named
    memory:0, memory:1, ... in order. A RAW photo given by its path is a source (its row says
    what to do with it), and so is a PIL image that cannot be decoded (Source.error). An empty
    path is refused: Path("") is the current folder, and a form's empty field or a missing
    setting would predict on everything below it."""
    sources, seen, ignored, raw, in_memory = [], set(), Counter(), 0, 0
    for item in inputs:
        if isinstance(item, Image.Image | np.ndarray):
            try:
                images = memory_images(item)
            except UndecodableImage as error:
                sources.append(Source(f"memory:{in_memory}", "memory", error=str(error)))
                in_memory += 1
                continue
            for image in images:
                sources.append(Source(f"memory:{in_memory}", "memory", image=image))
                in_memory += 1
            continue
        if not isinstance(item, str | Path):
            raise InputError(
                f"cannot predict on {described(item)}: give paths, PIL images or uint8 arrays"
            )
        if not str(item).strip():
            raise InputError(
                f"input {str(item)!r} is an empty path; give a file, folder or glob (use '.' for "
                "the current folder)"
            )
        paths, skipped, skipped_raw = _expand_path(os.path.expanduser(item))  # "~", as a shell
        ignored, raw = ignored + skipped, raw + skipped_raw
        for path in paths:
            if (key := located(path)) not in seen:  # photos/a.jpg and /abs/photos/a.jpg: once
                seen.add(key)
                # an animated image is a clip; a .ts that is no transport stream, named by the
                # user, is a video its reader says why it cannot read
                clip = path.suffix.lower() == TRANSPORT_STREAM or is_clip(path)
                kind = "video" if clip else "image"
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


def _expand_path(item: str) -> tuple[list[Path], Counter, int]:
    path = Path(item)
    if path.is_file():
        return [path], Counter(), 0
    if path.is_dir():
        entries = list(walk_files(path))
        found, ignored, raw = _media_files(p for p in entries if is_visible(p, path))
        if not found:
            hidden = sum(not is_visible(p, path) and not p.is_dir() for p in entries)
            held = (
                f"only {_others(ignored)}"
                if ignored.total()
                else f"only hidden files ({hidden}), which are skipped"
                if hidden
                else "no files at all"
            )
            raise InputError(
                f"folder {path} holds no images or videos, {held}{raw_note(raw)}; looked "
                f"recursively for images ({IMAGE_KINDS}) and videos ({VIDEO_KINDS})"
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
            held = f": it matches only {_others(ignored)}{raw_note(raw)}" if ignored else ""
            raise InputError(f"no images or videos match {item!r}{held}")
        return found, ignored, raw
    if broken := broken_link(path):
        raise InputError(f"input {broken}; fix the link or remove it")
    if special := special_file(path):
        raise InputError(f"input {special}; give image or video files, folders or globs")
    raise InputError(f"input not found: {path} (give image or video files, folders or globs)")


def _others(ignored: Counter) -> str:
    """ "3 other files (.ts 2, .txt 1)", with a word on .ts files where there are some."""
    n = ignored.total()
    ts = " (a .ts file is read only where it is an MPEG transport stream)" * bool(
        ignored[TRANSPORT_STREAM]
    )
    return f"{counted(n, 'other file')} ({ignored_kinds(ignored)}){ts}"


def _media_files(paths: Iterable[Path]) -> tuple[list[Path], Counter, int]:
    """(the image and video files among paths, sorted; the other files counted by extension; how
    many of those are camera RAW photos: not read, as a camera saves a JPEG beside each or they
    are to be exported). A symbolic link whose target is missing is kept, to be reported as
    unreadable, and so is a named pipe, socket or device (never opened: a pipe would wait for a
    writer)."""
    found, ignored, raw = [], Counter(), 0
    for path in paths:
        if path.is_dir():
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS or is_video_file(path):
            found.append(path)
        else:
            ignored[path.suffix.lower()] += 1
            raw += path.suffix.lower() in RAW_SUFFIXES
    return sorted(found), ignored, raw


def ignored_kinds(ignored: Counter, shown: int = 5) -> str:
    """The extensions of files left out, commonest first, with their counts: ".ts 2, .txt 1, no
    extension 1", the first `shown` and how many more; so that a video or photo of a kind not
    read (a camera's RAW photo, a .ts that is no transport stream) is named, not lost in a
    count."""
    kinds = sorted(ignored.items(), key=lambda item: (-item[1], item[0]))
    named = ", ".join(f"{_suffix_text(suffix)} {n}" for suffix, n in kinds[:shown])
    more = len(kinds) - shown
    return named + (f", {more} more {'kind' if more == 1 else 'kinds'}" if more > 0 else "")


def _suffix_text(suffix: str) -> str:
    """An extension as ignored_kinds names it: quoted where it holds a space or a character that
    does not show (a name ending in a space, "photo.jpg ", is no .jpg), "no extension" for none."""
    if not suffix:
        return "no extension"
    return repr(suffix) if not suffix.isprintable() or suffix != suffix.strip() else suffix


def memory_images(item: Image.Image | np.ndarray) -> list[Image.Image]:
    """The RGB images of a PIL image (decoded and turned upright: UndecodableImage where it cannot
    be) or of a uint8 array (H, W), (H, W, 3|4) or stack (N, H, W, 3|4) (InputError for another)."""
    if isinstance(item, Image.Image):
        return [_decoded(item)]
    if item.dtype != np.uint8 or item.ndim not in (2, 3, 4):
        raise InputError(
            f"arrays must be uint8 RGB images (H, W, 3), grayscale (H, W) or a stack (N, H, W, 3);"
            f" got dtype {item.dtype}, shape {item.shape}"
        )
    if item.ndim == 4:
        return [image for array in item for image in memory_images(array)]
    if item.ndim == 3 and item.shape[2] not in (3, 4):
        raise InputError(
            f"an image array needs 3 (RGB) or 4 (RGBA) channels, got shape {item.shape}: a stack "
            "of images must be (N, H, W, 3); for grayscale images pass (H, W) arrays one by one"
        )
    return [to_rgb(Image.fromarray(item))]


def _decoded(image: Image.Image) -> Image.Image:
    """A PIL image decoded, upright and in RGB. Image.open reads only a file's header and decodes
    on first use, so a damaged file would fail later, in detection or in the EXIF lookup, as
    a crash of the whole call or a row of the wrong kind: it is decoded here, once, and what PIL
    raises (its decoders raise a zoo of types) becomes UndecodableImage, saying why."""
    try:
        image.load()
        return to_rgb(_upright(image))
    except Exception as error:
        raise UndecodableImage(f"the image cannot be decoded: {_why(error, image)}") from error


def _why(error: Exception, image: Image.Image) -> str:
    """A short human reason for a failed decode of an image in memory, with the fix."""
    text = str(error) or type(error).__name__
    # closed after its pixels were read, or before (its file is gone: PIL fails an assertion)
    unread = getattr(image, "tile", None) and getattr(image, "fp", True) is None
    if "closed image" in text or unread:
        return (
            "it was closed before use (Image.close(), or the end of its `with Image.open(...)` "
            "block); pass it while it is open, or pass image.copy()"
        )
    if "truncated" in text.lower() or isinstance(error, EOFError):
        kind = f"its data is truncated ({text}), e.g. an interrupted upload, copy or download"
    else:
        kind = f"its data is corrupt ({type(error).__name__}: {text})"
    return f"{kind}; open a complete copy of the file"


def _upright(image: Image.Image) -> Image.Image:
    """A PIL image turned as its EXIF orientation tag says (a phone photo from Image.open), as
    the file's path would be read; upright drops the tag, so never twice."""
    if image.getexif().get(ORIENTATION_TAG, 1) == 1:
        return image
    return upright(image)


# ---- faces, frames and batches ----
