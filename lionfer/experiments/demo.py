"""The demo (`make demo` in a checkout, `python -m lionfer.experiments.demo` wherever lionfer is
installed): the packaged sweep `demo` (the supervised baseline, FixMatch and LION's four
recipes, the default `evidence` last, on the embedded synthetic faces, seed 0), then its report,
from which it prints the tables of test accuracy, mask rate and relabeling, each run's account of
its labels, and what one seed can and cannot show.

    python -m lionfer.experiments.demo [--jobs N] [--out DIR] [key=value ...]

is `lionfer sweep demo --out DIR --jobs N [key=value ...]` followed by `lionfer report DIR --out
DIR/report`. The six runs are `lionfer train` subprocesses, two at a time on a machine with two or
more CPU cores (one GPU each where GPUs are visible); `--jobs 1` runs them one after the other.
DIR defaults to a new runs/demo-<date>-<time>; an interrupted demo continues with --out DIR.
`seed=` and `data.num_labels=` choose the sweep's seeds and label budget."""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys
import time
from pathlib import Path

from lionfer.errors import InputError
from lionfer.experiments.launch import visible_gpus
from lionfer.experiments.sweep import run_sweep
from lionfer.experiments.sweep_file import expand, load_sweep
from lionfer.reporting.document import Table, text_table
from lionfer.reporting.label_sections import RELABEL
from lionfer.reporting.report_command import ReportResult, make_report
from lionfer.reporting.table_sections import MAIN, MASK
from lionfer.version import docs_page

SWEEP = "demo"  # lionfer/configs/sweeps/demo.toml
TABLES = (MAIN, MASK, RELABEL)  # the report's sections whose tables are printed
GRID_KEYS = {"seed": "sweep.seeds", "data.num_labels": "sweep.num_labels"}
ONE_SEED = (
    "One seed shows that every method runs and what LION did to the labels; it cannot rank\n"
    "methods. Over seeds 0-2 of this default a method's test accuracy moves by about 3-5 points\n"
    "(sample std), and floating-point kernels differ between CPUs and thread counts, so another\n"
    "machine prints other digits. Mean and std over seeds are in lionfer's Results page,\n"
    f"{docs_page('results.md')}, made by\n"
    "lionfer sweep lion-evidence-faces --out runs/lion-evidence-faces --jobs 2"
)


def default_jobs(gpus: list[str]) -> int:
    return len(gpus) if gpus else max(1, min(2, os.cpu_count() or 1))


def sweep_items(given: list[str]) -> list[str]:
    """The command line's key=value items for the sweep: the seed and the label budget belong
    to its grid, so `seed=1` becomes `sweep.seeds=1`, `data.num_labels=N` `sweep.num_labels=N`."""
    items = []
    for item in given:
        key, sep, value = item.partition("=")
        key = key.strip()
        items.append(f"{GRID_KEYS[key]}={value}" if sep and key in GRID_KEYS else item)
    return items


def new_folder(runs: Path = Path("runs")) -> Path:
    """runs/demo-<date>-<time>, with -2, -3, ... where that folder exists already."""
    base = runs / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder.resolve()


def report_text(report: ReportResult) -> str:
    """The report's tables of TABLES and each run's account of its labels."""
    parts = [
        f"{section.title}:\n{text_table(block.header, block.rows)}"
        for section in report.sections
        if section.title in TABLES
        for block in section.blocks
        if isinstance(block, Table)
    ]
    for account in report.labels:
        lines = "\n".join(f"  {line}" for line in account.lines)
        parts.append(f"{account.method} ({account.relabels}):\n{lines}")
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lionfer.experiments.demo", description=__doc__)
    parser.add_argument("--jobs", type=int, default=None, help="runs at a time")
    parser.add_argument("--out", type=Path, help="the demo's folder (default: a new one in runs/)")
    parser.add_argument("overrides", nargs="*", help="key=value for every run")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    gpus = visible_gpus()
    jobs = default_jobs(gpus) if args.jobs is None else args.jobs
    if jobs < 1:
        print(f"error: --jobs must be at least 1, got {jobs}", file=sys.stderr)
        return 2
    items = sweep_items(args.overrides)
    root = args.out.resolve() if args.out else new_folder()
    again = shlex.join(["python", "-m", "lionfer.experiments.demo", "--out", str(root), *items])
    started = time.monotonic()
    try:  # every config is checked before anything runs or is written
        select = [i for i in items if i.startswith("sweep.")]
        points = expand(load_sweep(SWEEP, select), [i for i in items if i not in select])
        cfg = points[-1][1]
        print(
            f"{len(points)} runs on {cfg.data.dataset} ({cfg.data.num_labels} labels, "
            f"{cfg.train.steps} steps, {cfg.model.name} at {cfg.data.image_size} px), "
            f"{jobs} at a time, into {root}; each run's output in {root / 'logs'}",
            flush=True,
        )
        echo = functools.partial(print, flush=True)
        code = run_sweep(SWEEP, items, root, jobs=jobs, gpus=gpus, echo=echo, again=again)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    failed = [p.folder for p, _ in points if not (root / p.folder / "summary.json").is_file()]
    if len(failed) < len(points):
        try:
            report = make_report([root], root / "report")
        except InputError as error:  # e.g. a report folder holding files of the user's
            print(f"error: {error}", file=sys.stderr)
            return 2
        minutes = (time.monotonic() - started) / 60
        print(f"\nResults on the {cfg.data.dataset} test set ({minutes:.1f} min; runs in {root}):")
        print(f"\n{report_text(report)}\n\n{report}")
    print(f"\n{ONE_SEED}")
    if code:  # runs that failed, or folders left alone as conflicts (named above)
        named = ", ".join(failed) or "see the CONFLICT lines above"
        print(f"\nfailed: {named} (see {root / 'logs'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
