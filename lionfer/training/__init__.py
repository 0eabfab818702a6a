"""Training: the loop (trainer.py) and its parts: the run's setup from a config (setup.py),
evaluation on the test set (evaluation.py), and train(), one run from config to summary (run.py).

`train` and `Trainer` are importable from here; they are loaded on first use, so importing a part
(e.g. lionfer.training.evaluation) does not import the loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # type checkers see their signatures; at run time each is loaded on first use
    from lionfer.training.run import train
    from lionfer.training.trainer import Trainer

__all__ = ["Trainer", "train"]


def __getattr__(name: str):
    if name == "train":
        from lionfer.training.run import train

        return train
    if name == "Trainer":
        from lionfer.training.trainer import Trainer

        return Trainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
