"""Stopping a run cleanly: SIGINT (Ctrl-C) and SIGTERM (what schedulers, `docker stop` and
`kill` send) only ask the loop to stop; it finishes the step, saves checkpoints/last.pt and raises
lionfer.errors.Interrupted. Also the metrics.jsonl events of a run that stopped or failed."""

from __future__ import annotations

import os
import signal
import sys
import threading

from lionfer.errors import NonFiniteLoss
from lionfer.processes import main_process


class StopSignals:
    """While active, SIGINT and SIGTERM only set `signum`: the loop finishes its unit of work (a
    step; `lionfer prepare`'s image), saves and stops. A second SIGINT stops at once
    (KeyboardInterrupt). Python handles signals in the main thread only; elsewhere nothing is
    installed."""

    def __init__(self, unit: str = "step"):
        self.signum: int | None = None
        self.unit = unit  # what the stop waits for, as its note says
        self._previous: dict = {}
        self._notes = main_process()  # under torchrun the main process says it

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            again = " (Ctrl-C again stops at once)" if signum == signal.SIGINT else ""
            note = f"\n{signal.Signals(signum).name}: stopping after this {self.unit}{again}\n"
            if sys.stderr is None:  # started without one: fd 2 may be a file opened since
                return
            if not self._notes:
                return
            try:
                os.write(2, note.encode())  # print() is not safe inside a signal handler
            except OSError:  # stderr closed: the stop goes on without its note
                pass


def stop_record(step: int, signum: int, cause: BaseException | None = None) -> dict:
    """The "interrupted" event of a run stopped by a signal at a step boundary; cause: an error
    the signal brought about (e.g. in loader workers that got the same SIGTERM)."""
    record = {"event": "interrupted", "step": step, "signal": signal.Signals(signum).name}
    if cause is not None:
        record["error"] = describe(cause)
    return record


def failure_record(error: BaseException, step: int) -> dict:
    """The event of a failure in the loop: "interrupted" for a second Ctrl-C, else "error" (with
    the logs of the step whose loss was not finite)."""
    interrupted = isinstance(error, KeyboardInterrupt)
    record: dict = {"event": "interrupted" if interrupted else "error", "step": step}
    record.update({"signal": "SIGINT"} if interrupted else {"error": describe(error)})
    if isinstance(error, NonFiniteLoss):
        record.update(error.logs)
    return record


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
