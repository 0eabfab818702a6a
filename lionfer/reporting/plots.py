"""Report figures with matplotlib (no pyplot state, no display): each *_figure function takes the
tables of lionfer.reporting.tables and returns a PNG as bytes; its *_plot twin returns the
Figure."""

from __future__ import annotations

import io
import math
import textwrap

import matplotlib
import numpy as np
from matplotlib.figure import Figure

DPI = 110
LEGEND_WRAP = 44  # characters per line of a legend entry (a long automatic method name)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def label(text, width: int = LEGEND_WRAP) -> str:
    """A name as matplotlib shows it as it is: wrapped into lines of `width` characters (at
    spaces where it has them), "$" escaped (two would open mathtext)."""
    text = str(text).replace("$", r"\$")
    if len(text) <= width:
        return text
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text


def _panels(count: int, width: float = 4.2, height: float = 3.2, most: int = 3):
    cols = min(count, most)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def method_styles(methods: list[str]) -> dict[str, dict]:
    """A colour (and past 20 methods, a line style) per method, the same in every panel."""
    palette = "tab10" if len(methods) <= 10 else "tab20"
    colours = matplotlib.colormaps[palette].colors
    dashes = ("-", "--", ":", "-.")
    return {
        method: {
            "color": colours[i % len(colours)],
            "linestyle": dashes[i // len(colours) % len(dashes)],
        }
        for i, method in enumerate(methods)
    }


def shared_legend(fig: Figure, axes, fontsize: float = 7, order: list[str] = ()) -> None:
    """One legend for every panel, below them (outside every axis, so it covers no data): each
    label once, in `order` (then as first drawn), long ones wrapped. A label in `order` is shown
    even where it starts with "_", which matplotlib's own gathering leaves out (its mark for
    artists without a name)."""
    drawn, named = {}, set(order)
    for ax in axes:
        for handle in [*ax.containers, *ax.lines, *ax.patches, *ax.collections]:
            text = handle.get_label()
            if text in named or (text and not text.startswith("_")):
                drawn.setdefault(text, handle)
    if not drawn:
        return
    entries = {text: drawn[text] for text in order if text in drawn} | drawn
    width, height = fig.get_size_inches()
    ncols = max(1, min(len(entries), int(width // 3.4)))
    texts = [label(text) for text in entries]
    # the figure grows by the legend's height, so that the panels keep theirs
    lines = [text.count("\n") + 1 for text in texts]
    rows = [max(lines[i : i + ncols]) for i in range(0, len(lines), ncols)]
    fig.set_size_inches(width, height + 0.3 + sum(rows) * 1.5 * fontsize / 72)
    fig.legend(list(entries.values()), texts, loc="outside lower center", ncols=ncols,
               fontsize=fontsize)  # fmt: skip


def sensitivity_figure(series: dict, xlabel: str) -> bytes:
    """Test accuracy (mean ± std over seeds) against a hyperparameter, a line per column."""
    fig = Figure(figsize=(5.0, 3.4), layout="constrained")
    ax = fig.subplots()
    for column, points in series.items():
        x = [p[0] for p in points]
        mean = np.array([p[1].mean for p in points])
        std = np.array([p[1].std or 0.0 for p in points])
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=column)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    shared_legend(fig, [ax], fontsize=8, order=list(series))
    return _png(fig)


def curves_figure(curves: dict, columns: list[str], methods: list[str], ylabel: str) -> bytes:
    return _png(curves_plot(curves, columns, methods, ylabel))


def curves_plot(curves: dict, columns: list[str], methods: list[str], ylabel: str) -> Figure:
    """One panel per column: a line per method, the mean over seeds at each evaluation, with a
    band of ± one std; a method has one colour in every panel, named in one legend below them.
    A method with one or two evaluations is drawn as full markers with error bars (a band over
    one step is invisible)."""
    fig, axes = _panels(len(columns))
    styles = method_styles(methods)
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
                            label=method, **styles[method])  # fmt: skip
                continue
            ax.plot(steps, mean, marker=".", label=method, **styles[method])
            colour = styles[method]["color"]
            ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.15)
        ax.set_title(label(column, 40), fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    shared_legend(fig, axes, order=methods)
    return fig


def confusion_figure(matrices: list[tuple[str, list[str], np.ndarray, int]]) -> bytes:
    return _png(confusion_plot(matrices))


CLASS_WRAP = 14  # characters per line of a class name on an axis


def confusion_plot(matrices: list[tuple[str, list[str], np.ndarray, int]]) -> Figure:
    """Row-normalised confusion matrices (rows: true class), one panel per (title, ...), the
    classes by their full names; each cell is about 0.6 inch so that its number reads at 8 pt
    or more, and the panel grows by the room its class names take."""
    classes = max((len(names) for _, names, _, _ in matrices), default=1)
    longest = max((len(str(n)) for _, names, _, _ in matrices for n in names), default=1)
    side = max(3.6, 0.6 * classes + 1.2) + 0.07 * min(longest, CLASS_WRAP)
    fig, axes = _panels(len(matrices), width=side, height=side, most=3)
    number_size = 9 if classes <= 8 else 8
    for ax, (title, names, matrix, seeds) in zip(axes, matrices, strict=True):
        ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="Blues")
        shown = [label(name, CLASS_WRAP) for name in names]
        ax.set_xticks(range(len(names)), shown, fontsize=8, rotation=90)
        ax.set_yticks(range(len(names)), shown, fontsize=8)
        for (i, j), value in np.ndenumerate(matrix):
            colour = "white" if value > 0.5 else "black"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=number_size,
                    color=colour)  # fmt: skip
        ax.set_title(label(f"{title} (n={seeds})", int(side * 11)), fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
    return fig


def per_class_figure(column: str, methods: list[str], names: list[str], cells: dict) -> bytes:
    return _png(per_class_plot(column, methods, names, cells))


def per_class_plot(column: str, methods: list[str], names: list[str], cells: dict) -> Figure:
    """Grouped bars: per-class accuracy (mean ± std) of each method on one column, the methods
    named in a legend below the axis; the axis reaches above 100 where an error bar does, so no
    bar is cut."""
    width = min(16.0, max(5.0, 0.35 * len(names) * len(methods) + 2.0))
    fig = Figure(figsize=(width, 3.6), layout="constrained")
    ax = fig.subplots()
    bar = 0.8 / max(len(methods), 1)
    x = np.arange(len(names))
    top = 100.0
    styles = method_styles(methods)
    for i, method in enumerate(methods):
        by_class = cells.get((method, column), {})
        mean = [by_class[n].mean if n in by_class else np.nan for n in names]
        std = [(by_class[n].std or 0.0) if n in by_class else 0.0 for n in names]
        ax.bar(x + i * bar - 0.4 + bar / 2, mean, bar, yerr=std, capsize=2, label=method,
               color=styles[method]["color"])  # fmt: skip
        top = max([top, *(m + s for m, s in zip(mean, std, strict=True) if np.isfinite(m))])
    ax.set_xticks(x, [label(n, CLASS_WRAP) for n in names], fontsize=8, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(label(column, 60), fontsize=10)
    ax.set_ylim(0, top * 1.03)
    ax.axhline(100.0, color="0.6", lw=0.6, ls=":")
    shared_legend(fig, [ax], order=methods)
    return fig


def gallery_figure(items: list[dict], class_names: list[str], method: str = "") -> bytes:
    return _png(gallery_plot(items, class_names, method))


def gallery_plot(items: list[dict], class_names: list[str], method: str = "") -> Figure:
    """Relabeled faces as in LION's Fig. 5, of one method (named once, above them): each face
    with its step, its given label (blue, top) and the label it was changed to (red, bottom),
    the true label where known, and the candidate weights under it by full class name."""
    cols = min(len(items), 6)
    rows = math.ceil(len(items) / cols)
    longest = min(max((len(str(n)) for n in class_names), default=1), CLASS_WRAP)
    fig = Figure(figsize=(2.1 * cols, (3.4 + 0.06 * longest) * rows), layout="constrained")
    if method:
        fig.suptitle(label(method, int(15 * cols)), fontsize=9)
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[2.2, 1.0] * rows)
    for k, item in enumerate(items):
        r, c = divmod(k, cols)
        face = fig.add_subplot(grid[2 * r, c])
        _face_tile(face, item)
        bars = fig.add_subplot(grid[2 * r + 1, c])
        weights = item.get("weights") or {}
        values = [weights.get(n, 0.0) for n in class_names]
        colours = ["tab:red" if n == item["current"] else "tab:gray" for n in class_names]
        bars.bar(range(len(class_names)), values, color=colours)
        ticks = [label(n, CLASS_WRAP) for n in class_names]
        bars.set_xticks(range(len(class_names)), ticks, fontsize=6, rotation=90)
        bars.set_ylim(0, 1)
        bars.tick_params(axis="y", labelsize=6)
    return fig


def _face_tile(face, item: dict) -> None:
    """A relabeled face: its step (and true label) above it, given → current below it, and the
    two labels in their colours inside it, the given one at the top, the new one at the foot."""
    if item.get("image") is not None:
        face.imshow(item["image"])
    else:
        face.text(0.5, 0.5, "image\nunavailable", ha="center", va="center", fontsize=8)
    face.set_xticks([])
    face.set_yticks([])
    truth = f"\ntrue: {label(item['true'], 24)}" if item.get("true") else ""
    face.set_title(f"step {item['step']}{truth}", fontsize=7)
    face.set_xlabel(label(f"{item['given']} → {item['current']}", 26), fontsize=7)
    for text, colour, y, va in ((item["given"], "tab:blue", 0.98, "top"),
                                (item["current"], "tab:red", 0.02, "bottom")):  # fmt: skip
        face.text(0.02, y, label(text, 18), transform=face.transAxes, va=va, fontsize=6.5,
                  color="white", bbox={"facecolor": colour, "pad": 1.5, "lw": 0})  # fmt: skip
