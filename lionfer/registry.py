"""One Registry class; the algorithm, model and dataset registries are instances of it.

Every registry is filled one way: a table of names, each with its object as "module:attribute",
imported on first use, so listing names (and validating a config) never imports torch or numpy.
The models are declared here; the algorithms in lionfer.algorithms and the datasets in
lionfer.data.datasets (each package's __init__), the same way. The implementations never register
themselves, so the dependencies point one way: table → implementation.

A family names many objects by a prefix: `timm:convnext_tiny` and `torchvision:mobilenet_v2` are
the models `convnext_tiny` and `mobilenet_v2` of those libraries, built by one factory each
(called with the name after the prefix first). Whether the library has that name is checked when
the object is built, so validating a config stays instant.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lionfer.errors import UnknownNameError, did_you_mean


@dataclass(frozen=True)
class Entry:
    name: str
    target: Any  # the object, or "module:attribute" imported by Registry.get
    description: str
    config: type | None = None  # the entry's frozen config dataclass (algorithms)


class Registry:
    """Names → objects, each with a one-line description, listable from the CLI."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._families: dict[str, Entry] = {}  # prefix → factory of the whole family

    def add(self, name: str, target: Any, description: str, config: type | None = None) -> None:
        """Register a name; target is the object or its "module:attribute"."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, target, description, config)

    def add_family(self, prefix: str, target: Any, description: str) -> None:
        """Register every name `prefix:NAME`; target(NAME, ...) builds one of them."""
        if prefix in self._families:
            raise ValueError(f"{self.kind} family {prefix!r} is already registered")
        self._families[prefix] = Entry(f"{prefix}:<name>", target, description)

    def get(self, name: str) -> Any:
        entry = self.entry(name)
        target = entry.target
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = getattr(importlib.import_module(module), attribute)
        if name not in self._entries:  # a family member: the factory with its name bound
            return functools.partial(target, name.partition(":")[2])
        return target

    def entry(self, name: str) -> Entry:
        if name in self._entries:
            return self._entries[name]
        prefix, colon, member = name.partition(":")
        if colon and prefix in self._families and member:
            family = self._families[prefix]
            return Entry(name, family.target, family.description)
        hint = did_you_mean(name, [*self._entries, *self._families])
        available = [*sorted(self._entries), *(e.name for e in self._families.values())]
        raise UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Available: "
                               f"{', '.join(available)}")  # fmt: skip

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        prefix, colon, member = name.partition(":")
        return name in self._entries or bool(colon and member and prefix in self._families)

    def __iter__(self) -> Iterator[Entry]:
        """Every entry, then every family (named `prefix:<name>`)."""
        yield from (self._entries[n] for n in self.names())
        yield from self._families.values()


ALGORITHMS = Registry("algorithm")
MODELS = Registry("model")
DATASETS = Registry("dataset")

for _name, _target, _description in (
    (
        "resnet18",
        "build_resnet18",
        "torchvision ResNet-18 backbone, 512-d features, ImageNet norm",
    ),
    (
        "cnn_small",
        "build_cnn_small",
        "4-block CNN, 128-d features, for CPU runs and tests (16-128 px)",
    ),
    (
        "mobilenet_v2",
        "build_mobilenet_v2",
        "torchvision MobileNetV2 backbone, 1280-d features, ImageNet norm (pretrained=imagenet)",
    ),
):
    MODELS.add(_name, f"lionfer.backbones:{_target}", _description)
MODELS.add_family(
    "timm",
    "lionfer.backbones:build_timm",
    "any timm model by name, e.g. timm:convnext_tiny (needs the timm extra: pip install "
    "'lionfer[timm]'); random init, a local weights file, or model.pretrained=hub",
)
MODELS.add_family(
    "torchvision",
    "lionfer.backbones:build_torchvision",
    "any torchvision classification model by name, e.g. torchvision:efficientnet_b0; random "
    "init, a local weights file, or model.pretrained=hub",
)
