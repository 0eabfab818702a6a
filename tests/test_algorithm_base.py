"""The algorithms' shared pieces (lionfer.algorithms.base): a step's Batch of views, the run's
Progress and Algorithm.to. Apart from test_algorithms.py, whose runs are too slow for `make
mutation` to repeat for every mutant of base.py."""

import pytest
import torch
from fakes import CopiesOnTwoProcesses

from lionfer.algorithms.base import (
    Algorithm,
    Batch,
    Progress,
    first_occurrence,
    forward_outputs,
    forward_views,
    to_device,
)
from lionfer.distributed import LOCAL
from lionfer.models import Output

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


def test_the_base_algorithm_has_no_period_no_modules_and_no_state():
    algorithm = Algorithm(None, None)
    assert algorithm.period() == 0
    assert algorithm.modules() is None
    assert algorithm.state_dict() == {}


def test_load_state_dict_keeps_each_tensor_on_its_device_and_dtype():
    algorithm = Holding()
    algorithm.counts = torch.zeros(3, device="meta")
    algorithm.load_state_dict({"counts": torch.tensor([1, 2, 3], dtype=torch.float64)})
    assert algorithm.counts.device.type == "meta"
    assert algorithm.counts.dtype == torch.float32
    on_cpu = Holding()
    on_cpu.load_state_dict({"counts": torch.tensor([1, 2, 3], dtype=torch.float64)})
    assert on_cpu.counts.dtype == torch.float32
    assert on_cpu.counts.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match=r"keys \['counts', 'extra'\], expected \['counts'\]"):
        on_cpu.load_state_dict({"counts": torch.zeros(3), "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"keys \[\], expected \['counts'\]"):
        on_cpu.load_state_dict({})


def test_batch_to_moves_every_tensor_and_formats_only_the_images():
    # "meta" stands in for a GPU; channels_last applies to 4-d tensors only
    w, s, x_lb = (torch.rand(2, 3, 4, 4) for _ in range(3))
    extra = torch.rand(2, 3, 4, 4)  # a view that x_ulb_w names but x_ulb does not hold
    batch = Batch(
        x_lb, torch.tensor([1]), torch.tensor([7]), extra, s, torch.tensor([4, 5]), (w, s)
    )
    moved = batch.to(torch.device("meta"), memory_format=torch.channels_last)
    images = (moved.x_lb, moved.x_ulb_w, moved.x_ulb_s, *moved.x_ulb)
    others = (moved.y_lb, moved.idx_lb, moved.idx_ulb)
    assert {t.device.type for t in images + others} == {"meta"}
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in images)
    assert not x_lb.is_contiguous(memory_format=torch.channels_last)
    assert [t.shape for t in others] == [(1,), (1,), (2,)]
    assert moved.x_ulb_s is moved.x_ulb[1] and moved.x_ulb_w is not moved.x_ulb[0]
    assert len(moved.x_ulb) == 2
    on_cpu = batch.to(torch.device("cpu"))
    assert torch.equal(on_cpu.x_ulb_w, extra) and torch.equal(on_cpu.x_ulb[0], w)
    assert torch.equal(on_cpu.x_lb, x_lb) and on_cpu.x_lb.is_contiguous()
    assert on_cpu.y_lb.tolist() == [1] and on_cpu.idx_lb.tolist() == [7]
    assert on_cpu.idx_ulb.tolist() == [4, 5]
    labeled_only = Batch(x_lb, torch.tensor([1]), torch.tensor([7])).to(torch.device("meta"))
    assert labeled_only.x_ulb_w is labeled_only.x_ulb_s is labeled_only.idx_ulb is None
    assert labeled_only.x_ulb == ()


class Recorded(torch.Tensor):
    """A tensor that notes the keyword arguments of every .to() called on it."""

    calls: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.to:
            cls.calls.append(dict(kwargs or {}))
        return super().__torch_function__(func, types, args, kwargs)


def test_batch_to_copies_without_blocking():
    Recorded.calls = []
    image, index = (
        torch.zeros(1, 3, 2, 2).as_subclass(Recorded),
        torch.zeros(1).as_subclass(Recorded),
    )
    Batch(image, index, index, image, None, index).to(torch.device("cpu"))
    # x_ulb's one view, x_lb, y_lb, idx_lb, idx_ulb: x_ulb_w is that view, moved once
    assert len(Recorded.calls) == 5
    assert all(call.get("non_blocking") is True for call in Recorded.calls)


class Staged(torch.Tensor):
    """A CPU tensor that pretends to go to a GPU: .pin_memory() and .to("cuda") are noted and
    return it unchanged."""

    calls: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.pin_memory:
            cls.calls.append("pin")
            return args[0]
        if func is torch.Tensor.to and torch.device(args[1]).type == "cuda":
            cls.calls.append(("to", torch.device(args[1]), dict(kwargs or {})))
            return args[0]
        return super().__torch_function__(func, types, args, kwargs)


def test_to_device_pins_and_copies_without_blocking_only_to_a_gpu():
    Staged.calls = []
    tensor = torch.arange(3).as_subclass(Staged)
    assert to_device(tensor, "cuda:0") is tensor
    assert Staged.calls == ["pin", ("to", torch.device("cuda:0"), {"non_blocking": True})]
    Staged.calls = []
    moved = to_device(tensor, "meta")  # a device named by a string, not a GPU
    assert moved.device.type == "meta" and Staged.calls == []
    plain = torch.arange(3)
    assert to_device(plain, torch.device("cpu")) is plain


def test_first_occurrence_of_each_index_in_the_batch():
    assert first_occurrence(torch.tensor([2, 0, 2, 2, 0]), 3).tolist() == [0, 1, 0, 0, 1]
    assert first_occurrence(torch.tensor([1, 1]), 4).tolist() == [0, 0]
    assert first_occurrence(torch.tensor([0, 1, 2]), 3).tolist() == [0, 1, 2]
    assert first_occurrence(torch.tensor([5]), 6).tolist() == [0]
    on_gpu = first_occurrence(torch.tensor([1, 0, 1], device="meta"), 2)  # meta: a GPU's stand-in
    assert on_gpu.device.type == "meta" and on_gpu.shape == (3,)


class Halves(torch.nn.Module):
    """Logits: the input's first two columns; features: its last two; clean logits: the logits
    themselves (as a model without dropout gives them) or none."""

    def __init__(self, clean: bool):
        super().__init__()
        self.clean = clean

    def forward(self, x):
        logits = x[:, :2]
        return Output(logits, x[:, 2:], logits if self.clean else None)


class Counting(CopiesOnTwoProcesses):
    def __init__(self):
        self.gathered = 0

    def gather_views(self, tensor, sizes):
        self.gathered += 1
        return super().gather_views(tensor, sizes)


def test_forward_views_splits_one_pass_into_its_views():
    a, b = torch.arange(8.0).view(2, 4), torch.arange(8.0, 20.0).view(3, 4)
    (logits_a, features_a), (logits_b, features_b) = forward_views(Halves(False), a, b)
    assert torch.equal(logits_a, a[:, :2]) and torch.equal(features_a, a[:, 2:])
    assert torch.equal(logits_b, b[:, :2]) and torch.equal(features_b, b[:, 2:])
    comm = Counting()
    [(logits, features)] = forward_views(Halves(False), a, comm=comm)
    assert torch.equal(logits, torch.cat([a[:, :2], a[:, :2]])) and len(features) == 4
    assert comm.gathered == 2


def test_forward_outputs_gathers_each_field_once_and_keeps_missing_ones():
    a, b = torch.arange(8.0).view(2, 4), torch.arange(8.0, 20.0).view(3, 4)
    comm = Counting()
    first, second = forward_outputs(Halves(True), a, b, comm=comm)
    assert comm.gathered == 2  # logits and features; clean_logits is the logits tensor
    assert isinstance(first, Output)
    assert torch.equal(first.logits, torch.cat([a[:, :2], a[:, :2]]))
    assert torch.equal(second.features, torch.cat([b[:, 2:], b[:, 2:]]))
    assert first.clean_logits is first.logits and second.clean_logits is second.logits
    first, second = forward_outputs(Halves(False), a, b)
    assert first.clean_logits is None and second.clean_logits is None
    assert torch.equal(first.logits, a[:, :2]) and torch.equal(second.features, b[:, 2:])


class Doubled(CopiesOnTwoProcesses):
    def gather(self, tensor):
        return torch.cat([tensor, tensor])


def test_a_gathered_batch_holds_every_processs_images_and_the_global_indices():
    x_lb, w, s = torch.rand(1, 3, 4, 4), torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    y_lb, idx_lb, idx_ulb = torch.tensor([0, 1]), torch.tensor([3, 4]), torch.tensor([0, 1, 2, 3])
    batch = Batch.from_views(x_lb, y_lb, idx_lb, ("strong", "weak"), (s, w), idx_ulb)
    assert batch.gathered(LOCAL) is batch
    both = batch.gathered(Doubled())
    assert torch.equal(both.x_lb, torch.cat([x_lb, x_lb]))
    assert both.y_lb is y_lb and both.idx_lb is idx_lb and both.idx_ulb is idx_ulb
    assert torch.equal(both.x_ulb[0], torch.cat([s, s])) and torch.equal(
        both.x_ulb[1], torch.cat([w, w])
    )
    assert both.x_ulb_s is both.x_ulb[0] and both.x_ulb_w is both.x_ulb[1]
    weak_only = Batch.from_views(x_lb, y_lb, idx_lb, ("weak",), (w,), idx_ulb).gathered(Doubled())
    assert weak_only.x_ulb_s is None and weak_only.x_ulb_w is weak_only.x_ulb[0]
