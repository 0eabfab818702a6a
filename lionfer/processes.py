"""Which process of a torchrun launch this is, read from the environment torchrun sets: it holds
before the process group is joined and after a failure to join, and needs no torch (the command
line asks before it imports any)."""

from __future__ import annotations

import os


def launched() -> bool:
    """True in a process that torchrun started for a run of several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def main_process() -> bool:
    """True outside torchrun and in its main process (rank 0)."""
    return os.environ.get("RANK", "0") == "0"
