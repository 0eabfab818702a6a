"""The metrics.jsonl events of a run that stopped or failed. A signal (lionfer.stop_signals) only
asks the loop to stop; it finishes the step, saves checkpoints/last.pt, records stop_record's event
and raises lionfer.errors.Interrupted; a failure in the loop records failure_record's."""

from __future__ import annotations

import signal

from lionfer.errors import NonFiniteLoss


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
