"""`make demo`: the supervised baseline, FixMatch and LION's four recipes (the default,
`evidence`, first) on the embedded synthetic faces, then a comparison table with the
label-quality figures and what one seed can and cannot show.

    python -m lionfer.experiments.demo [--jobs N] [key=value ...]

The six runs are `lionfer train` subprocesses, two at a time on a machine with two or more CPU
cores (one GPU each where GPUs are visible); `--jobs 1` runs them one after the other. Each run's
output goes to `<runs>/logs/<run>.log`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from lionfer.config import DEFAULT_CONFIG, load_config
from lionfer.errors import InputError
from lionfer.experiments.launch import Job, run_local, visible_gpus
from lionfer.reporting.run_summary import comparison_table, label_quality_lines
from lionfer.run_names import method_name

RUNS = (
    ("supervised", ("algorithm.name=supervised",)),
    ("fixmatch", ("algorithm.name=fixmatch",)),
    ("lion-paper", ("algorithm.name=lion", "algorithm.recipe=paper")),
    ("lion-released", ("algorithm.name=lion", "algorithm.recipe=released")),
    ("lion-robust", ("algorithm.name=lion", "algorithm.recipe=robust")),
    ("lion-evidence", ("algorithm.name=lion", "algorithm.recipe=evidence")),
)
# The longest runs first, so the short supervised one fills the last free slot.
ORDER = ("lion-evidence", "fixmatch", "lion-paper", "lion-released", "lion-robust", "supervised")
ONE_SEED = (
    "One seed shows that every method runs and what LION did to the labels; it cannot rank\n"
    "methods. Over seeds 0-2 of this default a method's test accuracy moves by about 3-5 points\n"
    "(sample std), and floating-point kernels differ between CPUs and thread counts, so another\n"
    "machine prints other digits. docs/results.md gives mean and std over seeds:\n"
    "lionfer sweep lion-evidence-faces --out runs/lion-evidence-faces --jobs 2"
)


def default_jobs(gpus: list[str]) -> int:
    return len(gpus) if gpus else max(1, min(2, os.cpu_count() or 1))


def run_overrides(jobs: int, given: list[str], gpus: bool) -> list[str]:
    """Every run's overrides. Runs that share the CPU cores make their views in their own
    process: a loader worker each would only compete with the other runs for the cores (the
    views are the same either way). What the user gives comes last and wins."""
    shared = not gpus and jobs > 1
    return [*(["data.num_workers=0"] if shared else []), *given]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lionfer.experiments.demo", description=__doc__)
    parser.add_argument("--jobs", type=int, default=None, help="runs at a time")
    parser.add_argument("overrides", nargs="*", help="key=value for every run")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    gpus = visible_gpus()
    jobs = default_jobs(gpus) if args.jobs is None else args.jobs
    if jobs < 1:
        print(f"error: --jobs must be at least 1, got {jobs}", file=sys.stderr)
        return 2
    root = (Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    choices = dict(RUNS)
    overrides = run_overrides(jobs, args.overrides, bool(gpus))
    try:  # every config checked before anything runs
        configs = {f: load_config(DEFAULT_CONFIG, [*overrides, *c]) for f, c in RUNS}
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    cfg = configs["lion-evidence"]
    print(
        f"{len(RUNS)} runs on {cfg.data.dataset} ({cfg.data.num_labels} labels, "
        f"{cfg.train.steps} steps, {cfg.model.name} at {cfg.data.image_size} px), "
        f"{jobs} at a time, into {root}; each run's output in {root / 'logs'}",
        flush=True,
    )
    todo = [
        Job(
            n,
            len(ORDER),
            folder,
            "start",
            ["train", *overrides, *choices[folder], "--no-progress", "--out"]
            + [str(root / folder)],
            root / folder,
            root / "logs" / f"{folder}.log",
        )
        for n, folder in enumerate(ORDER, 1)
    ]
    started = time.monotonic()
    results = run_local(todo, jobs, gpus, lambda line: print(line, flush=True))
    failed = [r.name for r in results if not r.ok]
    summaries = {
        folder: json.loads((root / folder / "summary.json").read_text())
        for folder, _ in RUNS
        if folder not in failed
    }
    minutes = (time.monotonic() - started) / 60
    print(f"\nResults on the synthetic test set ({minutes:.1f} min; runs in {root}):\n")
    print(comparison_table(list(summaries.values())))
    for folder, summary in summaries.items():
        lines = label_quality_lines(summary)
        if lines:
            print(f"\n{method_name(summary)} ({root / folder / 'relabels.csv'}):")
            print("\n".join(f"  {line}" for line in lines))
        for warning in summary.get("warnings", []):
            print(f"  warning: {warning}")
    print(f"\n{ONE_SEED}")
    if failed:
        print(f"\nfailed: {', '.join(failed)} (see {root / 'logs'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
