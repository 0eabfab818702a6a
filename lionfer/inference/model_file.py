"""The model file read for prediction: which file a MODEL argument names (a run folder's
checkpoint or the file itself), a training checkpoint read and checked for what a predictor needs
(with the reason in words when it is not one), the EMA model built from it, and ModelInfo, what a
model file says about itself."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from lionfer.device import inference_device
from lionfer.errors import InputError

CHECKPOINT_KEYS = ("ema", "class_names", "model_name", "image_size")


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself: enough to preprocess faces and name its outputs."""

    model_name: str
    class_names: tuple[str, ...]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    path: str
    fingerprint: str  # first 16 hex digits of the file's SHA-256


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def checkpoint_file(model: str | Path, checkpoint: str = "last") -> Path:
    """The checkpoint a MODEL argument names: RUN/checkpoints/<checkpoint>.pt or the file itself."""
    path = Path(model)
    if path.is_dir():
        file = path / "checkpoints" / f"{checkpoint}.pt"
        if not file.is_file():
            raise InputError(
                f"{path} is not a finished lionfer run: {file} is missing (train one with "
                "`lionfer train`, choose --checkpoint last|best, or pass a checkpoint file)"
            )
        return file
    if not path.is_file():
        raise InputError(
            f"model not found: {path} (a run folder, a .pt checkpoint or a .onnx file)"
        )
    return path


def read_checkpoint(path: Path) -> dict:
    """A lionfer training checkpoint, checked for the keys a predictor needs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's TorchScript-archive notice
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types on a file that is not a checkpoint
        raise InputError(
            f"{path} is not a lionfer checkpoint: {not_a_checkpoint(path, error)}; pass a run "
            "folder, its checkpoints/last.pt or best.pt, or an exported .onnx file"
        ) from error
    if not isinstance(state, dict):
        raise InputError(f"{path} is not a lionfer checkpoint (it holds a {type(state).__name__})")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        hint = (
            "it looks like bare model weights"
            if all(isinstance(v, torch.Tensor) for v in state.values())
            else "it was written by another lionfer version or another program"
        )
        raise InputError(
            f"{path} is not a checkpoint this lionfer version can use: {hint} (missing "
            f"{', '.join(missing)}). Use a run's checkpoints/last.pt or best.pt written by "
            "`lionfer train`"
        )
    return state


IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def not_a_checkpoint(path: Path, error: Exception) -> str:
    """Why torch.load refused a file, in words and from its first bytes, without torch's advice
    (which is to unpickle arbitrary objects)."""
    text = str(error)
    with path.open("rb") as f:
        head = f.read(4096)
    if not head:
        return "the file is empty (0 bytes)"
    for magic, kind in IMAGE_MAGIC:
        if head.startswith(magic):
            return f"it is a {kind} image (the model comes first: lionfer predict MODEL INPUT...)"
    if head[8:12] == b"WEBP":
        return "it is a WebP image (the model comes first: lionfer predict MODEL INPUT...)"
    if "TorchScript" in text:
        return "it is a TorchScript export, which lionfer predict does not read"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):  # torch's zip or pickle
        if "Weights only load failed" in text and "GLOBAL" in text.upper():
            return (
                "it holds Python objects besides tensors and plain values, which lionfer does "
                "not unpickle (a file of another program)"
            )
        if head.startswith(b"PK\x03\x04") and "archive" in text:
            return "it is a ZIP archive, not a PyTorch file"
        return "it is a damaged or truncated PyTorch file (copy it again)"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "it is a text file, not a PyTorch file"
        except UnicodeDecodeError as bad:
            if bad.start >= len(head) - 4:  # a character cut at the end of the 4096 bytes
                return "it is a text file, not a PyTorch file"
    return "it is not a PyTorch file"


def torch_model(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, ModelInfo]:
    """(the checkpoint's EMA model in eval mode on device, its ModelInfo)."""
    from lionfer.config import ModelConfig
    from lionfer.models import build_model, check_state_dict
    from lionfer.registry import MODELS

    state = read_checkpoint(path)
    name, class_names = state["model_name"], tuple(state["class_names"])
    if name not in MODELS:
        raise InputError(
            f"{path} holds a {name!r} model, which this lionfer version does not have "
            f"(models: {', '.join(MODELS.names())}); it was written by another lionfer version"
        )
    saved = state.get("model_config", {})  # older checkpoints: the defaults shaped the model
    shape = {k: saved[k] for k in ("dropout", "feature_scale") if k in saved}
    model = build_model(ModelConfig(name=name, **shape), len(class_names))
    problems = check_state_dict(model.state_dict(), state["ema"])
    if problems:
        raise InputError(
            f"{path}: the weights do not fit lionfer's {name!r} model ({'; '.join(problems)}); "
            "the checkpoint was written by another lionfer version"
        )
    model.load_state_dict(state["ema"])
    info = ModelInfo(
        name,
        class_names,
        int(state["image_size"]),
        tuple(model.mean),
        tuple(model.std),
        str(path),
        file_fingerprint(path),
    )
    return model.to(inference_device(device)).eval(), info
