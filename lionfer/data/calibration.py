"""The simulated annotators measured on the embedded faces' geometry: two-annotator agreement
overall and per class, and per annotator mode the share of wrong and unknown labels and their
error types. `python -m lionfer.data.calibration` prints the table the docs quote."""

from __future__ import annotations

import numpy as np

from lionfer.data.annotators import (
    AMBIGUITY,
    MODES,
    SLIP,
    annotate,
    error_types,
    geometry_posteriors,
    two_annotator_agreement,
)
from lionfer.data.datasets import synthetic


def calibration(n: int = 14000, ambiguity: float = 0.35, seed: int = 0) -> dict:
    """Figures of the simulated annotators on n generated geometries (no rendering): two-annotator
    agreement overall and per true class (single's pool), and per mode the share of wrong given
    labels, of unknown ones, and the error-type shares among the wrong ones."""
    rng = np.random.default_rng(seed)
    truth = rng.permutation(np.arange(n) % len(synthetic.PROTOTYPES)).astype(np.int64)
    geometry, second, alpha, _ = synthetic.sample_geometry(truth, ambiguity, rng)
    posterior, presence = geometry_posteriors(geometry, ambiguity, synthetic.FACE_MODEL)
    agree = two_annotator_agreement(posterior, rng)
    out = {
        "agreement": float(agree.mean()),
        "agreement_by_class": [float(agree[truth == c].mean()) for c in range(posterior.shape[1])],
        "bayes_accuracy": float((posterior.argmax(1) == truth).mean()),
        "modes": {},
    }
    legacy = synthetic.annotate(truth, second, alpha, rng)
    results = {"legacy": (legacy, error_types(legacy, truth, presence))}
    for mode in MODES:
        a = annotate(geometry, truth, ambiguity, mode, rng, synthetic.FACE_MODEL)
        results[mode] = (a.labels, a.error_types)
    for mode, (labels, codes) in results.items():
        known = labels >= 0
        wrong = known & (labels != truth)
        out["modes"][mode] = {
            "wrong": float(wrong.sum() / max(known.sum(), 1)),
            "unknown": float((~known).mean()),
            "slip_share": float((codes[wrong] == SLIP).mean()) if wrong.any() else 0.0,
            "ambiguity_share": float((codes[wrong] == AMBIGUITY).mean()) if wrong.any() else 0.0,
            "wrong_by_class": [
                float(wrong[known & (truth == c)].mean()) for c in range(posterior.shape[1])
            ],
        }
    return out


def main() -> None:
    from lionfer.labels import SHORT_NAMES

    figures = calibration()
    names = SHORT_NAMES[:7]

    def by_class(values) -> str:
        return "  ".join(f"{n} {100 * v:.0f}" for n, v in zip(names, values, strict=True))

    print(
        f"two independent single annotators agree on {100 * figures['agreement']:.1f}% of faces "
        f"(ambiguity 0.35); Bayes accuracy from the geometry {100 * figures['bayes_accuracy']:.1f}%"
    )
    print(f"agreement % by true class: {by_class(figures['agreement_by_class'])}")
    print(f"{'mode':<8} {'wrong %':>8} {'no label %':>10} {'slip %':>7} {'ambig. %':>8}   wrong %")
    for mode, m in figures["modes"].items():
        shares = f"{100 * m['slip_share']:7.1f} {100 * m['ambiguity_share']:8.1f}"
        print(
            f"{mode:<8} {100 * m['wrong']:8.1f} {100 * m['unknown']:10.1f} {shares}   "
            f"{by_class(m['wrong_by_class'])}"
        )


if __name__ == "__main__":
    main()
