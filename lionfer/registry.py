"""One Registry class; the algorithm, model and dataset registries are instances of it.

An entry's object may be given as "module:attribute" and is imported on first use, so listing
names (and validating a config) never imports torch. The models are declared here by name; the
algorithms in lionfer.algorithms and the datasets in lionfer.data.pipeline, the same way.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lionfer.errors import UnknownNameError


@dataclass(frozen=True)
class Entry:
    name: str
    target: Any  # the object, or "module:attribute" imported by Registry.get
    description: str
    config: type | None = None  # the entry's frozen config dataclass (algorithms)


def _location(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"


class Registry:
    """Names → objects, each with a one-line description, listable from the CLI."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, target: Any, description: str, config: type | None = None) -> None:
        """Register a name. A module that registers the very object a lazy "module:attribute"
        entry names (e.g. with @register when it is imported) completes that entry."""
        if name in self._entries:
            known = self._entries[name]
            if isinstance(known.target, str) and known.target == _location(target):
                self._entries[name] = Entry(name, target, description, config or known.config)
                return
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(name, target, description, config)

    def register(self, name: str, description: str, config: type | None = None) -> Callable:
        def decorator(obj: Any) -> Any:
            self.add(name, obj, description, config)
            return obj

        return decorator

    def get(self, name: str) -> Any:
        entry = self.entry(name)
        if isinstance(entry.target, str):
            module, _, attribute = entry.target.partition(":")
            return getattr(importlib.import_module(module), attribute)
        return entry.target

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self._entries))}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())


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
    MODELS.add(_name, f"lionfer.models:{_target}", _description)
