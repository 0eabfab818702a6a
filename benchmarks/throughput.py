"""Training throughput, every figure a ratio measured in the same run:

1. step: one optimisation step of supervised, FixMatch and LION against a bare forward+backward
   of the same images (B labeled + B weak + B strong), interleaved round by round; LION's state
   at realistic rates (every prototype ready, disambiguation under way, about 70% of labeled
   images clear, half the unlabeled ones reliable, the rest growing their banks), and LION's
   default recipe (evidence: cross-fitted heads and decisions from the first step); host
   synchronisations and dispatched operations per algorithm step.
2. trainer: the Trainer end to end (data, step, EMA, logs) against the bare forward+backward of
   one of its own batches, with views made on the CPU and on the device.
3. loader: weak+strong images/s of the training streams against the images/s the model consumes.
4. scaling: steps/s of `torchrun --nproc_per_node N -m lionfer train` for N = 1 and 2 (gloo on a
   CPU, nccl on GPUs), the same global batch.

    python benchmarks/throughput.py --model resnet18 --size 48 --batch 16 64
    python benchmarks/throughput.py --model resnet18 --size 224 --batch 64 --sections step trainer
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_args import at_least, positive_int
from torch.utils._python_dispatch import TorchDispatchMode

from lionfer.algorithms.base import AlgorithmInfo, Batch, Progress, forward_outputs
from lionfer.algorithms.lion import clean_probs
from lionfer.config import DEFAULT_CONFIG, load_config
from lionfer.device import resolve_device
from lionfer.errors import ConfigError
from lionfer.models import build_model
from lionfer.registry import ALGORITHMS
from lionfer.syncs import count_syncs
from lionfer.training.run import build_trainer
from lionfer.training.setup import build_optimizer
from lionfer.training.trainer import Trainer

# "lion": the paper's rules with their state busy (realistic_lion); "lion-evidence": the default
# recipe, its cross-fitted heads and decisions running from the first step.
METHODS = ("bare", "supervised", "fixmatch", "lion", "lion-evidence")
N_LABELED, N_UNLABELED, CLASSES = 400, 2000, 7


class CountOps(TorchDispatchMode):
    """Operations dispatched to kernels (view ops included) inside the block."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the device in use, not the current one (cuda:0)


def autocast(device: torch.device):
    enabled = device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


# ---- 1. the step ----


def fixed_batch(b: int, size: int, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    shape = (b, 3, size, size)
    return Batch(
        torch.randn(shape, generator=g),
        torch.randint(0, CLASSES, (b,), generator=g),
        torch.randperm(N_LABELED, generator=g)[:b],
        torch.randn(shape, generator=g),
        torch.randn(shape, generator=g),
        torch.randperm(N_UNLABELED, generator=g)[:b],
    ).to(device)


def realistic_lion(model, batch: Batch, device: torch.device):
    """LION with its machinery busy on this batch: labels that the model's prediction confirms
    for 70% of the labeled rows (the rest disputed), τ and γ at quantiles of the confidences
    so that ~70% of labeled rows are clear and half the unlabeled ones reliable, δ so that half
    the others grow their bank, prototypes ready, disambiguation started (paper rules)."""
    with torch.no_grad(), autocast(device):
        out_lb, out_w, _ = forward_outputs(model, batch.x_lb, batch.x_ulb_w, batch.x_ulb_s)
    conf_lb, pred_lb = clean_probs(out_lb).max(dim=1)
    probs_w = clean_probs(out_w)
    conf_w = probs_w.max(dim=1).values
    smallest = probs_w.min(dim=1).values
    cfg = load_config(None, ["algorithm.recipe=paper"]).algorithm.params
    cfg = dataclasses.replace(
        cfg,
        clear_threshold=float(conf_lb.quantile(0.3)) if len(conf_lb) > 1 else 0.0,
        reliable_threshold=float(conf_w.median()),
        complementary_threshold=float(smallest.median()),
        disambiguation_start=0.0,
    )
    given = torch.randint(0, CLASSES, (N_LABELED,))
    agree = torch.rand(len(batch.idx_lb)) < 0.7
    wrong = (pred_lb.cpu() + 1) % CLASSES
    given[batch.idx_lb.cpu()] = torch.where(agree, pred_lb.cpu(), wrong)
    info = AlgorithmInfo(CLASSES, N_LABELED, N_UNLABELED, model.feature_dim, given)
    lion = ALGORITHMS.get("lion")(cfg, info).to(device)
    lion.prototypes = F.normalize(torch.randn(CLASSES, model.feature_dim, device=device), dim=1)
    lion.prototype_ready.fill_(True)
    lion.started.fill_(True)
    return lion


def runners(args, batch: Batch, device: torch.device) -> dict:
    out = {}
    for name in METHODS:
        torch.manual_seed(0)
        cfg = load_config(None, [f"model.name={args.model}", "model.dropout=0.5"])
        model = build_model(cfg.model, CLASSES).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.0)  # full cost, fixed state
        algorithm = None
        if name == "lion":
            algorithm = realistic_lion(model, batch, device)
        elif name != "bare":
            given = torch.randint(0, CLASSES, (N_LABELED,))
            info = AlgorithmInfo(CLASSES, N_LABELED, N_UNLABELED, model.feature_dim, given)
            if name == "lion-evidence":  # the default recipe, deciding from the first step
                registered = "lion"
                params = load_config(None, ["algorithm.evidence_start=0.0"]).algorithm.params
            else:
                registered, params = name, ALGORITHMS.entry(name).config()
            algorithm = ALGORITHMS.get(registered)(params, info).to(device)
        out[name] = (model, optimizer, algorithm)
    return out


def train_step(runner, batch: Batch, step: int, device: torch.device):
    model, optimizer, algorithm = runner
    with autocast(device):
        if algorithm is None:
            images = torch.cat([batch.x_lb, batch.x_ulb_w, batch.x_ulb_s])
            logits = model(images).logits
            loss, logs = F.cross_entropy(logits, batch.y_lb.repeat(3)), {}
        else:
            out = algorithm.step(model, batch, Progress(step, 10_000))
            loss, logs = out.loss, out.logs
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logs


def step_section(args, b: int, device: torch.device) -> dict:
    batch = fixed_batch(b, args.size, device)
    made = runners(args, batch, device)
    timings = {name: [] for name in made}
    rates = collections.defaultdict(list)
    for step in range(args.steps + 2):
        for name, runner in made.items():
            synchronize(device)
            start = time.perf_counter()
            logs = train_step(runner, batch, step, device)
            synchronize(device)
            if step >= 2:
                timings[name].append(time.perf_counter() - start)
                for key in ("clear_rate", "mask_rate", "ambiguous_rate"):
                    if name == "lion" and key in logs:
                        rates[key].append(float(logs[key]))
    median = {name: sorted(t)[len(t) // 2] for name, t in timings.items()}
    costs = {}
    for name in ("fixmatch", "lion", "lion-evidence"):
        model, _, algorithm = made[name]
        with count_syncs(device) as syncs, CountOps() as ops, autocast(device):
            algorithm.step(model, batch, Progress(args.steps + 2, 10_000))
        costs[name] = (syncs.count, ops.count)
    print(f"\n[step] batch {b}+{b}+{b}, {args.steps} timed steps (median), state rates of LION: "
          + ", ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in rates.items()))  # fmt: skip
    print(f"  {'method':<14}{'steps/s':>9}{'x bare':>9}{'syncs':>7}{'ops':>7}")
    for name, seconds in median.items():
        syncs, ops = costs.get(name, ("", ""))
        print(f"  {name:<14}{1 / seconds:>9.3f}{seconds / median['bare']:>9.3f}{syncs:>7}{ops:>7}")
    ratio = median["lion"] / median["fixmatch"]
    print(f"  LION / FixMatch per step: {ratio:.3f} ({100 * (ratio - 1):+.1f}%)")
    evidence = median["lion-evidence"] / median["fixmatch"]
    print(f"  LION (evidence) / FixMatch per step: {evidence:.3f} ({100 * (evidence - 1):+.1f}%)")
    return {"ratio": ratio, "evidence_ratio": evidence, "median": median, "costs": costs}


# ---- 2. the trainer end to end, 3. the loaders ----


def trainer_config(args, b: int, algorithm: str, augment_on: str):
    return load_config(
        DEFAULT_CONFIG,
        [
            f"model.name={args.model}",
            'model.pretrained=""',  # random weights: a step costs the same, and none to find
            f"data.image_size={args.size}",
            "data.num_train=560",  # enough for the timed steps; rendering 224 px faces takes time
            "data.num_test=70",
            f"data.num_workers={args.workers}",
            f"data.augment_on={augment_on}",
            f"train.batch_size={b}",
            f"train.device={args.device}",
            f"algorithm.name={algorithm}",
            # LION's decisions (the default recipe's, from evidence) from the first step
            *(["algorithm.evidence_start=0.0"] if algorithm == "lion" else []),
        ],
    )


def timed_trainer(trainer: Trainer, steps: int, device: torch.device) -> tuple[float, tuple]:
    """Seconds per step of data + Trainer step (EMA, logs included), and a batch it trained on."""
    labeled, unlabeled = (iter(s) for s in trainer.loaders())
    for _ in range(2):
        lb, ulb = next(labeled), next(unlabeled)
        trainer.train_step(lb, ulb)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(next(labeled), next(unlabeled))
        trainer.step += 1
    trainer.window.means()  # what a log boundary reads
    synchronize(device)
    return (time.perf_counter() - start) / steps, (lb, ulb)


def timed_bare(trainer: Trainer, batch, steps: int, device: torch.device) -> float:
    """Seconds per bare forward+backward+Adam of the same images on the trainer's model."""
    (x_lb, y_lb, _), (x_w, x_s, _, _) = batch
    images = torch.cat([x_lb, x_w, x_s]).to(device, memory_format=trainer.memory_format)
    labels = y_lb.to(device).repeat(3)
    model = trainer.model
    optimizer = bare_optimizer(trainer, device)
    times = []
    for i in range(steps + 2):
        synchronize(device)
        start = time.perf_counter()
        with autocast(device):
            loss = F.cross_entropy(model(images).logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bare_optimizer(trainer: Trainer, device: torch.device) -> torch.optim.Optimizer:
    """The Trainer's own optimiser settings (fused Adam on a GPU), its learning rate at 0: the
    full cost of an update and a fixed state."""
    optimizer = build_optimizer(trainer.cfg, trainer.model, trainer.algorithm, device)
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    return optimizer


def timed_loader(trainer: Trainer, batches: int, device: torch.device) -> float:
    """Images/s of the labeled + unlabeled streams alone (weak, weak + strong)."""
    labeled, unlabeled = (iter(s) for s in trainer.loaders())
    next(labeled), next(unlabeled)
    synchronize(device)
    start = time.perf_counter()
    images = 0
    for _ in range(batches):
        lb, ulb = next(labeled), next(unlabeled)
        images += len(lb[0]) + len(ulb[0]) + len(ulb[1])
    synchronize(device)
    return images / (time.perf_counter() - start)


def trainer_section(args, b: int, device: torch.device, with_loader: bool) -> None:
    print(f"\n[trainer] batch {b}+{b}+{b}, {args.steps} steps, {args.workers} loader workers")
    print(f"  {'method':<10}{'views':<8}{'steps/s':>9}{'bare':>9}{'ratio':>7}"
          + (f"{'loader img/s':>14}{'model img/s':>13}" if with_loader else ""))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm in ("fixmatch", "lion"):
            for augment_on in ("cpu", "device"):
                cfg = trainer_config(args, b, algorithm, augment_on)
                trainer = build_trainer(
                    cfg, Path(tmp) / f"{algorithm}-{augment_on}", progress=False
                )
                seconds, batch = timed_trainer(trainer, args.steps, device)
                bare = timed_bare(trainer, batch, args.steps, device)
                line = f"  {algorithm:<10}{augment_on:<8}{1 / seconds:>9.2f}{1 / bare:>9.2f}"
                line += f"{bare / seconds:>7.2f}"
                if with_loader:
                    loader = timed_loader(trainer, args.steps, device)
                    line += f"{loader:>14.0f}{3 * b / bare:>13.0f}"
                print(line, flush=True)


# ---- 4. scaling over processes ----


def scaling_section(args, b: int) -> bool:
    print(f"\n[scaling] torchrun, global batch {b}, {args.scale_steps} steps, gloo/nccl")
    repo = Path(__file__).resolve().parent.parent
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2):
            out = Path(tmp) / f"n{n}"
            half = args.scale_steps // 2
            command = [
                sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={n}", "-m", "lionfer", "train",
                f"model.name={args.model}", 'model.pretrained=""',
                f"data.image_size={args.size}",
                f"train.batch_size={b}", f"train.steps={args.scale_steps}",
                f"train.log_every={half}", f"train.eval_every={10 * args.scale_steps}",
                f"train.checkpoint_every={10 * args.scale_steps}",
                f"train.device={args.device}", "--out", str(out), "--no-progress",
            ]  # fmt: skip
            env = {**os.environ, "PYTHONPATH": str(repo)}
            if device_type(args) == "cpu":
                env["OMP_NUM_THREADS"] = str(max(1, torch.get_num_threads() // n))
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"  {n} processes failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                return False
            records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
            first, second = [r for r in records if r["event"] == "train"][:2]
            t1, t2 = first["step"] / first["steps_per_s"], second["step"] / second["steps_per_s"]
            rates[n] = (second["step"] - first["step"]) / (t2 - t1)
            print(f"  {n} process{'es' if n > 1 else ''}: {rates[n]:.2f} steps/s", flush=True)
    print(f"  2 / 1 processes: {rates[2] / rates[1]:.2f}x")
    return True


def device_type(args) -> str:
    return "cuda" if args.device.startswith("cuda") else "cpu"


SECTIONS = ("step", "trainer", "loader", "scaling")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace(", every figure a ratio measured in the "
                                                      "same run:", ""),
        epilog="Every figure is a ratio measured in the same run. Sections: step (one "
        "optimisation step of each algorithm against a bare forward+backward), trainer (the "
        "Trainer end to end against a bare step of its own batch), loader (the training streams' "
        "images/s; with trainer), scaling (torchrun with 1 and 2 processes; needs 2 GPUs on CUDA). "
        "The exit status is 1 when a section fails.",
    )  # fmt: skip
    parser.add_argument("--model", default="resnet18", help="lionfer model name (resnet18)")
    parser.add_argument("--size", type=positive_int, default=48, help="image size in pixels (48)")
    parser.add_argument("--batch", type=positive_int, nargs="+", default=[16, 64],
                        help="batch sizes per stream, each measured in turn (16 64)")  # fmt: skip
    parser.add_argument("--steps", type=positive_int, default=10,
                        help="timed steps (and loader batches) per figure (10)")  # fmt: skip
    parser.add_argument("--scale-steps", type=at_least(2), default=20,
                        help="training steps of each scaling run, at least 2 (20)")  # fmt: skip
    parser.add_argument("--workers", type=at_least(0), default=0,
                        help="loader workers (CPU views)")  # fmt: skip
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda or cuda:N (auto: CUDA when visible)")  # fmt: skip
    parser.add_argument("--threads", type=at_least(0), default=0,
                        help="torch CPU threads (0: default)")  # fmt: skip
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        metavar="SECTION",
                        help=f"which to run, of {', '.join(SECTIONS)} (all)")  # fmt: skip
    return parser


def scaling_skipped(args) -> str:
    """Why the scaling section cannot run here ('' when it can): 2 processes need 2 GPUs."""
    if device_type(args) == "cuda" and torch.cuda.device_count() < 2:
        return f"2 processes need 2 GPUs; {torch.cuda.device_count()} visible"
    return ""


def main() -> None:
    parser_ = parser()
    args = parser_.parse_args()
    try:
        device = resolve_device(args.device, "--device")
    except ConfigError as error:
        parser_.error(str(error))
    args.device = str(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.model} at {args.size} px on {device} ({torch.get_num_threads()} threads), "
          f"torch {torch.__version__}")  # fmt: skip
    failed = run_sections(args, device)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


def run_sections(args, device: torch.device) -> list[str]:
    """Every section asked for, for every batch size; the ones that failed (each is reported and
    the others still run)."""
    failed = []
    skip = scaling_skipped(args) if "scaling" in args.sections else ""
    if skip:
        print(f"\n[scaling] skipped: {skip}")
    for b in args.batch:
        loader = "loader" in args.sections
        sections = [
            ("step", "step" in args.sections, partial(step_section, args, b, device)),
            ("trainer", "trainer" in args.sections or loader,
             partial(trainer_section, args, b, device, loader)),
            ("scaling", "scaling" in args.sections and not skip, partial(scaling_section, args, b)),
        ]  # fmt: skip
        for name, wanted, section in sections:
            if not wanted:
                continue
            try:
                ok = section()
            except Exception as error:  # noqa: BLE001  (report it; the other sections still run)
                traceback.print_exc()
                print(f"  {name} section failed at batch {b}: {error}", file=sys.stderr)
                ok = False
            if ok is False:
                failed.append(f"{name} (batch {b})")
    return failed


if __name__ == "__main__":
    main()
