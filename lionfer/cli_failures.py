"""What a failed command says: an OSError as one line naming its file(s) and, for a write that
failed on the disk (full, a quota, a file-size limit, read-only), what to do and how the command
goes on once it is fixed (docs/cli.md, "Exit status")."""

from __future__ import annotations

import argparse
import errno
import shlex
from pathlib import Path

# Write failures the user fixes on the disk (or by another --out): the message says which file
# and what to do, then how the command goes on.
FULL_DISK = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
WRITE_ERRNOS = (*FULL_DISK, errno.EFBIG, errno.EROFS)
# Commands that go on where they stopped when run again (docs/cli.md, docs/inference.md).
RESUMING = {
    "predict": "the rows of the inputs finished so far are kept, and it goes on from there",
    "prepare": "the faces cropped so far are kept, and it goes on from there",
    "sweep": "its finished runs are skipped and the unfinished ones resumed",
}


def os_error_message(error: OSError, args: argparse.Namespace) -> str:
    """An OSError as one line: the file(s) it names and the reason; for a write that failed on
    the disk (full, a quota, a file-size limit, read-only), what to do and how to go on."""
    files = [str(f) for f in (error.filename, error.filename2) if f is not None]
    reason = error.strerror or str(error)
    if error.errno not in WRITE_ERRNOS:
        return f"{' -> '.join(files)}: {reason}" if files else str(error)
    where = f"could not write {files[0]}: {reason}" if files else f"could not write: {reason}"
    if error.errno in FULL_DISK:
        fix = f"free space on {'that' if files else 'its'} disk"
    elif error.errno == errno.EFBIG:
        fix = "the file system or a file-size limit (ulimit -f) takes no larger file: raise it"
    else:
        fix = "the file system is read-only: choose an --out you can write to"
    return f"{where}; {fix}, then {go_on(args, error.errno == errno.EROFS)}"


def go_on(args: argparse.Namespace, moved: bool) -> str:
    """How the failed command goes on once the disk is fixed (moved: into another --out)."""
    command = args.command
    if command == "train" and not getattr(args, "dry_run", False):
        return train_go_on(args, moved)
    if moved:
        return "run the command again with that --out"
    if command in RESUMING:
        return f"run the same command again: {RESUMING[command]}"
    elsewhere = " (or with another --out)" if getattr(args, "out", None) else ""
    return f"run the same command again{elsewhere}"


def train_go_on(args: argparse.Namespace, moved: bool) -> str:
    """A failed run goes on from its last checkpoint, or starts again where it saved none."""
    from lionfer.cli_run_folder import default_out
    from lionfer.config import config_from_args
    from lionfer.training.runfolder import LAST, is_run_folder

    try:
        out = Path(args.out).expanduser() if args.out else default_out(config_from_args(args.items))
    except Exception:  # the run's folder cannot be told: say what holds for any
        out = None
    if out is None:
        return "continue the run with lionfer train --resume --out RUN if it saved a checkpoint"
    if (out / LAST).is_file():
        if moved:
            return f"copy the run {out} there and continue it with lionfer train --resume"
        return f"continue the run with: lionfer train --resume --out {shlex.quote(str(out))}"
    if moved:
        return "start the run again there"
    if is_run_folder(out):  # its first files, but no checkpoint yet
        return "run the same command again with --overwrite (the run saved no checkpoint yet)"
    return "run the same command again"
