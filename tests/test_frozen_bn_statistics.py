"""frozen_bn_statistics: a forward pass inside normalises with its batch's statistics, and every
BatchNorm layer's running statistics and counter are bit-identical afterwards."""

import copy
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from batchnorm_helpers import bn_model, same, statistics, statistics_after
from torch import nn

import lionfer.algorithms  # noqa: F401  (registers the algorithms)
from lionfer.algorithms.base import AlgorithmInfo, Batch, Progress, frozen_bn_statistics
from lionfer.distributed import (
    LOCAL,
    Comm,
    GlobalBatchNorm,
    ProcessGroup,
    sync_batchnorm,
    wrap,
)
from lionfer.registry import ALGORITHMS


def norms_model(momentum):
    """Every kind of layer with running statistics: 1-d and 2-d BatchNorm, SyncBatchNorm (its
    plain path outside a process group) and an InstanceNorm that tracks them."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4, momentum=momentum),
        nn.SyncBatchNorm(4, momentum=momentum),
        nn.InstanceNorm2d(4, momentum=momentum, track_running_stats=True, affine=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.BatchNorm1d(4, momentum=momentum),
        nn.Linear(4, 2),
    ).train()


@pytest.mark.parametrize("momentum", [0.1, None])  # None: a cumulative mean by the counter
def test_a_pass_inside_uses_batch_statistics_and_leaves_running_ones_as_they_were(momentum):
    model = norms_model(momentum)
    model(torch.randn(5, 3, 6, 6))  # running statistics that are no longer the initial ones
    reference = copy.deepcopy(model)
    before = statistics(model)
    x = torch.randn(6, 3, 6, 6)
    with torch.no_grad(), frozen_bn_statistics(model):
        inside = model(x)
    assert same(statistics(model), before)
    with torch.no_grad():
        outside = reference(x)  # the same pass unfrozen: the same output, moved statistics
    assert torch.equal(inside, outside)
    assert not same(statistics(reference), before)
    assert not torch.equal(inside, model.eval()(x))  # not the running statistics


def test_a_pass_with_a_gradient_backpropagates_as_unfrozen_and_only_others_update():
    model = bn_model()
    reference, initial = copy.deepcopy(model), copy.deepcopy(model)
    x_lb, x_ulb = torch.randn(4, 3, 16, 16), torch.randn(6, 3, 16, 16)
    loss = model(x_lb).logits.square().mean()
    with frozen_bn_statistics(model):
        loss = loss + model(x_ulb).logits.square().mean()
    loss.backward()  # the restored statistics are no modified tensor to the saved graph
    (reference(x_lb).logits.square().mean() + reference(x_ulb).logits.square().mean()).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7), name
    assert same(statistics(model), statistics_after(initial, [x_lb]))
    assert not same(statistics(reference), statistics_after(initial, [x_lb]))


def test_statistics_come_back_when_the_pass_fails():
    model = bn_model()
    before = statistics(model)
    with pytest.raises(RuntimeError, match="failed"), frozen_bn_statistics(model):
        model(torch.randn(4, 3, 16, 16))
        raise RuntimeError("failed")
    assert same(statistics(model), before)


class OneOfTwo(Comm):
    """A process that believes it is one of two: GlobalBatchNorm takes its global-batch path,
    whose all-reduce over this one-process group sums this process's statistics only."""

    world_size = 2
    group = None


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_global_batchnorm_and_a_ddp_wrapped_model_are_frozen_too(one_process_group):
    comm = OneOfTwo()
    comm.group = dist.group.WORLD
    model = sync_batchnorm(bn_model(), comm, torch.device("cpu"))
    assert any(isinstance(m, GlobalBatchNorm) for m in model.modules())
    wrapped = nn.parallel.DistributedDataParallel(model)
    before = statistics(model)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad(), frozen_bn_statistics(wrapped):
        wrapped(x)
    assert same(statistics(model), before)
    with torch.no_grad():
        wrapped(x)
    assert not same(statistics(model), before)  # the global-batch path does update them


# ---- the baselines' frozen passes with several processes ----

BASELINES = ("mixmatch", "remixmatch", "marginmix", "pseudolabel")


def global_batch(cls) -> Batch:
    g = torch.Generator().manual_seed(0)
    views = tuple(torch.randn(4, 3, 16, 16, generator=g) for _ in cls.views)
    labels = torch.tensor([0, 1, 2, 0])
    return Batch.from_views(
        torch.randn(4, 3, 16, 16, generator=g), labels, torch.arange(4), cls.views, views, labels
    )


def step_results(comm: Comm) -> dict:
    """Each baseline's loss, model gradient and BatchNorm statistics after one step on this
    process's share of the same global batch (GlobalBatchNorm and DDP with several)."""
    results = {}
    for name in BASELINES:
        cls = ALGORITHMS.get(name)
        info = AlgorithmInfo(3, 6, 8, 128, torch.tensor([0, 1, 2, 0, 1, 2]))
        algorithm = cls(ALGORITHMS.entry(name).config(), info)
        algorithm.comm = comm
        model = sync_batchnorm(bn_model(), comm, torch.device("cpu"))
        trained = wrap(model, comm, torch.device("cpu"), synced_batchnorm=True)
        whole = global_batch(cls)
        batch = Batch.from_views(
            comm.local(whole.x_lb),
            whole.y_lb,
            whole.idx_lb,
            cls.views,
            tuple(comm.local(x) for x in whole.x_ulb),
            whole.idx_ulb,
        )
        torch.manual_seed(1)  # the step's own draws (MixUp, rotations), alike in every process
        out = algorithm.step(trained, batch, Progress(5, 10))
        out.loss.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        results[name] = (out.loss.detach(), grads, statistics(model))
    return results


def step_as_process(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, world, rank == 0)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    try:
        comm = ProcessGroup(rank, world, rank, dist.group.WORLD, dist.group.WORLD)
        torch.save(step_results(comm), f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_step_the_baselines_as_one(tmp_path):
    one = step_results(LOCAL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(step_as_process, args=(2, port, str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        two = torch.load(tmp_path / f"{rank}.pt")
        for name in BASELINES:
            (loss, grads, stats), (loss2, grads2, stats2) = one[name], two[name]
            assert torch.allclose(loss, loss2, rtol=1e-5), name
            assert grads.keys() == grads2.keys(), name
            for key in grads:
                assert torch.allclose(grads[key], grads2[key], rtol=1e-3, atol=1e-6), (name, key)
            for key in stats:
                assert torch.allclose(stats[key].double(), stats2[key].double(), atol=1e-5), (
                    name,
                    key,
                )
