"""Images per second of `Predictor.predict` on CPU: with and without face detection, batch 1 versus
batched, PyTorch versus ONNX Runtime.

The model has random weights (speed does not depend on them); it is saved as a checkpoint and
exported to ONNX in a temporary folder. Inputs are rendered faces: 96 px crops for the runs
without detection (cropped=True) and 320×160 scenes with one face for the runs with detection.
Each case runs once to warm up, then is timed over --images images, best of --repeats.

    python benchmarks/predict_speed.py --model resnet18 --size 112 --images 64

--wait-policy measures OpenMP's wait policy on a busy CPU instead: --load busy processes spin while
child processes predict on face crops (PyTorch, batch 1 and --batch) with OMP_WAIT_POLICY unset
and =PASSIVE, alternating, --repeats times each; it prints images/s of each and the ratio. The
policy must be set before torch is imported, hence the child processes.

    python benchmarks/predict_speed.py --wait-policy --model resnet18 --size 112 --load 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_args import at_least, positive_int
from PIL import Image

from lionfer.config_sections import ModelConfig
from lionfer.data.datasets import synthetic
from lionfer.inference.export import export
from lionfer.inference.predictor import load
from lionfer.labels import CLASS_NAMES
from lionfer.models import build_model


def inputs(count: int) -> tuple[list[Image.Image], list[Image.Image]]:
    """(face crops, scenes with one face each), rendered from every class in turn."""
    geometry = np.stack([synthetic.prototype(i % len(CLASS_NAMES)) for i in range(count)])
    crops = synthetic.render(geometry, 96, np.random.default_rng(0), plain=True)
    scenes = []
    for i, crop in enumerate(crops):
        scene = Image.new("RGB", (320, 160), (90, 120, 90))
        scene.paste(Image.fromarray(crop), (20 + (i * 37) % 180, 32))
        scenes.append(scene)
    return [Image.fromarray(c) for c in crops], scenes


def checkpoint(folder: Path, model_name: str, size: int) -> Path:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=model_name), len(CLASS_NAMES))
    path = folder / "model.pt"
    state = {"ema": model.state_dict(), "class_names": list(CLASS_NAMES)}
    torch.save({**state, "model_name": model_name, "image_size": size, "step": 0}, path)
    return path


def images_per_second(predictor, images, cropped: bool, repeats: int) -> tuple[float, int]:
    predictor.predict(images[:4], cropped=cropped)  # warm-up: detector and runtime set-up
    best, faces = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        table = predictor.predict(images, cropped=cropped)
        best = min(best, time.perf_counter() - start)
        faces = int(table["error"].isna().sum())
    return len(images) / best, faces


def child(model: Path, images: int, batch: int) -> None:
    """One timing in this process (its OMP_WAIT_POLICY fixed when torch was imported)."""
    crops, _ = inputs(images)
    rates = []
    for size in (1, batch):
        predictor = load(model, batch_size=size)
        rates.append(images_per_second(predictor, crops, True, 1)[0])
    print(" ".join(f"{rate:.2f}" for rate in rates))


def wait_policy(args) -> None:
    """Face crops per second with OMP_WAIT_POLICY unset and PASSIVE while --load processes spin."""
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    results: dict[str, list[list[float]]] = {"unset": [], "PASSIVE": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = checkpoint(Path(tmp), args.model, args.size)
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            for _ in range(args.repeats):
                for policy in results:
                    extra = {} if policy == "unset" else {"OMP_WAIT_POLICY": policy}
                    done = subprocess.run(
                        [sys.executable, __file__, "--child", str(model), "--images",
                         str(args.images), "--batch", str(args.batch)],
                        env={**env, **extra}, capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    results[policy].append([float(v) for v in done.stdout.split()[-2:]])
    finally:
        for process in spin:
            process.kill()
            process.wait()
    print(
        f"{args.model} at {args.size} px, {args.images} face crops, {args.load} busy processes "
        f"on {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"{args.repeats} alternating runs each"
    )
    print(f"{'batch':>6}{'unset':>16}{'PASSIVE':>16}{'ratio (median)':>16}")
    for k, batch in enumerate((1, args.batch)):
        unset = [r[k] for r in results["unset"]]  # in round order: round i's two runs pair up
        passive = [r[k] for r in results["PASSIVE"]]
        ratio = median_ratio(unset, passive)
        span = lambda v: f"{min(v):.1f}–{max(v):.1f}"  # noqa: E731
        print(f"{batch:>6}{span(unset):>16}{span(passive):>16}{ratio:>15.1f}x")


def median_ratio(unset: list[float], passive: list[float]) -> float:
    """The median over the alternating rounds of PASSIVE / unset, each round's two runs paired
    (the load they ran under is what they share)."""
    return statistics.median(p / u for p, u in zip(passive, unset, strict=True))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="lionfer model name (resnet18)")
    parser.add_argument("--size", type=at_least(8), default=112, help="model input size (112)")
    parser.add_argument("--images", type=positive_int, default=64, help="images per case (64)")
    parser.add_argument("--batch", type=positive_int, default=32,
                        help="the batched runs' batch size (32)")  # fmt: skip
    parser.add_argument("--repeats", type=positive_int, default=2,
                        help="timed runs of each case (2)")  # fmt: skip
    parser.add_argument("--threads", type=positive_int, default=torch.get_num_threads(),
                        help="torch CPU threads (torch's default)")  # fmt: skip
    parser.add_argument("--wait-policy", action="store_true", help="OMP_WAIT_POLICY under load")
    parser.add_argument("--load", type=at_least(0), default=2,
                        help="busy processes for --wait-policy (2)")  # fmt: skip
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = parser().parse_args()
    if args.child:
        child(args.child, args.images, args.batch)
        return
    if args.wait_policy:
        wait_policy(args)
        return
    torch.set_num_threads(args.threads)
    crops, scenes = inputs(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        model = checkpoint(Path(tmp), args.model, args.size)
        onnx = export(model, Path(tmp) / "model.onnx").path
        cases = [
            ("none (cropped)", "PyTorch", model, 1, "auto"),
            ("none (cropped)", "PyTorch", model, args.batch, "auto"),
            ("none (cropped)", "ONNX Runtime", onnx, 1, "auto"),
            ("none (cropped)", "ONNX Runtime", onnx, args.batch, "auto"),
            ("Haar", "PyTorch", model, args.batch, "haar"),
            ("MTCNN", "PyTorch", model, 1, "mtcnn"),
            ("MTCNN", "PyTorch", model, args.batch, "mtcnn"),
            ("MTCNN", "ONNX Runtime", onnx, args.batch, "mtcnn"),
        ]
        print(
            f"{args.model} at {args.size} px, {args.images} images, {args.threads} torch threads, "
            f"best of {args.repeats}"
        )
        print(f"{'detection':<16}{'runtime':<14}{'batch':>6}{'images/s':>11}{'faces':>7}")
        for detection, runtime, path, batch, detector in cases:
            predictor = load(path, detector=detector, batch_size=batch)
            cropped = detection.startswith("none")
            rate, found = images_per_second(
                predictor, crops if cropped else scenes, cropped, args.repeats
            )
            print(f"{detection:<16}{runtime:<14}{batch:>6}{rate:>11.1f}{found:>7}")


if __name__ == "__main__":
    main()
