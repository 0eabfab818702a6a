"""metrics.jsonl, a run's log: one JSON object per line, NaN and infinite numbers as strings;
read back with a torn last line left out, and rewound on resume so that no step appears twice.
While a run trains, its Python warnings are logged into it as "warning" events (WarningRecorder).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lionfer.atomic import naming, write_text_atomic
from lionfer.training.runfolder import METRICS
from lionfer.warning_filters import filter_action

REPLAYED_EVENTS = ("train", "eval", "warning")  # written again when a resumed run replays steps


def read_records(path: Path) -> list[dict]:
    """The JSON records of a metrics.jsonl; a torn last line (a killed write) is left out."""
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}  # NaN: "NaN"


def _plain(value: Any) -> Any:
    """A value of a log as JSON holds it: 0-d tensors and numpy scalars as numbers, and a NaN or
    infinite number as the string "NaN", "Infinity" or "-Infinity" (JSON has no such numbers;
    Python's float() and JavaScript's Number() read the strings back)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else NON_FINITE.get(value, "NaN")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if value is None or isinstance(value, str | int):
        return value
    raise TypeError(f"cannot write {type(value).__name__} to {METRICS}")


def json_line(record: dict) -> str:
    """One line of metrics.jsonl: standard JSON, which any JSON reader takes."""
    return json.dumps(_plain(record), allow_nan=False) + "\n"


def plain(record: dict) -> dict:
    """A record as metrics.jsonl reads back: numbers, strings, lists and dicts only (what a
    checkpoint, loaded with weights_only, may hold)."""
    return json.loads(json_line(record))


class MetricsLog:
    """metrics.jsonl: one JSON object per event, appended and flushed."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        """Append one line; an OSError names the file. A file this call created is removed
        again when the write fails (a full disk): an empty metrics.jsonl would read as no run."""
        line = json_line(record)
        created = not self.path.exists()
        try:
            with naming(self.path), self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
        except OSError:
            if created:
                with contextlib.suppress(OSError):
                    self.path.unlink()
            raise

    def records(self) -> list[dict]:
        return read_records(self.path) if self.path.is_file() else []

    def rewind(self, step: int) -> int:
        """Drop the records of steps after `step` that a resumed run writes again (train, eval,
        warning); keep the run's history (start, resume, interrupted, error). Returns how many
        records were dropped, counting a torn last line (none when the file is gone)."""
        if not self.path.is_file():
            return 0
        text = self.path.read_text(encoding="utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        records = read_records(self.path)
        kept = [
            r
            for r in records
            if not (r.get("event") in REPLAYED_EVENTS and int(r.get("step", 0)) > step)
        ]
        text = "".join(json_line(r) for r in kept)
        write_text_atomic(self.path, text)
        return len(lines) - len(kept)

    @contextmanager
    def recording_warnings(self, step: Callable[[], int]) -> Iterator[None]:
        """The calling (training) thread's warnings meanwhile are logged as "warning" events
        whatever the filters (WarningRecorder); how every warning is shown stays the caller's."""
        recorder = WarningRecorder(self, step)
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # all reach the recorder, which applies the filters
            recorder.always = warnings.filters[0]  # this very tuple, not an equal one of the user's
            warnings.showwarning = recorder
            try:
                yield
            finally:
                recorder.run = None  # finished: nothing of the run is held or written to after


class WarningRecorder:
    """warnings.showwarning while a run trains. The warnings of the thread that made it are
    logged to the run, each text and place once (a text a resumed run logged before it stopped,
    not again), whatever the filters; every warning, of any
    thread, is then shown as the filters in force before say (ignored, raised, once, always), by
    the showwarning it replaced. Once finished (`run` None) it only shows: a copy that another
    thread's warnings.catch_warnings put back never writes to the run, and shows as plain Python
    would, by the filters in force then less the run's own "always" (which that put back too).
    Only the process that made it records: a forked loader worker's copy only shows."""

    # what Python's default filters ignore: a run records what a fresh `lionfer train` records
    unrecorded = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)

    def __init__(self, log: MetricsLog, step: Callable[[], int]):
        self.run: tuple[MetricsLog, Callable[[], int]] | None = (log, step)
        self.thread, self.pid = threading.get_ident(), os.getpid()
        self.show, self.filters = warnings.showwarning, tuple(warnings.filters)
        self.always: tuple | None = None  # the filter entry recording_warnings put in front
        self.recorded, self.shown = set(), set()  # places logged; places (or texts) shown
        # texts a resumed run logged before it stopped: logged once, as in a run never stopped
        self.earlier = {r.get("message") for r in log.records() if r.get("event") == "warning"}

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        run, text = self.run, str(message)
        place = (text, category, filename, lineno)
        mine = run is not None and (threading.get_ident(), os.getpid()) == (self.thread, self.pid)
        if mine and not issubclass(category, self.unrecorded) and place not in self.recorded:
            self.recorded.add(place)
            if text not in self.earlier:
                run[0].append({"event": "warning", "step": run[1](), "message": text})
        filters = self.filters
        if run is None:  # finished: the filters now, one copy read at once, less the run's own
            filters = tuple(f for f in tuple(warnings.filters) if f is not self.always)
        module = warning_module(filename)
        action = filter_action(filters, text, category, module, lineno)
        if action == "error":
            raise message if isinstance(message, Warning) else category(message)
        keys = {"once": place[:2], "module": place[:3], "default": place}
        if action == "ignore" or keys.get(action) in self.shown:
            return
        if action in keys:
            self.shown.add(keys[action])
        self.show(message, category, filename, lineno, file, line)


def warning_module(filename: str) -> str:
    """The module a warning raised in `filename` counts as for the filters: the __name__ of the
    nearest frame in that file on the stack, else the file's name less .py."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename != filename:
        frame = frame.f_back
    return frame.f_globals.get("__name__", "") if frame else filename.removesuffix(".py")
