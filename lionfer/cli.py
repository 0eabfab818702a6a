"""The `lionfer` command: subcommands parse arguments, call the library, print, and exit with a
status: 0 ok, 1 runtime failure, 2 bad input, 128 + N stopped by signal N (130 Ctrl-C, 143 SIGTERM).
No ML logic lives here, and nothing imports torch until a command needs it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shlex
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

from lionfer.cli_experiments import add_report_parser, add_sweep_parser
from lionfer.cli_failures import os_error_message
from lionfer.cli_model import (
    RUN_HELP,
    add_checkpoint_option,
    add_model_use_parsers,
    inference_environment,
)
from lionfer.cli_run_folder import default_out
from lionfer.config import ConfigError, config_from_args, replace, to_toml
from lionfer.config_text import packaged_listing
from lionfer.errors import InputError, Interrupted, RuntimeFailure
from lionfer.processes import launched, main_process
from lionfer.registry import ALGORITHMS, DATASETS, MODELS
from lionfer.reporting.run_summary import format_summary
from lionfer.version import __version__


def check_device_option(device: str | None) -> None:
    """A --device given to train or evaluate names a device of this machine: else a ConfigError
    naming --device (not the train.device it becomes) and the fix."""
    if device:
        from lionfer.device import resolve_device

        resolve_device(device, what="--device")


@contextlib.contextmanager
def said_once():
    """Under torchrun every process reads the same command line, so an error in it is the same
    in each: the main process prints it, the others exit with its code (2) without a word."""
    try:
        yield
    except InputError as error:
        from lionfer.distributed import StoppedElsewhere

        if launched() and not main_process():
            raise StoppedElsewhere(2) from error
        raise


def check_launch(command: str) -> None:
    """Only `train` shares its work among torchrun's processes; any other command would run
    whole in each process, each writing the same files (a sweep: the same runs)."""
    if launched() and command != "train":
        raise ConfigError(
            f"lionfer {command} runs in one process: start it without torchrun (torchrun "
            "shares one training run among its processes: torchrun ... -m lionfer train ...)"
        )


def check_train_arguments(args) -> None:
    """train's options that contradict each other, and --device."""
    check_device_option(args.device)
    if not args.resume:
        return
    if not args.out:
        raise ConfigError("--resume needs --out RUN_FOLDER (the run to continue)")
    if args.items:
        raise ConfigError(
            f"--resume continues a run with its own config ({Path(args.out) / 'config.toml'}): "
            f"drop {shlex.join(args.items)}"
        )
    if args.overwrite or args.dry_run:
        raise ConfigError("--resume continues a run: it takes neither --overwrite nor --dry-run")


def cmd_train(args) -> int:
    from lionfer.training.run import train

    command = shlex.join(["lionfer", *sys.argv[1:]])
    with said_once():
        check_train_arguments(args)
    if args.resume:
        out = Path(args.out)
        summary = train(
            None,
            out,
            resume=True,
            progress=not args.no_progress,
            command=command,
            device=args.device,
        )
        if summary is not None:
            show(format_summary(summary, out))
        return 0
    extra = (f"train.device={args.device}",) if args.device else ()
    with said_once():
        cfg = config_from_args(args.items, extra)
    out = Path(args.out).expanduser() if args.out else default_out(cfg)
    if args.dry_run:
        from lionfer.run_lock import check_unlocked
        from lionfer.training.runfolder import check_run_dir

        # the folder the real run would write: refused now, as the real run would refuse it
        check_unlocked(out)
        check_run_dir(out, resume=False, overwrite=args.overwrite)
        cfg = replace(
            cfg,
            "train.steps=2",
            "train.eval_every=2",
            "train.log_every=1",
            "train.checkpoint_every=2",
        )
        with tempfile.TemporaryDirectory(prefix="lionfer-dry-run-") as tmp:
            try:
                summary = train(cfg, Path(tmp) / "run", progress=False, command=command)
            except RuntimeFailure as error:
                raise dry_run_failure(error, tmp) from None
        if summary is None:  # another process of a multi-process run: the main one reports
            return 0
        show(
            f"dry run ok: 2 steps of {cfg.algorithm.name} on {cfg.data.dataset}, "
            f"test_acc {summary['test_acc']:.4f} (nothing was saved; the run would write {out})"
        )
        return 0
    summary = train(
        cfg,
        out,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        command=command,
    )
    if summary is not None:  # None: another process of a multi-process run
        show(format_summary(summary, out))
    return 0


def dry_run_failure(error: RuntimeFailure, tmp: str) -> RuntimeFailure:
    """A dry run's failure, without the clauses naming files of its temporary folder (removed by
    now: a NaN loss's error.pt), saying that nothing was kept and how to keep them."""
    clauses = str(error).split("; ")
    kept = [clause for clause in clauses if tmp not in clause]
    if len(kept) < len(clauses):
        kept.append(
            "dry run: nothing was kept (run without --dry-run to keep the failing state, e.g. "
            "the checkpoints/error.pt of a NaN loss, in the run folder)"
        )
    error.args = ("; ".join(kept),)
    return error


def show(text: str) -> None:
    """Print a finished run's lines: a stdout closed meanwhile (`lionfer train | head`) loses
    them, not the run, which is saved by now."""
    try:
        print(text, flush=True)
    except (OSError, ValueError):  # a broken pipe, a closed file
        try:  # the interpreter's last flush at exit must not fail on it again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass


def cmd_evaluate(args) -> int:
    from lionfer.evaluate import evaluate_run

    check_device_option(args.device)
    result = evaluate_run(Path(args.run), checkpoint=args.checkpoint, device=args.device)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{args.run} ({args.checkpoint}.pt, EMA model): test accuracy {result['test_acc']:.4f}, "
        f"mean class accuracy {result['mean_class_acc']:.4f}"
    )
    for name, acc in result["per_class_acc"].items():
        print(f"  {name:<12} {'-' if acc is None else f'{acc:.4f}'}")
    from lionfer.reporting.run_summary import label_quality_lines

    for line in label_quality_lines(result):
        print(line)
    return 0


def cmd_list(args) -> int:
    if args.what in ("configs", "sweeps"):
        rows = packaged_listing(args.what)
        width = max(len(name) for name, _ in rows)
        for name, about in rows:
            print(f"{name:<{width}}  {about}")
        return 0
    if args.what == "algorithms":
        import lionfer.algorithms  # noqa: F401  (the table of algorithms; no torch)
    elif args.what == "datasets":
        import lionfer.data.datasets  # noqa: F401  (the table of datasets; no numpy)
    registry = {"algorithms": ALGORITHMS, "models": MODELS, "datasets": DATASETS}[args.what]
    width = max(len(entry.name) for entry in registry)
    for entry in registry:
        print(f"{entry.name:<{width}}  {entry.description}")
        for recipe, note in getattr(entry.config, "RECIPE_NOTES", {}).items():
            default = " (default)" if recipe == entry.config.DEFAULT_RECIPE else ""
            print(f"{'':<{width}}    algorithm.recipe={recipe}{default}: {note}")
    return 0


def cmd_config_show(args) -> int:
    print(to_toml(config_from_args(args.items)), end="")
    return 0


def cmd_data_stats(args) -> int:
    from lionfer.data.pipeline import dataset_stats
    from lionfer.unread import check_dataset_keys, check_noise

    cfg = config_from_args(args.items)
    check_dataset_keys(cfg)  # counts of a dataset that would ignore a key are not the ones asked
    check_noise(cfg)
    stats, notes = dataset_stats(cfg.data, cfg.seed)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    names = list(dict.fromkeys(name for part in stats.values() for name in part))
    parts = list(stats)
    print(f"{'class':<12}" + "".join(f"{p:>11}" for p in parts))
    for name in names:
        print(f"{name:<12}" + "".join(f"{stats[p].get(name, 0):>11}" for p in parts))
    print(f"{'total':<12}" + "".join(f"{sum(stats[p].values()):>11}" for p in parts))
    return 0


def cmd_prepare(args) -> int:
    from lionfer.data.pipeline import load_dataset
    from lionfer.data.prepare import prepare
    from lionfer.unread import check_dataset_keys

    cfg = config_from_args(args.items)
    check_dataset_keys(cfg)  # a key the dataset does not read would change no crop
    data = load_dataset(cfg.data, cfg.seed, check=())  # prepare lists unreadable files itself
    result = prepare(
        data,
        Path(args.out),
        size=args.size,
        detector=args.detector,
        multi_face=args.multi_face,
        progress=not args.no_progress,
    )
    print(result)
    print(f"train from the cache with: lionfer train data.dataset=manifest data.root={args.out}")
    return 0


TRAIN_EXAMPLES = """examples:
  lionfer train --dry-run                      2 steps of the default run, nothing saved
  lionfer train                                LION on the embedded faces (600 steps, CPU)
  lionfer train algorithm.name=fixmatch train.steps=100 --out runs/fixmatch
  lionfer train --resume --out runs/fixmatch   continue it after Ctrl-C, SIGTERM or a failure
  lionfer train data.dataset=digits seed=1 --no-progress
  lionfer train runs/fixmatch/config.toml seed=2 --out runs/fixmatch-s2
"""


class Commands(argparse._SubParsersAction):
    """Subcommands whose own --help opens with the line the command list gives them."""

    def add_parser(self, name, **kwargs):
        summary = kwargs.get("help")
        if summary and "description" not in kwargs:
            kwargs["description"] = summary[0].upper() + summary[1:] + "."
        return super().add_parser(name, **kwargs)


def needs_subcommand(parser: argparse.ArgumentParser, usage: str) -> None:
    """A command of subcommands run without one says which to give (argparse's own message
    would name its internal `action`), as a usage error (exit 2)."""

    def refuse(args) -> int:
        parser.error(f"a subcommand is needed: {usage} (lionfer {args.command} --help)")

    parser.set_defaults(func=refuse)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lionfer",
        description="Semi-supervised facial expression recognition with labels not fully "
        "trusted: LION and its baselines, label corrections, prediction on images and videos.",
        epilog="`lionfer COMMAND --help` for a command's options. Exit status: 0 ok, 1 runtime "
        "failure, 2 bad input, 128 + N stopped by signal N (130 Ctrl-C, 143 SIGTERM).",
    )
    parser.add_argument("--version", action="version", version=f"lionfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, action=Commands)

    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_inspect_parsers(sub)
    add_prepare_parser(sub)
    add_model_use_parsers(sub)
    add_sweep_parser(sub)
    add_report_parser(sub)
    return parser


def add_train_parser(sub) -> None:
    """`lionfer train`: one run, new or resumed."""
    p = sub.add_parser(
        "train",
        help="train a model (LION on the embedded data by default)",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("items", nargs="*", metavar="[CONFIG] [key=value]")
    p.add_argument("--out", help="run folder (default runs/<dataset>@<labels>/<algorithm>/s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the lionfer run in --out (nothing else)"
    )
    p.add_argument("--dry-run", action="store_true", help="2 steps of the real path, nothing saved")
    p.add_argument(
        "--device",
        help="auto, cpu, cuda, cuda:N, mps (default: the config's train.device, auto: cuda when "
        "available; also on --resume)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="one plain line per log interval, no bars"
    )
    p.set_defaults(func=cmd_train)


def add_evaluate_parser(sub) -> None:
    """`lionfer evaluate`: a run's model on its test set."""
    p = sub.add_parser("evaluate", help="evaluate a run's model on its test set")
    p.add_argument("run", help=RUN_HELP)
    add_checkpoint_option(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print the result as JSON (per-class accuracies, confusion matrix, label quality)",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    p.set_defaults(func=cmd_evaluate)


def add_inspect_parsers(sub) -> None:
    """`lionfer list`, `config show` and `data stats`: what there is, without training."""
    p = sub.add_parser(
        "list", help="list algorithms, models, datasets, or the packaged configs and sweeps"
    )
    p.add_argument("what", choices=("algorithms", "models", "datasets", "configs", "sweeps"))
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("config", help="show the resolved config")
    config_sub = p.add_subparsers(dest="action", action=Commands)
    needs_subcommand(p, "lionfer config show [CONFIG] [key=value ...] prints the resolved config")
    show = config_sub.add_parser("show", help="print the resolved config as TOML")
    show.add_argument("items", nargs="*", metavar="[CONFIG] [key=value]")
    show.set_defaults(func=cmd_config_show)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="action", action=Commands)
    needs_subcommand(p, "lionfer data stats [CONFIG] [key=value ...] counts a dataset's classes")
    stats = data_sub.add_parser("stats", help="per-class counts of train/test and the split")
    stats.add_argument("items", nargs="*", metavar="[CONFIG] [key=value]")
    stats.add_argument("--json", action="store_true", help="print the counts as JSON")
    stats.set_defaults(func=cmd_data_stats)


def add_prepare_parser(sub) -> None:
    """`lionfer prepare`: faces detected, aligned and cached from raw images."""
    p = sub.add_parser("prepare", help="detect, align and cache faces from raw images")
    p.add_argument("items", nargs="*", metavar="[CONFIG] [key=value]")
    p.add_argument("--out", required=True, help="cache folder")
    p.add_argument("--size", type=int, default=112, help="face size in pixels (default 112)")
    p.add_argument(
        "--detector",
        choices=("auto", "mtcnn", "haar"),
        default="auto",
        help="face detector (default auto: MTCNN, Haar only where MTCNN cannot be built)",
    )
    p.add_argument(
        "--multi-face",
        choices=("largest", "all"),
        default="largest",
        help="an image with several faces: keep the largest (default) or each",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a line at the end)")
    p.set_defaults(func=cmd_prepare)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags and [CONFIG] [key=value] items in any order: argparse stops collecting positional
    items at the first flag, so the items after it are picked up here."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    stray = [item for item in rest if item.startswith("-") or not hasattr(args, "items")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if rest:
        args.items = [*args.items, *rest]
    return args


def print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one clean line, without Python's source line; none where stderr is closed
    (a warning raised inside a training step must not stop it)."""
    try:
        print(f"warning: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no stdout
        return False


def hold_standard_fds() -> None:
    """A standard stream the process was started without (`2>&-`) is opened on /dev/null: else
    the next file opened (a checkpoint being written) takes its number, and what is written to
    that number (a library's message on stderr) would land in the file."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd


def main(argv: list[str] | None = None) -> int:
    hold_standard_fds()
    args = parse_args(argv)
    inference_environment(args.command)
    with warnings.catch_warnings():
        warnings.showwarning = print_warning
        try:
            with said_once():
                check_launch(args.command)
            return args.func(args)
        except Interrupted as error:
            if main_process():  # under torchrun every process stops alike
                print(f"\n{error}", file=sys.stderr)
            return error.exit_code
        except KeyboardInterrupt:
            message = "stopped at once."
            if args.command == "train":
                message += (
                    " A run keeps its last saved checkpoint, if one was saved: "
                    "lionfer train --resume --out RUN"
                )
            elif args.command == "sweep":  # its runs saved, and it said how to go on
                message = "the sweep and its runs stopped."
            print(f"\ninterrupted: {message}", file=sys.stderr)
            return 130
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except BrokenPipeError as error:
            if not stdout_reader_gone():
                print(f"error: {error}", file=sys.stderr)
                return 1
            # the reader stopped reading (`lionfer list algorithms | head -n1`): end quietly, as a
            # command stopped by SIGPIPE, with nothing left for the interpreter's last flush
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + 13
        except RuntimeFailure as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except OSError as error:  # e.g. a full disk, a lost mount
            print(f"error: {os_error_message(error, args)}", file=sys.stderr)
            return 1
        except Exception as error:  # a failure nobody foresaw: keep the traceback for the report
            traceback.print_exc()
            print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
