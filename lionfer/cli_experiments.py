"""The command line's experiment commands: `lionfer sweep` (a grid of runs) and `lionfer report`
(tables and figures over finished runs), their parsers and what they run. Nothing here imports
torch until a command runs."""

from __future__ import annotations


def add_sweep_parser(sub) -> None:
    """`lionfer sweep`: a grid of runs."""
    p = sub.add_parser("sweep", help="run a grid of runs (methods x label budgets x seeds)")
    p.add_argument("sweep", help="a sweep TOML file or a packaged sweep name (e.g. embedded)")
    p.add_argument("items", nargs="*", metavar="key=value", help="overrides for every run")
    p.add_argument("--out", required=True, help="the sweep's folder")
    p.add_argument("--jobs", type=int, help="runs at a time (default: one per GPU, else 1)")
    p.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local subprocesses (default) or cluster jobs through submitit",
    )
    p.add_argument(
        "--slurm",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a submitit parameter, e.g. slurm_partition=gpu (repeatable)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.set_defaults(func=cmd_sweep)


def add_report_parser(sub) -> None:
    """`lionfer report`: tables and figures over finished runs."""
    p = sub.add_parser("report", help="tables and figures over finished runs and sweeps")
    p.add_argument("runs", nargs="+", metavar="RUNS_OR_SWEEP")
    p.add_argument("--out", required=True, help="folder for report.md, report.html and CSVs")
    p.add_argument(
        "--best-on-test",
        action="store_true",
        help="also report the best evaluation on the test set (optimistic)",
    )
    p.add_argument(
        "--gallery",
        type=int,
        default=8,
        help="relabeled faces shown per method (default 8; 0: none)",
    )
    p.set_defaults(func=cmd_report)


def cmd_sweep(args) -> int:
    from lionfer.experiments.sweep import run_sweep

    return run_sweep(
        args.sweep,
        args.items,
        args.out,
        jobs=args.jobs,
        launcher=args.launcher,
        dry_run=args.dry_run,
        slurm=args.slurm,
    )


def cmd_report(args) -> int:
    from lionfer.reporting.report_command import make_report

    result = make_report(args.runs, args.out, best_on_test=args.best_on_test, gallery=args.gallery)
    print(result)
    return 0
