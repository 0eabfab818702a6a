"""Batch streams for training and evaluation.

Training streams are infinite: epoch e of a stream is a seeded permutation, and every draw gets its
own augmentation seed, so the stream is a pure function of (seed, position). Resuming at step s
restarts the stream at position s and reproduces an uninterrupted run exactly. In a run of several
processes each one takes its share (shard) of the same global batches, whose size is the batch
size of the run. Views are made by loader workers on the CPU (stream_loader) or, from the uint8
image cache, on the training device (DeviceStream).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from lionfer.data.base import ImageSet
from lionfer.data.batch_augment import views_of
from lionfer.data.cache import pixels_of

Transform = Callable[..., torch.Tensor]


class ViewDataset(Dataset):
    """Items are (index, seed) pairs; returns (view_1, ..., view_k, label, index)."""

    def __init__(self, images: ImageSet, views: tuple[Transform, ...]):
        self.images = images
        self.views = views

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        image = self.images.load(index)
        with torch.random.fork_rng(devices=[]):
            state = random.getstate()
            # the CPU generator only: torch.manual_seed would also reseed every accelerator's
            # generator (and, on CPU, spend a tenth of a training step finding none)
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            tensors = [view(image) for view in self.views]
            random.setstate(state)
        return (*tensors, int(self.images.labels[index]), index)


class StreamSampler:
    """Infinite batches of (index, seed) from seeded permutations of range(n).

    Each permutation (an epoch) gives n // batch_size batches and drops its last n % batch_size
    indices (other ones every epoch), so no index appears twice in a batch: per-sample state is
    written once per step. A set smaller than one batch is cycled instead (repeats are then
    unavoidable). Batch k is a pure function of (seed, stream, k).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        stream: int,
        start_batch: int = 0,
        shard: tuple[int, int] = (0, 1),
    ):
        if n <= 0:
            raise ValueError("cannot draw batches from an empty set")
        rank, shards = shard
        if batch_size % shards:
            raise ValueError(f"a batch of {batch_size} does not split into {shards} equal shares")
        self.n, self.batch_size, self.seed, self.stream = n, batch_size, seed, stream
        self.start_batch = start_batch
        self.share = slice(rank * batch_size // shards, (rank + 1) * batch_size // shards)
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(hash((self.seed, self.stream, epoch)) % 2**62)
            self._perm, self._epoch = torch.randperm(self.n, generator=generator), epoch
        return self._perm

    def positions(self, k: int) -> list[tuple[int, int]]:
        """(epoch, offset) of each item of batch k."""
        per_epoch = self.n // self.batch_size
        if per_epoch == 0:  # smaller than a batch: cycle through the permutations
            return [divmod(k * self.batch_size + i, self.n) for i in range(self.batch_size)]
        epoch, first = divmod(k, per_epoch)
        return [(epoch, first * self.batch_size + i) for i in range(self.batch_size)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        """This shard's (index, seed) items of global batch k, k = start_batch, ..."""
        k = self.start_batch
        while True:
            yield self.batch(k)[self.share]
            k += 1

    def batch(self, k: int) -> list[tuple[int, int]]:
        """Global batch k: (index, augmentation seed) per item."""
        items = []
        for i, (epoch, offset) in enumerate(self.positions(k)):
            sample_seed = hash((self.seed, self.stream, k * self.batch_size + i)) % 2**62
            items.append((int(self._permutation(epoch)[offset]), sample_seed))
        return items


def private_generator(seed: int) -> torch.Generator:
    """Samples are reseeded individually; a private generator keeps DataLoader from drawing its
    base seed from the global RNG, which would make a resumed run's dropout diverge."""
    return torch.Generator().manual_seed(seed)


def stream_loader(
    images: ImageSet,
    views: tuple[Transform, ...],
    batch_size: int,
    seed: int,
    stream: int,
    start_batch: int,
    num_workers: int,
    pin_memory: bool,
    shard: tuple[int, int] = (0, 1),
) -> DataLoader:
    """This process's share of each global batch of `batch_size`, views made by workers."""
    sampler = StreamSampler(len(images), batch_size, seed, stream, start_batch, shard)
    return DataLoader(
        ViewDataset(images, views),
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        generator=private_generator(seed),
    )


class DeviceStream:
    """Training batches with their views made on the training device (data.augment_on=device):
    the same (index order, per batch) as the CPU stream, uint8 images gathered from the cache,
    one pinned non-blocking copy, then lionfer.data.batch_augment's batched views. Yields
    (view_1, ..., view_k, labels, indices) like stream_loader, already on the device."""

    def __init__(
        self,
        images: ImageSet,
        views: tuple[str, ...],
        batch_size: int,
        seed: int,
        stream: int,
        start_batch: int,
        device: torch.device,
        normalisation: tuple,
        shard: tuple[int, int] = (0, 1),
    ):
        self.pixels = pixels_of(images)  # (N, S, S, 3) uint8, shared, never copied whole
        self.labels = torch.as_tensor(images.labels)
        self.views, self.batch_size, self.seed, self.stream = views, batch_size, seed, stream
        self.device = torch.device(device)
        self.mean, self.std = (torch.tensor(v).to(self.device) for v in normalisation)  # once
        self.sampler = StreamSampler(len(images), batch_size, seed, stream, start_batch)
        rank, shards = shard
        self.share = slice(rank * batch_size // shards, (rank + 1) * batch_size // shards)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        k = self.sampler.start_batch
        while True:
            yield self.batch(k)
            k += 1

    def batch(self, k: int) -> tuple[torch.Tensor, ...]:
        indices = torch.tensor([index for index, _ in self.sampler.batch(k)[self.share]])
        pixels, labels = self.pixels.index_select(0, indices), self.labels[indices]  # (b, S, S, 3)
        if self.device.type == "cuda":  # pinned, so that the copies do not block
            pixels, labels, indices = (t.pin_memory() for t in (pixels, labels, indices))
        x = pixels.to(self.device, non_blocking=True).permute(0, 3, 1, 2)  # (b, 3, S, S)
        generator = torch.Generator().manual_seed(hash((self.seed, self.stream, k)) % 2**62)
        views = views_of(
            x, self.views, self.mean, self.std, generator, self.batch_size, self.share.start
        )
        move = {"device": self.device, "non_blocking": True}
        return (*views, labels.to(**move), indices.to(**move))


def eval_loader(
    images: ImageSet,
    transform: Transform,
    batch_size: int,
    num_workers: int = 0,
    seed: int = 0,
) -> DataLoader:
    """Every image once, in order. A random transform draws image i's augmentation from
    (seed, i), so a pass is a pure function of its seed."""
    items = [(i, hash((seed, i)) % 2**62) for i in range(len(images))]
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    return DataLoader(
        ViewDataset(images, (transform,)),
        batch_sampler=batches,
        num_workers=num_workers,
        generator=private_generator(0),
    )
