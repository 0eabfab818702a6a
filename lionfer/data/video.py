"""Videos, streamed: frames are decoded one at a time (OpenCV), so memory stays flat however long
the clip; plus the drawing of boxes and labels and the annotated-video writer used by predict."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
)
# (fourcc, suffix) tried in order; mp4v ships with every OpenCV build, MJPG/avi is the fallback.
VIDEO_CODECS = (("mp4v", ".mp4"), ("MJPG", ".avi"))
BOX_COLOUR = (255, 64, 64)
TEXT_COLOUR = (255, 255, 255)


class VideoError(ValueError):
    """A video that cannot be opened or holds no readable frame."""


class EmptyVideoError(VideoError):
    """A video file that opens but yields no frame."""


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def frames(path: str | Path, stride: int = 1) -> Iterator[tuple[int, float | None, Image.Image]]:
    """(frame index, time in seconds or None when the file has no frame rate, RGB frame) for every
    stride-th frame, decoded one at a time. Raises VideoError when nothing can be read."""
    if stride < 1:
        raise ValueError(f"frame stride must be at least 1, got {stride}")
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise EmptyVideoError(f"video file {path} is empty (0 bytes)")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(f"cannot open video {path}: not a video, or a codec OpenCV lacks here")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if math.isfinite(fps) and fps > 0 else None
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
    for (x, y, w, h), caption in faces:
        pen.rectangle((x, y, x + w, y + h), outline=BOX_COLOUR, width=width)
        left, top, right, bottom = pen.textbbox((x, y), caption)
        top_y = y - (bottom - top) - 2 if y - (bottom - top) - 2 >= 0 else y + h
        pen.rectangle(
            (x, top_y, x + (right - left) + 4, top_y + (bottom - top) + 2), fill=BOX_COLOUR
        )
        pen.text((x + 2, top_y), caption, fill=TEXT_COLOUR)
    return out


class VideoWriter:
    """Writes RGB frames to `stem` + .mp4 (mp4v) or, where that codec is missing, .avi (MJPG).

    Opened on the first frame (its size fixes the video's); `path` is None until then.
    """

    def __init__(self, stem: Path, fps: float | None):
        self.stem, self.fps = Path(stem), fps or 25.0
        self.path: Path | None = None
        self._writer: cv2.VideoWriter | None = None

    def write(self, image: Image.Image) -> None:
        if self._writer is None:
            self._open(image.size)
        self._writer.write(np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1]))

    def _open(self, size: tuple[int, int]) -> None:
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        for fourcc, suffix in VIDEO_CODECS:
            path = self.stem.with_suffix(suffix)
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), self.fps, size)
            if writer.isOpened():
                self.path, self._writer = path, writer
                return
            writer.release()
        tried = ", ".join(f"{c} ({s})" for c, s in VIDEO_CODECS)
        raise VideoError(f"OpenCV here cannot write video with any of {tried}")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
