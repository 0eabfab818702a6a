"""Building a run's parts from its config: the data section and the checks on it, the model
(with its pretrained weights), its EMA and the wrapping for several processes, the algorithm, the
optimiser, and the training streams (where `data.augment_on` picks the views' maker)."""

from __future__ import annotations

import dataclasses
import random
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np
import torch

from lionfer.algorithms.base import Algorithm, AlgorithmInfo
from lionfer.config import Config
from lionfer.data import transforms
from lionfer.data.base import ImageSet
from lionfer.data.cache import available_memory, cache_bytes, cache_images
from lionfer.data.loaders import DeviceStream, stream_loader
from lionfer.data.pipeline import RunData
from lionfer.distributed import Comm, check_divisible, sync_batchnorm, wrap
from lionfer.errors import ConfigError, InputError, MissingInputError
from lionfer.models import build_model, load_weights
from lionfer.registry import ALGORITHMS
from lionfer.training.ema import ModelEMA


def data_config(cfg: Config):
    """The data section a run is built from: every training image labeled when the algorithm
    declares uses_all_labels (data.num_labels is then ignored)."""
    if ALGORITHMS.get(cfg.algorithm.name).uses_all_labels:
        return dataclasses.replace(cfg.data, num_labels=-1)
    return cfg.data


def check_batch_sizes(cfg: Config, comm: Comm) -> None:
    """The global batches split evenly over the processes of the run."""
    sizes = {"train.batch_size": cfg.train.batch_size}
    sizes["batch_size x unlabeled_ratio"] = cfg.train.batch_size * cfg.train.unlabeled_ratio
    check_divisible(sizes, comm)


def check_all_labeled(cfg: Config, run_data: RunData) -> None:
    """An algorithm that uses every label must not get a split that hides some (a split file)."""
    hidden = int((run_data.data.train.labels[run_data.split.unlabeled] >= 0).sum())
    if ALGORITHMS.get(cfg.algorithm.name).uses_all_labels and hidden:
        raise ConfigError(
            f"algorithm {cfg.algorithm.name} trains on every training image, but the split "
            f"{cfg.data.split_file or ''} leaves {hidden} of them unlabeled; drop "
            "data.split_file, or use a split made with data.num_labels=-1"
        )


def check_unlabeled(cfg: Config, run_data: RunData) -> None:
    """A semi-supervised algorithm (one with unlabeled `views`) needs unlabeled images: with
    every training image labeled (data.num_labels=-1, the whole budget, or such a split file)
    and no folder of unlabeled images, it has none to draw from."""
    if not ALGORITHMS.get(cfg.algorithm.name).views or len(run_data.unlabeled) > 0:
        return
    data = cfg.data
    budget = f"data.num_labels={data.num_labels}"
    split = f"the split {data.split_file}" if data.split_file else budget
    folder = "add a folder of unlabeled images (data.unlabeled_root), " * (data.dataset == "folder")
    if data.dataset == "folder" and data.unlabeled_root:  # given, and every image in it dropped
        folder = (
            f"give data.unlabeled_root a folder of other images (none of {data.unlabeled_root} "
            "is left: copies of labeled or test images are dropped, as the dataset's notes "
            "say), "
        )
    raise ConfigError(
        f"algorithm {cfg.algorithm.name} learns from unlabeled images, but {split} labels all "
        f"{len(run_data.labeled)} training images and leaves none unlabeled; lower "
        f"data.num_labels, {folder}or train with algorithm.name=supervised"
    )


def check_cache_memory(cfg: Config, run_data: RunData) -> None:
    """The uint8 cache (data.cache_images, and data.augment_on=device, which implies it) must
    fit in the memory left: refused before the run starts, where it would fail part-way (or be
    killed without a word) after decoding."""
    data = cfg.data
    if not (data.cache_images or data.augment_on == "device"):
        return
    sets = [run_data.labeled, run_data.unlabeled]
    need, free = cache_bytes(sets, data.image_size), available_memory()
    if free is None or need <= free:
        return
    asked = "data.cache_images=true" if data.cache_images else "data.augment_on=device"
    count = sum(len(images) for images in sets)
    raise InputError(
        f"{asked} holds the {count} training images decoded at {data.image_size} px: "
        f"{need / 2**30:.2f} GiB, but {free / 2**30:.2f} GiB of memory is available. Set "
        "data.cache_images=false and data.augment_on=cpu (loader workers decode each batch), "
        "lower data.image_size, or free memory"
    )


def check_labeled_classes(cfg: Config, run_data: RunData) -> None:
    """Every algorithm learns which class an image is from labeled images: a labeled set that
    names one class alone (a dataset of one class, one class folder with images, or
    data.num_labels=1) trains a model that predicts that class for every image."""
    labeled = np.unique(run_data.labeled.labels[run_data.labeled.labels >= 0])
    if len(labeled) >= 2:
        return
    names = run_data.data.class_names
    train = run_data.data.train.labels
    with_images = [names[c] for c in np.unique(train[train >= 0])]
    needs = "a classifier needs labeled images of two classes at least"
    if len(names) < 2:
        problem = f"the data has one class ({names[0]})" if names else "the data has no class"
    elif len(with_images) < 2:
        problem = (
            f"only {len(with_images)} of the data's {len(names)} classes has training images "
            f"({', '.join(with_images) or 'none'})"
        )
    else:
        fix = (
            f"use a split whose labeled images hold two classes (not {cfg.data.split_file})"
            if cfg.data.split_file
            else f"raise data.num_labels to at least {len(with_images)}, one image a class"
        )
        raise ConfigError(
            f"the labeled images name {len(labeled)} class "
            f"({', '.join(names[c] for c in labeled) or 'none'}) of the {len(with_images)} with "
            f"training images: {needs}, or the model predicts one class for every image; {fix}"
        )
    raise ConfigError(
        f"{problem}: {needs}, or the model predicts one class for every image; add the images "
        "of at least one more class (data.dataset=folder: a folder per class)"
    )


def memory_format(cfg: Config) -> torch.memory_format:
    return torch.channels_last if cfg.train.channels_last else torch.preserve_format


def autocast(device: torch.device):
    """The precision of a training step: bf16 autocast on CUDA, nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def seed_device_rng(cfg: Config, comm: Comm, device: torch.device, step: int) -> None:
    """With several processes on GPUs, each draws its own dropout masks: the GPU generator is
    seeded by (seed, rank, step); the CPU generator, which the algorithms draw from, stays the
    same on every process."""
    if comm.world_size > 1 and device.type == "cuda":
        torch.cuda.manual_seed(hash((cfg.seed, comm.rank, step)) % 2**62)


def build_algorithm(cfg: Config, run_data: RunData, model) -> Algorithm:
    """The run's algorithm, told what it may know of the data and the model."""
    info = AlgorithmInfo(
        run_data.num_classes,
        len(run_data.labeled),
        len(run_data.unlabeled),
        model.feature_dim,
        torch.as_tensor(run_data.labeled.labels),
        tuple(run_data.data.class_names),
    )
    return ALGORITHMS.get(cfg.algorithm.name)(cfg.algorithm.params, info)


class Parts(NamedTuple):
    """What the loop trains: the model, its EMA (plain BatchNorm: evaluated alone), the model as
    trained (wrapped for several processes, compiled when asked), the algorithm and the
    optimiser; and where the weights came from."""

    model: torch.nn.Module
    ema: ModelEMA
    train_model: torch.nn.Module
    algorithm: Algorithm
    optimizer: torch.optim.Optimizer
    weights_message: str


def build_parts(
    cfg: Config, run_data: RunData, device: torch.device, comm: Comm, pretrained: bool = True
) -> Parts:
    """The run's parts, seeded by cfg.seed, in the order that fixes their initial state;
    pretrained=False leaves model.pretrained unread (a resumed run's checkpoint holds the
    weights since)."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    def weighted() -> tuple[torch.nn.Module, str]:
        model = build_model(dataclasses.replace(cfg.model, pretrained=""), run_data.num_classes)
        weights_message = "random init"
        if cfg.model.pretrained and pretrained:
            weights_message = load_pretrained(model, cfg.model, run_data.data.class_names)
        return model, weights_message

    # A weights file missing on one node fails there alone: every process learns of it before
    # the wrapping's collectives, where the others would wait.
    model, weights_message = comm.settle(weighted)
    model.to(device, memory_format=memory_format(cfg))
    ema = ModelEMA(model, cfg.train.ema_decay)
    synced = cfg.train.sync_batchnorm and comm.world_size > 1
    if synced:
        model = sync_batchnorm(model, comm, device)
    train_model = wrap(model, comm, device, synced)
    if cfg.train.compile:
        train_model = torch.compile(train_model)
    seed_device_rng(cfg, comm, device, 0)
    algorithm = build_algorithm(cfg, run_data, model)
    algorithm.comm = comm
    algorithm.to(device)
    optimizer = build_optimizer(cfg, model, algorithm, device)
    return Parts(model, ema, train_model, algorithm, optimizer, weights_message)


def build_optimizer(cfg: Config, model, algorithm: Algorithm, device) -> torch.optim.Adam:
    """Adam over the model and the algorithm's own modules (e.g. a rotation head)."""
    groups = [{"params": model.parameters()}]
    if algorithm.modules() is not None:
        groups.append({"params": algorithm.modules().parameters()})
    cuda = device.type == "cuda"
    return torch.optim.Adam(  # fused on a GPU: one kernel, no host reads;
        groups,  # on a CPU the multi-tensor update, which computes what the per-tensor one does
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
        fused=True if cuda else None,
        foreach=None if cuda else True,
    )


def load_pretrained(model: torch.nn.Module, model_cfg, class_names=None) -> str:
    """model.pretrained loaded into the model (a file, or a packaged weight set's name), a
    lionfer checkpoint's head matched to the run's classes (class_names) by name."""
    try:
        return load_weights(
            model, model_cfg.name, model_cfg.pretrained, list(class_names or []) or None
        )
    except InputError:
        raise
    except FileNotFoundError as error:
        raise MissingInputError(_named_setting(error)) from error
    except ValueError as error:
        raise InputError(_named_setting(error)) from error


def _named_setting(error: Exception) -> str:
    """The error's text led by the setting it is about, once (the packaged weights' messages
    name model.pretrained=imagenet already)."""
    text = str(error)
    return text if text.startswith("model.pretrained") else f"model.pretrained: {text}"


def training_sets(cfg: Config, run_data: RunData, progress: bool) -> tuple[ImageSet, ImageSet]:
    """The labeled and unlabeled training images, through the uint8 cache when asked (or
    when the views are made on the device, which needs it)."""
    data, rd = cfg.data, run_data
    if not (data.cache_images or data.augment_on == "device"):
        return rd.labeled, rd.unlabeled
    return tuple(
        cache_images(images, data.image_size, data.num_workers, progress, what)
        for images, what in ((rd.labeled, "labeled"), (rd.unlabeled, "unlabeled"))
    )


def loaders(cfg, run_data, views, model, device, comm: Comm, step: int, progress: bool):
    """The labeled stream (weak views) and, for an algorithm with `views`, the unlabeled one,
    from batch `step` on."""
    labeled_set, unlabeled_set = training_sets(cfg, run_data, progress)
    sizes = (cfg.train.batch_size, cfg.train.batch_size * cfg.train.unlabeled_ratio)
    streams = [(labeled_set, ("weak",), sizes[0], 0)]
    if views:
        streams.append((unlabeled_set, views, sizes[1], 1))
    made = [stream(cfg, *s, step, model, device, comm) for s in streams]
    return made[0], (made[1] if len(made) > 1 else None)


def stream(cfg, images, views: tuple[str, ...], batch_size: int, index: int, step: int, model,
           device, comm: Comm):  # fmt: skip
    """This process's share of stream `index`, global batches of `batch_size` from `step` on:
    views made on the device (data.augment_on=device) or by the loader's workers."""
    mean, std = model.mean, model.std
    shard = (comm.rank, comm.world_size)
    if cfg.data.augment_on == "device":
        return DeviceStream(images, views, batch_size, cfg.seed, index, step, device, (mean, std),
                            shard)  # fmt: skip
    size = cfg.data.image_size
    return stream_loader(
        images,
        tuple(getattr(transforms, view)(size, mean, std) for view in views),
        batch_size,
        seed=cfg.seed,
        stream=index,
        start_batch=step,
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
        shard=shard,
    )
