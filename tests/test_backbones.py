"""Backbones by name: any timm or torchvision model keeps the FERNet contract (unit-norm pooled
features, logits from lionfer's head), loads weights strictly from a local file, and downloads
them only when asked (model.pretrained=hub), failing with a readable message when offline."""

import subprocess
import sys
import urllib.error

import pytest
import torch
import torchvision

from lionfer.cli import main
from lionfer.config import load_config
from lionfer.config_sections import ModelConfig
from lionfer.errors import ConfigError, InputError
from lionfer.models import build_model, load_pretrained
from lionfer.registry import MODELS

# timm models and .safetensors files: the timm extra (in the dev extra); skipped without it
timm = pytest.importorskip("timm")
save_file = pytest.importorskip("safetensors.torch").save_file

# Tiny members of each family: timm's own test models, torchvision's smallest classifier.
FAMILY_MODELS = [("timm:test_resnet", 96, "fc."), ("torchvision:shufflenet_v2_x0_5", 1024, "fc.")]


@pytest.mark.parametrize(("name", "dim", "head"), FAMILY_MODELS)
def test_a_family_model_gives_unit_pooled_features_and_lionfers_head(name, dim, head):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, dropout=0.5), 5).train()
    out = model(torch.randn(3, 3, 32, 32))
    assert model.feature_dim == dim and out.features.shape == (3, dim)
    assert torch.allclose(out.features.norm(dim=1), torch.ones(3), atol=1e-5)
    assert out.logits.shape == out.clean_logits.shape == (3, 5)
    assert model.head_prefixes == (head,)
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.backbone.modules())


def test_torchvision_classifier_and_its_dropout_are_removed():
    model = build_model(ModelConfig(name="torchvision:mobilenet_v3_small"), 7)
    # classifier = Linear(576, 1024), Hardswish, Dropout, Linear(1024, 1000): the features are
    # the 1024 pre-logits, the last Linear and the dropout go.
    assert model.feature_dim == 1024 and model.head_prefixes == ("classifier.3.",)
    kinds = [type(m).__name__ for m in model.backbone.classifier]
    assert kinds == ["Linear", "Hardswish", "Identity", "Identity"]


def test_names_are_checked_when_built_with_a_suggestion():
    cfg = load_config(None, ["model.name=timm:test_resnett"])  # validation does not import timm
    with pytest.raises(ConfigError, match="no model 'test_resnett'. Did you mean test_resnet"):
        build_model(cfg.model, 7)
    with pytest.raises(ConfigError, match="Did you mean .*shufflenet_v2_x0_5"):
        build_model(ModelConfig(name="torchvision:shufflenet_v2_x0_55"), 7)
    with pytest.raises(ConfigError, match="no linear classifier"):
        build_model(ModelConfig(name="torchvision:squeezenet1_1"), 7)
    for bad in ("timm:", "keras:resnet50", "timm"):
        with pytest.raises(ConfigError, match="unknown model"):
            load_config(None, [f"model.name={bad}"])


def test_validating_a_family_name_imports_neither_torch_nor_timm():
    code = (
        "import sys; from lionfer.config import load_config; "
        "load_config(None, ['model.name=timm:convnext_tiny', 'model.pretrained=hub']); "
        "print('torch' in sys.modules, 'timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_list_models_says_how_to_name_them(capsys):
    assert main(["list", "models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("timm:<name>") and "convnext_tiny" in line for line in lines)
    assert any(line.startswith("torchvision:<name>") for line in lines)
    assert callable(MODELS.get("torchvision:resnet18"))


def test_a_timm_weights_file_loads_strictly_and_drops_timms_classifier(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=1000)  # as timm saves it
    save_file(source.state_dict(), str(tmp_path / "model.safetensors"))
    torch.save({"state_dict": source.state_dict()}, tmp_path / "model.pth")
    for path in (tmp_path / "model.safetensors", tmp_path / "model.pth"):
        model = build_model(ModelConfig(name="timm:test_resnet"), 7)
        message = load_pretrained(model, path)
        assert "dropped fc.bias, fc.weight" in message
        for key, value in model.backbone.state_dict().items():
            assert torch.equal(value, source.state_dict()[key]), key
    broken = {k: v for k, v in source.state_dict().items() if not k.startswith("conv1")}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"missing: conv1.*state dict of timm's test_resnet"):
        load_pretrained(
            build_model(ModelConfig(name="timm:test_resnet"), 7), tmp_path / "broken.pth"
        )


def test_a_torchvision_weights_file_loads_through_the_config(tiny_cfg, tmp_path):
    from lionfer.training.run import build_trainer

    torch.manual_seed(2)
    source = torchvision.models.shufflenet_v2_x0_5(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "shufflenet.pth")
    cfg = tiny_cfg(
        "model.name=torchvision:shufflenet_v2_x0_5", f"model.pretrained={tmp_path}/shufflenet.pth"
    )
    trainer = build_trainer(cfg, tmp_path / "run", progress=False)
    assert trainer.weights_message.endswith("(dropped fc.bias, fc.weight)")
    conv = trainer.model.backbone.conv1[0].weight
    assert torch.equal(conv, source.conv1[0].weight)


def test_hub_weights_are_fetched_only_when_asked_and_offline_says_what_to_do(
    tiny_cfg, tmp_path, monkeypatch
):
    from lionfer.training.run import build_trainer

    asked = []
    real_create = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        asked.append(pretrained)
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    build_trainer(tiny_cfg("model.name=timm:test_resnet"), tmp_path / "a", progress=False)
    assert asked == [False]  # random init: nothing downloaded
    with pytest.raises(InputError) as info:
        build_trainer(
            tiny_cfg("model.name=timm:test_resnet", "model.pretrained=hub"), tmp_path / "b"
        )
    message = str(info.value)
    assert "could not download the pretrained weights of timm:test_resnet" in message
    assert "couldn't connect" in message and "model.pretrained=PATH" in message
    assert not (tmp_path / "b").exists()

    def no_network(name):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models, "get_model_weights", no_network)
    cfg = tiny_cfg("model.name=torchvision:shufflenet_v2_x0_5", "model.pretrained=hub")
    with pytest.raises(InputError, match="torchvision's hub: URLError.*name resolution"):
        build_trainer(cfg, tmp_path / "c")
    with pytest.raises(InputError, match="hub downloads weights for timm:NAME and torchvision"):
        build_trainer(tiny_cfg("model.pretrained=hub"), tmp_path / "d")
