"""What a video file's own bytes say about its container (container_facts -> Container): its kind
(MP4/QuickTime, Matroska/WebM, AVI, an MPEG transport stream, a motion JPEG), whether the file is
whole or cut short, its video track's duration and its tracks; and whether a .ts file is a
transport stream (is_transport_stream) rather than TypeScript."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lionfer.data.file_kinds import TS_HEAD, TS_SYNC, transport_stream_layout
from lionfer.data.images import broken_link, special_file


@dataclass(frozen=True)
class Container:
    """What a video file's own structure says, where it can be read (MP4/QuickTime, Matroska/WebM,
    AVI; an MPEG transport stream or a motion JPEG, `whole` alone): `whole` is False where an
    element runs past the end of the file (a cut copy; a packet or a JPEG frame cut), True
    where every one ends inside it, None where that cannot be told (another container, a live
    recording's elements of unknown size); `video_s` is the video track's duration in seconds,
    edits applied (MP4/QuickTime); `tracks` the kinds of its tracks ("video", "audio", ...)
    (MP4/QuickTime, Matroska/WebM) and `video_frames` the frames its video tracks index
    (MP4/QuickTime)."""

    kind: str = ""  # "iso" | "matroska" | "avi" | "ts" | "mjpeg" | "" (another, or unreadable)
    whole: bool | None = None
    video_s: float | None = None
    tracks: tuple[str, ...] | None = None
    video_frames: int | None = None


# ISO media handler types and Matroska TrackType values, as track kinds
_ISO_TRACKS = {b"vide": "video", b"soun": "audio", b"text": "subtitles", b"sbtl": "subtitles"}
_ISO_TRACKS |= {b"subt": "subtitles", b"tmcd": "timecode", b"meta": "metadata", b"hint": "hint"}
_MATROSKA_TRACKS = {1: "video", 2: "audio", 17: "subtitles", 33: "metadata"}
_ISO_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp"}
_EBML, _SEGMENT, _TRACKS, _CLUSTER = (
    bytes.fromhex(h) for h in ("1a45dfa3", "18538067", "1654ae6b", "1f43b675")
)


def container_facts(path: str | Path) -> Container:
    """Container for a video file, read from its boxes or elements (a few small reads, and an
    MP4's index); an empty Container where it is none of these or cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(TS_HEAD)
            if head[:4] == _EBML:
                return _matroska(f, size)
            if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
                return Container("avi", _riff_whole(f, size))
            if head[4:8] in _ISO_TOP:
                return _iso(f, size)
            if head[:3] == _JPEG_START:
                return Container("mjpeg", _jpeg_whole(f, size))
            if layout := transport_stream_layout(head):
                return Container("ts", _packets_whole(f, size, *layout))
    except (OSError, ValueError, IndexError):  # unreadable, or not what its first bytes promise
        pass
    return Container()


def is_transport_stream(path: str | Path) -> bool | None:
    """Whether the file holds an MPEG transport stream: three packets in a row, each with its
    sync byte 0x47, in its first bytes (transport_stream_layout). None where that cannot be told:
    a broken link, a file that cannot be read, or a named pipe, socket or device, which is never
    opened (a pipe would wait for a writer)."""
    if broken_link(path) or special_file(path):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(TS_HEAD)
    except OSError:
        return None
    return transport_stream_layout(head) is not None


_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"


def _jpeg_whole(f: BinaryIO, size: int) -> bool:
    """Whether a motion JPEG file (JPEG after JPEG) ends as a JPEG does, with its end marker
    (blank lines after it allowed): one cut short ends inside a frame."""
    f.seek(max(0, size - 64))
    return f.read().rstrip(b"\r\n\t ").endswith(_JPEG_END)


def _packets_whole(f: BinaryIO, size: int, start: int, packet: int, before: int) -> bool:
    """Whether an MPEG transport stream whose first whole packet starts at `start` ends with a
    whole packet: a file cut inside one (or ending in other bytes) is truncated or corrupt. A
    stream cut between two packets cannot be told from a whole one."""
    if (size - start) % packet or size - start < packet:
        return False
    f.seek(size - packet + before)
    return f.read(1) == bytes([TS_SYNC])


def _iso(f: BinaryIO, size: int) -> Container:
    """An MP4/QuickTime file's top-level boxes (each must end inside the file) and its index."""
    at, whole, moov = 0, True, None
    while at < size:
        f.seek(at)
        header = f.read(16)
        box, kind, length = int.from_bytes(header[:4], "big"), header[4:8], 8
        if box == 1:
            box, length = int.from_bytes(header[8:16], "big"), 16
        elif box == 0:  # the last box, to the end of the file
            box = size - at
        if len(header) < length or at + box > size:
            whole = False
            break
        if box < length:
            return Container("iso")  # no box: nothing to go by
        if kind == b"moov":
            f.seek(at + length)
            moov = f.read(box - length)
        at += box
    if moov is None:
        return Container("iso", whole)
    tracks, video_s, video_frames = [], None, None
    movie_scale = _iso_timescale(_iso_child(moov, b"mvhd"))
    for kind, trak in _iso_boxes(moov):
        if kind != b"trak":
            continue
        mdia = _iso_child(trak, b"mdia")
        handler = _iso_child(mdia, b"hdlr")[8:12]
        tracks.append(_ISO_TRACKS.get(handler, handler.decode("latin-1").strip() or "unknown"))
        if handler != b"vide":
            continue
        stbl = _iso_child(_iso_child(mdia, b"minf"), b"stbl")
        counted = _iso_child(stbl, b"stsz") or _iso_child(stbl, b"stz2")
        frames = int.from_bytes(counted[8:12], "big") if len(counted) >= 12 else None
        video_frames = frames if video_frames is None else video_frames + (frames or 0)
        seconds = _iso_track_seconds(trak, movie_scale)
        if seconds is not None:
            video_s = max(video_s or 0.0, seconds)
    return Container("iso", whole, video_s, tuple(tracks), video_frames)


def _riff_whole(f: BinaryIO, size: int) -> bool:
    """Whether every top-level chunk of an AVI file (RIFF AVI, then RIFF AVIX past 1 GB) ends
    inside it."""
    at = 0
    while at + 8 <= size:
        f.seek(at + 4)
        length = int.from_bytes(f.read(4), "little")
        at += 8 + length + (length & 1)  # chunks are padded to an even size
    return at <= size + 1  # an odd last chunk's pad byte may be missing


def _iso_track_seconds(trak: bytes, movie_scale: int | None) -> float | None:
    """A track's presented duration in seconds: its edit list's edits that show media (an empty
    edit, a delay, shows none), else its tkhd duration; None where unknown (0 or all ones, as a
    fragmented file writes) or where an edit plays at another rate than 1 (a slow-motion edit)."""
    if not movie_scale:
        return None
    elst = _iso_child(_iso_child(trak, b"edts"), b"elst")
    if len(elst) >= 8:
        width = 8 if elst[0] == 1 else 4  # bytes of an edit's duration and of its media time
        step, total = 2 * width + 4, 0  # an edit: duration, media time, rate (16.16)
        for k in range(int.from_bytes(elst[4:8], "big")):
            entry = elst[8 + k * step : 8 + (k + 1) * step]
            if len(entry) < step:
                return None
            if int.from_bytes(entry[width : 2 * width], "big", signed=True) == -1:
                continue  # an empty edit
            if int.from_bytes(entry[2 * width : 2 * width + 2], "big") != 1:
                return None
            total += int.from_bytes(entry[:width], "big")
        return total / movie_scale if total else None
    tkhd = _iso_child(trak, b"tkhd")
    wide = tkhd[:1] == b"\x01"
    field = tkhd[28:36] if wide else tkhd[20:24]
    duration = int.from_bytes(field, "big") if field else 0
    if duration in (0, (1 << (8 * len(field))) - 1):
        return None
    return duration / movie_scale


def _iso_timescale(mvhd: bytes) -> int | None:
    """The movie's time units per second, from its mvhd box; None where missing."""
    field = mvhd[20:24] if mvhd[:1] == b"\x01" else mvhd[12:16]
    return (int.from_bytes(field, "big") or None) if len(field) == 4 else None


def _iso_boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, contents) of the boxes in data, up to the first that does not fit."""
    at = 0
    while at + 8 <= len(data):
        box, kind, length = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8], 8
        if box == 1:
            box, length = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        elif box == 0:
            box = len(data) - at
        if box < length or at + box > len(data):
            return
        yield kind, data[at + length : at + box]
        at += box


def _iso_child(data: bytes, kind: bytes) -> bytes:
    """The contents of the first `kind` box in data, b"" where there is none."""
    return next((contents for k, contents in _iso_boxes(data) if k == kind), b"")


def _ebml_element(header: bytes) -> tuple[bytes, int | None, int] | None:
    """(ID, data size or None where unknown, header length) of the EBML element header at the
    start of `header` (12 bytes are enough), or None where it is cut off or invalid."""
    if len(header) < 2 or not header[0]:
        return None
    id_length = 9 - header[0].bit_length()
    if id_length > 4 or len(header) <= id_length or not header[id_length]:
        return None
    size_length = 9 - header[id_length].bit_length()
    end = id_length + size_length
    if len(header) < end:
        return None
    size = int.from_bytes(header[id_length:end], "big") & ((1 << (7 * size_length)) - 1)
    unknown = size == (1 << (7 * size_length)) - 1
    return header[:id_length], None if unknown else size, end


def _matroska(f: BinaryIO, size: int) -> Container:
    """A Matroska/WebM file: whole where its Segment ends inside the file or, of unknown size as a
    live recording writes it, where every element in it does (None where one is of unknown size
    too: a live recording's cluster); its tracks from its Tracks element."""
    f.seek(0)
    ebml = _ebml_element(f.read(12))
    if ebml is None or ebml[1] is None:
        return Container("matroska")
    at = ebml[2] + ebml[1]
    f.seek(at)
    segment = _ebml_element(f.read(12))
    if segment is None or segment[0] != _SEGMENT:
        return Container("matroska", False if at >= size else None)
    start, sized = at + segment[2], segment[1]
    whole = None if sized is None else start + sized <= size
    tracks, at = None, start
    while at < (size if sized is None else min(size, start + sized)):
        f.seek(at)
        element = _ebml_element(f.read(12))
        if element is None:  # its header cut off by the end of the file
            whole = False
            break
        kind, length, header = element
        if length is None:  # a cluster still open when the recording stopped: no end to check
            break
        if kind == _TRACKS:
            f.seek(at + header)
            tracks = _matroska_tracks(f.read(length))
        at += header + length
        if at > size:
            whole = False
            break
        if sized is not None and (tracks is not None or kind == _CLUSTER):
            break  # the Segment's size tells whether the file is whole
    else:
        whole = True if sized is None else whole
    return Container("matroska", whole, tracks=tracks)


def _matroska_tracks(data: bytes) -> tuple[str, ...]:
    """The kinds of the TrackEntry elements in a Tracks element's data."""
    kinds, at = [], 0
    while (entry := _ebml_element(data[at : at + 12])) and entry[1] is not None:
        kind, length, header = entry
        if kind == b"\xae":  # TrackEntry
            body, inner = data[at + header : at + header + length], 0
            while (field := _ebml_element(body[inner : inner + 12])) and field[1] is not None:
                if field[0] == b"\x83":  # TrackType
                    value = int.from_bytes(
                        body[inner + field[2] : inner + field[2] + field[1]], "big"
                    )
                    kinds.append(_MATROSKA_TRACKS.get(value, "other"))
                inner += field[2] + field[1]
        at += header + length
    return tuple(kinds)
