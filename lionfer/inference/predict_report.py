"""What `lionfer predict` says at its end (PredictReport): faces, images, videos and frames read,
rows written, inputs skipped by reason (SKIP_REASONS), files ignored or left out, and what an
earlier run of the same job had done."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lionfer.data.image_check import MIN_IMAGE_SIDE
from lionfer.data.images import path_text, raw_note
from lionfer.inference.sources import ignored_kinds
from lionfer.words import counted

SKIP_REASONS = {
    "unreadable": "unreadable",
    "no_face": "no face found",
    "empty_video": "empty video",
    "error": "errors",
}


@dataclass
class PredictReport:
    """What one predict_files call did."""

    out: Path
    counts: Counter = field(default_factory=Counter)  # images, videos, frames, faces, rows, ...
    skipped: Counter = field(default_factory=Counter)  # inputs by reason (SKIP_REASONS)
    annotated: list[Path] = field(default_factory=list)
    excluded: int = 0  # files inside the --annotate folder, not read as inputs
    ignored: Counter = field(default_factory=Counter)  # files in folders left out, by extension
    annotate_dir: Path | None = None
    went_on: tuple[str, int] | None = None  # a clip cut off in an earlier run, and its next frame

    def summary(self) -> str:
        c = self.counts
        lines = [
            f"{counted(c['faces'], 'face')} from {counted(c['images'], 'image')} and "
            f"{counted(c['videos'], 'video')} ({counted(c['frames'], 'video frame')} read): "
            f"{counted(c['rows'], 'row')} in {self.out}"
        ]
        skipped = ", ".join(f"{SKIP_REASONS[k]} {n}" for k, n in sorted(self.skipped.items()))
        lines.append(f"skipped inputs: {skipped or 'none'}")
        if c["damaged_videos"]:
            lines.append(
                f"damaged videos, read up to the damage (see their error rows): "
                f"{c['damaged_videos']}"
            )
        if c["small_faces"]:
            lines.append(
                f"{counted(c['small_faces'], 'face')} smaller than {MIN_IMAGE_SIDE} px on a side "
                "(their rows' w and h): upscaled to the model's input, they carry little detail"
            )
        if c["frames_without_face"]:
            lines.append(f"video frames without a face: {c['frames_without_face']}")
        if c["ignored"]:
            kinds = f" ({ignored_kinds(self.ignored)})" if self.ignored else ""
            lines.append(
                f"ignored {counted(c['ignored'], 'file')} in folders or globs, neither images nor "
                f"videos{kinds}" + raw_note(c["raw_photos"])
            )
        if self.excluded:
            lines.append(
                f"skipped {counted(self.excluded, 'file')} inside the --annotate folder "
                f"{self.annotate_dir} (annotated output is never read as input)"
            )
        if c["resumed"]:
            lines.append(
                f"already complete from an earlier run: {counted(c['resumed'], 'input')} (counted "
                "above)"
            )
        if c["copies_missing"]:
            lines.append(
                f"no annotated copy of {counted(c['copies_missing'], 'input')} finished by an "
                "earlier run without --annotate; pass --overwrite to predict everything again "
                "with copies"
            )
        if self.went_on:
            name, frame = self.went_on
            lines.append(
                f"went on with {path_text(name)} from frame {frame}, where an earlier run stopped "
                "(its frames before it counted above)"
            )
        return "\n".join(lines)
