"""`lionfer predict`'s job (predict_files): every input through a Predictor into a predictions
file (lionfer.inference.predictions_file, which says how it is kept and resumed), with annotated
copies (lionfer.inference.annotate_folder) and the closing report (PredictReport); a clip being
read marks how far its rows go every CHECKPOINT_S seconds.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from lionfer.data.image_check import MIN_IMAGE_SIDE
from lionfer.errors import InputError
from lionfer.inference.annotate_folder import Annotator, exclude_folder
from lionfer.inference.predict_report import PredictReport
from lionfer.inference.predictions_file import (
    PROGRESS_SUFFIX,
    PredictionsFile,
    check_progress_name,
    file_stamp,
    has_content,
    is_progress_file,
    output_format,
    progress_path,
)
from lionfer.inference.predictor import Frame, Predictor, SourceDone, whole_number
from lionfer.inference.sources import Source, collect_sources, refuse_reading
from lionfer.training.runfolder import check_out_file, refuse_run_file

# How often a clip being read marks how far its rows go, in seconds: a job stopped halfway
# through a long video goes on from its last mark, not from the video's start.
CHECKPOINT_S = 10.0


def predict_files(
    predictor: Predictor,
    inputs: list[str],
    out: str | Path,
    fmt: str | None = None,
    cropped: bool = False,
    frame_stride: int = 1,
    annotate: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictReport:
    """Predict on every input into `out` (see lionfer.inference.predictions_file); resumable."""
    out = Path(out)
    fmt = _checked_out(out, fmt)
    # checked before the output file is touched
    whole_number("the frame stride (--frame-stride, frame_stride)", frame_stride, 1)
    sources, ignored, raw_photos = collect_sources(inputs)
    refuse_reading(out, sources, predictor.info.path)
    annotate_dir = Path(annotate) if annotate else None
    sources, excluded, annotator = _annotated(annotate_dir, frame_stride, sources)
    file = _opened(out, fmt, predictor, cropped, frame_stride, sources, overwrite, annotator)
    report = PredictReport(out, excluded=excluded, annotate_dir=annotate_dir, ignored=ignored)
    _count_earlier(report, file, sources, raw_photos, annotator)
    todo = [s for s in sources if s.name not in file.done]
    bar = tqdm(total=len(todo), desc="predict", unit="input") if progress else _NoBar()
    before = (report.counts.copy(), report.skipped.copy())
    start_frames = _go_on(report, file)
    try:
        items = predictor.stream(
            todo, cropped, frame_stride, keep_images=bool(annotator), start_frames=start_frames
        )
        _write(items, predictor, frame_stride, file, report, annotator, bar, before)
    finally:
        bar.close()
        file.close()
        if annotator:
            annotator.close()
    return report


def _checked_out(out: Path, fmt: str | None) -> str:
    """The format of --out (output_format), once it is known to be a file predict may write: not
    a folder, a run's own file or another job's progress file, with room for its progress file's
    name."""
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name such as {out / 'faces.csv'}")
    check_out_file(out)
    if out.is_file() and is_progress_file(out):
        raise InputError(
            f"--out {out} is the progress file of the predictions in "
            f"{out.name.removesuffix(PROGRESS_SUFFIX)}, which predict keeps to resume that job; "
            "choose another --out"
        )
    check_progress_name(out)
    refuse_run_file(out)
    return output_format(out, fmt)


def _annotated(
    annotate_dir: Path | None, frame_stride: int, sources: list[Source]
) -> tuple[list[Source], int, Annotator | None]:
    """(the inputs outside the --annotate folder, how many were inside it, the job's Annotator,
    its copies' names checked); without --annotate (None) the inputs as they are, 0 and None."""
    if annotate_dir is None:
        return sources, 0, None
    if annotate_dir.exists() and not annotate_dir.is_dir():
        raise InputError(
            f"--annotate {annotate_dir} is a file; give a folder (it is created if missing)"
        )
    sources, excluded = exclude_folder(sources, annotate_dir)
    annotator = Annotator(annotate_dir, frame_stride, sources)
    annotator.check_names(sources)
    return sources, excluded, annotator


def _opened(
    out: Path,
    fmt: str,
    predictor: Predictor,
    cropped: bool,
    frame_stride: int,
    sources: list[Source],
    overwrite: bool,
    annotator: Annotator | None,
) -> PredictionsFile:
    """The job's predictions file, started or resumed; a new job's annotated copies are first
    checked not to replace files in the --annotate folder."""
    # a resumed job's copies are its own (a JSON lines job stopped before its first row leaves
    # an empty --out beside its progress file)
    kept = progress_path(out)
    fresh = not has_content(out) and not (kept.is_file() and is_progress_file(kept))
    if annotator and fresh and not overwrite:
        annotator.check_free(sources)
    settings = job_settings(predictor, cropped, frame_stride, sources)
    stamps = {s.name: file_stamp(s.path) for s in sources if s.path is not None}
    # an annotated video is written whole, so a clip cut off is read again from its start
    return PredictionsFile(
        out, fmt, predictor.columns, settings, overwrite, stamps, go_on=annotator is None
    )


def _count_earlier(
    report: PredictReport,
    file: PredictionsFile,
    sources: list[Source],
    raw_photos: int,
    annotator: Annotator | None,
) -> None:
    """Count in the report what the earlier runs of the job wrote, the files ignored, and the
    inputs finished before without an annotated copy."""
    for record in file.done.values():  # what the earlier runs wrote counts too
        report.counts.update(record.get("counts", {}))
        report.skipped.update(record.get("skipped", {}))
    resumed = sum(s.name in file.done for s in sources)
    report.counts.update(ignored=report.ignored.total(), raw_photos=raw_photos, resumed=resumed)
    if annotator and file.done:
        report.counts["copies_missing"] = annotator.missing(file.done, sources)


def _go_on(report: PredictReport, file: PredictionsFile) -> dict[str, int]:
    """Predictor.stream's start_frames: the clip an earlier run cut off, by its next frame, its
    rows so far counted in the report; {} where none was."""
    if not file.partial:
        return {}
    # its rows so far count in its finished record, as a whole read's would
    report.counts.update(file.partial.get("counts", {}))
    report.skipped.update(file.partial.get("skipped", {}))
    report.went_on = (file.partial["partial"], file.partial["next_frame"])
    return dict([report.went_on])


def _write(
    items: Iterator[Frame | SourceDone],
    predictor: Predictor,
    frame_stride: int,
    file: PredictionsFile,
    report: PredictReport,
    annotator: Annotator | None,
    bar: tqdm | _NoBar,
    before: tuple,
) -> None:
    """Write the rows of each frame streamed, count them, annotate them, and record each input
    as finished after its last row (a clip's rows so far every CHECKPOINT_S, without --annotate).
    before: the report's (counts, skipped) when the current input started."""
    marked = time.monotonic()
    for item in items:
        if isinstance(item, SourceDone):
            _count_source(report, item.source)
            if annotator:  # its copy whole before it counts as done
                annotator.finish(item.source, report)
            file.finished(item.source.name, report.counts - before[0], report.skipped - before[1])
            before = (report.counts.copy(), report.skipped.copy())
            bar.update(1)
            continue
        rows = predictor.rows(item)
        file.write(rows)
        _count_frame(report, item, len(rows))
        if annotator:
            annotator.add(item, rows)
        elif item.batch_end and _decoded_frame(item) and time.monotonic() - marked >= CHECKPOINT_S:
            counts, skipped = report.counts - before[0], report.skipped - before[1]
            file.mark(item.source.name, item.index + frame_stride, counts, skipped)
            marked = time.monotonic()
        bar.set_postfix(faces=report.counts["faces"])


def job_settings(
    predictor: Predictor, cropped: bool, frame_stride: int, sources: list[Source]
) -> dict:
    info = predictor.info
    names = "\n".join(source.name for source in sources).encode("utf-8", "surrogateescape")
    return {
        "model": info.fingerprint,
        "detector": "none (cropped)" if cropped else predictor.detector_name,
        "face_size": predictor.face_size,
        "frame_stride": frame_stride,
        "embedding_dim": predictor.embedding_dim,
        "inputs": {"count": len(sources), "sha256": hashlib.sha256(names).hexdigest()[:16]},
    }


class _NoBar:
    """Stands in for tqdm when progress is off: no object whose teardown a late Ctrl-C can
    interrupt with a traceback."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values) -> None:
        pass

    def close(self) -> None:
        pass


def _count_source(report: PredictReport, source: Source) -> None:
    report.counts["videos" if source.kind == "video" else "images"] += 1


def _decoded_frame(frame: Frame) -> bool:
    """A frame of a clip that was read (with or without a face), not a row saying why reading
    stopped or failed: the frames after it can be read on from it."""
    return frame.source.kind == "video" and frame.reason in ("", "no_face", "error")


def _count_frame(report: PredictReport, frame: Frame, rows: int) -> None:
    report.counts["rows"] += rows
    report.counts["faces"] += len(frame.faces)
    # a face's detail is the pixels it was read from (boxes are in the file's pixels)
    side = MIN_IMAGE_SIDE * frame.scale
    report.counts["small_faces"] += sum(min(f.box[2], f.box[3]) < side for f in frame.faces)
    video = frame.source.kind == "video"
    report.counts["frames"] += int(video and frame.reason in ("", "no_face", "error"))
    if frame.reason == "damaged_video":
        report.counts["damaged_videos"] += 1
    elif video and frame.reason in ("no_face", "error"):
        report.counts["frames_without_face"] += 1
    elif frame.reason:
        report.skipped[frame.reason] += 1
