"""The training batch streams: unique indices within a batch, full coverage, exact resume, one
process's share of a global batch, the uint8 image cache and views made on the device."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lionfer.data import transforms
from lionfer.data.base import ImageSet
from lionfer.data.cache import cache_images
from lionfer.data.loaders import DeviceStream, StreamSampler, ViewDataset


def batches(sampler, count):
    stream = iter(sampler)
    return [next(stream) for _ in range(count)]


def test_no_index_twice_in_a_batch_across_epoch_boundaries():
    sampler = StreamSampler(n=10, batch_size=4, seed=0, stream=0)
    for batch in batches(sampler, 50):
        indices = [i for i, _ in batch]
        assert len(set(indices)) == 4


def test_each_epoch_draws_distinct_indices_and_drops_the_remainder():
    sampler = StreamSampler(n=10, batch_size=4, seed=3, stream=1)
    first_epoch = [i for batch in batches(sampler, 2) for i, _ in batch]
    assert len(set(first_epoch)) == 8  # 2 batches of 4 from one permutation, 2 left out
    seen = {i for batch in batches(sampler, 40) for i, _ in batch}
    assert seen == set(range(10))  # other indices are left out in other epochs


def test_stream_is_a_pure_function_of_the_batch_position():
    full = batches(StreamSampler(n=7, batch_size=3, seed=1, stream=0), 12)
    resumed = batches(StreamSampler(n=7, batch_size=3, seed=1, stream=0, start_batch=5), 7)
    assert resumed == full[5:]
    other_seed = batches(StreamSampler(n=7, batch_size=3, seed=2, stream=0), 12)
    assert other_seed != full


def test_a_set_smaller_than_a_batch_is_cycled():
    sampler = StreamSampler(n=3, batch_size=5, seed=0, stream=0)
    first, second = batches(sampler, 2)
    assert sorted(i for i, _ in first[:3]) == [0, 1, 2]
    assert len(first) == len(second) == 5


def test_shards_of_a_global_batch_are_its_slices_in_rank_order():
    whole = batches(StreamSampler(n=20, batch_size=6, seed=4, stream=1), 5)
    shards = [batches(StreamSampler(20, 6, 4, 1, shard=(r, 3)), 5) for r in range(3)]
    for k in range(5):
        assert shards[0][k] + shards[1][k] + shards[2][k] == whole[k]  # same indices and seeds
    with pytest.raises(ValueError, match="batch of 6 does not split into 4 equal shares"):
        StreamSampler(20, 6, 4, 1, shard=(0, 4))


def png_folder(root: Path, n: int = 6, size: int = 19) -> ImageSet:
    paths = []
    for i in range(n):
        pixels = np.random.default_rng(i).integers(0, 256, (size, size + 3, 3), dtype=np.uint8)
        paths.append(root / f"{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return ImageSet([str(p) for p in paths], np.arange(n) % 3)


def test_the_image_cache_resizes_once_and_gives_the_same_weak_views(tmp_path):
    files = png_folder(tmp_path)
    cached = cache_images(files, 24)
    assert cached.images.shape == (6, 24, 24, 3) and cached.images.dtype == np.uint8
    assert cache_images(cached, 24) is cached  # already cached: no copy
    weak = transforms.weak(24, (0.5,) * 3, (0.5,) * 3)
    from_files, from_cache = ViewDataset(files, (weak,)), ViewDataset(cached, (weak,))
    for item in [(0, 11), (3, 12), (5, 99)]:
        assert torch.equal(from_files[item][0], from_cache[item][0])


def test_device_views_follow_the_stream_order_and_split_into_shares(tmp_path):
    images = cache_images(png_folder(tmp_path, n=9), 16)
    norm = ((0.5,) * 3, (0.25,) * 3)
    whole = DeviceStream(images, ("weak", "strong"), 4, 3, 1, 2, torch.device("cpu"), norm)
    shares = [
        DeviceStream(images, ("weak", "strong"), 4, 3, 1, 2, torch.device("cpu"), norm, (r, 2))
        for r in range(2)
    ]
    sampler = StreamSampler(9, 4, seed=3, stream=1, start_batch=2)
    for k, (order, batch) in enumerate(zip(iter(sampler), whole, strict=False)):
        assert batch[-1].tolist() == [i for i, _ in order]
        assert batch[-2].tolist() == [int(images.labels[i]) for i, _ in order]
        assert batch[0].shape == batch[1].shape == (4, 3, 16, 16)
        halves = [share.batch(2 + k) for share in shares]
        for part in range(4):
            assert torch.equal(torch.cat([h[part] for h in halves]), batch[part])
        if k == 2:
            break
    again = next(iter(DeviceStream(images, ("weak", "strong"), 4, 3, 1, 2, "cpu", norm)))
    assert torch.equal(again[1], whole.batch(2)[1])  # a pure function of (seed, stream, k)


def test_a_view_depends_on_its_seed_alone_and_leaves_the_global_generators_alone(tmp_path):
    strong = transforms.strong(24, (0.5,) * 3, (0.5,) * 3)
    views = ViewDataset(png_folder(tmp_path), (strong, strong))
    torch.manual_seed(1)
    first = views[(2, 7)]
    torch.manual_seed(2)  # another global state: the same views
    before = torch.random.get_rng_state()
    again = views[(2, 7)]
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream untouched
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], first[1])  # the views of one item differ
    assert not torch.equal(views[(2, 8)][0], first[0])  # another seed, another view
