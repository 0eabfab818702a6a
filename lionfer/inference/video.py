"""Videos, streamed: frames are decoded one at a time (OpenCV; PIL for animated images), so memory
stays flat however long the clip, each timed as its decoder times it; what a video's container
states (whether the file is whole, its video track's duration, its tracks), to tell a damaged
video from one whose frame count OpenCV overstates; plus the drawing of boxes and labels and the
annotated-video writer used by predict."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from lionfer.data.file_kinds import TS_HEAD, TS_SYNC, transport_stream_layout
from lionfer.data.images import broken_link, named_warnings, special_file, to_rgb, upright

# Phones also write .3gp/.3g2, camcorders AVCHD's .mts/.m2ts, professional camcorders .mxf and
# .dv, CCTV recorders and dash cams raw H.264/H.265 streams (.h264, .264, .h265, .265, .hevc), IP
# cameras motion JPEG (.mjpeg, .mjpg); .f4v and .qt are MP4 and QuickTime, .divx an AVI, .y4m raw
# YUV frames: OpenCV reads them all. An MPEG-TS .ts is a video where its bytes say so
# (is_video_file), .ts being TypeScript's too.
VIDEO_EXTENSIONS = frozenset(
    f".{suffix}"
    for suffix in (
        "mp4 avi mov mkv webm m4v mpg mpeg wmv flv 3gp 3g2 mts m2ts vob ogv asf "
        "mxf dv divx y4m f4v qt h264 264 h265 265 hevc mjpeg mjpg"
    ).split()
)
# .ts is an MPEG transport stream's (broadcast and IPTV recordings, OBS, dash cams) and
# TypeScript's: such a file is a video where it starts as a transport stream does (is_video_file).
TRANSPORT_STREAM = ".ts"
VIDEO_KINDS = ", ".join(  # for messages
    sorted([*(suffix[1:] for suffix in VIDEO_EXTENSIONS), "ts (a transport stream)"])
)
# (fourcc, suffix) tried in order; mp4v ships with every OpenCV build, MJPG/avi is the fallback.
VIDEO_CODECS = (("mp4v", ".mp4"), ("MJPG", ".avi"))
BOX_COLOUR = (255, 64, 64)
TEXT_COLOUR = (255, 255, 255)
MIN_LABEL_PX = 11  # caption height on small images; it grows with the image (label_font)


class VideoError(ValueError):
    """A video that cannot be opened or holds no readable frame."""


class EmptyVideoError(VideoError):
    """A video file that opens but yields no frame."""


class DamagedVideoError(VideoError):
    """A video whose decoding stopped well before the end its header declares: the frames before
    `frame` were yielded; `time_s` is that frame's time (None without a frame rate)."""

    def __init__(self, message: str, frame: int, time_s: float | None):
        super().__init__(message)
        self.frame, self.time_s = frame, time_s


# A rate OpenCV reports at or above this is no frame rate (it gave a DV file of 25 fps 60,000);
# such a video is timed by its decoder alone.
MAX_FPS = 1000.0
# A decoder time this close to index / fps is taken as index / fps: a constant rate in a container
# whose clock counts milliseconds (Matroska, WebM, FLV), or a float's last digit.
SNAP_S = 0.0005
# How far short of the duration OpenCV estimates (the container's, every track's, or one worked
# out from the bit rate) decoding must stop to be called damage in a container whose structure
# cannot be checked: an audio track may run on, and estimates miss by a fraction.
ESTIMATE_MARGIN_S, ESTIMATE_MARGIN = 1.0, 0.1


# Image formats that may hold several frames: an animated GIF, PNG (APNG), WebP or AVIF, a
# multi-page TIFF. Such a file with more than one frame is a clip, read frame by frame like a video.
ANIMATED_IMAGE_EXTENSIONS = frozenset({".gif", ".png", ".webp", ".avif", ".tif", ".tiff"})


def is_video_file(path: str | Path) -> bool:
    """A video by its suffix; a .ts file where it is an MPEG transport stream by its first bytes,
    not TypeScript, or where that cannot be told (a broken link, a pipe: is_transport_stream), so
    that its reader reports why it cannot be read."""
    suffix = Path(path).suffix.lower()
    if suffix == TRANSPORT_STREAM:
        return is_transport_stream(path) is not False
    return suffix in VIDEO_EXTENSIONS


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


def is_animated_image(path: str | Path) -> bool:
    """Whether path is an image file of more than one frame, or one whose frames cannot be
    counted (damaged after its first: read as a clip, the damage is reported where decoding
    stops). False for a file PIL cannot open, which is then read, and reported, as an image."""
    if Path(path).suffix.lower() not in ANIMATED_IMAGE_EXTENSIONS or special_file(path):
        return False  # a named pipe is never opened: it would wait for a writer
    try:
        with named_warnings(path, shown=False):  # its reader warns after, naming the file
            image = Image.open(path)
    except Exception:  # PIL's zoo of decode errors: open_image names the problem later
        return False
    with image, named_warnings(path, shown=False):
        try:
            return getattr(image, "n_frames", 1) > 1
        except Exception:
            return True


def is_clip(path: str | Path) -> bool:
    """A file read frame by frame: a video, or an image of several frames."""
    return is_video_file(path) or is_animated_image(path)


def clip_frames(
    path: str | Path, stride: int = 1, start: int = 0
) -> Iterator[tuple[int, float | None, Image.Image]]:
    """frames() of a video, image_frames() of an animated image."""
    if Path(path).suffix.lower() in ANIMATED_IMAGE_EXTENSIONS:
        return image_frames(path, stride, start)
    return frames(path, stride, start)


def _check_reading(stride: int, start: int) -> None:
    if stride < 1:
        raise ValueError(f"frame stride must be at least 1, got {stride}")
    if start < 0:
        raise ValueError(f"the first frame must be 0 or more, got {start}")


def image_frames(
    path: str | Path, stride: int = 1, start: int = 0
) -> Iterator[tuple[int, float | None, Image.Image]]:
    """(frame index, time in seconds, RGB frame) for every stride-th frame of an image file of
    several frames from frame `start` on, as frames() gives a video's. A frame's time is the sum
    of the durations of the frames before it; None where the file states no duration (a
    multi-page TIFF). Raises VideoError when no frame can be read, and DamagedVideoError after
    the last good frame when decoding fails before the end of the file."""
    _check_reading(stride, start)
    try:
        with named_warnings(path):
            image = Image.open(path)
    except Exception as error:
        raise VideoError(f"cannot open {path} as an image: {error}") from error
    with image:
        try:
            with named_warnings(path):
                declared = getattr(image, "n_frames", 1)
        except Exception:  # a frame the count cannot pass: decoding stops there
            declared = None
        elapsed_ms, timed, index = 0.0, None, 0
        while declared is None or index < declared:
            try:
                with named_warnings(path):  # not around the yield: the caller's are its own
                    image.seek(index)
                    image.load()
            except Exception as error:
                if index == 0:
                    raise VideoError(f"{path} has no readable frame: {error}") from error
                of = f" of the {declared} frames the file declares" if declared else ""
                raise stopped_at(
                    index, elapsed_ms / 1000 if timed else None, f"{of} (truncated or corrupt file)"
                ) from error
            duration = image.info.get("duration")
            if timed is None:  # the first frame tells whether the file is timed
                timed = duration is not None
            if index % stride == 0 and index >= start:
                with named_warnings(path):
                    frame = to_rgb(upright(image.copy()))
                yield index, (elapsed_ms / 1000 if timed else None), frame
            elapsed_ms += float(duration or 0)
            index += 1
    if Path(path).suffix.lower() == ".gif" and not _ends_with_gif_trailer(path):
        # PIL counts a GIF's frames by scanning it, so one cut short seems whole and shorter
        raise stopped_at(
            index,
            elapsed_ms / 1000 if timed else None,
            ": the file ends without the GIF trailer (truncated file)",
        )


def stopped_at(index: int, time_s: float | None, why: str) -> DamagedVideoError:
    """The error of decoding that stopped at frame `index` (at time_s seconds, where known),
    with `why` after the frame."""
    at = f"frame {index}" + (f" ({time_s:.2f} s)" if time_s is not None else "")
    return DamagedVideoError(
        f"decoding stopped at {at}{why}; the frames before it were read", index, time_s
    )


def _ends_with_gif_trailer(path: str | Path) -> bool:
    """Whether a GIF file ends with its trailer byte (0x3B), as every complete one does."""
    with open(path, "rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) == b"\x3b"


def clip_fps(path: str | Path) -> float | None:
    """The frame rate of a video or an animated image (from its mean frame duration), or None.
    A damaged animated image gives the rate of the frames before the damage."""
    if Path(path).suffix.lower() not in ANIMATED_IMAGE_EXTENSIONS:
        return video_fps(path)
    durations = []  # of each frame, in ms: the last frame's counts too
    try:
        with named_warnings(path), Image.open(path) as image:
            for index in range(image.n_frames):
                image.seek(index)
                image.load()  # Pillow's WebP reader gives a frame's duration once decoded
                durations.append(image.info.get("duration"))
    except Exception:  # predict reports the damage in the file's rows
        pass
    total = sum(float(d or 0) for d in durations)  # as image_frames times them
    if len(durations) < 2 or durations[0] is None or total <= 0:
        return None
    return 1000 * len(durations) / total


def frames(
    path: str | Path, stride: int = 1, start: int = 0
) -> Iterator[tuple[int, float | None, Image.Image]]:
    """(frame index, time in seconds, RGB frame) for every stride-th frame, decoded one at a time.
    From frame `start` on (a job going on where it stopped): the frames before it are passed
    over as the stride's are, so indices, times and the damage check are a whole read's.
    A frame's time is the decoder's (its presentation time, which a variable frame rate spaces
    unevenly), see _FrameClock; None where neither the decoder nor a frame rate gives one.
    Decoding goes on to the decoder's end, past the frame count OpenCV reports (often an
    estimate). Raises VideoError when nothing can be read (EmptyVideoError where the file holds
    no frame or no video track), and DamagedVideoError after the last good frame where decoding
    stopped well before the end the file declares (see _shortfall)."""
    _check_reading(stride, start)
    if broken := broken_link(path):
        raise VideoError(f"{broken}; fix the link or remove it")
    if special := special_file(path):
        raise VideoError(f"{special}: give video files")
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise EmptyVideoError(f"video file {path} is empty (0 bytes)")
    if Path(path).suffix.lower() == TRANSPORT_STREAM and is_transport_stream(path) is False:
        raise VideoError(
            f"{path} is not an MPEG transport stream, the only .ts files read as videos (its "
            "first bytes are not a stream's packets; TypeScript files are named .ts too)"
        )
    capture = cv2.VideoCapture(opencv_name(path))
    if not capture.isOpened():
        capture.release()
        if no_picture := _no_picture(container_facts(path)):
            raise EmptyVideoError(f"video {path} {no_picture}: there is no frame to predict on")
        raise VideoError(
            f"cannot open video {path}: not a video, damaged or truncated (an .mp4 cut short "
            "loses its index), or a codec OpenCV lacks here"
        )
    fps = _rate(capture.get(cv2.CAP_PROP_FPS))
    declared = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    declared = int(declared) if math.isfinite(declared) and declared > 0 else 0
    clock = _FrameClock(fps)
    index = 0
    try:
        while True:
            # grab() skips a frame without converting it; read() = grab() + retrieve().
            if index % stride or index < start:
                if not capture.grab():
                    break
                clock.time(index, capture.get(cv2.CAP_PROP_POS_MSEC))
            else:
                ok, bgr = capture.read()
                if not ok:
                    break
                time_s = clock.time(index, capture.get(cv2.CAP_PROP_POS_MSEC))
                yield index, time_s, Image.fromarray(bgr[:, :, ::-1])
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise EmptyVideoError(f"video {path} has no readable frame (empty, truncated or corrupt)")
    end = clock.carried(index) if fps else clock.last  # where the next frame would have been
    if why := _shortfall(container_facts(path), end, declared, fps):
        raise stopped_at(index, end, why)


class _FrameClock:
    """The time of each frame read, in seconds: the decoder's own (OpenCV's CAP_PROP_POS_MSEC),
    or, where it gives none that fits (not a number, negative, 0 after the first frame as a raw
    .h264 stream without time stamps gives, or not after the frame before), the last good one
    carried on at the nominal rate: index / fps where no frame had one; None with neither. A
    decoder time within SNAP_S of index / fps is index / fps, so that a constant-rate video's
    times are the exact multiples of 1 / fps they always were."""

    def __init__(self, fps: float | None):
        self.fps = fps
        self.offset = 0.0  # the last good decoder time less index / fps at its frame
        self.last: float | None = None  # the time of the frame before

    def time(self, index: int, msec: float) -> float | None:
        t = msec / 1000
        good = math.isfinite(t) and t >= 0 and (index == 0 or t > 0)
        if good and (self.last is None or t > self.last):
            if self.fps:
                nominal = index / self.fps
                t = nominal if abs(t - nominal) < SNAP_S else t
                self.offset = t - nominal
        else:
            t = self.carried(index)
        if t is not None:
            self.last = t
        return t

    def carried(self, index: int) -> float | None:
        """Frame `index`'s time at the nominal rate from the last good decoder time."""
        return index / self.fps + self.offset if self.fps else None


def _rate(fps: float) -> float | None:
    """A frame rate OpenCV reports, or None where it is none (0, not a number, MAX_FPS or more)."""
    return fps if math.isfinite(fps) and 0 < fps < MAX_FPS else None


def _shortfall(facts: Container, end: float | None, declared: int, fps: float | None) -> str:
    """Why a video whose decoding stopped at `end` seconds is damaged, said after "decoding
    stopped at frame N (T s)"; "" where it is not. OpenCV's frame count is exact for an AVI but
    for other containers counts frames an MP4 edit list hides (a trimmed phone video) or is the
    container's duration (every track's: an audio track may run on) times a nominal rate (off for
    a variable one), so stopping short of it is no damage in itself. A video is damaged where
    decoding stops more than two frames short of the duration stated for its video track (an
    MP4's, a QuickTime's, edits applied; an AVI's frame count); else of the container's duration
    where the file is cut (an element runs past its end), or any time where that is all it says;
    a container whose structure cannot be checked must stop short of OpenCV's estimate by a clear
    margin (ESTIMATE_MARGIN_S, ESTIMATE_MARGIN). A whole Matroska file stopping short of its
    container's duration is an audio track longer than the video, not damage. A transport stream
    or motion JPEG states no duration (OpenCV's estimate shrinks with the file): one is damaged
    where it ends inside a packet or a frame."""
    if end is None:
        return ""
    estimate = declared / fps if declared and fps else None
    slack = 2 / fps if fps else 0.1  # two frames
    cut = " (truncated file)" if facts.whole is False else " (truncated or corrupt file)"
    stated = facts.video_s or (estimate if facts.kind == "avi" else None)
    if stated is not None:
        return f" of the {stated:.2f} s its header declares{cut}" if end < stated - slack else ""
    if facts.whole:
        return ""
    if facts.whole is False:
        if facts.kind in _ENDS_INSIDE:  # no duration to go by: the file's end says it
            return f", where the file ends inside {_ENDS_INSIDE[facts.kind]} (truncated file)"
        if estimate is None:
            return ", where the file ends short of the size its header declares (truncated file)"
        return (
            f" of the {estimate:.2f} s its header declares{cut}" if end < estimate - slack else ""
        )
    margin = max(ESTIMATE_MARGIN_S, ESTIMATE_MARGIN * estimate) if estimate else 0.0
    if estimate is not None and end < estimate - margin:
        return f" of the {estimate:.2f} s its header declares{cut}"
    return ""


# what a file of a kind without a stated duration, cut short, ends inside
_ENDS_INSIDE = {"ts": "a packet of its stream", "mjpeg": "a JPEG frame"}


def _no_picture(facts: Container) -> str:
    """What a file OpenCV cannot open holds instead of a picture, where its tracks say: "holds no
    video track, only audio", "holds a video track with no frame"; "" where they do not."""
    if facts.tracks is None:
        return ""
    if "video" not in facts.tracks:
        others = ", ".join(sorted(set(facts.tracks)))
        only = f", only {others} (a sound recording, or a video whose picture was removed)"
        return "holds no video track" + (only if others else "")
    if facts.video_frames == 0:
        return "holds a video track with no frame (a recording stopped before its first frame)"
    return ""


def opencv_name(path: str | Path) -> bytes:
    """The name to hand OpenCV for a video file: its absolute path, as bytes. FFmpeg reads a
    name with a colon before its first slash as a protocol and a resource (12:30:00.mp4,
    cam:1/a.mp4, pipe:0.mp4), and fails to open it or opens something else; an absolute path
    starts with a slash. Bytes, because OpenCV crashes the process on a str holding a name that
    is not UTF-8 (a Latin-1 name, held by Python with surrogate escapes)."""
    return os.fsencode(os.path.abspath(path))


def video_fps(path: str | Path) -> float | None:
    """The frame rate a video file declares, or None."""
    capture = cv2.VideoCapture(opencv_name(path))
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return _rate(fps)


# ---- what a video file's container states: its kind, whether the file is whole, its tracks ----


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


def draw_faces(image: Image.Image, faces: list[tuple[tuple[float, ...], str]]) -> Image.Image:
    """A copy of image with each (box x, y, w, h; caption) drawn: a rectangle and its caption."""
    out = image.convert("RGB").copy()
    pen = ImageDraw.Draw(out)
    width = max(1, round(max(out.size) / 300))
    font = label_font(out.size)
    pad = max(2, width)
    for (x, y, w, h), caption in faces:
        pen.rectangle((x, y, x + w, y + h), outline=BOX_COLOUR, width=width)
        left, top, right, bottom = pen.textbbox((0, 0), caption, font=font)
        high = bottom + pad
        top_y = y - high if y - high >= 0 else y + h
        pen.rectangle((x, top_y, x + right + 2 * pad, top_y + high), fill=BOX_COLOUR)
        pen.text((x + pad, top_y), caption, fill=TEXT_COLOUR, font=font)
    return out


def label_font(size: tuple[int, int]) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at about 1/40 of the image's longer side (at least MIN_LABEL_PX), so
    captions stay readable on a 4K frame; the fixed bitmap font where FreeType is missing."""
    px = max(MIN_LABEL_PX, round(max(size) / 40))
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or without FreeType
        return ImageFont.load_default()


PARTIAL = ".partial"  # a video copy being written: stem.partial.mp4 until it is whole


class VideoWriter:
    """Writes RGB frames to `stem` + .mp4 (mp4v) or, where that codec is missing, .avi (MJPG), at
    a constant `fps`: to `stem` + .partial.mp4 (.partial.avi) until close(), which renames it;
    close(whole=False), a job stopped halfway, leaves it under that name, never under the copy's.

    Opened on the first frame (its size fixes the video's; a later frame of another size, as a
    multi-page TIFF's may be, is scaled to fit it and padded black, since OpenCV drops such a
    frame); `path` is None until then. A frame written with its time goes where that time falls
    on the copy's constant rate, so the copy keeps the source's timing however unevenly its
    frames are spaced (a variable frame rate, a pause): the frame before is repeated up to it (the
    first frame fills any time before it), and a frame whose place an earlier one took already is
    left out (it is repeated in the place after, where the next frame comes later). Frames at
    the copy's rate are each written once. Without times, each frame is written once.
    """

    def __init__(self, stem: Path, fps: float | None):
        self.stem, self.fps = Path(stem), fps or 25.0
        self.path: Path | None = None
        self.size: tuple[int, int] | None = None
        self.written = 0  # frames in the file so far
        self._writer: cv2.VideoWriter | None = None
        self._last: np.ndarray | None = None  # the latest frame given, to repeat

    def write(self, image: Image.Image, time_s: float | None = None) -> None:
        if self._writer is None:
            self._open(image.size)
        if image.size != self.size:
            image = ImageOps.pad(image.convert("RGB"), self.size, color=(0, 0, 0))
        frame = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        place = self.written if time_s is None else round(time_s * self.fps)
        if place >= self.written:
            self._put(frame if self._last is None else self._last, place - self.written)
            self._put(frame, 1)
        self._last = frame

    def _put(self, frame: np.ndarray, times: int) -> None:
        for _ in range(times):
            self._writer.write(frame)
        self.written += max(times, 0)

    def _open(self, size: tuple[int, int]) -> None:
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        for fourcc, suffix in VIDEO_CODECS:
            path = self.stem.with_suffix(PARTIAL + suffix)
            code = cv2.VideoWriter_fourcc(*fourcc)
            writer = cv2.VideoWriter(opencv_name(path), code, self.fps, size)
            if writer.isOpened():
                self.path, self.size, self._writer = path, size, writer
                return
            writer.release()
        _check_writable(self.stem.with_suffix(PARTIAL + VIDEO_CODECS[0][1]))
        tried = ", ".join(f"{c} ({s})" for c, s in VIDEO_CODECS)
        raise VideoError(f"OpenCV here cannot write video with any of {tried}")

    def close(self, whole: bool = True) -> None:
        """Finish the file; where it is `whole`, give it the copy's name (path then names it)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if whole and self.path is not None:
            final = self.stem.with_suffix(self.path.suffix)
            os.replace(self.path, final)
            self.path = final


def _check_writable(path: Path) -> None:
    """Raise the file system's OSError, naming path, where a file cannot be made there (a name
    too long, a folder not writable, a full disk): OpenCV's writer says only that it failed."""
    existed = path.exists()
    with open(path, "ab"):
        pass
    if not existed:
        path.unlink()
