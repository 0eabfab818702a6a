"""RunLock: an exclusive lock on a run folder while a process writes it, so that two processes
(a job launched twice, a resume while the run still trains) never interleave one run's files;
check_unlocked refuses a folder another process holds.
"""

from __future__ import annotations

import os
from pathlib import Path

from lionfer.errors import RunExistsError

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
