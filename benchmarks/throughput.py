"""Training-step throughput of supervised, FixMatch and LION against a bare forward+backward.

All four run on the same fixed images (B_l labeled + B_u weak + B_u strong), interleaved round by
round so machine noise hits them alike; data loading is excluded. Prints steps/s and each
method's time relative to the bare forward+backward of the same 48 images, and LION / FixMatch.

    python benchmarks/throughput.py --model resnet18 --size 112 --batch 16 --steps 10
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from lionfer.algorithms.base import AlgorithmInfo, Batch, Progress
from lionfer.config import load_config
from lionfer.models import build_model
from lionfer.registry import ALGORITHMS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--classes", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    b, c, n = args.batch, args.classes, 1000
    shape = (b, 3, args.size, args.size)
    batch = Batch(
        torch.randn(shape),
        torch.randint(0, c, (b,)),
        torch.arange(b),
        torch.randn(shape),
        torch.randn(shape),
        torch.randperm(n)[:b],
    ).to(device)
    runners = {}
    for name in ("bare", "supervised", "fixmatch", "lion"):
        cfg = load_config(
            None,
            [
                f"model.name={args.model}",
                f"algorithm.name={'supervised' if name == 'bare' else name}",
            ],
        )
        model = build_model(cfg.model, c).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        info = AlgorithmInfo(c, b * 4, n, model.feature_dim, torch.randint(0, c, (b * 4,)))
        algorithm = ALGORITHMS.get(cfg.algorithm.name)(cfg.algorithm.params, info).to(device)
        runners[name] = (model, optimizer, algorithm)

    def one_step(name: str, step: int) -> None:
        model, optimizer, algorithm = runners[name]
        if name == "bare":
            images = torch.cat([batch.x_lb, batch.x_ulb_w, batch.x_ulb_s])
            loss = F.cross_entropy(model(images).logits, batch.y_lb.repeat(3))
        else:
            loss = algorithm.step(model, batch, Progress(step, 2 * args.steps)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    timings = {name: [] for name in runners}
    for step in range(args.steps + 2):
        for name in runners:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            one_step(name, step + args.steps)  # LION past its warm-up: every module active
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= 2:
                timings[name].append(time.perf_counter() - start)
    median = {name: sorted(t)[len(t) // 2] for name, t in timings.items()}
    print(
        f"{args.model} at {args.size}px, batch {b} labeled + {b} unlabeled (weak+strong), "
        f"{args.steps} timed steps, device {device}, torch threads {torch.get_num_threads()}"
    )
    print(f"{'method':<12}{'steps/s':>10}{'× bare':>10}")
    for name, seconds in median.items():
        print(f"{name:<12}{1 / seconds:>10.3f}{seconds / median['bare']:>10.3f}")
    overhead = median["lion"] / median["fixmatch"] - 1
    print(f"LION overhead over FixMatch: {100 * overhead:+.1f}%")


if __name__ == "__main__":
    main()
