"""How far is a run's evidence from what its images support? On the embedded faces the exact
posterior of every face, P(true class | geometry as drawn), is known (the generator's own model,
lionfer.data.annotators.class_posterior), so the evidence rule can be read from it instead of
from the heads. For each run of the evidence recipe on the faces (a run folder made by
`lionfer train`), two things are scored against the truth, pooled over the runs:

- the ceiling: the rule's verdicts once on the exact posterior of the labeled set, with the
  run's given labels, Confident Learning's thresholds over all of them, its against_ratio and
  relabel_margin (no visits, no audit, no prototype check: what perfect evidence, read by the
  rule, would relabel);
- the run's own relabels, every wrong one sorted by the class the exact posterior names: its new
  class (the face as drawn shows the new class more than its true one, so no reader of the image
  would have got it right), its true class (a better reader would have), or another.

    python benchmarks/evidence_ceiling.py runs/faces-700/seed*

Only for runs on the synthetic faces (data.dataset = "synthetic"), whose geometry the generator
can draw again from the run's config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lionfer.algorithms.lion_evidence_rules import class_thresholds, evidence_verdict
from lionfer.config import load_config
from lionfer.data.annotators import SLIP, class_posterior
from lionfer.data.datasets.synthetic import FACE_MODEL, training_faces
from lionfer.errors import InputError
from lionfer.inference.model_file import MODEL_FIX, checkpoint_file
from lionfer.reporting.runs import unfinished_reason
from lionfer.training.checkpoint import MODEL_KEYS, load_checkpoint
from lionfer.training.finished_run import finished_run_data


def run_rows(run: Path) -> dict:
    """The run's labeled set: exact posterior (M, C), given labels, labels now, truth and slips."""
    if not run.is_dir():
        raise SystemExit(f"{run} is not a run folder (made by `lionfer train`)")
    cfg = load_config(run / "config.toml")
    if cfg.data.dataset != "synthetic":
        raise SystemExit(
            f"{run}: data.dataset is {cfg.data.dataset!r}; the exact posterior is known only for "
            "the embedded faces (synthetic)"
        )
    state = load_checkpoint(checkpoint_file(run, "last"), MODEL_KEYS, MODEL_FIX)
    algorithm = state.get("algorithm", {})
    if "evidence" not in algorithm:
        raise SystemExit(f"{run} is not a run of the evidence recipe (no evidence in its state)")
    unfinished = unfinished_reason(run, state.get("step"), cfg.train.steps)
    if unfinished:
        raise SystemExit(unfinished)
    run_data = finished_run_data(run, cfg, state)
    faces = training_faces(cfg.data)
    rows = run_data.split.labeled
    labeled = run_data.labeled
    if not np.array_equal(faces.true_labels[rows], labeled.true_labels):
        raise SystemExit(f"{run}: the faces drawn again from its config are not the run's faces")
    return {
        "posterior": class_posterior(faces.geometry[rows], cfg.data.ambiguity, FACE_MODEL),
        "given": np.asarray(labeled.labels),
        "now": algorithm["label"].cpu().numpy(),
        "truth": np.asarray(labeled.true_labels),
        "slip": np.asarray(labeled.error_types) == SLIP,
        "against_ratio": cfg.algorithm.against_ratio,
        "margin": cfg.algorithm.relabel_margin,
    }


def scores(new, given, truth, slip) -> dict:
    """Labels changed from given to new, scored against the truth: relabels, right, correct
    labels broken, slips fixed, with the slips and correct labels there were."""
    changed = new != given
    right = changed & (new == truth)
    return {
        "relabels": int(changed.sum()),
        "right": int(right.sum()),
        "broken": int((changed & (given == truth)).sum()),
        "slips_fixed": int((right & slip).sum()),
        "slips": int(slip.sum()),
        "correct": int((given == truth).sum()),
    }


def ceiling(rows: dict) -> dict:
    """The rule's verdicts once on the exact posterior of run_rows' rows, scored."""
    given = rows["given"]
    evidence = torch.as_tensor(rows["posterior"], dtype=torch.float64)
    labels = torch.as_tensor(given)
    thresholds = class_thresholds(evidence, labels, torch.ones(len(labels), dtype=torch.bool))
    verdict = evidence_verdict(
        evidence, labels, thresholds, rows["against_ratio"], rows["margin"]
    ).numpy()
    return scores(np.where(verdict >= 0, verdict, given), given, rows["truth"], rows["slip"])


def sort_wrong(rows: dict) -> dict:
    """The run's own relabels (label now ≠ given), scored, and the wrong ones by the class the
    exact posterior names for the face: the new one, the true one, another."""
    given, now, truth = rows["given"], rows["now"], rows["truth"]
    wrong = (now != given) & (now != truth)
    named = rows["posterior"].argmax(axis=1)
    return {
        **scores(now, given, truth, rows["slip"]),
        "new": int((wrong & (named == now)).sum()),
        "true": int((wrong & (named == truth)).sum()),
        "other": int((wrong & (named != now) & (named != truth)).sum()),
    }


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def line(figures: dict) -> str:
    return (
        f"{figures['relabels']} relabels, {percent(figures['right'], figures['relabels'])} right;"
        f" slips fixed {figures['slips_fixed']} of {figures['slips']}"
        f" ({percent(figures['slips_fixed'], figures['slips'])}); correct labels broken"
        f" {figures['broken']} of {figures['correct']}"
        f" ({percent(figures['broken'], figures['correct'])})"
    )


def pooled(parts: list[dict]) -> dict:
    return {key: sum(part[key] for part in parts) for key in parts[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of the evidence recipe")
    args = parser.parse_args()
    try:
        rows = [run_rows(run) for run in args.runs]
    except InputError as error:  # a run not finished, a config that no longer loads
        raise SystemExit(str(error)) from None
    best, own = pooled([ceiling(r) for r in rows]), pooled([sort_wrong(r) for r in rows])
    print(f"{len(args.runs)} runs")
    print(f"the rule on the exact posterior: {line(best)}")
    print(f"the runs' relabels: {line(own)}")
    print(
        f"of the runs' {own['relabels'] - own['right']} wrong relabels, the exact posterior names"
        f" the new class for {own['new']}, the true class for {own['true']}, another for"
        f" {own['other']}"
    )


if __name__ == "__main__":
    main()
