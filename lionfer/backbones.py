"""The backbones that models.FERNet wraps, and the factories that the model registry names
(lionfer.registry.MODELS, so that listing them imports no torch): `resnet18`, `cnn_small`,
`mobilenet_v2`, and the families `timm:NAME` and `torchvision:NAME`, any timm model or torchvision
classification model with its classifier removed so that it returns its pooled features. Nothing
here downloads weights; loading them is lionfer.models.
"""

from __future__ import annotations

from typing import Any

import torchvision
from torch import Tensor, nn

from lionfer.errors import ConfigError
from lionfer.models import IMAGENET_MEAN, IMAGENET_STD, FERNet, import_timm


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
        weights_format="expected a lionfer model state dict of cnn_small (backbone.*, head.*), "
        "bare or as a lionfer checkpoint",
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
        weights_format="expected a torch state dict of a torchvision mobilenet_v2 (features.*, "
        "optionally classifier.*), bare or under the key 'state_dict', optionally with a "
        "'module.' prefix, or a lionfer model state dict (backbone.*, head.*)",
    )


# ---- the timm and torchvision families: any model of those libraries by name ----

# torchvision builders that need arguments to give plain logits in training mode.
TORCHVISION_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def _suggest(name: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, names, n=3)
    return f" Did you mean {', '.join(close)}?" if close else ""


def build_timm(name: str, cfg: Any, num_classes: int) -> FERNet:
    """timm model `name` without its classifier (num_classes=0: it returns pooled features),
    never downloaded here; ImageNet-style normalisation from its pretrained config."""
    timm = import_timm()
    if not timm.is_model(name):
        raise ConfigError(
            f"model.name=timm:{name}: timm {timm.__version__} has no model {name!r}."
            f"{_suggest(name, timm.list_models())} (timm.list_models() lists them)"
        )
    net = timm.create_model(name, pretrained=False, num_classes=0)
    feature_dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
    pretrained = dict(getattr(net, "pretrained_cfg", {}) or {})
    classifier = pretrained.get("classifier") or "head"
    classifiers = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return FERNet(
        net,
        feature_dim,
        num_classes,
        cfg.dropout,
        tuple(pretrained.get("mean", IMAGENET_MEAN)),
        tuple(pretrained.get("std", IMAGENET_STD)),
        cfg.feature_scale,
        head_prefixes=tuple(f"{c}." for c in classifiers),
        weights_format=f"expected a state dict of timm's {name} (as timm saves it; its "
        f"classifier {', '.join(classifiers)} is dropped), a .pth/.bin or .safetensors file",
    )


def build_torchvision(name: str, cfg: Any, num_classes: int) -> FERNet:
    """torchvision classification model `name`, never downloaded here, with its last Linear
    layer (and the dropout beside it) replaced by Identity: it returns its pooled features."""
    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise ConfigError(
            f"model.name=torchvision:{name}: torchvision {torchvision.__version__} has no "
            f"classification model {name!r}.{_suggest(name, names)} "
            "(torchvision.models.list_models() lists them)"
        )
    net = torchvision.models.get_model(name, weights=None, **TORCHVISION_KWARGS.get(name, {}))
    path, feature_dim = strip_classifier(net, f"torchvision:{name}")
    return FERNet(
        net,
        feature_dim,
        num_classes,
        cfg.dropout,
        IMAGENET_MEAN,
        IMAGENET_STD,
        cfg.feature_scale,
        head_prefixes=(f"{path}.",),
        weights_format=f"expected a state dict of torchvision's {name} (as torchvision saves "
        f"it; its classifier {path} is dropped)",
    )


def strip_classifier(net: nn.Module, label: str) -> tuple[str, int]:
    """Replace the last Linear layer of `net` (its classifier) and any Dropout beside it by
    Identity, in place; returns (the classifier's name, its input size = the feature size)."""
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"model.name={label} ends in no linear classifier (e.g. a convolution per class), so "
            "lionfer cannot take its pooled features; choose another model"
        )
    path, linear = linears[-1]
    parent_name, _, child = path.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, child, nn.Identity())
    if parent_name:
        for sibling, module in list(parent.named_children()):
            if isinstance(module, nn.Dropout):
                setattr(parent, sibling, nn.Identity())
    return path, linear.in_features
