"""Where `lionfer train` writes a run given no --out: runs/<dataset@labels>/<method>/s<seed>
(lionfer.run_names), its labels those the run uses (all for fullysupervised). The train command
and what its failures say (lionfer.cli_failures) both name it."""

from __future__ import annotations

from pathlib import Path

from lionfer.run_names import run_folder


def default_out(cfg) -> Path:
    from lionfer.training.setup import data_config  # fullysupervised labels every image

    labels = data_config(cfg).num_labels
    return Path("runs") / run_folder(cfg.data.dataset, labels, cfg.algorithm.name, cfg.seed)
