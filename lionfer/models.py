"""The FER network and its weights: backbone → GAP → L2-normalise (q) → Dropout → Linear.

`build_model(cfg, num_classes)` builds the model that lionfer.registry.MODELS names (the
backbones and their factories are lionfer.backbones) and loads model.pretrained: strictly, from a
file (torch or .safetensors, every shared checkpoint format), from the ImageNet weights packaged
in lionfer/weights/, or (model.pretrained=hub, downloaded only when asked) from the library's hub.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from lionfer.errors import ConfigError
from lionfer.registry import MODELS
from lionfer.torch_refusals import not_a_checkpoint

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
        head_prefixes: tuple[str, ...] = DROPPABLE_PREFIXES,
        weights_format: str = "",
    ):
        super().__init__()
        self.backbone = backbone
        # Keys of the backbone's own classifier in a weights file (dropped when loading it).
        self.head_prefixes = tuple(head_prefixes)
        self.weights_format = weights_format or EXPECTED_FORMAT
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.feature_scale = feature_scale

    def forward(self, x: Tensor) -> Output:
        feature_map = self.backbone(x)  # (B, D, h, w), or (B, D) from a backbone that pools
        pooled = feature_map.mean(dim=(2, 3)) if feature_map.dim() == 4 else feature_map
        features = F.normalize(pooled, dim=1)  # (B, D)
        scaled = self.feature_scale * features
        logits = self.head(self.dropout(scaled))  # (B, C)
        clean = self.head(scaled) if self.training and self.dropout.p > 0 else logits
        return Output(logits, features, clean)


def import_timm():
    """timm, or ConfigError saying how to install it (it is an optional extra)."""
    try:
        import timm
    except ImportError as error:
        raise ConfigError(
            "model.name=timm:...: the timm package is not installed; pip install 'lionfer[timm]' "
            "(or pip install timm)"
        ) from error
    return timm


def hub_state_dict(model_name: str) -> dict[str, Tensor]:
    """The pretrained weights of a timm:NAME or torchvision:NAME model, downloaded by that
    library (model.pretrained=hub); ValueError saying what failed and what to do instead."""
    family, _, name = model_name.partition(":")
    if family not in ("timm", "torchvision") or not name:
        raise ValueError(
            f"model.pretrained=hub downloads weights for timm:NAME and torchvision:NAME models, "
            f"not {model_name}; give a local weights file instead"
        )
    try:
        if family == "timm":
            net = import_timm().create_model(name, pretrained=True)
            return net.state_dict()
        weights = torchvision.models.get_model_weights(name).DEFAULT
        return weights.get_state_dict(progress=False)
    except ConfigError:
        raise
    except Exception as error:  # offline, no such weights, a broken cache: all say the same
        source = "the Hugging Face hub (via timm)" if family == "timm" else "torchvision's hub"
        raise ValueError(
            f"could not download the pretrained weights of {model_name} from {source}: "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}. "
            "Without internet access, download them where you have it and give the file: "
            "model.pretrained=PATH"
        ) from error


# model.pretrained = "imagenet": torchvision's ImageNet weights shipped inside lionfer (in
# lionfer/weights/, under torchvision's BSD-3-Clause licence, LICENSE-torchvision.txt beside
# them), never downloaded: file name and SHA-256, checked before the file is read.
WEIGHTS_DIR = Path(__file__).parent / "weights"
PACKAGED_IMAGENET = {
    "mobilenet_v2": (
        "mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    ),
}
_VERIFIED: set[Path] = set()


def has_packaged_imagenet(model_name: str) -> bool:
    """Whether model.pretrained="imagenet" names packaged weights for this model."""
    return model_name in PACKAGED_IMAGENET


def sha256_of(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_pretrained(model_name: str, pretrained: str) -> str:
    """The weights file that model.pretrained names: a path, or "imagenet" for the packaged
    copy of torchvision's ImageNet weights (checked against its SHA-256)."""
    if pretrained != "imagenet":
        return pretrained
    if model_name not in PACKAGED_IMAGENET:
        raise ValueError(
            f"model.pretrained=imagenet: lionfer ships ImageNet weights only for "
            f'{", ".join(PACKAGED_IMAGENET)}, not {model_name}; set model.pretrained="" to '
            "train it from scratch, or model.pretrained=PATH to load a weights file"
        )
    name, sha256 = PACKAGED_IMAGENET[model_name]
    path = WEIGHTS_DIR / name
    if path in _VERIFIED:
        return str(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"model.pretrained=imagenet: the packaged weights {path} are missing; reinstall "
            "lionfer (pip install --force-reinstall lionfer)"
        )
    found = sha256_of(path)
    if found != sha256:
        raise ValueError(
            f"model.pretrained=imagenet: {path} is damaged (SHA-256 {found[:16]}..., expected "
            f"{sha256[:16]}...); reinstall lionfer (pip install --force-reinstall lionfer)"
        )
    _VERIFIED.add(path)
    return str(path)


def build_model(cfg: Any, num_classes: int) -> nn.Module:
    """The model registered as cfg.name, with cfg.pretrained's weights loaded when it is set."""
    model = MODELS.get(cfg.name)(cfg, num_classes)
    if cfg.pretrained:
        log.info(load_weights(model, cfg.name, cfg.pretrained))
    return model


def load_weights(
    model: nn.Module, model_name: str, pretrained: str, class_names: list[str] | None = None
) -> str:
    """model.pretrained into the model: a file, a packaged weight set's name (imagenet), or
    hub (timm:NAME and torchvision:NAME models, downloaded by their library). class_names: the
    classes of the model's outputs, to match a lionfer checkpoint's head to (fit_head)."""
    if pretrained == "hub":
        return load_state(model, hub_state_dict(model_name), f"the hub ({model_name})")
    return load_pretrained(model, resolve_pretrained(model_name, pretrained), class_names)


def read_state_dict(path: str | Path, expected: str = EXPECTED_FORMAT) -> dict[str, Tensor]:
    """The tensors of a checkpoint file (torch or .safetensors), unwrapped from
    'state_dict'/'model' and 'module.'."""
    return _read_state(path, expected).state


class ReadState(NamedTuple):
    """A weights file's tensors; what unwrapping them took, in words; and the classes of its
    head's rows where the file says (a lionfer checkpoint's class_names), else None."""

    state: dict[str, Tensor]
    notes: list[str]
    classes: list[str] | None


def _read_state(path: str | Path, expected: str) -> ReadState:
    """read_state_dict, with what unwrapping it took said in words, and the head's classes."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"model.pretrained {path} is a folder: name the weights file in it; {expected}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found: {path}. Put the file there or fix model.pretrained "
            f"(empty = random init); {expected}"
        )
    if path.suffix.lower() == ".safetensors":
        return ReadState(*_strip_module(_read_safetensors(path, expected)), None)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ValueError(
            f"cannot read {path} as weights: {not_a_checkpoint(path, err)} (a whole pickled "
            f"model: save its state_dict() instead). {expected}"
        ) from err
    classes = None
    if isinstance(obj, Mapping) and _class_list(obj.get("class_names")):
        classes = list(obj["class_names"])  # a lionfer checkpoint: its head's classes
    # a lionfer checkpoint's "ema" first: the weights it evaluates and exports
    for key in ("state_dict", "ema", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if (
        not isinstance(obj, Mapping)
        or not all(isinstance(k, str) for k in obj)
        or not all(isinstance(v, Tensor) for v in obj.values())
    ):
        raise ValueError(
            f"{path} does not hold a state dict of tensors named by strings; {expected}"
        )
    return ReadState(*_strip_module(obj), classes)


def _class_list(value) -> bool:
    return (
        isinstance(value, list | tuple) and bool(value) and all(isinstance(v, str) for v in value)
    )


def _strip_module(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """The keys without the 'module.' prefix that torch.nn.DataParallel saves."""
    if not any(k.startswith("module.") for k in state):
        return dict(state), []
    return {k.removeprefix("module."): v for k, v in state.items()}, ["removed 'module.'"]


def _read_safetensors(path: Path, expected: str) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as error:
        raise ValueError(
            f"{path} is a .safetensors file: pip install safetensors (it comes with "
            "'lionfer[timm]') to read it"
        ) from error
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # the library raises its own types for a damaged file
        raise ValueError(f"cannot read {path} as safetensors: {error}. {expected}") from error


def load_pretrained(
    model: nn.Module, path: str | Path, class_names: list[str] | None = None
) -> str:
    """Load a backbone (or whole-model) checkpoint file strictly; return what was loaded.

    Every backbone tensor must be in the file with the same shape. What may differ, and is said
    in the returned message: a 'module.' prefix (DataParallel) is removed; layers that are not
    the backbone's are dropped by name, namely the backbone's own classifier (`fc.*`,
    `classifier.*`, or the head a timm/torchvision model names) and any layer whose name is not
    one of the backbone's (such as the `feature.*` layer of some shared MS-Celeb ResNet-18
    files); BatchNorm `num_batches_tracked` counters missing from the file (files saved by
    PyTorch < 0.4.1) are filled with 0, as torch's own loading of such files does. A lionfer
    model state dict (backbone.* and head.*) is loaded into the whole model, its head fitted to
    class_names (fit_head).
    """
    expected = getattr(model, "weights_format", EXPECTED_FORMAT)
    read = _read_state(path, expected)
    return load_state(model, read.state, str(path), read.notes, read.classes, class_names)


def load_state(
    model: nn.Module,
    state: Mapping[str, Tensor],
    source: str,
    notes: list[str] | None = None,
    trained_on: list[str] | None = None,
    class_names: list[str] | None = None,
) -> str:
    """load_pretrained's strict load of tensors that came from `source` (a file, the hub);
    trained_on and class_names: the classes of the file's head and of the model's (fit_head)."""
    expected_format = getattr(model, "weights_format", EXPECTED_FORMAT)
    notes = list(notes or [])
    if any(k.startswith("backbone.") for k in state):
        state = fit_head(model, state, trained_on, class_names, notes)
        target, droppable, layers = model, (), None
    else:
        target = model.backbone
        droppable = tuple(getattr(model, "head_prefixes", DROPPABLE_PREFIXES))
        layers = {k.split(".", 1)[0] for k in target.state_dict()}  # the backbone's own layers
    expected = target.state_dict()
    dropped = sorted(
        k
        for k in state
        if k not in expected
        and (k.startswith(droppable) or (layers is not None and k.split(".", 1)[0] not in layers))
    )
    kept = {k: v for k, v in state.items() if k not in dropped}
    counters = [k for k in expected if k.endswith(".num_batches_tracked") and k not in kept]
    if counters and not _lacks_other_batchnorm(kept, counters):
        kept.update({k: torch.zeros_like(expected[k]) for k in counters})
        notes.append(
            f"filled {len(counters)} BatchNorm num_batches_tracked counters the file lacks "
            "(saved by PyTorch < 0.4.1) with 0"
        )
    problems = check_state_dict(expected, kept)
    if problems:
        raise ValueError(f"{source} does not fit model: {'; '.join(problems)}. {expected_format}")
    target.load_state_dict(kept, strict=True)
    if dropped:
        notes.append(f"dropped {', '.join(dropped)}")
    message = f"loaded {len(expected)} tensors from {source}"
    return message + (f" ({'; '.join(notes)})" if notes else "")


def fit_head(
    model: nn.Module,
    state: Mapping[str, Tensor],
    trained_on: list[str] | None,
    class_names: list[str] | None,
    notes: list[str],
) -> dict[str, Tensor]:
    """A whole model's state with its head (head.weight, head.bias) made to fit the model's
    classes, what was done appended to notes. Where both lists of classes are known, each of the
    model's classes takes the file's row of the same name, and a class the file has no row for
    keeps the model's initial one (a head trained on apple, banana, cherry is not read as one of
    ant, bee, cat because the counts agree). Where they are not known, a head of another number
    of classes is left out (the model's initial head trains instead); one of the same number is
    taken as it is. A head of another feature width is left to the strict load to refuse."""
    state = dict(state)
    head = getattr(model, "head", None)
    weight, bias = state.get("head.weight"), state.get("head.bias")
    if not isinstance(head, nn.Linear) or weight is None or bias is None:
        return state
    if weight.dim() != 2 or weight.shape[1] != head.in_features or len(bias) != len(weight):
        return state
    own = head.out_features
    if trained_on is None or class_names is None or len(trained_on) != len(weight):
        if len(weight) != own:
            state["head.weight"], state["head.bias"] = head.weight.detach(), head.bias.detach()
            notes.append(
                f"left out its head (for {len(weight)} classes; this model has {own}): the head "
                "trains from its initial weights"
            )
        return state
    class_names = list(class_names)
    if list(trained_on) == class_names:
        return state
    rows = [trained_on.index(name) if name in trained_on else -1 for name in class_names]
    taken = [name for name, row in zip(class_names, rows, strict=True) if row >= 0]
    if not taken:
        state["head.weight"], state["head.bias"] = head.weight.detach(), head.bias.detach()
        notes.append(
            f"left out its head: it was trained on {', '.join(trained_on)}, none of this run's "
            f"classes ({', '.join(class_names)}); the head trains from its initial weights"
        )
        return state
    new_weight, new_bias = head.weight.detach().clone(), head.bias.detach().clone()
    for i, row in enumerate(rows):
        if row >= 0:
            new_weight[i], new_bias[i] = weight[row], bias[row]
    state["head.weight"], state["head.bias"] = new_weight, new_bias
    fresh = [name for name, row in zip(class_names, rows, strict=True) if row < 0]
    notes.append(
        f"matched its head to this run's classes by name ({', '.join(taken)} from the file"
        + (f"; {', '.join(fresh)}, which it has no row for, from initial weights" if fresh else "")
        + ")"
    )
    return state


def _lacks_other_batchnorm(state: Mapping[str, Tensor], counters: list[str]) -> bool:
    """Whether a BatchNorm whose counter is missing also misses its running statistics: then the
    file does not hold that layer at all, and the counter is reported missing with the rest."""
    return any(
        f"{k.removesuffix('num_batches_tracked')}running_mean" not in state for k in counters
    )


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
