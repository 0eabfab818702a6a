"""Stopping a long job cleanly: while StopSignals is active, SIGINT (Ctrl-C) and SIGTERM (what
schedulers, `docker stop` and `kill` send) only ask the loop to stop after its unit of work (a
training step, `lionfer prepare`'s image); a second Ctrl-C stops at once."""

from __future__ import annotations

import os
import signal
import sys
import threading

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
