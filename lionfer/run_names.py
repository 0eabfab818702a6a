"""How runs are named, in one place: a column is `<dataset>@<labels>` (`all` when every training
image is labeled), a method is its algorithm with the recipe where it has one (`lion:evidence`),
a run's folder is `<dataset>@<labels>/<method>/s<seed>` under a sweep or `runs/`, and a label
becomes a file or folder name by `slug`. Pure strings, no torch."""

from __future__ import annotations

import re


def budget_name(num_labels: int) -> str:
    """`all` for num_labels = -1 (every training image labeled), else the number."""
    return "all" if num_labels == -1 else str(num_labels)


def column(dataset: str, labels) -> str:
    """`<dataset>@<labels>`; labels is a label budget (-1 for all) or its name."""
    return f"{dataset}@{budget_name(labels) if isinstance(labels, int) else labels}"


def split_column(name: str) -> tuple[str, str]:
    """`<dataset>@<labels>` → (dataset, labels)."""
    dataset, _, labels = name.rpartition("@")
    return dataset, labels


def method_name(summary: dict) -> str:
    """The algorithm, with its recipe where it has one (`lion:robust`); `?` where none is named."""
    name = summary.get("algorithm", "?")
    return f"{name}:{summary['recipe']}" if summary.get("recipe") else name


def run_folder(dataset: str, labels, method: str, seed: int) -> str:
    """`<dataset>@<labels>/<method>/s<seed>`, relative to a sweep's folder or `runs/`."""
    return f"{column(dataset, labels)}/{method}/s{seed}"


def slug(text: str) -> str:
    """A file or folder name for a label: lower case, runs of other characters become one '-';
    empty where the label has no letter or digit."""
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-.")
