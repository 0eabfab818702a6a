"""Training algorithms: each computes one step's losses; the Trainer owns the loop.

The table below registers every method by name with its description and hyperparameter class;
a method's module (and torch) is imported only when the method is built.
"""

from lionfer.algorithms import hparams as hp
from lionfer.registry import ALGORITHMS

for _name, _target, _description, _config in (
    (
        "supervised",
        "supervised:Supervised",
        "labeled images only, cross-entropy (the paper's baseline)",
        hp.SupervisedConfig,
    ),
    (
        "fixmatch",
        "fixmatch:FixMatch",
        "FixMatch: confident weak-view pseudo-labels train the strong view",
        hp.FixMatchConfig,
    ),
    (
        "lion",
        "lion:Lion",
        "LION: label disambiguation + progressive negative learning",
        hp.LionConfig,
    ),
):
    ALGORITHMS.add(_name, f"lionfer.algorithms.{_target}", _description, _config)
