"""The device a run trains or evaluates on: `resolve_device` turns train.device (or a --device
given to evaluate a run) into a torch device, refusing one that is not there. Imported by the
trainer and by evaluation alike, so neither reaches into the other for it; `inference_device` does
the same for prediction's --device."""

from __future__ import annotations

import torch

from lionfer.errors import ConfigError, InputError


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
