"""`lionfer predict`'s output: a CSV or JSONL predictions file written row by row and flushed, and
a progress file beside it (OUT.progress) that makes an interrupted job resumable (the job itself:
lionfer.inference.predict_job; its annotated copies: lionfer.inference.annotate_folder).

OUT.progress is JSON lines: first the job's settings (model fingerprint, columns, detection
settings, a digest of the list of inputs), then one {"source", "offset", "counts", "skipped",
"stamp"} line per finished input, written after that input's rows are flushed ("stamp": the input
file's size and modification time). While a video or animated image is read, a {"partial",
"next_frame", "offset", "counts", "skipped", "stamp"} line every predict_job.CHECKPOINT_S seconds
marks how far its rows go ("partial": its name; at the end of a batch, so that a job going on from
it batches the frames as an uninterrupted one; not with --annotate, whose annotated video is
written whole).
Rerunning the same command truncates OUT to the last line's offset (rows of an input cut off
after it go), skips the finished inputs, goes on with a clip cut off at its last mark from the
frame after it (from its start with --annotate) and reports the whole file. An existing OUT that
is not a lionfer predictions file, one written with other settings or for another list of
inputs, or one whose predicted inputs have changed since, is refused unless overwrite is given;
so is an --out that is another job's progress file, even with overwrite.

A file name that is not UTF-8 (surrogate escapes in Python) is written to OUT with its bytes as
\\xNN (path_text), so that OUT stays UTF-8; OUT.progress keeps it exactly (JSON's \\udcNN).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from pathlib import Path

from lionfer.atomic import csv_text, naming
from lionfer.data.images import path_text
from lionfer.errors import InputError
from lionfer.inference.predictor import FIXED_COLUMNS
from lionfer.training.runfolder import longest_name, nearest_existing
from lionfer.words import counted

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
PROGRESS_SUFFIX = ".progress"


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


def file_stamp(path: Path) -> list[int] | None:
    """[size, modification time in ns] of a file (through links); None where it cannot be read
    (a broken link: its row says so)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return [info.st_size, info.st_mtime_ns]


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
