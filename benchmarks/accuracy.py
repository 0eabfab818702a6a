"""Accuracy benchmark: algorithms × seeds on one config, mean ± std, with relabel figures.

    python benchmarks/accuracy.py --out runs/bench-synthetic
    python benchmarks/accuracy.py --out runs/bench-digits data.dataset=digits \
        data.num_labels=50 data.noise=symmetric data.noise_rate=0.2

Runs already in --out are reused (each run folder holds its summary.json), so an interrupted
benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lionfer.config import DEFAULT_CONFIG, load_config, replace
from lionfer.report import comparison_table
from lionfer.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algorithms", nargs="+", default=["supervised", "fixmatch", "lion"])
    args = parser.parse_args()
    base = load_config(DEFAULT_CONFIG, args.overrides)  # the embedded default, CPU scale
    summaries = []
    for seed in args.seeds:
        for name in args.algorithms:
            out = Path(args.out) / name / f"s{seed}"
            if (out / "summary.json").is_file():
                summaries.append(json.loads((out / "summary.json").read_text()))
                continue
            cfg = replace(base, f"algorithm.name={name}", f"seed={seed}")
            resume = (out / "checkpoints" / "last.pt").is_file()
            summaries.append(train(cfg, out, resume=resume, overwrite=not resume, progress=False))
            s = summaries[-1]
            print(f"{name} seed {seed}: test acc {s['test_acc']:.4f}", flush=True)
    print(
        f"\n{base.data.dataset}, {base.data.num_labels} labels, noise {base.data.noise} "
        f"{base.data.noise_rate}, {base.train.steps} steps, {base.model.name}, "
        f"seeds {args.seeds}\n"
    )
    print(comparison_table(summaries))


if __name__ == "__main__":
    main()
