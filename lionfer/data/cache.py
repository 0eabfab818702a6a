"""The uint8 image cache: a training set decoded once and resized to data.image_size, held in
memory (data.cache_images, and always with data.augment_on=device), so that no loader worker
decodes or resizes a file again and the device path can gather batches of pixels.

The resize is the first step of every training transform (PIL bilinear to S×S), so weak views
from the cache are the views without it; RandAugment (strong views) then works on the resized
image instead of the original.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from lionfer.data.base import ImageSet

DECODE_BATCH = 64


class _Resized(Dataset):
    def __init__(self, images: ImageSet, size: int):
        self.images, self.size = images, size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> np.ndarray:
        image = self.images.load(i)
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def is_cached(images: ImageSet, size: int) -> bool:
    """True when the images already are what the cache holds: uint8 (N, S, S, 3) in memory."""
    array = images.images
    return (
        not images.is_files
        and array.dtype == np.uint8
        and array.ndim == 4
        and array.shape[1:] == (size, size, 3)
    )


def cache_images(
    images: ImageSet, size: int, num_workers: int = 0, progress: bool = False, what: str = ""
) -> ImageSet:
    """The same set with its images decoded (cropped to their boxes), resized to S×S and held as
    one uint8 array (N, S, S, 3); decoded by `num_workers` processes."""
    if is_cached(images, size):
        return images
    pixels = np.empty((len(images), size, size, 3), dtype=np.uint8)
    loader = DataLoader(
        _Resized(images, size),
        batch_size=DECODE_BATCH,
        num_workers=num_workers,
        collate_fn=np.stack,
    )
    desc = f"caching {what} images at {size} px ({pixels.nbytes / 2**20:.0f} MiB)"
    start = 0
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        pixels[start : start + len(batch)] = batch
        start += len(batch)
    return ImageSet(pixels, images.labels, images.true_labels, images.ids, None)


def cache_bytes(sets: list[ImageSet], size: int) -> int:
    """The bytes cache_images would hold for these sets at S×S (0 for those already cached)."""
    return sum(len(images) * size * size * 3 for images in sets if not is_cached(images, size))


def available_memory() -> int | None:
    """Bytes of memory this process may still take: Linux's MemAvailable, capped by the cgroup's
    limit less its use (a container's); None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    for limit, used in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit, encoding="ascii") as f:
                cap = f.read().strip()
            with open(used, encoding="ascii") as f:
                use = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 2**60:  # "max", or v1's huge number: no limit
            found.append(max(0, int(cap) - use))
        break
    return min(found) if found else None


def pixels_of(images: ImageSet) -> torch.Tensor:
    """The cache as a (N, S, S, 3) uint8 tensor sharing its memory."""
    return torch.from_numpy(images.images)
