"""What a run shows while it trains: the tqdm bar with its figures, and the plain lines printed
instead of it (for --no-progress, logs and batch jobs). Pure functions of explicit values."""

from __future__ import annotations

import sys

from tqdm import tqdm


class QuietStream:
    """A text stream (sys.stdout or sys.stderr as they are when written to) whose writes stop,
    without an error, once one fails: a closed pipe (`lionfer train | head`), a closed or missing
    stream. What a run shows never stops the run."""

    def __init__(self, name: str):
        self.name, self.lost = name, False

    def _stream(self):
        return None if self.lost else getattr(sys, self.name)

    def write(self, text: str) -> int:
        stream = self._stream()
        if stream is not None:
            try:
                stream.write(text)
            except (OSError, ValueError):  # ValueError: a closed file
                self.lost = True
        return len(text)

    def flush(self) -> None:
        stream = self._stream()
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                self.lost = True

    def print(self, line: str) -> None:
        self.write(line + "\n")
        self.flush()

    def __getattr__(self, attribute: str):  # encoding, isatty, fileno: the stream's own
        stream = getattr(sys, self.__dict__["name"])
        if stream is None:
            raise AttributeError(attribute)
        return getattr(stream, attribute)


def progress_bar(total: int, initial: int, enabled: bool, desc: str) -> tqdm:
    """The bar of a run of `total` steps, resumed at step `initial`, on stderr (none without
    one)."""
    enabled = enabled and sys.stderr is not None
    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        dynamic_ncols=True,
        desc=desc,
        file=QuietStream("stderr"),
    )


def bar_figures(means: dict, best: dict, steps_per_s: float) -> dict:
    """The bar's figures at a log interval (for tqdm's set_postfix)."""
    return {
        "loss": f"{means.get('loss', 0):.3f}",
        "mask": f"{means.get('mask_rate', 0):.2f}",
        "acc": f"{best['test_acc'] if 'test_acc' in best else 0:.3f}",
        "it_s": f"{steps_per_s:.1f}",
    }


def progress_line(step: int, total: int, means: dict, steps_per_s: float) -> str:
    """One plain line per log interval."""
    parts = [f"step {step}/{total}", f"loss {means.get('loss', float('nan')):.4f}"]
    if "mask_rate" in means:
        parts.append(f"mask {means['mask_rate']:.2f}")
    parts.append(f"{steps_per_s:.2f} steps/s")
    return "  ".join(parts)


def eval_line(step: int, total: int, test_acc: float) -> str:
    """One plain line per evaluation."""
    return f"step {step}/{total}  test_acc {test_acc:.4f}"
