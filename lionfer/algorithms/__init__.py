"""Training algorithms: each computes one step's losses; the Trainer owns the loop."""

from lionfer.algorithms import fixmatch, lion, supervised  # noqa: F401  (register)
