"""The algorithms' shared pieces (lionfer.algorithms.base): a step's Batch of views, the run's
Progress and Algorithm.to. Apart from test_algorithms.py, whose runs are too slow for `make
mutation` to repeat for every mutant of base.py."""

import pytest
import torch

from lionfer.algorithms.base import Algorithm, Batch, Progress

# ---- Batch: every view, and the two-view form that existing code builds ----


def test_two_view_batch_lists_its_views_in_order():
    w, s = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    batch = Batch(torch.zeros(1, 3, 4, 4), torch.tensor([0]), torch.tensor([0]), w, s, None)
    assert batch.x_ulb == (w, s)
    labeled_only = Batch(torch.zeros(1, 3, 4, 4), torch.tensor([0]), torch.tensor([0]))
    assert labeled_only.x_ulb == ()


def test_batch_from_views_names_the_first_weak_and_strong_view():
    views = tuple(torch.full((2, 3, 4, 4), float(i)) for i in range(3))
    batch = Batch.from_views(
        torch.zeros(1, 3, 4, 4),
        torch.tensor([0]),
        torch.tensor([0]),
        ("weak", "weak", "strong"),
        views,
        torch.tensor([4, 5]),
    )
    assert batch.x_ulb_w is views[0] and batch.x_ulb_s is views[2]
    moved = batch.to(torch.device("cpu"))
    assert len(moved.x_ulb) == 3 and moved.x_ulb_w is moved.x_ulb[0]
    assert moved.x_ulb_s is moved.x_ulb[2]
    mixmatch = Batch.from_views(
        torch.zeros(1, 3, 4, 4),
        torch.tensor([0]),
        torch.tensor([0]),
        ("weak", "weak"),
        views[:2],
        None,
    )
    assert mixmatch.x_ulb_s is None
    with pytest.raises(ValueError, match="view names"):
        Batch.from_views(batch.x_lb, batch.y_lb, batch.idx_lb, ("weak",), views, None)


def test_progress_ramp():
    assert Progress(0, 100).ramp(0.5) == 0.0
    assert Progress(25, 100).ramp(0.5) == 0.5
    assert Progress(80, 100).ramp(0.5) == 1.0
    assert Progress(0, 100).ramp(0.0) == 1.0


# ---- Algorithm.to: what the Trainer moves to the run's device ----


class Holding(Algorithm):
    """An algorithm with each kind of thing to move: state, a buffer built from the data and a
    module of its own."""

    device_buffers = ("classes",)

    def __init__(self):
        super().__init__(None, None)
        self.counts = torch.zeros(3)
        self.classes = torch.tensor([0, 2])
        self.head = torch.nn.Linear(2, 3)

    def state_dict(self):
        return {"counts": self.counts}

    def modules(self):
        return self.head


def test_to_moves_the_state_the_device_buffers_and_the_modules():
    # "meta" stands in for a GPU
    algorithm = Holding()
    assert algorithm.to(torch.device("meta")) is algorithm
    assert algorithm.counts.device.type == algorithm.classes.device.type == "meta"
    assert {p.device.type for p in algorithm.head.parameters()} == {"meta"}
