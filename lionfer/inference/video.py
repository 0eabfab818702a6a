"""Videos, streamed: frames are decoded one at a time (OpenCV; PIL for animated images), so memory
stays flat however long the clip, each timed as its decoder times it; which files are videos and
clips; and the verdict on a read that stopped early, from what the container states
(video_containers), to tell a damaged video from one whose frame count OpenCV overstates."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
from PIL import Image

from lionfer.data.images import broken_link, named_warnings, special_file, to_rgb, upright
from lionfer.inference.video_containers import Container, container_facts, is_transport_stream

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
