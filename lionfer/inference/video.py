"""Videos, streamed: frames are decoded one at a time (OpenCV; PIL for animated images), so memory
stays flat however long the clip; plus the drawing of boxes and labels and the annotated-video
writer used by predict."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from lionfer.data.images import broken_link, to_rgb

# Phones also write .3gp/.3g2, camcorders AVCHD's .mts/.m2ts; MPEG-TS's .ts is left out, being
# TypeScript's too (rename such a recording .mts).
VIDEO_EXTENSIONS = frozenset(
    f".{suffix}"
    for suffix in "mp4 avi mov mkv webm m4v mpg mpeg wmv flv 3gp 3g2 mts m2ts vob ogv asf".split()
)
VIDEO_KINDS = ", ".join(sorted(suffix[1:] for suffix in VIDEO_EXTENSIONS))  # for messages
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
    """A video whose decoding stopped before the frames its header declares: the frames before
    `frame` were yielded; `time_s` is that frame's time (None without a frame rate)."""

    def __init__(self, message: str, frame: int, time_s: float | None):
        super().__init__(message)
        self.frame, self.time_s = frame, time_s


# Containers whose header states the exact frame count; for the others OpenCV estimates it from
# the duration, so a few frames short of the estimate is no sign of damage.
EXACT_FRAME_COUNT = frozenset({".mp4", ".m4v", ".mov", ".avi", ".3gp", ".3g2"})


# Image formats that may hold several frames: an animated GIF, PNG (APNG) or WebP, a multi-page
# TIFF. Such a file with more than one frame is a clip, read frame by frame like a video.
ANIMATED_IMAGE_EXTENSIONS = frozenset({".gif", ".png", ".webp", ".tif", ".tiff"})


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_animated_image(path: str | Path) -> bool:
    """Whether path is an image file of more than one frame, or one whose frames cannot be
    counted (damaged after its first: read as a clip, the damage is reported where decoding
    stops). False for a file PIL cannot open, which is then read, and reported, as an image."""
    if Path(path).suffix.lower() not in ANIMATED_IMAGE_EXTENSIONS:
        return False
    try:
        image = Image.open(path)
    except Exception:  # PIL's zoo of decode errors: open_image names the problem later
        return False
    with image:
        try:
            return getattr(image, "n_frames", 1) > 1
        except Exception:
            return True


def is_clip(path: str | Path) -> bool:
    """A file read frame by frame: a video, or an image of several frames."""
    return is_video_file(path) or is_animated_image(path)


def clip_frames(
    path: str | Path, stride: int = 1
) -> Iterator[tuple[int, float | None, Image.Image]]:
    """frames() of a video, image_frames() of an animated image."""
    if Path(path).suffix.lower() in ANIMATED_IMAGE_EXTENSIONS:
        return image_frames(path, stride)
    return frames(path, stride)


def image_frames(
    path: str | Path, stride: int = 1
) -> Iterator[tuple[int, float | None, Image.Image]]:
    """(frame index, time in seconds, RGB frame) for every stride-th frame of an image file of
    several frames, as frames() gives a video's. A frame's time is the sum of the durations of
    the frames before it; None where the file states no duration (a multi-page TIFF). Raises
    VideoError when no frame can be read, and DamagedVideoError after the last good frame when
    decoding fails before the end of the file."""
    if stride < 1:
        raise ValueError(f"frame stride must be at least 1, got {stride}")
    try:
        image = Image.open(path)
    except Exception as error:
        raise VideoError(f"cannot open {path} as an image: {error}") from error
    with image:
        try:
            declared = getattr(image, "n_frames", 1)
        except Exception:  # a frame the count cannot pass: decoding stops there
            declared = None
        elapsed_ms, timed, index = 0.0, None, 0
        while declared is None or index < declared:
            try:
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
            if index % stride == 0:
                frame = to_rgb(ImageOps.exif_transpose(image.copy()))
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
        with Image.open(path) as image:
            for index in range(image.n_frames):
                image.seek(index)
                durations.append(image.info.get("duration"))
    except Exception:  # predict reports the damage in the file's rows
        pass
    total = sum(float(d or 0) for d in durations)  # as image_frames times them
    if len(durations) < 2 or durations[0] is None or total <= 0:
        return None
    return 1000 * len(durations) / total


def frames(path: str | Path, stride: int = 1) -> Iterator[tuple[int, float | None, Image.Image]]:
    """(frame index, time in seconds or None when the file has no frame rate, RGB frame) for every
    stride-th frame, decoded one at a time. Raises VideoError when nothing can be read, and
    DamagedVideoError after the last good frame when decoding stops before the declared end."""
    if stride < 1:
        raise ValueError(f"frame stride must be at least 1, got {stride}")
    if broken := broken_link(path):
        raise VideoError(f"{broken}; fix the link or remove it")
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise EmptyVideoError(f"video file {path} is empty (0 bytes)")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(
            f"cannot open video {path}: not a video, damaged or truncated (an .mp4 cut short "
            "loses its index), or a codec OpenCV lacks here"
        )
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if math.isfinite(fps) and fps > 0 else None
    declared = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    declared = int(declared) if math.isfinite(declared) and declared > 0 else 0
    index = 0
    try:
        while True:
            # grab() skips a frame without converting it; read() = grab() + retrieve().
            if index % stride:
                if not capture.grab():
                    break
            else:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield index, (index / fps if fps else None), Image.fromarray(bgr[:, :, ::-1])
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise EmptyVideoError(f"video {path} has no readable frame (empty, truncated or corrupt)")
    slack = 0 if Path(path).suffix.lower() in EXACT_FRAME_COUNT else max(2, declared // 50)
    if index < declared - slack:
        raise stopped_at(
            index,
            index / fps if fps else None,
            f" of the {declared} frames its header declares (truncated or corrupt file)",
        )


def video_fps(path: str | Path) -> float | None:
    """The frame rate a video file declares, or None."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return fps if math.isfinite(fps) and fps > 0 else None


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


class VideoWriter:
    """Writes RGB frames to `stem` + .mp4 (mp4v) or, where that codec is missing, .avi (MJPG).

    Opened on the first frame (its size fixes the video's; a later frame of another size, as a
    multi-page TIFF's may be, is scaled to fit it and padded black, since OpenCV drops such a
    frame); `path` is None until then.
    """

    def __init__(self, stem: Path, fps: float | None):
        self.stem, self.fps = Path(stem), fps or 25.0
        self.path: Path | None = None
        self.size: tuple[int, int] | None = None
        self._writer: cv2.VideoWriter | None = None

    def write(self, image: Image.Image) -> None:
        if self._writer is None:
            self._open(image.size)
        if image.size != self.size:
            image = ImageOps.pad(image.convert("RGB"), self.size, color=(0, 0, 0))
        self._writer.write(np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1]))

    def _open(self, size: tuple[int, int]) -> None:
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        for fourcc, suffix in VIDEO_CODECS:
            path = self.stem.with_suffix(suffix)
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), self.fps, size)
            if writer.isOpened():
                self.path, self.size, self._writer = path, size, writer
                return
            writer.release()
        tried = ", ".join(f"{c} ({s})" for c, s in VIDEO_CODECS)
        raise VideoError(f"OpenCV here cannot write video with any of {tried}")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
