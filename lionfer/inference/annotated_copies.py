"""Predict's annotated copies: each face's box and caption drawn on an image or a frame
(draw_faces), and the writer of an annotated video at the source's timing (VideoWriter)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from lionfer.inference.video import VideoError, opencv_name

# (fourcc, suffix) tried in order; mp4v ships with every OpenCV build, MJPG/avi is the fallback.
VIDEO_CODECS = (("mp4v", ".mp4"), ("MJPG", ".avi"))
BOX_COLOUR = (255, 64, 64)
TEXT_COLOUR = (255, 255, 255)
MIN_LABEL_PX = 11  # caption height on small images; it grows with the image (label_font)


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
