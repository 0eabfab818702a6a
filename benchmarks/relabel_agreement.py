"""Does the evidence's agreement with the given labels tell which relabels to trust? For each run
of the evidence recipe (a run folder made by `lionfer train`), every class with its agreement
(summary.json's evidence_by_class, recomputed here from the run's last checkpoint, so runs made
before summary.json carried it count too) and the relabels to that class; the (run, class) pairs
are pooled into bins of agreement, and each bin's relabels are scored against the truth.

    python benchmarks/relabel_agreement.py runs/faces-700/seed*
    python benchmarks/relabel_agreement.py --bins 0.7 0.8 0.9 runs/*/

Needs data with known truth (the synthetic faces, injected noise, or fer2013 with
data.truth=ferplus); relabels of images of unknown truth are left out of the scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lionfer.algorithms.lion_report import evidence_by_class
from lionfer.config import load_config
from lionfer.data.pipeline import finished_run_data
from lionfer.errors import InputError
from lionfer.inference.model_file import MODEL_FIX, checkpoint_file
from lionfer.training.checkpoint import MODEL_KEYS, load_checkpoint


def run_classes(run: Path) -> list[tuple[float, int, int]]:
    """(agreement, relabels of known truth, right) for each class of the run that the evidence
    names for some kept image."""
    if not run.is_dir():
        raise SystemExit(f"{run} is not a run folder (made by `lionfer train`)")
    state = load_checkpoint(checkpoint_file(run, "last"), MODEL_KEYS, MODEL_FIX)
    algorithm = state.get("algorithm", {})
    if "evidence" not in algorithm:
        raise SystemExit(f"{run} is not a run of the evidence recipe (no evidence in its state)")
    cfg = load_config(run / "config.toml")
    labeled = finished_run_data(run, cfg).labeled
    if labeled.true_labels is None:
        raise SystemExit(f"{run}: its data has no truth to score relabels against")
    figures = evidence_by_class(
        algorithm, labeled.labels, state["class_names"], labeled.true_labels
    )
    return [
        (row["agreement"], row["relabeled_to_known"], row["relabeled_to_right"])
        for row in figures.values()
        if row["agreement"] is not None
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of the evidence recipe")
    parser.add_argument("--bins", nargs="+", type=float, default=[0.7, 0.8, 0.9],
                        help="inner edges of the agreement bins (default 0.7 0.8 0.9)")  # fmt: skip
    args = parser.parse_args()
    try:
        rows = np.array([row for run in args.runs for row in run_classes(run)], dtype=float)
    except InputError as error:  # a run not finished, a config that no longer loads
        raise SystemExit(str(error)) from None
    edges = [0.0, *sorted(args.bins), 1.0 + 1e-9]
    print(f"{len(args.runs)} runs, {len(rows)} (run, class) pairs")
    print("agreement      classes  relabels  right  precision")
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = rows[(rows[:, 0] >= low) & (rows[:, 0] < high)]
        relabels, right = int(inside[:, 1].sum()), int(inside[:, 2].sum())
        precision = f"{100 * right / relabels:.1f}%" if relabels else "-"
        print(f"[{low:.2f}, {min(high, 1):.2f}{')' if high < 1 else ']'}  "
              f"{len(inside):7d}  {relabels:8d}  {right:5d}  {precision:>9s}")  # fmt: skip


if __name__ == "__main__":
    main()
