"""Images/s of LION's unlabeled weak+strong stream read from raw JPEGs versus a `prepare`d cache.

Builds its own data: N synthetic faces saved as raw-size JPEGs in a `folder` dataset
(root/<Class>/*.jpg), prepared into a --size cache (cropped by a whole-image box, so no detector
runs). Then times the real ViewDataset + stream_loader for both sources with 0, 1 and 2 workers.

    python benchmarks/pipeline_speed.py --n 400 --raw-size 256 --size 112 --batch 16 --seconds 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_args import at_least, positive_float, positive_int
from PIL import Image

import lionfer.algorithms  # noqa: F401  (registers the algorithms)
from lionfer.config import load_config
from lionfer.data import transforms
from lionfer.data.base import ImageSet
from lionfer.data.datasets.synthetic import MAX_SIZE, generate
from lionfer.data.loaders import stream_loader
from lionfer.data.pipeline import build_run_data, load_dataset
from lionfer.data.prepare import prepare
from lionfer.labels import CLASS_NAMES
from lionfer.models import IMAGENET_MEAN, IMAGENET_STD
from lionfer.registry import ALGORITHMS

WORKERS = (0, 1, 2)
SOURCES = ("raw", "cache")
NUM_LABELS = 70  # 10 per class; the rest of train is the unlabeled stream measured
MIN_IMAGES = 100  # after the held-out test set, more training images than NUM_LABELS


def write_raw_folder(root: Path, n: int, raw_size: int, seed: int) -> None:
    """n synthetic faces as JPEGs in root/<ClassName>/, by true class.

    The renderer stops at MAX_SIZE px, so larger raw sizes are upscaled: decoding cost follows the
    pixel count, which is what a raw photo costs.
    """
    faces = generate(n, min(raw_size, MAX_SIZE), 0.35, np.random.default_rng(seed))
    for i, (pixels, label) in enumerate(zip(faces.images, faces.true_labels, strict=True)):
        folder = root / CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels)
        if image.size != (raw_size, raw_size):
            image = image.resize((raw_size, raw_size), Image.Resampling.BICUBIC)
        image.save(folder / f"{i:05d}.jpg", quality=90)


def with_whole_image_boxes(images: ImageSet, raw_size: int) -> ImageSet:
    """The same set with a box covering each image, so prepare crops by box without detection."""
    boxes = np.tile(np.array([0, 0, raw_size, raw_size]), (len(images), 1))
    return ImageSet(images.images, images.labels, images.true_labels, images.ids, boxes)


def images_per_second(images: ImageSet, views, batch: int, workers: int, seconds: float) -> float:
    """Steady-state images/s of the unlabeled stream (stream 1, as in the trainer)."""
    loader = stream_loader(images, views, batch, 0, 1, 0, workers, pin_memory=False)
    batches = iter(loader)
    # One warm-up batch per worker: starts the processes and fills the pipeline, so the timed
    # window starts with every worker mid-batch, as it ends.
    for _ in range(max(1, workers)):
        next(batches)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(batches)
        count += batch
    rate = count / (time.perf_counter() - start)
    del batches  # shuts the persistent workers down before the next setting starts
    return rate


def folder_size_mb(folder: Path, pattern: str) -> float:
    return sum(p.stat().st_size for p in folder.rglob(pattern)) / 2**20


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=at_least(MIN_IMAGES), default=400,
                        help=f"synthetic images, at least {MIN_IMAGES}: {NUM_LABELS} are labeled "
                        "and about a sixth held out as the test set (400)")  # fmt: skip
    parser.add_argument("--raw-size", type=at_least(8), default=256,
                        help="raw JPEG side in px (256)")  # fmt: skip
    parser.add_argument("--size", type=at_least(8), default=112,
                        help="cache and training size in px (112)")  # fmt: skip
    parser.add_argument("--batch", type=positive_int, default=16, help="unlabeled batch size (16)")
    parser.add_argument("--seconds", type=positive_float, default=5.0,
                        help="timed seconds per setting (5)")  # fmt: skip
    parser.add_argument("--seed", type=at_least(0), default=0)
    parser.add_argument(
        "--threads",
        type=at_least(0),
        default=0,
        help="torch threads of the main process (0: torch's default, as in the trainer)",
    )
    return parser


def main() -> None:
    args = parser().parse_args()
    if args.threads:
        # With 0 workers the transforms run here; on a busy machine, spinning intra-op threads
        # on tiny per-image tensors can cost more than the work itself.
        torch.set_num_threads(args.threads)
    views_needed = ALGORITHMS.get("lion").views
    views = tuple(
        getattr(transforms, v)(args.size, IMAGENET_MEAN, IMAGENET_STD) for v in views_needed
    )

    with tempfile.TemporaryDirectory(prefix="lionfer-pipeline-") as tmp:
        raw_root, cache = Path(tmp) / "raw", Path(tmp) / "cache"
        start = time.perf_counter()
        write_raw_folder(raw_root, args.n, args.raw_size, args.seed)
        common = [f"data.image_size={args.size}", f"data.num_labels={NUM_LABELS}"]
        raw_cfg = load_config(None, ["data.dataset=folder", f"data.root={raw_root}", *common])
        data = load_dataset(raw_cfg.data, raw_cfg.seed)
        data.train = with_whole_image_boxes(data.train, args.raw_size)
        data.test = with_whole_image_boxes(data.test, args.raw_size)
        made = time.perf_counter()
        report = prepare(data, cache, size=args.size, detector="haar", progress=False)
        prepared = time.perf_counter()
        cache_cfg = load_config(None, ["data.dataset=manifest", f"data.root={cache}", *common])
        streams = {
            "raw": build_run_data(raw_cfg.data, raw_cfg.seed).unlabeled,
            "cache": build_run_data(cache_cfg.data, cache_cfg.seed).unlabeled,
        }
        print(
            f"{args.n} synthetic faces: raw {args.raw_size}px JPEG "
            f"({folder_size_mb(raw_root, '*.jpg'):.1f} MB, written in {made - start:.1f} s); "
            f"cache {args.size}px PNG ({folder_size_mb(cache, '*.png'):.1f} MB, "
            f"prepare {prepared - made:.1f} s: done {report.counts['done']})"
        )
        print(
            f"stream: unlabeled {' + '.join(views_needed)} views of {len(streams['raw'])} images, "
            f"batch {args.batch}, {args.seconds:g} s per setting; {os.cpu_count()} CPUs, "
            f"torch threads {torch.get_num_threads()}, load average before "
            f"{os.getloadavg()[0]:.2f}"
        )
        # Sources alternate within each worker count, so machine noise hits a pair alike.
        rates = {
            (source, workers): images_per_second(
                streams[source], views, args.batch, workers, args.seconds
            )
            for workers in WORKERS
            for source in SOURCES
        }
    print(f"\n{'source':<8}{'workers':>8}{'images/s':>11}")
    for workers in WORKERS:
        for source in SOURCES:
            print(f"{source:<8}{workers:>8}{rates[source, workers]:>11.1f}")
    print(f"\n{'workers':<8}{'cache/raw':>10}")
    for workers in WORKERS:
        print(f"{workers:<8}{rates['cache', workers] / rates['raw', workers]:>10.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
