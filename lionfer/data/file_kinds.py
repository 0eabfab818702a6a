"""What a file that PIL cannot read is, from its first bytes, and what to do about it: a decode
error in words (describe), the file as text (head_text), a kind of photo, archive, document or
video by its magic (container), an SVG file, or a TIFF whose samples PIL has no decoder for
(not_an_image). Also the MPEG transport stream's packet layout, by which
lionfer/inference/video_containers.py reads .ts files (transport_stream_layout)."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import TiffImagePlugin

FIX = "re-copy or re-download it, or remove it"


def describe(error: Exception) -> str:
    """A short human reason for a decode error."""
    text = str(error) or type(error).__name__
    if "truncated" in text.lower() or isinstance(error, EOFError):
        return f"the file is truncated ({text}), e.g. an interrupted copy or download"
    return f"the file is corrupt ({type(error).__name__}: {text})"


def head_text(path: Path) -> str | None:
    """The file's first 512 bytes as text, or None where they are binary."""
    with path.open("rb") as f:
        head = f.read(512)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


# what a file that is no image often is, by its first bytes: (offset, bytes, kind)
_MAGIC = (
    (0, b"PK\x03\x04", "a zip archive"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"7z\xbc\xaf", "a 7z archive"),
    (0, b"%PDF", "a PDF document"),
)
_VIDEO_BRANDS = {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V "}
_VIDEO_BRANDS |= {b"qt  ", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"dash", b"MSNV", b"f4v "}
# An MPEG transport stream's packets, each with the sync byte 0x47: (packet size, bytes before
# its sync byte) of a plain stream, a Blu-ray (BDAV) stream's (a 4-byte time stamp first) and
# DVB's with error-correction bytes after.
TS_PACKETS = ((188, 0), (192, 4), (204, 0))
TS_SYNC = 0x47
TS_HEAD = 4 * 204  # bytes read to find three packets in a row, from any start


def transport_stream_layout(head: bytes) -> tuple[int, int, int] | None:
    """(where the first whole packet starts, packet size, bytes before its sync byte) where
    `head`, a file's first TS_HEAD bytes, holds three packets of an MPEG transport stream in a
    row, read from any point of a packet (a stream may be cut anywhere); None where it does not."""
    for size, before in TS_PACKETS:
        for at in range(min(size, len(head) - 2 * size)):
            if head[at] == head[at + size] == head[at + 2 * size] == TS_SYNC:
                return (at - before) % size, size, before
    return None


_HEIF_BRANDS = {b"heic": ".heic", b"heix": ".heic", b"hevc": ".heic", b"heim": ".heic"}
_HEIF_BRANDS |= {b"heis": ".heic", b"mif1": ".heif", b"msf1": ".heif", b"avif": ".avif"}
# videos, by the name a video needs to be read as one
_MP4 = "an MP4 or QuickTime video (named .mp4 or .mov, it is read as a video)"
_TS = "an MPEG transport stream video (named .ts or .mts, it is read as a video)"
_AVI = "an AVI video (named .avi, it is read as a video)"
_MATROSKA = "a Matroska or WebM video (named .mkv or .webm, it is read as a video)"
VIDEOS = frozenset({_MP4, _TS, _AVI, _MATROSKA})


def container(path: Path) -> str:
    """What the file is by its first bytes where PIL could not tell: the suffix of a HEIC, HEIF
    or AVIF photo (ISO media, "ftyp" and a brand at bytes 4-12) whatever its name, a kind of
    archive, document or video (by the name a video needs to be read as one), or "" where none is
    recognised."""
    with path.open("rb") as f:
        head = f.read(TS_HEAD)
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return _HEIF_BRANDS[head[8:12]]
    if head[4:8] == b"ftyp" and head[8:12] in _VIDEO_BRANDS:
        return _MP4
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return _AVI
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML
        return _MATROSKA
    known = next((kind for at, magic, kind in _MAGIC if head[at:].startswith(magic)), "")
    return known or (_TS if transport_stream_layout(head) else "")


# An SVG file's start: an XML declaration, processing instructions and comments, then the
# <svg> element or its DOCTYPE (text that merely holds an <svg>, an HTML page, is no SVG file)
_SVG = re.compile(
    r"\ufeff?(?:\s|<\?.*?\?>|<!--.*?-->)*(?:<!DOCTYPE\s+svg\b|<svg[\s>])", re.I | re.S
)


def not_an_image(path: Path, text: str | None, kind: str = "") -> str:
    """Why PIL could not identify the file, and the fix, from its first bytes: a kind of file
    recognised (_container), an SVG file or other text (_head_text), or a TIFF whose samples PIL
    has no decoder for (_tiff_samples)."""
    if kind:
        fix = "" if kind in VIDEOS else f"; {FIX}"  # an intact video: nothing to re-copy
        return f"the file is {kind}, not an image{fix}"
    if text is not None and _SVG.match(text):
        return (
            "the file is an SVG vector image, which lionfer does not read; export it as PNG "
            f"(Inkscape, a web browser, or rsvg-convert -o {path.stem}.png {path.name})"
        )
    if text is not None:
        hint = " (often an HTML error page saved by a failed download)" if "<" in text else ""
        return f"the file holds text, not an image{hint}; {FIX}"
    if samples := _tiff_samples(path):
        return (
            f"the file is a TIFF whose samples Pillow cannot decode ({samples}); convert it to 8- "
            "or 16-bit integer samples, e.g. with OpenCV (scale the array to 0..255 or 0..65535 "
            f"and save it as uint8 or uint16) or ImageMagick (magick {path.name} -depth 16 "
            f"{path.stem}.png)"
        )
    return f"the content is not a known image format (corrupt, or a wrong file extension); {FIX}"


_TIFF_HEADS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_SAMPLE_KINDS = {3: "floating point", 5: "complex integer", 6: "complex floating point"}


def _tiff_samples(path: Path) -> str:
    """How a TIFF's samples are stored, "3-channel 32-bit floating point", where they are of a
    kind PIL decodes none of (floating point or integers of more than 16 bits, but for one
    channel of 32: PIL's modes F and I; complex numbers), read from its first image's tags
    (SamplesPerPixel, BitsPerSample, SampleFormat); "" for any other file."""
    try:
        with path.open("rb") as f:
            head = f.read(16)
            if head[:4] not in _TIFF_HEADS:
                return ""
            tags = TiffImagePlugin.ImageFileDirectory_v2(head if head[2] == 43 else head[:8])
            f.seek(tags.next)
            tags.load(f)
    except Exception:  # a damaged header: no more to say than that it is corrupt
        return ""
    channels = tags.get(TiffImagePlugin.SAMPLESPERPIXEL, 1)
    bits = max(_values(tags.get(TiffImagePlugin.BITSPERSAMPLE)))
    formats = _values(tags.get(TiffImagePlugin.SAMPLEFORMAT))
    kind = next((_SAMPLE_KINDS[f] for f in formats if f in _SAMPLE_KINDS), "integer")
    plain = kind in ("integer", "floating point")
    if (kind == "integer" and bits <= 16) or (plain and channels == 1 and bits == 32):
        return ""
    return f"{channels}-channel {bits}-bit {kind}"


def _values(value: object) -> tuple:
    """A TIFF tag's values as a tuple, (1,) where it is missing (the default of BitsPerSample,
    SampleFormat)."""
    if value is None or value == ():
        return (1,)
    return tuple(value) if isinstance(value, tuple | list) else (value,)
