"""Report figures with matplotlib (no pyplot state, no display): each *_figure function takes the
tables of lionfer.reporting.tables and returns a PNG as bytes; its *_plot twin returns the
Figure."""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.figure import Figure

DPI = 110


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _panels(count: int, width: float = 4.2, height: float = 3.2, most: int = 3):
    cols = min(count, most)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def sensitivity_figure(series: dict, xlabel: str) -> bytes:
    """Test accuracy (mean ± std over seeds) against a hyperparameter, a line per column."""
    fig = Figure(figsize=(5.0, 3.4))
    ax = fig.subplots()
    for column, points in series.items():
        x = [p[0] for p in points]
        mean = np.array([p[1].mean for p in points])
        std = np.array([p[1].std or 0.0 for p in points])
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=column)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def curves_figure(curves: dict, columns: list[str], methods: list[str], ylabel: str) -> bytes:
    return _png(curves_plot(curves, columns, methods, ylabel))


def curves_plot(curves: dict, columns: list[str], methods: list[str], ylabel: str) -> Figure:
    """One panel per column: a line per method, the mean over seeds at each evaluation, with a
    band of ± one std. A method with one or two evaluations is drawn as full markers with error
    bars (a band over one step is invisible)."""
    fig, axes = _panels(len(columns))
    for ax, column in zip(axes, columns, strict=True):
        for method in methods:
            points = curves.get((column, method))
            if not points:
                continue
            steps = np.array([p[0] for p in points])
            mean = np.array([p[1].mean for p in points])
            std = np.array([p[1].std or 0.0 for p in points])
            if len(points) < 3:
                ax.errorbar(steps, mean, yerr=std, marker="o", markersize=6, capsize=3,
                            label=method)  # fmt: skip
                continue
            (line,) = ax.plot(steps, mean, marker=".", label=method)
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set_title(column, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def confusion_figure(matrices: list[tuple[str, list[str], np.ndarray, int]]) -> bytes:
    return _png(confusion_plot(matrices))


def confusion_plot(matrices: list[tuple[str, list[str], np.ndarray, int]]) -> Figure:
    """Row-normalised confusion matrices (rows: true class), one panel per (title, ...); each
    cell is about 0.6 inch so that its number reads at 8 pt or more."""
    classes = max((len(names) for _, names, _, _ in matrices), default=1)
    side = max(3.6, 0.6 * classes + 1.2)
    fig, axes = _panels(len(matrices), width=side, height=side, most=3)
    number_size = 9 if classes <= 8 else 8
    for ax, (title, names, matrix, seeds) in zip(axes, matrices, strict=True):
        ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="Blues")
        short = [name[:3] for name in names]
        ax.set_xticks(range(len(names)), short, fontsize=8, rotation=90)
        ax.set_yticks(range(len(names)), short, fontsize=8)
        for (i, j), value in np.ndenumerate(matrix):
            colour = "white" if value > 0.5 else "black"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=number_size,
                    color=colour)  # fmt: skip
        ax.set_title(f"{title} (n={seeds})", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
    return fig


def per_class_figure(column: str, methods: list[str], names: list[str], cells: dict) -> bytes:
    return _png(per_class_plot(column, methods, names, cells))


def per_class_plot(column: str, methods: list[str], names: list[str], cells: dict) -> Figure:
    """Grouped bars: per-class accuracy (mean ± std) of each method on one column; the axis
    reaches above 100 where an error bar does, so no bar is cut."""
    width = min(16.0, max(5.0, 0.35 * len(names) * len(methods) + 2.0))
    fig = Figure(figsize=(width, 3.6))
    ax = fig.subplots()
    bar = 0.8 / max(len(methods), 1)
    x = np.arange(len(names))
    top = 100.0
    for i, method in enumerate(methods):
        by_class = cells.get((method, column), {})
        mean = [by_class[n].mean if n in by_class else np.nan for n in names]
        std = [(by_class[n].std or 0.0) if n in by_class else 0.0 for n in names]
        ax.bar(x + i * bar - 0.4 + bar / 2, mean, bar, yerr=std, capsize=2, label=method)
        top = max([top, *(m + s for m, s in zip(mean, std, strict=True) if np.isfinite(m))])
    ax.set_xticks(x, names, fontsize=8, rotation=30)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(column, fontsize=10)
    ax.set_ylim(0, top * 1.03)
    ax.axhline(100.0, color="0.6", lw=0.6, ls=":")
    ax.legend(fontsize=7, ncol=min(len(methods), 7))
    return fig


def gallery_figure(items: list[dict], class_names: list[str]) -> bytes:
    """Relabeled faces as in LION's Fig. 5: the face, its given label (blue), the label it was
    changed to (red), the true label where known, and the candidate weights under it."""
    cols = min(len(items), 6)
    rows = math.ceil(len(items) / cols)
    fig = Figure(figsize=(2.1 * cols, 3.6 * rows))
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[2.2, 1.0] * rows, hspace=0.55)
    for k, item in enumerate(items):
        r, c = divmod(k, cols)
        face = fig.add_subplot(grid[2 * r, c])
        if item.get("image") is not None:
            face.imshow(item["image"])
        else:
            face.text(0.5, 0.5, "image\nunavailable", ha="center", va="center", fontsize=8)
        face.set_xticks([])
        face.set_yticks([])
        truth = f"\ntrue: {item['true']}" if item.get("true") else ""
        face.set_title(f"{item['method']} (step {item['step']}){truth}", fontsize=7)
        face.set_xlabel(f"{item['given']} → {item['current']}", fontsize=8)
        face.xaxis.label.set_color("black")
        face.text(
            0.02,
            0.98,
            item["given"],
            transform=face.transAxes,
            va="top",
            fontsize=7,
            color="white",
            bbox={"facecolor": "tab:blue", "pad": 1.5, "lw": 0},
        )
        face.text(
            0.98,
            0.98,
            item["current"],
            transform=face.transAxes,
            va="top",
            ha="right",
            fontsize=7,
            color="white",
            bbox={"facecolor": "tab:red", "pad": 1.5, "lw": 0},
        )
        bars = fig.add_subplot(grid[2 * r + 1, c])
        weights = item.get("weights") or {}
        values = [weights.get(n, 0.0) for n in class_names]
        colours = ["tab:red" if n == item["current"] else "tab:gray" for n in class_names]
        bars.bar(range(len(class_names)), values, color=colours)
        bars.set_xticks(range(len(class_names)), [n[:2] for n in class_names], fontsize=6)
        bars.set_ylim(0, 1)
        bars.tick_params(axis="y", labelsize=6)
    return _png(fig)
