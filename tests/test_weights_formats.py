"""The MS-Celeb-1M ResNet-18 files that facial expression code shares, with their exact key sets.

Ada-CM's and LION's code load `torch.load(f)['state_dict']` (torchvision's resnet18 names, fc
1000x512) into torchvision's resnet18 strictly; SCN, RAN and Emotion-FAN load a DataParallel file
(`module.` keys) with an extra `module.feature.*` layer that their loaders skip. Files saved by
PyTorch < 0.4.1 lack the 20 BatchNorm `num_batches_tracked` buffers. Fake files with those key
names and shapes (random values) must load, say what was filled and dropped, and train.
"""

import json

import pytest
import torch
import torchvision

from lionfer.config_sections import ModelConfig
from lionfer.models import build_model, load_pretrained
from lionfer.training.run import train

BACKBONE_TENSORS = 120  # resnet18 up to layer4: 62 parameters, 58 BatchNorm buffers


@pytest.fixture(scope="module")
def torchvision_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(5)
    state = torchvision.models.resnet18(weights=None).state_dict()  # fc 1000x512
    return {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}


def without_counters(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def data_parallel(state: dict) -> dict:
    """The SCN/RAN/Emotion-FAN layout: 'module.' keys and an extra feature layer."""
    out = {f"module.{k}": v for k, v in state.items()}
    out["module.feature.weight"] = torch.randn(256, 512)
    out["module.feature.bias"] = torch.randn(256)
    return out


FORMATS = {
    "state_dict": lambda s: {"state_dict": dict(s)},
    "state_dict, no counters": lambda s: {"state_dict": without_counters(s)},
    "module + feature": lambda s: {"state_dict": data_parallel(s)},
    "module + feature, no counters": lambda s: {"state_dict": data_parallel(without_counters(s))},
}


def test_the_fake_files_have_the_shared_key_sets(torchvision_state):
    keys = set(torchvision_state)
    counters = {k for k in keys if k.endswith("num_batches_tracked")}
    assert len(keys) == 122 and len(counters) == 20
    assert torchvision_state["fc.weight"].shape == (1000, 512)
    dp = set(FORMATS["module + feature, no counters"](torchvision_state)["state_dict"])
    assert dp == {f"module.{k}" for k in keys - counters} | {
        "module.feature.weight",
        "module.feature.bias",
    }


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_shared_format_loads_and_says_what_it_changed(tmp_path, torchvision_state, name):
    path = tmp_path / "resnet18_msceleb.pth"
    torch.save(FORMATS[name](torchvision_state), path)
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="resnet18"), 7)
    message = load_pretrained(model, path)
    assert message.startswith(f"loaded {BACKBONE_TENSORS} tensors from {path} (")
    for key, value in model.backbone.state_dict().items():
        if key.endswith("num_batches_tracked"):
            expected = 0 if "no counters" in name else torchvision_state[key]
            assert int(value) == int(expected), key
        else:
            assert torch.equal(value, torchvision_state[key]), key
    assert ("filled 20 BatchNorm num_batches_tracked" in message) == ("no counters" in name)
    assert ("removed 'module.'" in message) == ("module" in name)
    dropped = "fc.bias, fc.weight" + (", feature.bias, feature.weight" if "module" in name else "")
    assert message.endswith(f"dropped {dropped})")


def test_a_missing_or_mis_shaped_backbone_tensor_is_still_an_error(tmp_path, torchvision_state):
    state = data_parallel(without_counters(torchvision_state))
    del state["module.layer2.0.bn1.running_var"]
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": state}, path)
    model = build_model(ModelConfig(name="resnet18"), 7)
    with pytest.raises(ValueError, match=r"1 missing: layer2\.0\.bn1\.running_var"):
        load_pretrained(model, path)

    state = dict(torchvision_state)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight \(64, 64, 1, 1\) vs"):
        load_pretrained(model, path)

    state = dict(torchvision_state)  # a renamed backbone tensor is not an extra layer
    state["layer3.0.conv_one.weight"] = state.pop("layer3.0.conv1.weight")
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"unexpected: layer3\.0\.conv_one\.weight"):
        load_pretrained(model, path)


def test_a_file_without_a_whole_batchnorm_misses_it(tmp_path, torchvision_state):
    state = {k: v for k, v in torchvision_state.items() if not k.startswith("bn1.")}
    path = tmp_path / "nobn.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"5 missing: bn1\.weight, bn1\.bias, bn1\.running_mean"):
        load_pretrained(build_model(ModelConfig(name="resnet18"), 7), path)


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_shared_format_trains_two_steps(tmp_path, tiny_cfg, torchvision_state, name):
    path = tmp_path / "resnet18_msceleb.pth"
    torch.save(FORMATS[name](torchvision_state), path)
    cfg = tiny_cfg(
        "model.name=resnet18",
        f"model.pretrained={path}",
        "train.steps=2",
        "train.eval_every=2",
        "train.checkpoint_every=2",
        "train.log_every=1",
    )
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary is not None
    start = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["weights"].startswith(f"loaded {BACKBONE_TENSORS} tensors")
