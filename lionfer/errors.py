"""Errors that carry the fix in their message, and the one-line check used by every config class.

Two families, which the command line maps to exit codes:
- InputError (exit 2): something the user gave cannot be used: a config key or value, a missing
  or malformed file, an unreadable image, a run folder that must not be touched. The message
  names the key or file and says how to fix it.
- RuntimeFailure (exit 1): the run itself failed (a non-finite loss, a checkpoint that could not
  be written).
Interrupted (exit 128 + signal number) is raised after SIGINT or SIGTERM once a checkpoint is
saved. Kept free of torch and of lionfer's other modules so that anything can import it.
"""

from __future__ import annotations

import difflib
import shlex
import signal


class InputError(ValueError):
    """Bad input; the message names the key or file and the fix."""


class ConfigError(InputError):
    """A config key or value that lionfer cannot use."""


class LabelBudgetError(ConfigError):
    """data.num_labels asks for more labeled images than the training set has."""


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the input names does not exist."""


class RunExistsError(InputError, FileExistsError):
    """--out names a folder that must not be written into (or replaced) as asked."""


class CheckpointError(InputError):
    """A file that is not a lionfer checkpoint, or one that does not fit the current run."""


class UnknownNameError(ConfigError, KeyError):
    """A name that is not in a registry; the message lists what exists."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RuntimeFailure(RuntimeError):
    """The run failed while training; the message says what is saved and what to do."""


class NonFiniteLoss(RuntimeFailure):
    """The loss became NaN or infinite; `logs` holds the step's logged values."""

    def __init__(self, message: str, logs: dict | None = None):
        super().__init__(message)
        self.logs = dict(logs or {})


class CheckpointWriteError(RuntimeFailure):
    """A checkpoint (or another run file) could not be written, e.g. the disk is full."""


class Interrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM at a step boundary, after saving a checkpoint."""

    def __init__(
        self, signum: int, step: int, run: str, saved: bool = True, kept_step: int | None = None
    ):
        """saved=False: the run saved nothing now (its evaluation was cut short); its last.pt
        keeps kept_step, or there is none yet (None)."""
        self.signum, self.step, self.run = signum, step, run
        name = signal.Signals(signum).name
        resume = f"resume with: lionfer train --resume --out {shlex.quote(run)}"
        if saved:
            kept = f"checkpoints/last.pt is saved; {resume}"
        elif kept_step is not None:
            kept = f"checkpoints/last.pt keeps step {kept_step}; {resume}"
        else:
            kept = "nothing was saved yet; start it again: the same command with --overwrite"
        super().__init__(f"interrupted by {name} at step {step}; {kept}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def did_you_mean(name: str, options) -> str:
    """ " Did you mean 'x'?" for the option closest to a misspelt name, whatever its case
    ('FixMatch' finds 'fixmatch'); "" when none is close."""
    lowered = {}
    for option in options:
        lowered.setdefault(str(option).lower(), option)
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1)
    return f" Did you mean {lowered[close[0]]!r}?" if close else ""
