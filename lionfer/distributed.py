"""Several processes training one run (`torchrun --nproc_per_node N -m lionfer train ...`).

The rule that makes N processes equal one: every process takes its share of the same global
batch, runs the model on its own images, and gathers the outputs of all shares (in rank order,
which is the global batch order). The algorithm then sees the whole global batch on every
process, computes the one-process loss and applies the same per-sample and per-class updates, so
its state stays identical everywhere. The gather passes back each process's own rows of the
gradient, times N; DistributedDataParallel averages over the N processes, which gives the
one-process gradient. BatchNorm statistics are taken over the global batch too
(train.sync_batchnorm).

Comm is the communication object algorithms and the Trainer use; LOCAL (one process) makes every
operation the identity, so one code path serves both.
"""

from __future__ import annotations

import datetime
import gc
import os
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from lionfer.errors import ConfigError, InputError, RuntimeFailure
from lionfer.processes import launched

TIMEOUT = datetime.timedelta(minutes=60)  # the main process may evaluate while others wait
T = TypeVar("T")


class StoppedElsewhere(SystemExit):
    """Raised in a process whose run another process refused before training (the main one, as
    a rule): that process reports the error; this one exits with its exit code (2 for an
    InputError, else 1) without a message of its own, so the error is printed once."""


def exit_code(error: BaseException) -> int:
    """The command line's exit code for an error raised before training."""
    return 2 if isinstance(error, InputError) else 1


class Comm:
    """One process: every collective is the identity."""

    rank = 0
    world_size = 1
    local_rank = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rows of every process, concatenated in rank order; the gradient flows back to this
        process's own rows."""
        return tensor

    def gather_views(self, tensor: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
        """`tensor` holds this process's rows of several views back to back (sizes); returns
        each view's rows from every process, in global batch order."""
        return list(torch.split(tensor, list(sizes)))

    def local(self, tensor: torch.Tensor) -> torch.Tensor:
        """This process's rows of a tensor of the global batch."""
        return tensor

    def agree(self, value: int) -> int:
        """The largest of the processes' values (e.g. a signal received by any of them)."""
        return value

    def barrier(self) -> None:
        """Wait for every process."""

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """The main process's values of `tensor` (a CPU tensor of the same shape and dtype in
        every process), written into it in every process."""
        return tensor

    def check_identical(self, tensors: dict[str, torch.Tensor], what: str) -> None:
        """RuntimeFailure when a process holds other values than the main one."""

    def settle(self, work: Callable[[], T]) -> T:
        """work() in every process (what it does may differ between them, e.g. the main process
        alone takes the run folder), then every process learns whether it failed in any: a
        collective, so that no process waits for one that stopped. A process where it failed
        raises its error when the main process did not fail, or is the main one; every other
        process raises StoppedElsewhere, or, the main process, an error naming the process that
        failed. With one process: work()."""
        return work()


LOCAL = Comm()


class _GatherRows(torch.autograd.Function):
    """all_gather of rows with a gradient: every process computes the same loss on the gathered
    rows, so each passes back the gradient of its own rows, times the number of processes
    (DistributedDataParallel divides the summed parameter gradients by it)."""

    @staticmethod
    def forward(ctx, tensor, comm):
        ctx.rank, ctx.world, ctx.rows = comm.rank, comm.world_size, len(tensor)
        parts = [torch.empty_like(tensor) for _ in range(comm.world_size)]
        dist.all_gather(parts, tensor.contiguous(), group=comm.group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        own = grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]
        return own * ctx.world, None


class ProcessGroup(Comm):
    """The processes torchrun started, joined in a torch.distributed process group."""

    def __init__(self, rank: int, world_size: int, local_rank: int, group, control):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.group = group
        self.control = control  # a gloo group for small host-side messages

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.requires_grad:
            return _GatherRows.apply(tensor, self)
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous(), group=self.group)
        return torch.cat(parts)

    def gather_views(self, tensor: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
        rows = self.gather(tensor).view(self.world_size, len(tensor), *tensor.shape[1:])
        return [part.reshape(-1, *tensor.shape[1:]) for part in rows.split(list(sizes), dim=1)]

    def local(self, tensor: torch.Tensor) -> torch.Tensor:
        share = len(tensor) // self.world_size
        return tensor[self.rank * share : (self.rank + 1) * share]

    def agree(self, value: int) -> int:
        flag = torch.tensor([value], dtype=torch.long)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.control)
        return int(flag)

    def barrier(self) -> None:
        dist.barrier(group=self.control)

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.broadcast(tensor, src=0, group=self.control)
        return tensor

    def settle(self, work: Callable[[], T]) -> T:
        error, result = None, None
        try:
            result = work()
        except Exception as caught:  # InputError, or a failure only this process met
            error = caught
        code = torch.tensor([exit_code(error) if error is not None else 0], dtype=torch.long)
        codes = [torch.empty_like(code) for _ in range(self.world_size)]
        dist.all_gather(codes, code, group=self.control)
        failed = {rank: int(c) for rank, c in enumerate(codes) if int(c)}
        if not failed:
            return result
        if error is not None and (self.is_main or 0 not in failed):
            raise error
        first = min(failed)
        if self.is_main:
            kind = InputError if failed[first] == 2 else RuntimeFailure
            raise kind(f"process {first} of {self.world_size} stopped the run: see its error")
        raise StoppedElsewhere(failed[first])

    def check_identical(self, tensors: dict[str, torch.Tensor], what: str) -> None:
        digests = torch.stack([digest(t) for t in tensors.values()]) if tensors else None
        if digests is None:
            return
        parts = [torch.empty_like(digests) for _ in range(self.world_size)]
        dist.all_gather(parts, digests, group=self.control)
        for rank, part in enumerate(parts[1:], start=1):
            differs = (part != parts[0]).any(dim=1)
            if bool(differs.any()):
                names = [n for n, d in zip(tensors, differs.tolist(), strict=True) if d]
                raise RuntimeFailure(
                    f"{what}: process {rank} holds other values of {', '.join(names)} than "
                    "process 0; the processes diverged: a non-deterministic operation on the "
                    "device, or state computed from each process's own BatchNorm statistics "
                    "(train.sync_batchnorm=false, or a BatchNorm layer it could not "
                    "synchronise). The last checkpoint is that of process 0; resume from it"
                )


def digest(tensor: torch.Tensor) -> torch.Tensor:
    """(2,) float64 on the CPU: the sum and a position-weighted sum of the values, equal for
    equal tensors and almost surely different otherwise."""
    values = tensor.detach().reshape(-1).double().cpu()
    weights = torch.arange(1, len(values) + 1, dtype=torch.float64).remainder(9973) + 1
    return torch.stack([values.sum(), (values * weights).sum()])


def join(device: torch.device) -> Comm:
    """LOCAL outside torchrun; else this process joins the run's process group (nccl for GPUs,
    gloo for CPUs). `device` is the configured device (cuda: this process's GPU is picked by
    its local rank)."""
    if not launched():
        return LOCAL
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    control = dist.new_group(backend="gloo", timeout=TIMEOUT) if backend != "gloo" else None
    return ProcessGroup(rank, world, local_rank, dist.group.WORLD, control or dist.group.WORLD)


def leave(comm: Comm, finished: bool = True) -> None:
    """Leave the process group: after the others when the run finished here, at once after a
    failure (a process that failed never joins a barrier again)."""
    if isinstance(comm, ProcessGroup) and dist.is_initialized():
        gc.collect()  # a DistributedDataParallel model left in a reference cycle holds the group
        if finished:
            comm.barrier()
        dist.destroy_process_group()


def process_device(device: torch.device, comm: Comm) -> torch.device:
    """This process's device: with several processes on GPUs, the one of its local rank."""
    if comm.world_size == 1 or device.type != "cuda":
        return device
    if device.index not in (None, comm.local_rank):
        raise ConfigError(
            f"train.device={device} with {comm.world_size} processes: each process uses the GPU "
            "of its local rank; use train.device=cuda or auto"
        )
    return torch.device("cuda", comm.local_rank)


def check_divisible(sizes: dict[str, int], comm: Comm) -> None:
    """The global batch must split into equal shares. A resumed run keeps its batch sizes, so
    the refusal also names the process counts that share them."""
    for key, size in sizes.items():
        if size % comm.world_size:
            counts = [n for n in range(1, 65) if all(s % n == 0 for s in sizes.values())]
            raise ConfigError(
                f"{key}={size} is the global batch, which {comm.world_size} processes share "
                f"equally: make it a multiple of {comm.world_size}, or start "
                f"{' or '.join(map(str, counts))} processes (a resumed run keeps its batch sizes)"
            )


def global_labels(batch, comm: Comm):
    """The Batch with, for several processes, the labels and indices of the whole global batch
    (one small collective); the images stay this process's share."""
    if comm.world_size == 1:
        return batch
    parts = [batch.y_lb, batch.idx_lb] + ([batch.idx_ulb] if batch.idx_ulb is not None else [])
    gathered = comm.gather_views(torch.cat(parts), [len(p) for p in parts])
    batch.y_lb, batch.idx_lb = gathered[0], gathered[1]
    batch.idx_ulb = gathered[2] if batch.idx_ulb is not None else None
    return batch


# ---- BatchNorm over the global batch ----


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, on any device (torch's
    SyncBatchNorm needs a GPU): per-channel sums and sums of squares, in float64, summed over the
    processes with a gradient."""

    comm: Comm = LOCAL

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.comm.world_size == 1:
            return super().forward(x)
        dims = [0, 2, 3]
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64, device=x.device)
        stats = torch.cat([x.double().sum(dims), (x.double() ** 2).sum(dims), count])
        stats = _all_reduce_sum(stats, self.comm)
        c, n = x.shape[1], stats[-1]
        mean = stats[:c] / n
        var = stats[c : 2 * c] / n - mean**2
        self._track(mean.detach(), var.detach(), n.detach())
        shape = (1, c, 1, 1)
        scale = torch.rsqrt(var + self.eps).float().view(shape)
        out = (x - mean.float().view(shape)) * scale
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1 / int(self.num_batches_tracked)
        unbiased = var * n / (n - 1).clamp_min(1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes; the gradient of every process's input is the sum of the
    gradients of the output (each process used the sum)."""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        total = tensor.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx, grad):
        total = grad.clone()
        dist.all_reduce(total, group=ctx.group)
        return total, None


def _all_reduce_sum(tensor: torch.Tensor, comm: Comm) -> torch.Tensor:
    return _AllReduceSum.apply(tensor, comm.group)


def sync_batchnorm(model: nn.Module, comm: Comm, device: torch.device) -> nn.Module:
    """The model with its BatchNorm layers taking global-batch statistics: torch's (or, for timm
    models, timm's) SyncBatchNorm on GPUs; on CPUs GlobalBatchNorm in place of every
    nn.BatchNorm2d, and GlobalBatchNormAct in place of timm's BatchNormAct2d (other BatchNorm
    layers keep each process's statistics there: see unsynced_batchnorms). Parameters and
    buffers are kept (the same tensors)."""
    if comm.world_size == 1:
        return model
    if device.type == "cuda":
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if any(type(m).__module__.startswith("timm.") for m in norms):
            from timm.layers import convert_sync_batchnorm  # keeps timm's fused activations

            return convert_sync_batchnorm(model)
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    norm_act = _timm_batchnorm_act()
    for name, module in list(model.named_modules()):
        if type(module) is nn.BatchNorm2d or (norm_act and type(module) is norm_act):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, _global_copy(module, comm))
    return model


def unsynced_batchnorms(model: nn.Module) -> list[str]:
    """The types of the model's BatchNorm layers that keep each process's statistics (after
    sync_batchnorm: those it does not convert on CPUs), sorted, each once."""
    synced = (GlobalBatchNorm, nn.SyncBatchNorm)
    return sorted(
        {
            f"{type(m).__module__}.{type(m).__qualname__}"
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, synced)
        }
    )


def _timm_batchnorm_act() -> type | None:
    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # timm is optional
        return None
    return BatchNormAct2d


class GlobalBatchNormAct(GlobalBatchNorm):
    """GlobalBatchNorm followed by the dropout and activation of the timm BatchNormAct2d it
    replaces (the same submodules, so the state dict keeps its keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


def _global_copy(module: nn.BatchNorm2d, comm: Comm) -> GlobalBatchNorm:
    kind = GlobalBatchNormAct if hasattr(module, "act") else GlobalBatchNorm
    new = kind(
        module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
    )
    if kind is GlobalBatchNormAct:
        new.drop, new.act = module.drop, module.act
    new.comm = comm
    new.train(module.training)
    if module.affine:
        new.weight, new.bias = module.weight, module.bias
    if module.track_running_stats:
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
    return new.to(module.weight.device if module.affine else module.running_mean.device)


def wrap(model: nn.Module, comm: Comm, device: torch.device, synced_batchnorm: bool) -> nn.Module:
    """The training model: DistributedDataParallel with several processes (buffers broadcast from
    the main process before every forward unless every BatchNorm layer is synchronised; the
    main process warns of those that are not), the model itself with one."""
    if comm.world_size == 1:
        return model
    unsynced = unsynced_batchnorms(model) if synced_batchnorm else []
    if unsynced and comm.is_main:
        warnings.warn(
            f"train.sync_batchnorm=true leaves {', '.join(unsynced)} on {device.type} to each "
            "process's own statistics (the main process's running statistics are given to the "
            "others before every step): several processes do not train exactly what one would",
            stacklevel=2,
        )
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        forward_sync_buffers=not synced_batchnorm or bool(unsynced),
    )
