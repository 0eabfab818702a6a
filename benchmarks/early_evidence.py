"""Does the model ever see what a wrong label hides? A supervised run on the config's labeled
set that, every --every steps, predicts the labeled images (the raw model in eval mode) and prints
how many of the wrongly labeled ones it predicts as their true class and how many as their given
(wrong) class. Where the images contradict their wrong labels (random label noise), the first
climbs early and falls as the model memorises the labels; where they do not, it stays near
chance throughout, and no evidence the model forms can correct those labels.

In-sample (the default), the model predicts images it trains on, so "no evidence" and
"memorised" look alike. --out-of-fold splits the labeled set into --folds parts (stratified by
given label, seeded by the run seed), trains one model per part on the other parts and predicts
the part it never saw: every labeled image gets an out-of-fold prediction at each step. It also
prints the median out-of-fold probability of the given label, P(given | x), for correct and for
wrong labels, which is what separates them where the images carry evidence.

    python benchmarks/early_evidence.py --steps 200 --every 10                 # embedded faces
    python benchmarks/early_evidence.py --steps 200 --every 20 --out-of-fold   # 5 models
    python benchmarks/early_evidence.py --steps 400 --every 20 data.dataset=digits \\
        data.noise=symmetric data.noise_rate=0.2 data.num_labels=100 data.image_size=32 \\
        model.name=cnn_small 'model.pretrained=""' model.feature_scale=1.0 train.lr=3e-3

Needs data with known truth (the synthetic faces, injected noise, or fer2013 with
data.truth=ferplus); images of unknown truth (-1) count in "labels fitted" only.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_args import at_least, positive_int

from lionfer.config import DEFAULT_CONFIG, load_config
from lionfer.data import transforms
from lionfer.data.loaders import eval_loader
from lionfer.data.pipeline import RunData, build_run_data
from lionfer.labels import ERROR_TYPES
from lionfer.training.evaluation import predict
from lionfer.training.run import build_trainer
from lionfer.training.setup import data_config
from lionfer.training.trainer import Trainer


def trace(overrides: list[str], steps: int, every: int) -> list[dict]:
    """One row per --every steps: the step, the fit of the given labels, and on the wrongly
    labeled images the share predicted as their true class and as their given class
    (in-sample: the model predicts the images it trains on)."""
    cfg = load_config(DEFAULT_CONFIG, ["algorithm.name=supervised", *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(cfg, Path(tmp) / "run", progress=False)
        labeled = trainer.run_data.labeled
        require_truth(labeled)
        loader = labeled_loader(cfg, trainer, labeled)
        probs = {}
        for step, model in training(trainer, steps, every):
            probs[step] = predict(model, loader, trainer.device)
    return [evidence_row(step, *probs[step], labeled) for step in sorted(probs)]


def out_of_fold(overrides: list[str], steps: int, every: int, folds: int = 5) -> list[dict]:
    """As trace, but every labeled image is predicted by a model that never trained on it: one
    supervised model per fold, trained on the other folds (the fold's images are neither labeled
    nor unlabeled for it), predicts the fold at each --every steps."""
    cfg = load_config(DEFAULT_CONFIG, ["algorithm.name=supervised", *overrides])
    run_data = build_run_data(data_config(cfg), cfg.seed)
    labeled = run_data.labeled
    require_truth(labeled)
    fold = fold_of(labeled.labels, folds, cfg.seed)
    predicted: dict[int, np.ndarray] = {}
    probs: dict[int, np.ndarray | None] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(folds):
            held = np.flatnonzero(fold == k)
            trainer = build_trainer(
                cfg, Path(tmp) / f"fold{k}", fold_data(run_data, fold != k), progress=False
            )
            loader = labeled_loader(cfg, trainer, labeled.subset(held))
            for step, model in training(trainer, steps, every):
                labels, p = predict(model, loader, trainer.device)
                predicted.setdefault(step, np.full(len(labeled), -1, dtype=np.int64))[held] = labels
                if p is not None:
                    probs.setdefault(step, np.zeros((len(labeled), p.shape[1])))[held] = p
    rows = []
    for step in sorted(predicted):
        row = evidence_row(step, predicted[step], probs.get(step), labeled)
        rows.append({**row, "folds": folds})
    return rows


def fold_of(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N,) fold index of each labeled image: each class's images, shuffled by the seed, are
    dealt to the folds in turn (so every fold holds about 1/folds of every class)."""
    if folds < 2:
        raise SystemExit(f"--folds must be at least 2, got {folds}")
    labels = np.asarray(labels)
    if len(labels) < folds:
        raise SystemExit(f"{len(labels)} labeled images cannot make {folds} folds")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    start = 0  # where the next class starts dealing, so small classes spread over the folds
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold[members] = (start + np.arange(len(members))) % folds
        start = (start + len(members)) % folds
    return fold


def fold_data(run_data: RunData, keep: np.ndarray) -> RunData:
    """run_data with only the labeled images where `keep` (the held-out fold is left out)."""
    split = dataclasses.replace(run_data.split, labeled=run_data.split.labeled[keep])
    return dataclasses.replace(
        run_data, labeled=run_data.labeled.subset(np.flatnonzero(keep)), split=split
    )


def training(trainer: Trainer, steps: int, every: int):
    """Train step by step; yield (step, the raw model in eval mode) every `every` steps."""
    stream, _ = trainer.loaders()
    stream = iter(stream)
    for step in range(1, steps + 1):
        trainer.train_step(next(stream), None)
        trainer.step = step
        if step % every == 0:
            yield step, trainer.model
            trainer.model.train()


def labeled_loader(cfg, trainer: Trainer, images):
    tf = transforms.evaluate(cfg.data.image_size, trainer.model.mean, trainer.model.std)
    return eval_loader(images, tf, cfg.train.eval_batch_size, 0)


def require_truth(labeled) -> None:
    if labeled.true_labels is None:
        raise SystemExit(
            "the labeled set has no known truth: use synthetic data, data.noise, or fer2013 "
            "with data.truth=ferplus"
        )


def evidence_row(step: int, predicted, probs, labeled) -> dict:
    """The figures of one step: fit of the given labels; on the wrongly labeled images of known
    truth, the share predicted as their true and as their given class (and per error type, where
    the data knows it); the median P(given | x) of correct and of wrong labels."""
    given, true = np.asarray(labeled.labels), np.asarray(labeled.true_labels)
    predicted = np.asarray(predicted)
    known = true >= 0
    wrong = known & (given != true)
    row = {
        "step": step,
        "fit": float((predicted == given).mean()),
        "true_on_wrong": share(predicted[wrong] == true[wrong]),
        "given_on_wrong": share(predicted[wrong] == given[wrong]),
        "wrong": int(wrong.sum()),
        "labeled": len(given),
    }
    if labeled.error_types is not None:
        for code, name in enumerate(ERROR_TYPES[1:], start=1):
            kind = wrong & (labeled.error_types == code)
            if kind.any():
                row[f"true_on_{name}"] = share(predicted[kind] == true[kind])
    if probs is not None:
        p_given = np.asarray(probs)[np.arange(len(given)), given]
        row["p_given_correct"] = median(p_given[known & ~wrong])
        row["p_given_wrong"] = median(p_given[wrong])
    return row


def share(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if hits.size else None


def median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size else None


def text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=positive_int, default=200, help="training steps (200)")
    parser.add_argument("--every", type=positive_int, default=10,
                        help="steps between two readings of the labeled set (10)")  # fmt: skip
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (1)")
    parser.add_argument(
        "--out-of-fold", action="store_true", help="predict each labeled image by a model that "
        "never trained on it (one model per fold)"
    )  # fmt: skip
    parser.add_argument("--folds", type=at_least(2), default=5,
                        help="folds of --out-of-fold, at least 2 (5)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="key=value on the default config")
    return parser


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(args.threads)
    overrides = ["data.num_workers=0", *args.overrides]
    if args.out_of_fold:
        rows = out_of_fold(overrides, args.steps, args.every, args.folds)
        print(f"out of fold: {args.folds} models, each predicts the 1/{args.folds} of the labeled "
              "set it never trained on")  # fmt: skip
    else:
        rows = trace(overrides, args.steps, args.every)
        print("in sample: the model predicts the images it trains on")
    print(f"{rows[0]['wrong']} of {rows[0]['labeled']} labels wrong (of known truth)")
    extra = [key for key in rows[0] if key.startswith(("true_on_slip", "true_on_ambiguity"))]
    extra += [key for key in ("p_given_correct", "p_given_wrong") if key in rows[0]]
    header = f"{'step':>6}{'labels fitted':>15}{'wrong: true class':>19}{'wrong: given class':>20}"
    print(header + "".join(f"{key:>19}" for key in extra))
    for row in rows:
        print(
            f"{row['step']:>6}{row['fit']:>15.2f}{text(row['true_on_wrong']):>19}"
            f"{text(row['given_on_wrong']):>20}" + "".join(f"{text(row[k]):>19}" for k in extra)
        )
    best = max(rows, key=lambda row: row["true_on_wrong"] or 0.0)
    print(f"most wrongly labeled images predicted as their true class: "
          f"{text(best['true_on_wrong'])} at step {best['step']}")  # fmt: skip


if __name__ == "__main__":
    main()
