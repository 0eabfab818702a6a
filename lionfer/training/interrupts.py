"""Stopping a run cleanly: SIGINT (Ctrl-C) and SIGTERM (what schedulers, `docker stop` and
`kill` send) only ask the loop to stop; it finishes the step, saves checkpoints/last.pt and raises
lionfer.errors.Interrupted."""

from __future__ import annotations

import os
import signal
import threading


class StopSignals:
    """While active, SIGINT and SIGTERM only set `signum`: the loop finishes its step, saves and
    stops. A second SIGINT stops at once (KeyboardInterrupt). Python handles signals in the main
    thread only; elsewhere nothing is installed."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

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
            note = f"\n{signal.Signals(signum).name}: stopping after this step{again}\n"
            os.write(2, note.encode())  # print() is not safe inside a signal handler
