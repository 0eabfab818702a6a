"""Argument types shared by the benchmark scripts: a bad value is a usage error (exit 2) naming
the option, not a traceback half-way through a measurement."""

from __future__ import annotations

import argparse
import math


def at_least(low: int):
    """An argparse type: an integer of at least `low`."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    check.__name__ = f"integer >= {low}"
    return check


positive_int = at_least(1)


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


positive_float.__name__ = "number > 0"
