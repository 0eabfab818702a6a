"""The device a run trains or evaluates on: `resolve_device` turns train.device (or a --device
given to evaluate a run) into a torch device, refusing one that is not there. Imported by the
trainer and by evaluation alike, so neither reaches into the other for it; `inference_device` does
the same for prediction's --device."""

from __future__ import annotations

import torch

from lionfer.config_sections import DEVICE_PATTERN
from lionfer.errors import ConfigError, InputError


def resolve_device(name: str, what: str = "train.device") -> torch.device:
    """'auto' (CUDA when visible, else CPU) or the named device, with a ConfigError that says what
    to pass when the name is not a device, or the device is not here (CUDA not visible, a cuda:N
    beyond the GPUs). `what` names where the name came from: the config key `train.device` (the
    default), or an option such as `--device`, whose fix is phrased for the command line."""
    option = what.startswith("-")
    given = f"{what} {name}" if option else f"{what}={name}"
    fix = f"{what} cpu or auto" if option else f"{what}=cpu or auto"
    if not option:  # a run's config: it may be continued on another machine
        fix += " (to continue a run here: lionfer train --resume --out RUN --device cpu)"
    if not isinstance(name, str) or DEVICE_PATTERN.fullmatch(name) is None:
        raise ConfigError(f"{what} {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if device.type in available and not available[device.type]():
        raise ConfigError(f"{given} but {device.type} is not available here; use {fix}")
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.index is not None and device.index >= count:
        raise ConfigError(
            f"{given} but this machine has {count} CUDA GPU{'s' * (count != 1)} (cuda:0 to "
            f"cuda:{count - 1}); use one of them, or {'cuda' if option else what + '=cuda'}"
        )
    return device


def inference_device(name: str) -> torch.device:
    """The torch device `--device` names, or an InputError that says what to pass instead."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise InputError(
            f"--device {name!r} is not a device; use cpu, cuda, cuda:N or mps"
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"--device {name}: no CUDA GPU is visible here (torch.cuda.is_available() is "
                "False); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPUs "
                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {name}: lionfer predicts on cpu, cuda, cuda:N or mps")
    return device


__all__ = ["inference_device", "resolve_device"]
