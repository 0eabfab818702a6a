"""Does the model ever see what a wrong label hides? A supervised run on the config's labeled
set that, every --every steps, predicts the labeled images (the raw model in eval mode) and prints
how many of the wrongly labeled ones it predicts as their true class and how many as their given
(wrong) class. Where the images contradict their wrong labels (random label noise), the first
climbs early and falls as the model memorises the labels; where they do not, it stays near
chance throughout, and no evidence the model forms can correct those labels.

    python benchmarks/early_evidence.py --steps 200 --every 10                 # embedded faces
    python benchmarks/early_evidence.py --steps 400 --every 20 data.dataset=digits \\
        data.noise=symmetric data.noise_rate=0.2 data.num_labels=100 data.image_size=32 \\
        model.name=cnn_small 'model.pretrained=""' model.feature_scale=1.0 train.lr=3e-3

Needs data with known truth (the synthetic faces, or injected noise).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from lionfer.config import DEFAULT_CONFIG, load_config
from lionfer.data import transforms
from lionfer.data.loaders import eval_loader
from lionfer.trainer import Trainer, predict


def trace(overrides: list[str], steps: int, every: int) -> list[dict]:
    """One row per --every steps: the step, the fit of the given labels, and on the wrongly
    labeled images the share predicted as their true class and as their given class."""
    cfg = load_config(DEFAULT_CONFIG, ["algorithm.name=supervised", *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run", progress=False)
        labeled = trainer.run_data.labeled
        if labeled.true_labels is None:
            raise SystemExit("the labeled set has no known truth: use synthetic data or data.noise")
        given, true = np.asarray(labeled.labels), np.asarray(labeled.true_labels)
        wrong = given != true
        tf = transforms.evaluate(cfg.data.image_size, trainer.model.mean, trainer.model.std)
        loader = eval_loader(labeled, tf, cfg.train.eval_batch_size, 0)
        stream, _ = trainer._loaders()
        stream, rows = iter(stream), []
        for step in range(1, steps + 1):
            trainer._train_step(next(stream), None)
            trainer.step = step
            if step % every == 0:
                predicted, _ = predict(trainer.model, loader, trainer.device)
                trainer.model.train()
                rows.append(
                    {
                        "step": step,
                        "fit": float((predicted == given).mean()),
                        "true_on_wrong": float((predicted[wrong] == true[wrong]).mean()),
                        "given_on_wrong": float((predicted[wrong] == given[wrong]).mean()),
                        "wrong": int(wrong.sum()),
                        "labeled": len(given),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("overrides", nargs="*", help="key=value on the default config")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = trace(["data.num_workers=0", *args.overrides], args.steps, args.every)
    print(f"{rows[0]['wrong']} of {rows[0]['labeled']} labels wrong")
    print(f"{'step':>6}{'labels fitted':>15}{'wrong: true class':>19}{'wrong: given class':>20}")
    for row in rows:
        print(
            f"{row['step']:>6}{row['fit']:>15.2f}{row['true_on_wrong']:>19.2f}"
            f"{row['given_on_wrong']:>20.2f}"
        )
    best = max(rows, key=lambda row: row["true_on_wrong"])
    print(f"most wrongly labeled images predicted as their true class: {best['true_on_wrong']:.2f}"
          f" at step {best['step']}")  # fmt: skip


if __name__ == "__main__":
    main()
