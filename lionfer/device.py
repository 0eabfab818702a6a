"""The device a run trains or evaluates on: `resolve_device` turns train.device (or a --device
given to evaluate a run) into a torch device, refusing one that is not there. Imported by the
trainer and by evaluation alike, so neither reaches into the other for it."""

from __future__ import annotations

import torch

from lionfer.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA when visible, else CPU) or the named device, with a ConfigError that says what
    to pass when the named one is not available here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if device.type in available and not available[device.type]():
        raise ConfigError(
            f"train.device={name} but {device.type} is not available here; use train.device=cpu "
            "or auto (to continue a run here: lionfer train --resume --out RUN --device cpu)"
        )
    return device


__all__ = ["resolve_device"]
