"""lionfer: semi-supervised facial expression recognition under ambiguous labels (LION).

`lionfer.load(MODEL)` returns a Predictor for a run folder, checkpoint or exported ONNX file; it is
imported on first use, so `import lionfer` stays light (no torch).
"""

from typing import TYPE_CHECKING

from lionfer.version import __version__

if TYPE_CHECKING:  # type checkers see load's signature; at run time it is imported on first use
    from lionfer.inference.predictor import load

__all__ = ["__version__", "load"]


def __getattr__(name: str):
    if name == "load":
        from lionfer.inference.predictor import load

        return load
    raise AttributeError(f"module 'lionfer' has no attribute {name!r}")
