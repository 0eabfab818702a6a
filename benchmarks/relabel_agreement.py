"""Does the evidence's agreement with the given labels tell which relabels to trust? For each run
of the evidence recipe (a run folder made by `lionfer train`), every class with its agreement
(summary.json's evidence_by_class, recomputed here from the run's last checkpoint, so runs made
before summary.json carried it count too) and the relabels to that class; the (run, class) pairs
are pooled into bins of agreement, and each bin's relabels are scored against the truth.

    python benchmarks/relabel_agreement.py runs/faces-700/seed*
    python benchmarks/relabel_agreement.py runs/*/ --bins 0.7,0.8,0.9

Only finished runs (with summary.json) are read: an unfinished one is refused, by name. A run
that is not of the evidence recipe (FixMatch, supervised, the paper recipe beside it in a sweep)
is skipped with a note.

Needs data with known truth (the synthetic faces, injected noise, or fer2013 with
data.truth=ferplus); relabels of images of unknown truth are left out of the scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lionfer.algorithms.lion_report import evidence_by_class
from lionfer.config import load_config
from lionfer.errors import InputError
from lionfer.inference.model_file import MODEL_FIX, checkpoint_file
from lionfer.reporting.runs import unfinished_reason
from lionfer.training.checkpoint import MODEL_KEYS, load_checkpoint
from lionfer.training.finished_run import finished_run_data


class NotEvidence(Exception):
    """A run of another algorithm or recipe: skipped, with a note."""


def run_classes(run: Path) -> list[tuple[float, int, int]]:
    """(agreement, relabels of known truth, right) for each class of the run that the evidence
    names for some kept image."""
    if not run.is_dir():
        raise SystemExit(f"{run} is not a run folder (made by `lionfer train`)")
    state = load_checkpoint(checkpoint_file(run, "last"), MODEL_KEYS, MODEL_FIX)
    algorithm = state.get("algorithm", {})
    if "evidence" not in algorithm:
        raise NotEvidence(f"{run} is not a run of the evidence recipe (no evidence in its state)")
    cfg = load_config(run / "config.toml")
    unfinished = unfinished_reason(run, state.get("step"), cfg.train.steps)
    if unfinished:
        raise SystemExit(unfinished)
    labeled = finished_run_data(run, cfg, state).labeled
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


def agreement_edges(text: str) -> list[float]:
    """--bins: the inner edges of the agreement bins, comma-separated, each inside (0, 1)."""
    try:
        edges = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers separated by commas: {text!r}") from None
    if not edges or not all(0 < edge < 1 for edge in edges):
        raise argparse.ArgumentTypeError(f"each edge must lie strictly between 0 and 1: {text!r}")
    return sorted(set(edges))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="e.g. relabel_agreement.py runs/*/ --bins 0.7,0.8,0.9",
    )
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders of the evidence "
                        "recipe (others are skipped with a note)")  # fmt: skip
    parser.add_argument("--bins", type=agreement_edges, default=[0.7, 0.8, 0.9],
                        help="inner edges of the agreement bins, comma-separated, each in (0, 1) "
                        "(default 0.7,0.8,0.9)")  # fmt: skip
    return parser


def main() -> None:
    args = parser().parse_args()
    pairs, read, skipped = [], 0, []
    try:
        for run in args.runs:
            try:
                pairs += run_classes(run)
                read += 1
            except NotEvidence as note:
                skipped.append(run)
                print(f"skipped: {note}")
    except InputError as error:  # a config that no longer loads, a missing split
        raise SystemExit(str(error)) from None
    if not read:
        raise SystemExit("no run of the evidence recipe among the runs given")
    rows = np.array(pairs, dtype=float).reshape(-1, 3)
    edges = [0.0, *args.bins, 1.0 + 1e-9]
    note = f" ({len(skipped)} other runs skipped)" if skipped else ""
    print(f"{read} runs{note}, {len(rows)} (run, class) pairs")
    print("agreement      classes  relabels  right  precision")
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = rows[(rows[:, 0] >= low) & (rows[:, 0] < high)]
        relabels, right = int(inside[:, 1].sum()), int(inside[:, 2].sum())
        precision = f"{100 * right / relabels:.1f}%" if relabels else "-"
        print(f"[{low:.2f}, {min(high, 1):.2f}{')' if high < 1 else ']'}  "
              f"{len(inside):7d}  {relabels:8d}  {right:5d}  {precision:>9s}")  # fmt: skip


if __name__ == "__main__":
    main()
