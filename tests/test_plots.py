"""Report figures: what a reader must be able to see in them."""

from __future__ import annotations

import numpy as np

from lionfer.reporting import plots
from lionfer.reporting.tables import Cell


def test_a_run_with_one_evaluation_draws_a_visible_point():
    curves = {("test_acc", "lion"): [(500, Cell(61.0, None, 1))]}
    fig = plots.curves_plot(curves, ["test_acc"], ["lion"], "accuracy (%)")
    (ax,) = fig.axes
    markers = [line for line in ax.get_lines() if len(line.get_xdata()) == 1]
    assert markers, "the single evaluation is not drawn"
    assert all(m.get_marker() not in (".", ",", "None", None) for m in markers)
    assert all(m.get_markersize() >= 5 for m in markers)
    assert plots.curves_figure(curves, ["test_acc"], ["lion"], "accuracy (%)")[:4] == b"\x89PNG"


def test_error_bars_above_100_percent_are_not_cut():
    cells = {("lion", "test_acc"): {"happy": Cell(98.0, 4.0, 3), "sad": Cell(50.0, 10.0, 3)}}
    fig = plots.per_class_plot("test_acc", ["lion"], ["happy", "sad"], cells)
    (ax,) = fig.axes
    assert ax.get_ylim()[1] >= 102.0  # 98 + 4 is drawn whole


def test_confusion_matrix_numbers_are_readable():
    names = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
    matrix = np.full((7, 7), 1 / 7)
    fig = plots.confusion_plot([("lion", names, matrix, 3), ("supervised", names, matrix, 3)])
    numbers = [t for ax in fig.axes for t in ax.texts]
    assert len(numbers) == 2 * 49
    assert min(t.get_fontsize() for t in numbers) >= 8
    # the cell (inches per class) is large enough for "0.14" at that size
    width = fig.get_size_inches()[0] / 2
    assert width / 7 >= 0.5


LONG = "lion:paper (clear_threshold=0.8, relabel_threshold=0.8, resolve_threshold=0.8)"


def drawn(fig):
    """The figure drawn (on an Agg canvas) with its renderer, so that extents are known."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_one_legend_below_the_panels_covers_no_panel():
    curves = {
        ("folder@20", LONG): [(4, Cell(50.0, None, 1)), (8, Cell(50.0, None, 1))],
        ("digits@140", "supervised"): [(4, Cell(10.0, None, 1)), (8, Cell(11.0, None, 1))],
        ("digits@140", "fixmatch"): [(4, Cell(12.0, None, 1)), (8, Cell(13.0, None, 1))],
        ("folder@20", "fixmatch"): [(4, Cell(40.0, None, 1)), (8, Cell(41.0, None, 1))],
    }
    fig = plots.curves_plot(curves, ["digits@140", "folder@20"], [LONG, "supervised", "fixmatch"],
                            "accuracy (%)")  # fmt: skip
    renderer = drawn(fig)
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[0] == plots.label(LONG) and "\n" in texts[0]  # wrapped
    assert texts[1:] == ["supervised", "fixmatch"]
    box = legend.get_window_extent(renderer)
    assert not any(overlap(box, ax.get_tightbbox(renderer)) for ax in fig.axes)
    # a method has one colour in every panel
    colours = {(c.get_label(), c.lines[0].get_color()) for ax in fig.axes for c in ax.containers}
    assert len(colours) == len({name for name, _ in colours}) == 3


def test_the_per_class_legend_covers_no_bar():
    cells = {(m, "c"): {"happy": Cell(98.0, 4.0, 3), "sad": Cell(50.0, 10.0, 3)} for m in "ab"}
    fig = plots.per_class_plot("c", [LONG, "b"], ["happy", "sad"], cells)
    renderer = drawn(fig)
    (ax,) = fig.axes
    assert ax.get_legend() is None
    assert not overlap(fig.legends[0].get_window_extent(renderer), ax.get_tightbbox(renderer))


def test_confusion_matrices_name_classes_in_full():
    names = ["cat_big", "cat_small", "dog"]
    fig = plots.confusion_plot([("lion", names, np.eye(3), 1)])
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names


def test_gallery_tiles_name_classes_in_full_and_no_title_overlaps_another():
    names = ["cat_big", "cat_small", "a very long class name"]
    items = [
        {"method": LONG, "step": 18 + k, "given": names[k % 3], "current": names[(k + 1) % 3],
         "true": names[(k + 1) % 3], "weights": {names[(k + 1) % 3]: 0.8}, "image": None}
        for k in range(8)
    ]  # fmt: skip
    fig = plots.gallery_plot(items, names, LONG)
    renderer = drawn(fig)
    bars = fig.axes[1::2]
    assert all([t.get_text() for t in ax.get_xticklabels()] == [
        plots.label(n, plots.CLASS_WRAP) for n in names] for ax in bars)  # fmt: skip
    texts = [fig._suptitle] + [ax.title for ax in fig.axes] + [ax.xaxis.label for ax in fig.axes]
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_text()]
    assert LONG.split(" (")[0] not in "".join(ax.get_title() for ax in fig.axes)  # named once
    clashes = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if overlap(a, b)]
    assert not clashes
    ticks = [t.get_window_extent(renderer) for ax in bars for t in ax.get_xticklabels()]
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes[::2]]
    assert not any(overlap(tick, title) for tick in ticks for title in titles)


def test_a_name_starting_with_an_underscore_has_its_legend_entry(monkeypatch):
    # matplotlib leaves such labels out of a legend: the green curve went unnamed
    methods = ["lion", "_hidden", "supervised"]
    many = [(4, Cell(50.0, 1.0, 3)), (8, Cell(55.0, 1.0, 3)), (12, Cell(60.0, 1.0, 3))]
    curves = {("test_acc", "lion"): many, ("test_acc", "_hidden"): many}
    curves[("test_acc", "supervised")] = many[:1]  # drawn as error bars
    cells = {(m, "test_acc"): {"happy": Cell(50.0, 1.0, 3)} for m in methods}
    figures = [
        plots.curves_plot(curves, ["test_acc"], methods, "accuracy (%)"),
        plots.per_class_plot("test_acc", methods, ["happy"], cells),
    ]
    monkeypatch.setattr(plots, "_png", figures.append)
    plots.sensitivity_figure({m: [(0.8, Cell(50.0, 1.0, 3))] for m in methods}, "tau")
    for fig in figures:
        (legend,) = fig.legends
        assert [t.get_text() for t in legend.get_texts()] == methods
