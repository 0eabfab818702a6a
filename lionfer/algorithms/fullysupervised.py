"""Full supervision: every training image with its given label (Table 1's "Fully Supervised" row).

- The run's labeled set is the whole training set: the algorithm declares `uses_all_labels`, so
  data.num_labels is ignored and summary.json's num_labels counts every training image.
- The loss is the supervised baseline's cross-entropy on a weak view; nothing is unlabeled.
- The paper quotes published fully supervised FER models (DLP-CNN, RAN) for this row; lionfer
  trains its own backbone on all labels instead, so the row measures the same network and
  schedule as every other method, which is the comparison the row stands for.
"""

from __future__ import annotations

from lionfer.algorithms.hparams import FullySupervisedConfig
from lionfer.algorithms.supervised import Supervised


class FullySupervised(Supervised):
    config_class = FullySupervisedConfig
    uses_all_labels = True
