"""The --annotate folder of `lionfer predict`: where each input's annotated copy goes, at its path
below the inputs' deepest common folder, so two inputs never share one (a copy whose name another
input's copy takes is numbered) and nothing is written outside it; files inside that folder are
never read as inputs (exclude_folder). The Annotator draws each frame's faces and writes the copies.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from lionfer.atomic import replacing
from lionfer.data.images import path_text
from lionfer.errors import InputError
from lionfer.inference.annotated_copies import PARTIAL, VIDEO_CODECS, VideoWriter, draw_faces
from lionfer.inference.predict_report import PredictReport
from lionfer.inference.predictions_file import name_max
from lionfer.inference.predictor import Frame
from lionfer.inference.sources import Source, located
from lionfer.inference.video import ANIMATED_IMAGE_EXTENSIONS, clip_fps


def exclude_folder(sources: list[Source], folder: Path) -> tuple[list[Source], int]:
    """(the sources outside folder, how many were inside it): the --annotate folder's files are
    lionfer's output, never input, wherever the folder is."""
    inside = folder.resolve()
    kept = [s for s in sources if s.path is None or not s.path.resolve().is_relative_to(inside)]
    if sources and not kept:
        raise InputError(
            f"every input is inside the --annotate folder {folder}, whose files are never read as "
            "inputs; choose another --annotate folder"
        )
    return kept, len(sources) - len(kept)


def annotation_root(sources: list[Source]) -> Path | None:
    """The deepest folder holding every file input (resolved), or None without file inputs."""
    parents = [str(located(s.path).parent) for s in sources if s.path is not None]
    return Path(os.path.commonpath(parents)) if parents else None


def annotated_path(folder: Path, source: Source, root: Path | None) -> Path:
    """folder / the source's absolute path below root (annotation_root of every input), so that
    `../in/a.jpg` and `in/a.jpg` stay apart and an absolute path is not copied whole; a symbolic
    link's copy is at the link's path, not its target's (which may be another input); an image in
    memory is folder / memory_N.png."""
    if source.path is None or root is None:
        return folder / f"{source.name.replace(':', '_')}.png"
    return folder / located(source.path).relative_to(root)


def video_stem(target: Path) -> Path:
    """Where a video's annotated copy goes, less its suffix: clip.avi -> clip.avi.mp4, so that
    two inputs never share an annotated video."""
    return target.with_name(target.name + ".video")


def copy_paths(folder: Path, sources: list[Source], root: Path | None) -> dict[str, Path]:
    """Where each source's annotated copy goes: annotated_path (a video's less its suffix,
    video_stem), with ".png" added where PIL cannot write the image's format (a.gif -> a.gif.png);
    numbered where another input's copy takes that name (`shot`, a JPEG named without a suffix,
    -> shot.1.png beside the copy of `shot.png`)."""
    copies, taken, as_png = {}, set(), []
    for source in sources:
        target = annotated_path(folder, source, root)
        if source.kind == "video":
            copies[source.name] = video_stem(target)
        elif save_format(target):
            copies[source.name] = _free(target, taken)
        else:
            as_png.append((source, target))
    for source, target in as_png:  # after the copies that keep their input's name
        copies[source.name] = _free(target.with_name(target.name + ".png"), taken)
    return copies


def _free(path: Path, taken: set[Path]) -> Path:
    """path, or path numbered before its suffix (shot.1.png, shot.2.png, ...) where a copy in
    `taken` has its name; added to taken."""
    free, n = path, 0
    while free in taken:
        n += 1
        free = path.with_name(f"{path.stem}.{n}{path.suffix}")
    taken.add(free)
    return free


def save_format(target: Path) -> str | None:
    """The format PIL writes a file named as target in, by its suffix; None where it writes none."""
    fmt = Image.registered_extensions().get(target.suffix.lower())
    return fmt if fmt is not None and fmt in Image.SAVE else None


def save_annotated(image: Image.Image, target: Path) -> Path:
    """Save `image` at `target` in the format its suffix names, or, where PIL cannot write that
    format or this image's mode in it (.gif frames, a .tif mode, a suffix it does not know), as
    PNG at target + ".png" (a.gif -> a.gif.png: never the annotated copy of another input a.png).
    Each is written whole through a temporary file, so a failed write (a full disk) leaves no
    partial image and is raised as the OSError it is, naming the file. Returns the path."""
    fmt = save_format(target)
    if fmt is not None:
        try:
            _save_whole(image, target, fmt)
            return target
        except (KeyError, ValueError):  # a mode or option the format does not take
            pass
        except OSError as error:
            if error.errno is not None:  # the file system's: no space, too large, read-only
                raise
            # PIL's own "cannot write mode RGBA as JPEG": the format cannot hold this image
    fallback = target.with_name(target.name + ".png")
    _save_whole(image, fallback, "PNG")
    return fallback


def _save_whole(image: Image.Image, target: Path, fmt: str) -> None:
    with replacing(target) as tmp:
        image.save(tmp, format=fmt)


class Annotator:
    """Writes each image with its boxes and labels, and each video as an annotated video."""

    def __init__(self, folder: Path, frame_stride: int, sources: list[Source]):
        self.folder, self.frame_stride = folder, frame_stride
        self.root = annotation_root(sources)  # of every input, also those done before a resume
        self.copies = copy_paths(folder, sources, self.root)  # source name -> its copy's path
        self.videos: dict[str, VideoWriter] = {}

    def add(self, frame: Frame, rows: list[dict]) -> None:
        if frame.image is None:  # an input that could not be read
            return
        faces = [  # rows give boxes in the file's pixels, frame.scale of the image's
            (
                tuple(r[k] / frame.scale for k in ("x", "y", "w", "h")),
                f"{r['label']} {max(self._probs(r)):.2f}",
            )
            for r in rows
            if r["label"] is not None
        ]
        image = draw_faces(frame.image, faces)
        target = self.copies[frame.source.name]
        if frame.source.kind == "video":
            writer = self.videos.get(frame.source.name)
            if writer is None:
                fps = (clip_fps(frame.source.path) or 25.0) / self.frame_stride
                writer = self.videos[frame.source.name] = VideoWriter(target, fps)
            # a video's frames go at their times; an animated image's, at its mean rate, once each
            animated = frame.source.path.suffix.lower() in ANIMATED_IMAGE_EXTENSIONS
            writer.write(image, None if animated else frame.time_s)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        save_annotated(image, target)

    def check_free(self, sources: list[Source]) -> None:
        """Refuse a job whose annotated copies would replace files already in the folder (an
        earlier job's, or the user's own), before anything is written."""
        for source in sources:
            taken = next((p for p in self.copy_names(source) if p.exists()), None)
            if taken is not None:
                raise InputError(
                    f"--annotate {self.folder} already holds {taken}, where the annotated copy "
                    f"of {source.name} goes; choose another --annotate folder, or pass "
                    "--overwrite to replace its files"
                )

    def check_names(self, sources: list[Source]) -> None:
        """Refuse a job whose annotated copies, or the temporary files they are written through
        (an image's + .tmp, a video's .partial.mp4), would have names longer than the file system
        takes, before anything is written."""
        limit = name_max(self.folder / "copy")  # the folder's file system's
        for source in sources:
            copy = self.copies[source.name]
            names = [copy.name + ".tmp"]  # save_annotated writes it through a temporary file
            if source.kind == "video":  # VideoWriter writes it as .partial.mp4 until it is whole
                names = [copy.with_suffix(PARTIAL + suffix).name for _, suffix in VIDEO_CODECS]
            longest = max(len(os.fsencode(name)) for name in names)
            if longest > limit:
                own = len(os.fsencode(source.path.name)) if source.path else 0
                raise InputError(
                    f"--annotate {self.folder}: the annotated copy of {path_text(source.name)} "
                    f"needs a name of {longest} bytes ({longest - own} more than the input's), "
                    f"and this file system takes names of at most {limit} bytes; rename the "
                    f"input to at most {limit - longest + own} bytes, or leave out --annotate"
                )

    @staticmethod
    def _probs(row: dict) -> list[float]:
        return [v for k, v in row.items() if k.startswith("p_")]

    def finish(self, source: Source, report: PredictReport) -> None:
        writer = self.videos.pop(source.name, None)
        if writer is not None:
            writer.close()
            report.annotated.append(writer.path)

    def close(self) -> None:
        """Close the copies of videos cut off (a job stopped): each stays a .partial file."""
        for writer in self.videos.values():
            writer.close(whole=False)
        self.videos.clear()

    def missing(self, done: dict[str, dict], sources: list[Source]) -> int:
        """How many of the inputs finished by earlier runs have no annotated copy here (those
        runs were without --annotate, or wrote their copies elsewhere)."""
        return sum(
            not any(name.exists() for name in self.copy_names(source))
            for source in sources
            if source.name in done and source.path is not None
        )

    def copy_names(self, source: Source) -> list[Path]:
        """The names an input's annotated copy may have: a video's with each codec's suffix, an
        image's as planned or with .png added (save_annotated's fallback)."""
        copy = self.copies[source.name]
        if source.kind == "video":
            return [copy.with_suffix(suffix) for _, suffix in VIDEO_CODECS]
        return [copy, copy.with_name(copy.name + ".png")]
