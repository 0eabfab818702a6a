"""`lionfer predict`'s output: a CSV or JSONL predictions file written row by row and flushed, a
progress file beside it (OUT.progress) that makes an interrupted job resumable, annotated images
and videos, and the closing skip report.

OUT.progress is JSON lines: first the job's settings (model fingerprint, columns, detection
settings, a digest of the list of inputs), then one {"source", "offset", "counts", "skipped",
"stamp"} line per finished input, written after that input's rows are flushed ("stamp": the input
file's size and modification time). While a video or animated image is read, a {"partial",
"next_frame", "offset", "counts", "skipped", "stamp"} line every CHECKPOINT_S seconds marks how far
its rows go ("partial": its name; at the end of a batch, so that a job going on from it batches
the frames as an uninterrupted one; not with --annotate, whose annotated video is written whole).
Rerunning the same command truncates OUT to the last line's offset (rows of an input cut off
after it go), skips the finished inputs, goes on with a clip cut off at its last mark from the
frame after it (from its start with --annotate) and reports the whole file. An existing OUT that
is not a lionfer predictions file, one written with other settings or for another list of
inputs, or one whose predicted inputs have changed since, is refused unless overwrite is given;
so is an --out that is another job's progress file, even with overwrite.

Annotated copies go under the --annotate folder at their path below the inputs' deepest common
folder, so two inputs never share one (a copy whose name another input's copy takes is numbered)
and nothing is written outside it; files inside that folder are never read as inputs.

A file name that is not UTF-8 (surrogate escapes in Python) is written to OUT with its bytes as
\\xNN (path_text), so that OUT stays UTF-8; OUT.progress keeps it exactly (JSON's \\udcNN).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from lionfer.atomic import csv_text, naming, replacing
from lionfer.data.images import path_text, raw_note
from lionfer.inference.predictor import (
    FIXED_COLUMNS,
    Frame,
    InputError,
    Predictor,
    SourceDone,
    whole_number,
)
from lionfer.inference.sources import (
    Source,
    collect_sources,
    ignored_kinds,
    located,
    refuse_reading,
)
from lionfer.inference.video import (
    ANIMATED_IMAGE_EXTENSIONS,
    PARTIAL,
    VIDEO_CODECS,
    VideoWriter,
    clip_fps,
    draw_faces,
)
from lionfer.training.runfolder import (
    check_out_file,
    longest_name,
    nearest_existing,
    refuse_run_file,
)
from lionfer.words import counted

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
PROGRESS_SUFFIX = ".progress"
# How often a clip being read marks how far its rows go, in seconds: a job stopped halfway
# through a long video goes on from its last mark, not from the video's start.
CHECKPOINT_S = 10.0
SKIP_REASONS = {
    "unreadable": "unreadable",
    "no_face": "no face found",
    "empty_video": "empty video",
    "error": "errors",
}


def output_format(out: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("csv", "jsonl"):
            raise InputError(f"unknown --format {fmt!r}; choose csv or jsonl")
        named = FORMATS.get(out.suffix.lower())
        if named is not None and named != fmt:  # JSON lines in p.csv: a spreadsheet's garbage
            raise InputError(
                f"--format {fmt} into {out.name}, a {named} file's name: name it for its format "
                "or drop --format"
            )
        return fmt
    if out.suffix.lower() not in FORMATS:
        raise InputError(
            f"cannot tell the format of {out} from its suffix; name it .csv or .jsonl, or pass "
            "--format csv|jsonl"
        )
    return FORMATS[out.suffix.lower()]


# Columns of seconds: written to the microsecond, not to 6 significant digits, which from
# 10,000 s (2 h 47 min) on would give 0.1 s steps and three frames of a 30 fps video one time.
TIME_COLUMNS = frozenset({"time_s"})


def format_value(value, column: str = "") -> str | float | int | None:
    """Floats with 6 significant digits, a time column's (TIME_COLUMNS) to the microsecond; None
    stays None (empty in CSV, null in JSONL); text with the bytes of a file name that is not UTF-8
    as \\xNN (path_text)."""
    if isinstance(value, float):
        return round(value, 6) if column in TIME_COLUMNS else float(f"{value:.6g}")
    if isinstance(value, str):
        return path_text(value)
    return value


class PredictionsFile:
    """The output file and its progress file; see the module docstring."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        columns: list[str],
        settings: dict,
        overwrite: bool,
        stamps: dict[str, list[int] | None] | None = None,
        go_on: bool = True,
    ):
        """stamps: each input file's size and modification time (file_stamp) by its name, kept
        with it once it is complete, so that a resumed job refuses inputs changed since.
        go_on: a clip cut off after a mark (checkpoint) goes on from there on resume; False
        (annotating, whose video copy is written whole) drops its rows and reads it again."""
        self.path, self.fmt, self.columns = Path(path), fmt, columns
        self.stamps = stamps or {}
        self.progress_path = progress_path(self.path)
        self.settings = {**settings, "format": fmt, "columns": columns}
        self.done: dict[str, dict] = {}  # finished source -> its progress record
        self.partial: dict | None = None  # the mark of a clip cut off, to go on from
        self.go_on = go_on
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite or not has_content(self.path):
            self._check_progress_path(overwrite)
            self._start()
        else:
            self._resume()
        self._out = self.path.open("ab")
        self._progress = self.progress_path.open("a", encoding="utf-8")

    def _check_progress_path(self, overwrite: bool) -> None:
        """Refuse to replace a file of the user's that happens to be named OUT.progress."""
        path = self.progress_path
        if overwrite or not path.exists() or (path.is_file() and is_progress_file(path)):
            return
        raise InputError(
            f"{path}, where predict keeps its progress beside --out, exists and is not lionfer's; "
            "move it away, choose another --out, or pass --overwrite to replace it"
        )

    def _start(self) -> None:
        """The output's header and the progress file's; where either fails (a full disk), both
        files go again: half a header would make the next run refuse them."""
        header = b""
        if self.fmt == "csv":
            header = self._encode_csv(self.columns)
        record = {"lionfer_predictions": 1, "settings": self.settings, "offset": len(header)}
        try:
            with naming(self.path):
                self.path.write_bytes(header)
            with naming(self.progress_path):
                self.progress_path.write_text(json.dumps(record) + "\n", encoding="utf-8")
        except OSError:
            for path in (self.path, self.progress_path):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            raise

    def _resume(self) -> None:
        if not is_predictions_file(self.path, self.fmt):
            raise InputError(
                f"{self.path} exists and is not a lionfer predictions file; choose another --out, "
                "or pass --overwrite to replace it"
            )
        if not self.progress_path.is_file():
            raise InputError(
                f"{self.path} holds predictions but {self.progress_path.name}, which says which "
                "inputs are complete, is missing; pass --overwrite to start again or choose "
                "another --out"
            )
        header, finished, ends = read_progress_lines(self.progress_path)
        header = {"embedding_dim": 0, **header}  # a file from before embeddings: none
        changed = sorted(
            k
            for k in {*header, *self.settings}
            if header.get(k) != self.settings.get(k) and (k != "inputs" or k in header)
        )  # a file from before inputs were recorded resumes as it did then
        if changed == ["inputs"]:
            then, now = header.get("inputs", {}), self.settings["inputs"]
            raise InputError(
                f"{self.path} holds predictions for another list of inputs ({then.get('count')} "
                f"inputs then, {now['count']} now); run with the same inputs to resume, pass "
                "--overwrite to replace the file, or choose another --out"
            )
        if changed:
            raise InputError(
                f"{self.path} was written with other settings ({', '.join(changed)} "
                f"{'differs' if len(changed) == 1 else 'differ'}: "
                "another model, format, detection settings, embeddings or list of inputs); pass "
                "--overwrite to replace it or choose another --out"
            )
        # the records the job goes on from: all but those whose rows are not in the file (a job
        # stopped between cutting the file back and cutting these records)
        size = self.path.stat().st_size
        kept = max(i for i, r in enumerate(finished) if r["offset"] <= size or i == 0)
        finished = finished[: kept + 1]
        done = {r["source"]: r for r in finished[1:] if "partial" not in r}
        partial = finished[kept] if "partial" in finished[kept] else None
        self._refuse_changed([*done.values(), *([partial] if partial else [])])
        if partial and not self.go_on:  # its rows go: the clip is read again from its start
            while "partial" in finished[kept]:
                kept -= 1
            partial = None
        # the lines after it go first (a torn line, marks of rows about to be dropped), so that
        # what is appended next follows the records it goes on from, and no record points past
        # the file's end, whenever the job stops
        with naming(self.progress_path), self.progress_path.open("r+b") as f:
            f.truncate(ends[kept])
        with naming(self.path), self.path.open("r+b") as f:
            f.truncate(finished[kept]["offset"])
        self.done, self.partial = done, partial

    def _refuse_changed(self, records: list[dict]) -> None:
        """Refuse to resume where an input predicted before, wholly or up to a mark, has changed
        since (another size or modification time): its rows would be the old file's. Records
        without a stamp (inputs in memory, unreadable paths, a job from before stamps) are taken
        as they are."""
        changed = []
        for record in records:
            name = record.get("source", record.get("partial"))
            stamp = record.get("stamp")
            if stamp is not None and self.stamps.get(name) not in (None, stamp):
                changed.append(name)
        if changed:
            shown = ", ".join(changed[:3]) + (
                f" and {len(changed) - 3} more" if changed[3:] else ""
            )
            raise InputError(
                f"{self.path} holds predictions of {counted(len(changed), 'input')} changed since "
                f"they were made (another size or modification time): {shown}; to predict on "
                "them as they are now, pass --overwrite (everything is predicted again) or choose "
                "another --out"
            )

    def write(self, rows: list[dict]) -> None:
        with naming(self.path):  # a failed write (a full disk) names no file of its own
            for row in rows:
                values = [format_value(row[c], c) for c in self.columns]
                if self.fmt == "csv":
                    self._out.write(self._encode_csv(["" if v is None else v for v in values]))
                else:
                    record = dict(zip(self.columns, values, strict=True))
                    line = json.dumps(record, ensure_ascii=False) + "\n"
                    self._out.write(line.encode("utf-8"))

    def finished(self, source: str, counts: Counter, skipped: Counter) -> None:
        """Flush the rows written so far and record `source` as complete, with what it added to
        the report (so that a resumed job reports the whole file)."""
        with naming(self.path):
            self._out.flush()
        record = {
            "source": source,
            "offset": self._out.tell(),
            "counts": dict(counts),
            "skipped": dict(skipped),
            "stamp": self.stamps.get(source),
        }
        self._record(record)
        self.done[source] = record

    def mark(self, source: str, next_frame: int, counts: Counter, skipped: Counter) -> None:
        """Flush the rows written so far and record that `source`, a clip, has its rows up to
        frame next_frame - 1 in the file, with what they added to the report: a job stopped
        after this goes on from next_frame."""
        with naming(self.path):
            self._out.flush()
        self._record(
            {
                "partial": source,
                "next_frame": next_frame,
                "offset": self._out.tell(),
                "counts": dict(counts),
                "skipped": dict(skipped),
                "stamp": self.stamps.get(source),
            }
        )

    def _record(self, record: dict) -> None:
        with naming(self.progress_path):
            self._progress.write(json.dumps(record) + "\n")
            self._progress.flush()

    def close(self) -> None:
        """Close both files, even where the first fails to flush (a full disk)."""
        try:
            with naming(self.path):
                self._out.close()
        finally:
            with naming(self.progress_path):
                self._progress.close()

    @staticmethod
    def _encode_csv(values: list) -> bytes:
        return csv_text([values], lineterminator="\n").encode("utf-8")


def is_predictions_file(path: Path, fmt: str) -> bool:
    """Whether the file starts like one written by PredictionsFile (any model's classes)."""
    with path.open("rb") as f:
        first = f.readline(1 << 16).decode("utf-8", errors="replace").strip()
    if fmt == "csv":
        return first.split(",")[: len(FIXED_COLUMNS)] == list(FIXED_COLUMNS)
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and list(record)[: len(FIXED_COLUMNS)] == list(FIXED_COLUMNS)


def progress_path(out: Path) -> Path:
    """Where the job writing `out` keeps its progress: OUT.progress beside it."""
    return out.with_name(out.name + PROGRESS_SUFFIX)


def has_content(path: Path) -> bool:
    """Whether `--out` holds something: a job writing into it resumes rather than starts."""
    return path.is_file() and path.stat().st_size > 0


def is_progress_file(path: Path) -> bool:
    """Whether the file starts like a progress file written by PredictionsFile."""
    with path.open("rb") as f:
        first = f.readline(1 << 20).decode("utf-8", errors="replace")
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("lionfer_predictions") == 1


def read_progress(path: Path) -> tuple[dict, list[dict]]:
    """(settings, [{"source": None, "offset": header end}, {"source", "offset", "counts",
    "skipped", "stamp"} or a clip's mark {"partial", "next_frame", ...}, ...]); a torn last line
    is ignored."""
    settings, finished, _ = read_progress_lines(path)
    return settings, finished


def read_progress_lines(path: Path) -> tuple[dict, list[dict], list[int]]:
    """read_progress, and where each record's line ends in the file (bytes)."""
    records, ends, end = [], [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            records.append(json.loads(line.decode("utf-8")))
        except ValueError:
            break  # written when the job was killed; what follows cannot be trusted
        end += len(line)
        ends.append(end)
    if not records or records[0].get("lionfer_predictions") != 1:
        raise InputError(f"{path} is not a lionfer progress file; pass --overwrite to start again")
    finished = [{"source": None, "offset": int(records[0]["offset"])}]
    finished += [{**r, "offset": int(r["offset"])} for r in records[1:]]
    return records[0]["settings"], finished, ends


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


def file_stamp(path: Path) -> list[int] | None:
    """[size, modification time in ns] of a file (through links); None where it cannot be read
    (a broken link: its row says so)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return [info.st_size, info.st_mtime_ns]


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
    """Predict on every input into `out` (see the module docstring); resumable."""
    out = Path(out)
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
    fmt = output_format(out, fmt)
    # checked before the output file is touched
    whole_number("the frame stride (--frame-stride, frame_stride)", frame_stride, 1)
    sources, ignored, raw_photos = collect_sources(inputs)
    refuse_reading(out, sources, predictor.info.path)
    annotate_dir = Path(annotate) if annotate else None
    excluded = 0
    if annotate_dir is not None:
        if annotate_dir.exists() and not annotate_dir.is_dir():
            raise InputError(
                f"--annotate {annotate_dir} is a file; give a folder (it is created if missing)"
            )
        sources, excluded = exclude_folder(sources, annotate_dir)
    annotator = Annotator(annotate_dir, frame_stride, sources) if annotate_dir else None
    if annotator:
        annotator.check_names(sources)
    # a resumed job's copies are its own (a JSON lines job stopped before its first row leaves
    # an empty --out beside its progress file)
    kept = progress_path(out)
    fresh = not has_content(out) and not (kept.is_file() and is_progress_file(kept))
    if annotator and fresh and not overwrite:
        annotator.check_free(sources)
    settings = job_settings(predictor, cropped, frame_stride, sources)
    stamps = {s.name: file_stamp(s.path) for s in sources if s.path is not None}
    # an annotated video is written whole, so a clip cut off is read again from its start
    file = PredictionsFile(
        out, fmt, predictor.columns, settings, overwrite, stamps, go_on=annotator is None
    )
    report = PredictReport(out, excluded=excluded, annotate_dir=annotate_dir, ignored=ignored)
    for record in file.done.values():  # what the earlier runs wrote counts too
        report.counts.update(record.get("counts", {}))
        report.skipped.update(record.get("skipped", {}))
    resumed = sum(s.name in file.done for s in sources)
    report.counts.update(ignored=ignored.total(), raw_photos=raw_photos, resumed=resumed)
    if annotator and file.done:
        report.counts["copies_missing"] = annotator.missing(file.done, sources)
    todo = [s for s in sources if s.name not in file.done]
    bar = tqdm(total=len(todo), desc="predict", unit="input") if progress else _NoBar()
    before = (report.counts.copy(), report.skipped.copy())
    start_frames = {}
    if file.partial:  # its rows so far count in its finished record, as a whole read's would
        report.counts.update(file.partial.get("counts", {}))
        report.skipped.update(file.partial.get("skipped", {}))
        report.went_on = (file.partial["partial"], file.partial["next_frame"])
        start_frames = dict([report.went_on])
    marked = time.monotonic()
    try:
        for item in predictor.stream(
            todo, cropped, frame_stride, keep_images=bool(annotator), start_frames=start_frames
        ):
            if isinstance(item, SourceDone):
                _count_source(report, item.source)
                if annotator:  # its copy whole before it counts as done
                    annotator.finish(item.source, report)
                file.finished(
                    item.source.name, report.counts - before[0], report.skipped - before[1]
                )
                before = (report.counts.copy(), report.skipped.copy())
                bar.update(1)
                continue
            rows = predictor.rows(item)
            file.write(rows)
            _count_frame(report, item, len(rows))
            if annotator:
                annotator.add(item, rows)
            elif (
                item.batch_end
                and _decoded_frame(item)
                and time.monotonic() - marked >= CHECKPOINT_S
            ):
                counts, skipped = report.counts - before[0], report.skipped - before[1]
                file.mark(item.source.name, item.index + frame_stride, counts, skipped)
                marked = time.monotonic()
            bar.set_postfix(faces=report.counts["faces"])
    finally:
        bar.close()
        file.close()
        if annotator:
            annotator.close()
    return report


def name_max(path: Path) -> int:
    """The longest file name, in bytes, that the folder of `path` (or the nearest one of its
    folders that exists) takes; 255, the common limit, where the system does not say."""
    return longest_name(nearest_existing(Path(os.path.abspath(path)).parent)) or 255


def check_progress_name(out: Path) -> None:
    """Refuse an --out whose progress file (OUT.progress) would be a name longer than the file
    system allows: predict would fail on a file the user never named."""
    limit = name_max(out)
    size = len(os.fsencode(out.name + PROGRESS_SUFFIX))
    if size > limit:
        raise InputError(
            f"--out {out}: predict keeps its progress beside it, in a file named as --out with "
            f"{PROGRESS_SUFFIX} added ({size} bytes), and this file system takes names of at "
            f"most {limit} bytes; choose a shorter --out name (at most "
            f"{limit - len(PROGRESS_SUFFIX)} bytes)"
        )


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


def _count_source(report: PredictReport, source: Source) -> None:
    report.counts["videos" if source.kind == "video" else "images"] += 1


def _decoded_frame(frame: Frame) -> bool:
    """A frame of a clip that was read (with or without a face), not a row saying why reading
    stopped or failed: the frames after it can be read on from it."""
    return frame.source.kind == "video" and frame.reason in ("", "no_face", "error")


def _count_frame(report: PredictReport, frame: Frame, rows: int) -> None:
    report.counts["rows"] += rows
    report.counts["faces"] += len(frame.faces)
    video = frame.source.kind == "video"
    report.counts["frames"] += int(video and frame.reason in ("", "no_face", "error"))
    if frame.reason == "damaged_video":
        report.counts["damaged_videos"] += 1
    elif video and frame.reason in ("no_face", "error"):
        report.counts["frames_without_face"] += 1
    elif frame.reason:
        report.skipped[frame.reason] += 1


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
