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
