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
        "fullysupervised",
        "fullysupervised:FullySupervised",
        "every training image with its given label (the full-supervision row)",
        hp.FullySupervisedConfig,
    ),
    (
        "pseudolabel",
        "pseudolabel:PseudoLabel",
        "Pseudo-Label (Lee 2013): the predicted class trains the same view, ramped weight",
        hp.PseudoLabelConfig,
    ),
    (
        "mixmatch",
        "mixmatch:MixMatch",
        "MixMatch: sharpened guesses over 2 weak views, MixUp across labeled and unlabeled",
        hp.MixMatchConfig,
    ),
    (
        "uda",
        "uda:UDA",
        "UDA: KL from a sharpened weak view to a strong view, optional TSA",
        hp.UDAConfig,
    ),
    (
        "remixmatch",
        "remixmatch:ReMixMatch",
        "ReMixMatch: distribution alignment, strong-view anchoring, MixUp, rotation head",
        hp.ReMixMatchConfig,
    ),
    (
        "marginmix",
        "marginmix:MarginMix",
        "Margin-Mix (approximation): MixMatch + additive margin + centroid guesses",
        hp.MarginMixConfig,
    ),
    (
        "fixmatch",
        "fixmatch:FixMatch",
        "FixMatch: confident weak-view pseudo-labels train the strong view",
        hp.FixMatchConfig,
    ),
    (
        "flexmatch",
        "flexmatch:FlexMatch",
        "FlexMatch: FixMatch with per-class thresholds from each class's learning effect",
        hp.FlexMatchConfig,
    ),
    (
        "freematch",
        "freematch:FreeMatch",
        "FreeMatch: self-adaptive global and per-class thresholds, fairness term",
        hp.FreeMatchConfig,
    ),
    (
        "softmatch",
        "softmatch:SoftMatch",
        "SoftMatch: every pseudo-label weighted by a truncated Gaussian of its confidence, UA",
        hp.SoftMatchConfig,
    ),
    (
        "adacm",
        "adacm:AdaCM",
        "Ada-CM: per-class confidence margins from labeled data, contrastive low-confidence",
        hp.AdaCMConfig,
    ),
    (
        "lion",
        "lion:Lion",
        "LION: label disambiguation + progressive negative learning",
        hp.LionConfig,
    ),
):
    ALGORITHMS.add(_name, f"lionfer.algorithms.{_target}", _description, _config)
