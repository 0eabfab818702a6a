"""The `lionfer` subcommands that use a trained model: predict, export, relabel and audit, their
parsers, and the CPU settings of inference (OpenMP's wait policy, torch's thread count). The logic
lives in lionfer/inference/; nothing here imports torch until a command needs it."""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path


def model_command(resumable: bool = False):
    """Print the command's result summary; bad input (lionfer.inference.predictor.InputError)
    exits with 2; a resumable command interrupted by Ctrl-C says how to resume and exits
    with 130."""

    def wrap(func):
        @functools.wraps(func)
        def run(args) -> int:
            from lionfer.inference.predictor import InputError

            try:
                print(func(args).summary())
            except InputError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                if not resumable:
                    raise
                marked = (
                    "" if getattr(args, "annotate", None) else ", and a video up to its last mark,"
                )
                print(f"\ninterrupted: the finished inputs{marked} are kept in {args.out}; run "
                      "the same command again to resume", file=sys.stderr)  # fmt: skip
                return 130
            return 0

        return run

    return wrap


# Commands that only run a model. OpenMP (under torch) spin-waits between parallel regions by
# default; on a CPU shared with other jobs the spinning threads steal the cores the work needs
# (3-10x slower inference on a busy 2-core machine). libgomp reads the policy once, when torch is
# imported, so it is set before that, unless the user chose one.
INFERENCE_COMMANDS = ("predict", "audit")
AV_LOG_QUIET = -8  # FFmpeg's log level that prints nothing


def inference_environment(command: str) -> None:
    """OMP_WAIT_POLICY=PASSIVE for an inference command, unless already set or torch is already
    imported (then it is too late to matter); and for predict, FFmpeg (under OpenCV) quiet unless
    OPENCV_FFMPEG_LOGLEVEL is set: its lines ("moov atom not found", "overread 8") would only
    repeat, without the file's name, what the damaged file's row says."""
    if command in INFERENCE_COMMANDS and "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if command == "predict":  # read when OpenCV first opens a video, not at import
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", str(AV_LOG_QUIET))


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (a
    container's --cpus), which torch's default thread count does not see."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count or 1, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count or 1)


def inference_threads(requested: int | None) -> int:
    """torch's intra-op threads for inference: --threads, else OMP_NUM_THREADS when set, else
    torch's default (the physical cores) capped at the usable CPUs."""
    import torch

    if requested is not None:
        if requested < 1:
            from lionfer.inference.predictor import InputError

            raise InputError(f"--threads must be at least 1, got {requested}")
        threads = requested
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = max(1, int(os.environ["OMP_NUM_THREADS"]))
    else:
        threads = min(torch.get_num_threads(), usable_cpus())
    torch.set_num_threads(threads)
    return threads


def _predictor(args):
    from lionfer.inference.predictor import load

    inference_threads(getattr(args, "threads", None))
    # the detection options given (None: not given, load's defaults)
    detection = {
        k: getattr(args, k) for k in ("detector", "face_size") if getattr(args, k, None) is not None
    }
    embeddings = getattr(args, "embeddings", False)
    return load(
        args.model,
        args.device,
        args.checkpoint,
        batch_size=args.batch_size,
        embeddings=embeddings,
        **detection,
    )


@model_command(resumable=True)
def cmd_predict(args):
    from lionfer.inference.predict_job import predict_files
    from lionfer.inference.predictions_file import check_progress_name
    from lionfer.inference.predictor import InputError
    from lionfer.training.runfolder import check_out_file

    # "-" is no file name here: a file named so is ./-
    if "-" in args.inputs:
        raise InputError(
            "input -: standard input is not supported, predict reads image and video files; save "
            "it to a file and give its path (a file named - as ./-)"
        )
    if args.out == "-":
        raise InputError(
            "--out -: standard output is not supported, predict writes a file and its progress "
            "beside it; give a file name such as faces.csv (a file named - as ./-)"
        )
    check_out_file(args.out)  # before the model is loaded
    check_progress_name(Path(args.out))

    if args.cropped:  # the detection options would be ignored
        options = (("--detector", args.detector), ("--face-size", args.face_size))
        given = [flag for flag, value in options if value is not None]
        if given:
            raise InputError(
                f"{' and '.join(given)} set how faces are found and aligned, but --cropped "
                "takes each input as a face as it is; drop one or the other"
            )
    return predict_files(
        _predictor(args),
        args.inputs,
        args.out,
        args.format,
        args.cropped,
        args.frame_stride,
        args.annotate,
        args.overwrite,
        not args.no_progress,
    )


@model_command()
def cmd_export(args):
    from lionfer.inference.export import export

    return export(args.model, args.out, args.format, args.checkpoint, args.overwrite)


@model_command()
def cmd_relabel(args):
    from lionfer.inference.audit import write_relabel_table

    return write_relabel_table(args.run, args.out, args.checkpoint, args.overwrite)


@model_command()
def cmd_audit(args):
    from lionfer.config import config_from_args
    from lionfer.inference.audit import SPLITS, audit_to_files
    from lionfer.unread import check_dataset_keys, check_noise

    items = args.dataset
    if not items and (Path(args.model) / "config.toml").is_file():
        items = [str(Path(args.model) / "config.toml")]  # a run alone: the data it trained on
    cfg = config_from_args(items)
    check_dataset_keys(cfg)  # a dataset that would ignore a key is not the one asked for
    check_noise(cfg)
    splits = SPLITS if args.split == "all" else (args.split,)
    return audit_to_files(_predictor(args), cfg.data, cfg.seed, args.out, args.html, args.top,
                          splits, args.overwrite, not args.no_progress)  # fmt: skip


RUN_HELP = "a run folder (one holding config.toml and checkpoints/)"


def add_checkpoint_option(p, text: str = "which of the run's checkpoints (default last)") -> None:
    """--checkpoint last|best, of the commands that read a run's model."""
    p.add_argument("--checkpoint", choices=("last", "best"), default="last", help=text)


def add_model_use_parsers(sub) -> None:
    """The parsers of predict, export, relabel and audit."""
    _add_predict_parser(sub)
    _add_export_parser(sub)
    _add_relabel_parser(sub)
    _add_audit_parser(sub)


def _add_model_args(p, classify: bool = True, detection: bool = True) -> None:
    """The model argument and the options of the commands that run a model: --checkpoint,
    --overwrite; where classify, --device, --batch-size and --threads; where detection,
    --detector and --face-size."""
    p.add_argument("model", help="run folder, checkpoint .pt or exported .onnx")
    add_checkpoint_option(p, "which checkpoint of a run folder (default last)")
    if classify:
        p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
        p.add_argument("--batch-size", type=int, default=32, help="faces per model call")
        p.add_argument(
            "--threads",
            type=int,
            help="torch threads (default: OMP_NUM_THREADS, else the usable cores)",
        )
    if detection:
        # None when not given: lionfer.load's defaults apply
        p.add_argument(
            "--detector",
            choices=("auto", "mtcnn", "haar"),
            help="face detector (default auto: MTCNN, Haar only where MTCNN cannot be built)",
        )
        p.add_argument(
            "--face-size",
            type=int,
            help="aligned face size before the model's resize, as prepare --size",
        )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def _add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="expressions of every face in images, folders and videos")
    _add_model_args(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, video, folder or glob")
    p.add_argument("--out", required=True, help="predictions file, .csv or .jsonl")
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from the --out suffix")
    p.add_argument("--cropped", action="store_true", help="inputs are face crops: no detection")
    p.add_argument("--frame-stride", type=int, default=1, help="every N-th video frame")
    p.add_argument(
        "--embeddings",
        action="store_true",
        help="also each face's embedding, columns emb_0 ... (the unit-length feature the "
        "classifier reads)",
    )
    p.add_argument(
        "--annotate",
        metavar="DIR",
        help="write images/videos with boxes and labels (--overwrite replaces files there too)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_predict)


def _add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX or TorchScript")
    _add_model_args(p, classify=False, detection=False)
    p.add_argument("--format", choices=("onnx", "torchscript"), help="default: from the suffix")
    p.add_argument("--out", required=True, help="the exported file (.onnx, .pt)")
    p.set_defaults(func=cmd_export)


def _add_relabel_parser(sub) -> None:
    p = sub.add_parser("relabel", help="a run's labeled set with given and corrected labels")
    p.add_argument("run", help=RUN_HELP)
    add_checkpoint_option(p)
    p.add_argument("--out", required=True, help="CSV file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_relabel)


def _add_audit_parser(sub) -> None:
    p = sub.add_parser(
        "audit", help="rank a labeled dataset's labels by how much the model doubts them"
    )
    _add_model_args(p, detection=False)
    p.add_argument("dataset", nargs="*", metavar="[CONFIG] [key=value]", help="the dataset")
    p.add_argument("--out", required=True, help="suspects CSV (every labeled image, ranked)")
    p.add_argument("--html", help="HTML page of the top suspects (default: --out with .html)")
    p.add_argument("--top", type=int, default=50, help="suspects on the HTML page (default 50)")
    p.add_argument(
        "--split",
        choices=("all", "train", "test"),
        default="all",
        help="which labeled images to rank (default all: train and test)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_audit)
