"""The run folder: what makes a folder a lionfer run, the checks before a run is written into one,
and metrics.jsonl.

A run is only ever written into a new or empty folder, or replaces a folder that is recognisably a
lionfer run and holds only a run's own files (--overwrite), and never the current folder, one of
its parents or the home folder: nothing a user made is deleted. A folder holding nothing but an
empty metrics.jsonl (a run whose very first write failed, e.g. on a full disk) counts as empty.
metrics.jsonl gets one JSON object per line (Python warnings included, as "warning" events); on
resume the records after the checkpoint's step are dropped, so no step appears twice.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import tomllib
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lionfer.atomic import naming, write_text_atomic
from lionfer.errors import InputError, MissingInputError, RunExistsError
from lionfer.warning_filters import filter_action

METRICS = "metrics.jsonl"
LAST = Path("checkpoints") / "last.pt"
BEST = Path("checkpoints") / "best.pt"
# what a run writes into its folder; --overwrite deletes a run folder holding nothing else
RUN_FILES = frozenset(
    {"config.toml", "split.json", "meta.json", METRICS, "summary.json"}
    | {"relabels.csv", "confusion.csv"}
)
CHECKPOINT_FILES = frozenset({"last.pt", "best.pt", "error.pt"})  # in checkpoints/
TENSORBOARD_FILES = "events.out.tfevents."  # how the names of tensorboard/'s files begin
RUN_ENTRIES = RUN_FILES | {"checkpoints", "tensorboard"}
REPLAYED_EVENTS = ("train", "eval", "warning")  # written again when a resumed run replays steps
_SHOWN = 5


def source_revision(package_dir: Path | None = None) -> str | None:
    """The git commit of lionfer's own source (meta.json's `git`), or None when lionfer is not
    imported from a git checkout of lionfer: a wheel installed into a virtualenv inside some
    other repository must not record that repository's commit."""
    package_dir = Path(__file__).resolve().parents[1] if package_dir is None else package_dir
    root = package_dir.parent
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if project.get("project", {}).get("name") != "lionfer" or not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


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


def _first_record(path: Path) -> dict | None:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.loads(handle.readline())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def is_run_folder(folder: Path) -> bool:
    """A folder lionfer made: metrics.jsonl opening with lionfer's start event, or a readable
    lionfer checkpoint in checkpoints/last.pt."""
    first = _first_record(folder / METRICS)
    if isinstance(first, dict) and first.get("event") == "start" and "num_labeled" in first:
        return True
    if (folder / LAST).is_file():
        from lionfer.training.checkpoint import (
            load_checkpoint,  # torch, only when there is a checkpoint
        )

        try:
            load_checkpoint(folder / LAST)
        except InputError:
            return False
        return True
    return False


def stopped_at_first_write(folder: Path) -> bool:
    """A folder whose only entry is an empty metrics.jsonl: a run that failed at its very first
    write (a full disk), which lionfer made and may begin again there."""
    entries = list(itertools.islice(folder.iterdir(), 2)) if folder.is_dir() else []
    if len(entries) != 1 or entries[0].name != METRICS or entries[0].is_symlink():
        return False
    return entries[0].is_file() and entries[0].stat().st_size == 0


def nearest_existing(path: str | Path) -> Path:
    """`path` made absolute, or the nearest of the folders above it that exists."""
    place = Path(os.path.abspath(path))
    while not place.exists() and place != place.parent:
        place = place.parent
    return place


def longest_name(folder: Path) -> int | None:
    """The longest file name, in bytes, that the file system of `folder` takes; None where the
    system does not say (no pathconf, as on Windows)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return None


def refuse_file_as_folder(path: str | Path, place: Path, flag: str = "--out") -> None:
    """Refuse `path` where `place`, the nearest existing part of its path (nearest_existing),
    is a file: the folders below it could never be made."""
    if not place.is_dir():
        raise InputError(
            f"{flag} {path} lies inside {place}, which is a file, not a folder; choose another "
            f"{flag}"
        )


def check_out_file(path: str | Path, flag: str = "--out") -> None:
    """The folder a file is to be written into (made if missing) can be: no file stands where a
    folder of its path must be, and the nearest folder of it that exists may be written into.
    Refused before any work, as training's --out (check_writable)."""
    path = Path(path)
    _check_place(path, nearest_existing(Path(os.path.abspath(path)).parent), flag)


def check_out_folder(path: str | Path, flag: str = "--out") -> None:
    """The folder `path` (made if missing) can be: as check_out_file, for the folder itself."""
    path = Path(path)
    _check_place(path, nearest_existing(path), flag)


def _check_place(path: Path, place: Path, flag: str) -> None:
    """`place`, the nearest existing folder of `path`'s, is a folder this process may write."""
    refuse_file_as_folder(path, place, flag)
    if not os.access(place, os.W_OK | os.X_OK):
        raise InputError(
            f"{flag} {path}: {place} cannot be written (no permission, or a read-only file "
            f"system); choose an {flag} you can write to"
        )


def refuse_run_file(path: str | Path, flag: str = "--out") -> None:
    """Refuse to write `path` where it is, or links to, a file a run wrote: its config.toml, a
    checkpoint, metrics.jsonl, ... (RUN_ENTRIES, and anything inside checkpoints/ or
    tensorboard/). No --overwrite replaces those: the run would lose its model or its record."""
    path = Path(path)
    if not path.exists():
        return
    for candidate in dict.fromkeys((Path(os.path.abspath(path)), path.resolve())):
        for folder in candidate.parents:
            entry = candidate.relative_to(folder).parts[0]
            if entry.removesuffix(".tmp") in RUN_ENTRIES and is_run_folder(folder):
                raise InputError(
                    f"{flag} {path} is a file of the run in {folder} ({entry}); --overwrite "
                    f"would replace it: choose another {flag}"
                )


def describe_foreign(folder: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    shown = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
    entries = "entry that is" if len(names) == 1 else "entries that are"
    return f"holds {len(names)} {entries} not a lionfer run: {shown}"


def _protected(folder: Path) -> bool:
    """The current folder, the home folder, or a parent of either (the filesystem root too)."""
    target = folder.resolve()
    places = [Path.cwd().resolve()]
    try:
        places.append(Path.home().resolve())
    except RuntimeError:  # no home folder known
        pass
    return any(target == place or target in place.parents for place in places)


# How the messages of a refused run folder name the caller's choices: the command line's flags,
# or train()'s arguments (a run started from Python)
CLI_WORDS = {"resume": "--resume", "overwrite": "--overwrite", "out": "--out"}
CLI_WORDS["own_folder"] = "--out runs/x"
API_WORDS = {"resume": "resume=True", "overwrite": "overwrite=True", "out": "out"}
API_WORDS["own_folder"] = "out='runs/x'"


def words_for(command: str) -> dict[str, str]:
    """CLI_WORDS for a run the command line started (it passes train() its command line),
    else API_WORDS."""
    return CLI_WORDS if command else API_WORDS


def check_run_dir(out: Path, resume: bool, overwrite: bool, words: dict = CLI_WORDS) -> None:
    """Refuse, before anything is built, a run folder that cannot be written as asked; the
    messages name the choices in `words` (CLI_WORDS, API_WORDS)."""
    w = words
    if out.exists() and not out.is_dir():
        raise RunExistsError(
            f"{w['out']} {out} is a file, not a folder; choose a folder for the run"
        )
    check_writable(out)
    if resume:
        check_resumable(out, words)
        return
    if not out.exists() or not any(out.iterdir()) or stopped_at_first_write(out):
        return
    if not is_run_folder(out):
        raise RunExistsError(
            f"{out} {describe_foreign(out)}. lionfer writes a run only into a new or empty folder "
            f"and never deletes what it did not make: choose another {w['out']}"
        )
    if not overwrite and not (out / LAST).is_file():
        best = best_to_resume(out)
        if best is not None:
            raise RunExistsError(
                f"run folder {out} already holds a run, which stopped before its first "
                f"{LAST.as_posix()} was written, but {best}: copy it over {out / LAST} and pass "
                f"{w['resume']} to continue from there, or pass {w['overwrite']} to start the "
                f"run again (which deletes best.pt too), or choose another {w['out']}"
            )
        raise RunExistsError(
            f"run folder {out} already holds a run, which stopped before its first checkpoint "
            f"(nothing to resume); pass {w['overwrite']} to start it again, or choose another "
            f"{w['out']}"
        )
    if not overwrite:
        raise RunExistsError(
            f"run folder {out} already holds a run; pass {w['resume']} to continue it, "
            f"{w['overwrite']} to replace it, or choose another {w['out']}"
        )
    if _protected(out) or out.is_symlink():
        raise RunExistsError(
            f"{w['overwrite']} will not delete {out}: it is the current folder, a parent of it, "
            f"your home folder or a link. Replace the run by its own folder (e.g. "
            f"{w['own_folder']})"
        )
    others = foreign_entries(out)
    if others:
        shown = ", ".join(others[:_SHOWN]) + (", ..." if len(others) > _SHOWN else "")
        raise RunExistsError(
            f"{w['overwrite']} replaces a run's own files, and {out} also holds {len(others)} "
            f"that the run did not write: {shown} (a prediction, an export, your notes?). Move "
            f"them out of the folder, or choose another {w['out']}"
        )


def check_writable(out: Path) -> None:
    """--out (and checkpoints/ in it), or the nearest folder above it that exists, is a folder
    this process may write into: refused before the data are read, not at the run's first file."""
    out_path = Path(os.path.abspath(out))
    place = nearest_existing(out_path)
    refuse_file_as_folder(out, place)
    longest = longest_name(place)  # None where not told (Windows): the mkdir will say
    too_long = [
        part
        for part in out_path.relative_to(place).parts
        if longest and len(os.fsencode(part)) > longest
    ]
    if too_long:
        raise InputError(
            f"--out {out}: the name {too_long[0][:40]}... has {len(os.fsencode(too_long[0]))} "
            f"bytes, more than the {longest} a name may have on that file system; choose a "
            "shorter --out"
        )
    folders = (place, place / "checkpoints") if place == out_path else (place,)
    for folder in folders:
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(
                f"--out {out}: {folder} cannot be written (no permission, or a read-only file "
                "system); choose an --out you can write to (copy a run there to resume it)"
            )


def check_resumable(out: Path, words: dict = CLI_WORDS) -> None:
    """A run folder that --resume can continue: its checkpoint, config and split are there."""
    w = words
    if not (out / LAST).is_file():
        best = None if stopped_at_first_write(out) else best_to_resume(out)
        if best is not None:
            raise MissingInputError(
                f"cannot resume {out}: {out / LAST} is missing (the run stopped before it was "
                f"first written), but {best}: copy it over {out / LAST} to continue the run "
                f"from there with {w['resume']}, or start the run again with {w['overwrite']} "
                "(which deletes best.pt too)"
            )
        if stopped_at_first_write(out):
            hint = (
                f"the run in {out} stopped at its first write, before it saved anything: run the "
                f"same command without {w['resume']} to start it again"
            )
        elif is_run_folder(out):
            hint = (
                f"the run in {out} stopped before its first checkpoint: start it again with "
                f"{w['overwrite']}"
            )
        else:
            hint = f"is {w['out']} the run folder?"
        raise MissingInputError(f"nothing to resume: {out / LAST} is missing; {hint}")
    for name, what in (("config.toml", "its config"), ("split.json", "its split")):
        if not (out / name).is_file():
            raise MissingInputError(
                f"cannot resume {out}: {out / name} ({what}, written when the run began) is "
                f"missing; put it back from a copy of the run, or start the run again with "
                f"{w['overwrite']}"
            )


def best_to_resume(out: Path) -> str | None:
    """Where a run has no checkpoints/last.pt (stopped after an evaluation wrote best.pt and
    before the first last.pt was whole) but a readable checkpoints/best.pt: the words naming it
    and its step, which a run continues from exactly once it is copied over last.pt; else None."""
    best = out / BEST
    if not best.is_file():
        return None
    from lionfer.training.checkpoint import load_checkpoint  # torch, only when there is one

    try:
        step = load_checkpoint(best)["step"]
    except InputError:
        return None
    return f"{best} holds step {step} (its best evaluation)"


def foreign_entries(folder: Path) -> list[str]:
    """What a run folder holds that a run does not write, named by its path in the folder,
    sorted, folders with a trailing /: anything but the run's files (RUN_FILES, and their .tmp
    while being written) and its checkpoints/ and tensorboard/ folders; inside checkpoints/,
    anything but last.pt, best.pt and error.pt (and their .tmp); inside tensorboard/, anything
    but TensorBoard's event files. A link is judged by its name: deleting it leaves what it
    links to alone."""
    foreign = []
    for entry in folder.iterdir():
        name, real_folder = entry.name, entry.is_dir() and not entry.is_symlink()
        if name == "checkpoints" and real_folder:
            foreign += [f"{name}/{inner}" for inner in _foreign_inside(entry, _checkpoint_file)]
        elif name == "tensorboard" and real_folder:
            foreign += [f"{name}/{inner}" for inner in _foreign_inside(entry, _event_file)]
        elif name in ("checkpoints", "tensorboard") and entry.is_symlink():
            continue
        elif real_folder or name.removesuffix(".tmp") not in RUN_FILES:
            foreign.append(name + ("/" if entry.is_dir() else ""))
    return sorted(foreign)


def _checkpoint_file(name: str) -> bool:
    return name.removesuffix(".tmp") in CHECKPOINT_FILES


def _event_file(name: str) -> bool:
    return name.startswith(TENSORBOARD_FILES)


def _foreign_inside(folder: Path, written: Callable[[str], bool]) -> list[str]:
    """The entries of a run's `folder` that are not files the run wrote there (by their name,
    `written`), folders with a trailing /."""
    return [
        p.name + ("/" if p.is_dir() else "")
        for p in folder.iterdir()
        if not written(p.name) or (p.is_dir() and not p.is_symlink())
    ]


def create_run_dir(
    out: Path, overwrite: bool, lock: RunLock | None = None, words: dict = CLI_WORDS
) -> None:
    """Make the run folder; an existing run is deleted only with overwrite, re-checked here (its
    refusal in `words`), and with a `lock`, not while another process writes it; the lock then
    holds the new folder."""
    if out.exists() and any(out.iterdir()):
        if lock is not None:  # first: a run started there a moment ago is training, not stopped
            lock.acquire(out)
        check_run_dir(out, resume=False, overwrite=overwrite, words=words)
        if stopped_at_first_write(out):  # its one file: the folder may be the user's (cwd)
            (out / METRICS).unlink()
        else:
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if lock is not None:
        lock.acquire(out)


_HELD_LOCKS: set[int] = set()  # the descriptors of the run folders this process holds


def _close_held_locks_in_child() -> None:
    """A forked child (a DataLoader worker) closes its copies of the lock descriptors: an flock
    is freed only once every copy is closed, and workers may outlive a run that failed."""
    for fd in _HELD_LOCKS:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_locks_in_child)


class RunLock:
    """An exclusive lock on a run folder while a process writes it (flock on the folder itself:
    no file of its own, and released when the process ends, however it ends, or when release()
    is called: forked children close their copies, see _close_held_locks_in_child). A second
    process that would write the same run (a job launched twice with one --out, a resume while
    the run still trains) is refused instead of interleaving its files with the first's. Where
    the file system (or the platform) has no such locks, nothing is locked."""

    def __init__(self):
        self.fd: int | None = None

    def acquire(self, folder: Path, writer: str = "a run training there now") -> None:
        """Lock folder, or raise RunExistsError naming writer, what the other process does."""
        try:
            import fcntl
        except ImportError:  # Windows
            return
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunExistsError(
                f"{folder} is being written by another lionfer process ({writer}); let it "
                "finish or stop it first, or choose another --out"
            ) from None
        except OSError:  # a file system without locks
            os.close(fd)
            return
        self.release()
        self.fd = fd
        _HELD_LOCKS.add(fd)

    def release(self) -> None:
        if self.fd is not None:
            _HELD_LOCKS.discard(self.fd)
            os.close(self.fd)
            self.fd = None


def check_unlocked(folder: Path) -> None:
    """Refuse a folder that another process holds with a RunLock (a run still training there,
    even before its first checkpoint); nothing is held after the check."""
    if folder.is_dir():
        probe = RunLock()
        probe.acquire(folder)
        probe.release()


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
