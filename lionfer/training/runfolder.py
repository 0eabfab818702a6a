"""The run folder: what makes a folder a lionfer run, and the checks before a run is written into
one. Its metrics.jsonl is written and read in metrics_log.py; the lock a writing process holds on
the folder is lionfer/run_lock.py's.

A run is only ever written into a new or empty folder, or replaces a folder that is recognisably a
lionfer run and holds only a run's own files (--overwrite), and never the current folder, one of
its parents or the home folder: nothing a user made is deleted. A folder holding nothing but an
empty metrics.jsonl (a run whose very first write failed, e.g. on a full disk) counts as empty.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

from lionfer.errors import InputError, MissingInputError, RunExistsError
from lionfer.run_lock import RunLock

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
