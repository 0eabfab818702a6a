"""The model behind a Predictor: (B, 3, S, S) normalised faces → (B, C) class probabilities, and
with features=True their (B, D) embeddings, with a PyTorch model (TorchClassifier) or with ONNX
Runtime on a file written by `lionfer export --format onnx` (OnnxClassifier, its ModelInfo read by
onnx_info); the probabilities over the classes a model was trained on (over_trained).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lionfer.errors import InputError
from lionfer.inference.model_file import ModelInfo, file_fingerprint


class TorchClassifier:
    """(B, 3, S, S) normalised faces → (B, C) probabilities, and with features=True also their
    (B, D) embeddings, with a PyTorch model."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.device = next(model.parameters()).device
        self.feature_dim: int = model.feature_dim

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, features: bool = False):
        output = self.model(x.to(self.device))
        probs = output.logits.float().softmax(dim=1).cpu().numpy()
        return (probs, output.features.float().cpu().numpy()) if features else probs


class OnnxClassifier:
    """The same, with ONNX Runtime on a file written by `lionfer export --format onnx`."""

    def __init__(self, path: Path, device: str = "cpu"):
        try:
            import onnxruntime
        except ImportError as error:
            raise InputError(
                "an .onnx MODEL needs onnxruntime: pip install 'lionfer[export]'"
            ) from error
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            raise InputError(
                f"cannot load {path} with ONNX Runtime: {error}. If the file is damaged or cut "
                "short, export it again: lionfer export RUN --out FILE.onnx"
            ) from error
        self.input_name = self.session.get_inputs()[0].name
        self.info = onnx_info(self.session.get_modelmeta().custom_metadata_map, path)
        # files exported before embeddings were have no "features" output: feature_dim None
        shapes = {o.name: o.shape for o in self.session.get_outputs()}
        self.feature_dim: int | None = shapes["features"][-1] if "features" in shapes else None
        self.path = path

    def __call__(self, x: torch.Tensor, features: bool = False):
        if not features:
            (probs,) = self.session.run(["probabilities"], {self.input_name: x.numpy()})
            return probs
        if self.feature_dim is None:
            raise InputError(
                f"{self.path} was exported without embeddings (by an older lionfer); export "
                "it again for them: lionfer export RUN --out FILE.onnx"
            )
        probs, feats = self.session.run(["probabilities", "features"], {self.input_name: x.numpy()})
        return probs, feats


def onnx_info(metadata: dict[str, str], path: Path) -> ModelInfo:
    """ModelInfo from the metadata_props that `lionfer export` writes."""
    import json

    try:
        return ModelInfo(
            metadata["model_name"],
            tuple(json.loads(metadata["class_names"])),
            int(metadata["image_size"]),
            tuple(json.loads(metadata["mean"])),
            tuple(json.loads(metadata["std"])),
            str(path),
            file_fingerprint(path),
            tuple(json.loads(metadata.get("trained_classes", "[]"))),  # older exports: all
        )
    except (KeyError, ValueError) as error:
        raise InputError(
            f"{path} lacks lionfer's metadata ({error}); export it with `lionfer export MODEL "
            "--format onnx`"
        ) from error


def over_trained(
    probs: np.ndarray, class_names: tuple[str, ...], trained_classes: tuple[str, ...]
) -> np.ndarray:
    """(N, C) probabilities over the classes the model was trained on (ModelInfo.trained_classes):
    an output it never had a labeled image of learnt nothing, and early in training may
    outweigh the others (a run on happy/, sad/ and neutral/ named most faces Fear). Those
    get 0 and the rest are renormalised: the softmax of the trained classes' logits alone."""
    untrained = np.array([name not in trained_classes for name in class_names])
    if not untrained.any():
        return probs
    probs = np.where(untrained, 0.0, probs)
    total = probs.sum(axis=1, keepdims=True)
    even = np.where(untrained, 0.0, 1.0 / (~untrained).sum())  # where all of them underflow
    return np.where(total > 0, probs / np.where(total > 0, total, 1.0), even)
