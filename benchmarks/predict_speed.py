"""Images per second of `Predictor.predict` on CPU: with and without face detection, batch 1 versus
batched, PyTorch versus ONNX Runtime.

The model has random weights (speed does not depend on them); it is saved as a checkpoint and
exported to ONNX in a temporary folder. Inputs are rendered faces: 96 px crops for the runs
without detection (cropped=True) and 320×160 scenes with one face for the runs with detection.
Each case runs once to warm up, then is timed over --images images, best of --repeats.

    python benchmarks/predict_speed.py --model resnet18 --size 112 --images 64
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lionfer.config import ModelConfig
from lionfer.data import synthetic
from lionfer.export import export
from lionfer.labels import CLASS_NAMES
from lionfer.models import build_model
from lionfer.predict import load


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=112, help="model input size")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="the batched runs' batch size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
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
