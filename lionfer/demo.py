"""`make demo`: the supervised baseline, FixMatch and LION's three recipes on the embedded
synthetic faces, then a comparison table with the label-quality figures."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lionfer.config import DEFAULT_CONFIG, load_config
from lionfer.report import comparison_table, label_quality_lines, method_name
from lionfer.trainer import train

RUNS = (
    ("supervised", ("algorithm.name=supervised",)),
    ("fixmatch", ("algorithm.name=fixmatch",)),
    ("lion-paper", ("algorithm.name=lion", "algorithm.recipe=paper")),
    ("lion-released", ("algorithm.name=lion", "algorithm.recipe=released")),
    ("lion-robust", ("algorithm.name=lion", "algorithm.recipe=robust")),
)


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    root = Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    summaries = []
    for folder, choice in RUNS:
        cfg = load_config(DEFAULT_CONFIG, [*overrides, *choice])
        print(
            f"\n== {folder}: {cfg.data.dataset}, {cfg.data.num_labels} labels, "
            f"{cfg.train.steps} steps, {cfg.model.name} at {cfg.data.image_size} px ==",
            flush=True,
        )
        summaries.append(train(cfg, root / folder, command="make demo"))
    print(f"\nResults on the synthetic test set (runs in {root}):\n")
    print(comparison_table(summaries))
    for (folder, _), summary in zip(RUNS, summaries, strict=True):
        lines = label_quality_lines(summary)
        if lines:
            print(f"\n{method_name(summary)} ({root / folder / 'relabels.csv'}):")
            print("\n".join(f"  {line}" for line in lines))
        for warning in summary.get("warnings", []):
            print(f"  warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
