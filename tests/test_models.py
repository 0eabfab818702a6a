"""Models: output shapes, unit-norm features, registry, and strict checkpoint loading."""

import pytest
import torch
import torchvision

from lionfer.config_sections import ModelConfig
from lionfer.models import MODELS, Output, build_model, load_pretrained


def model_cfg(name: str, pretrained: str = "", dropout: float = 0.5) -> ModelConfig:
    return ModelConfig(name=name, pretrained=pretrained, dropout=dropout)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return build_model(model_cfg("resnet18"), 7)


@pytest.fixture(scope="module")
def msceleb_tensors() -> dict[str, torch.Tensor]:
    """A random torchvision resnet18 state dict with a 1000-way fc, like the MS-Celeb file."""
    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None, num_classes=1000).state_dict()
    return {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}


@pytest.fixture
def msceleb_state(msceleb_tensors) -> dict[str, torch.Tensor]:
    return dict(msceleb_tensors)  # tests may swap entries


@pytest.mark.parametrize(
    ("name", "size", "dim"),
    [("cnn_small", 16, 128), ("cnn_small", 128, 128), ("resnet18", 64, 512)],
)
def test_output_shapes_and_unit_features(name, size, dim):
    torch.manual_seed(0)
    model = build_model(model_cfg(name), 5).eval()
    out = model(torch.randn(3, 3, size, size))
    assert isinstance(out, Output)
    assert out.logits.shape == (3, 5)
    assert out.features.shape == (3, dim)
    assert model.feature_dim == dim and model.num_classes == 5
    assert len(model.mean) == 3 and len(model.std) == 3
    torch.testing.assert_close(out.features.norm(dim=1), torch.ones(3))


def test_registry_lists_both_models():
    assert {"resnet18", "cnn_small"} <= set(MODELS.names())
    with pytest.raises(KeyError, match="cnn_small"):
        build_model(model_cfg("cnn_smal"), 7)


def test_resnet_uses_imagenet_normalisation(resnet):
    assert resnet.mean == (0.485, 0.456, 0.406)
    assert resnet.std == (0.229, 0.224, 0.225)


def test_init_is_deterministic_under_manual_seed():
    torch.manual_seed(7)
    a = build_model(model_cfg("cnn_small"), 7).state_dict()
    torch.manual_seed(7)
    b = build_model(model_cfg("cnn_small"), 7).state_dict()
    torch.manual_seed(8)
    c = build_model(model_cfg("cnn_small"), 7).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.weight"], c["head.weight"])


def test_features_are_free_of_dropout():
    torch.manual_seed(0)
    model = build_model(model_cfg("cnn_small", dropout=0.9), 7).eval()
    x = torch.randn(4, 3, 32, 32)
    features_eval = model(x).features
    model.backbone.eval()  # BN in eval mode; only dropout is in train mode
    model.dropout.train()
    out = model(x)
    torch.testing.assert_close(out.features, features_eval)
    assert not torch.allclose(out.logits, model.eval()(x).logits)


def test_loads_msceleb_format(tmp_path, resnet, msceleb_state):
    state = msceleb_state
    path = tmp_path / "resnet18_msceleb.pth"
    torch.save({"state_dict": state, "epoch": 10}, path)
    head_before = resnet.head.weight.clone()
    message = load_pretrained(resnet, path)
    assert message == f"loaded 120 tensors from {path} (dropped fc.bias, fc.weight)"
    backbone = resnet.backbone.state_dict()
    assert len(backbone) == 120
    for key, value in backbone.items():
        assert torch.equal(value, state[key]), key
    assert torch.equal(resnet.head.weight, head_before)


def test_build_model_loads_pretrained(tmp_path, msceleb_state):
    state = msceleb_state
    path = tmp_path / "bare.pth"
    torch.save(state, path)  # a bare state dict
    model = build_model(model_cfg("resnet18", pretrained=str(path)), 7)
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])


def test_module_prefix_is_stripped(tmp_path, resnet, msceleb_state):
    state = msceleb_state
    path = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    assert "loaded 120 tensors" in load_pretrained(resnet, path)
    assert torch.equal(resnet.backbone.layer4[1].bn2.weight, state["layer4.1.bn2.weight"])


def test_missing_or_renamed_key_fails(tmp_path, resnet, msceleb_state):
    state = msceleb_state
    state["layer3.0.conv_one.weight"] = state.pop("layer3.0.conv1.weight")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing: layer3\.0\.conv1\.weight") as err:
        load_pretrained(resnet, path)
    assert "unexpected: layer3.0.conv_one.weight" in str(err.value)
    assert "resnet18_msceleb.pth" in str(err.value)  # says what format is expected


def test_wrong_shape_fails(tmp_path, resnet, msceleb_state):
    state = msceleb_state
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    path = tmp_path / "gray.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"conv1\.weight \(64, 1, 7, 7\) vs \(64, 3, 7, 7\)"):
        load_pretrained(resnet, path)


def test_missing_file_names_path(tmp_path, resnet):
    path = tmp_path / "nowhere" / "resnet18_msceleb.pth"
    with pytest.raises(FileNotFoundError, match=str(path)):
        load_pretrained(resnet, path)


class Payload:
    """An arbitrary object: weights_only loading must refuse to unpickle it."""


def test_arbitrary_pickle_is_refused(tmp_path, resnet, msceleb_state):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": msceleb_state, "payload": Payload()}, path)
    with pytest.raises(ValueError, match="holds Python objects besides tensors"):
        load_pretrained(resnet, path)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n", "a text file"),
        (b"\x80\x02garbage", "damaged or truncated"),
    ],
)
def test_a_file_that_is_no_weights_says_what_it_is(tmp_path, resnet, content, reason):
    path = tmp_path / "resnet18_msceleb.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"cannot read {path} as weights: .*{reason}") as error:
        load_pretrained(resnet, path)
    assert "weights_only=False" not in str(error.value)  # torch's advice to unpickle anything


def test_a_folder_keys_not_named_by_strings_and_safetensors_in_capitals(tmp_path, resnet):
    with pytest.raises(ValueError, match="is a folder: name the weights file in it"):
        load_pretrained(resnet, tmp_path)
    torch.save({0: torch.zeros(1)}, tmp_path / "numbered.pth")
    with pytest.raises(ValueError, match="state dict of tensors named by strings"):
        load_pretrained(resnet, tmp_path / "numbered.pth")
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in resnet.state_dict().items()}, tmp_path / "w.SAFETENSORS"
    )
    assert "dropped" not in load_pretrained(resnet, tmp_path / "w.SAFETENSORS")


def test_lionfer_model_state_round_trips(tmp_path):
    torch.manual_seed(0)
    source = build_model(model_cfg("cnn_small"), 7)
    path = tmp_path / "last.pt"
    live = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in source.state_dict().items()
    }
    torch.save({"model": live, "ema": source.state_dict()}, path)  # a checkpoint: its EMA weights
    torch.manual_seed(1)
    target = build_model(model_cfg("cnn_small"), 7)
    assert "dropped" not in load_pretrained(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def _checkpoint_of(path, classes: list[str]) -> torch.nn.Module:
    """A lionfer checkpoint of a cnn_small trained (randomly) on `classes`, saved at path."""
    torch.manual_seed(5)
    source = build_model(model_cfg("cnn_small"), len(classes))
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    torch.save({"ema": source.state_dict(), "class_names": classes}, path)
    return source


def test_a_checkpoints_head_is_matched_to_the_runs_classes_by_name(tmp_path):
    """A head trained on Anger, Happiness, Sadness loaded for Sadness, Fear, Anger: Sadness and
    Anger take their own rows (not the rows at their positions), Fear, which the file has no
    row for, keeps the model's initial row; the backbone loads whole."""
    path = tmp_path / "last.pt"
    source = _checkpoint_of(path, ["Anger", "Happiness", "Sadness"])
    torch.manual_seed(6)
    target = build_model(model_cfg("cnn_small"), 3)
    initial = target.head.weight.detach().clone(), target.head.bias.detach().clone()
    message = load_pretrained(target, path, ["Sadness", "Fear", "Anger"])
    assert "matched its head to this run's classes by name (Sadness, Anger from the file" in message
    assert "Fear, which it has no row for, from initial weights" in message
    weight, bias = target.head.weight, target.head.bias
    assert torch.equal(weight[0], source.head.weight[2]) and torch.equal(
        bias[0], source.head.bias[2]
    )
    assert torch.equal(weight[2], source.head.weight[0]) and torch.equal(
        bias[2], source.head.bias[0]
    )
    assert torch.equal(weight[1], initial[0][1]) and torch.equal(bias[1], initial[1][1])
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(target.backbone.state_dict()[key], value), key


def test_a_checkpoints_head_of_other_classes_or_another_count_is_left_out(tmp_path):
    """The same number of classes with no name in common: the head is not read as this run's (it
    was loaded row for row before); a head of another count without names to match: left out,
    where the strict load refused the whole file. The same classes in the same order: as saved."""
    path = tmp_path / "last.pt"
    source = _checkpoint_of(path, ["apple", "banana", "cherry"])
    torch.manual_seed(6)
    target = build_model(model_cfg("cnn_small"), 3)
    initial = target.head.weight.detach().clone()
    message = load_pretrained(target, path, ["ant", "bee", "cat"])
    assert "left out its head: it was trained on apple, banana, cherry, none of this" in message
    assert torch.equal(target.head.weight, initial)
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(target.backbone.state_dict()[key], value), key
    assert "its head" not in load_pretrained(target, path, ["apple", "banana", "cherry"])
    assert torch.equal(target.head.weight, source.head.weight)
    torch.save({"ema": source.state_dict()}, path)  # no class names
    wider = build_model(model_cfg("cnn_small"), 7)
    initial = wider.head.weight.detach().clone()
    message = load_pretrained(wider, path, None)
    assert "left out its head (for 3 classes; this model has 7)" in message
    assert torch.equal(wider.head.weight, initial)


def test_mobilenet_v2_loads_the_packaged_imagenet_weights():
    from lionfer.models import resolve_pretrained

    path = resolve_pretrained("mobilenet_v2", "imagenet")
    model = build_model(model_cfg("mobilenet_v2"), 7)
    message = load_pretrained(model, path)
    assert "dropped classifier.1.bias, classifier.1.weight" in message
    reference = torch.load(path, weights_only=True)["features.0.0.weight"]
    assert torch.equal(model.backbone.features[0][0].weight, reference)
    out = model.eval()(torch.randn(2, 3, 32, 32))
    assert out.features.shape == (2, 1280)
    with pytest.raises(ValueError, match='not resnet18; set model.pretrained="" to train it'):
        resolve_pretrained("resnet18", "imagenet")
    assert resolve_pretrained("resnet18", "my.pth") == "my.pth"


def test_clean_logits_skip_dropout_and_feature_scale_multiplies_the_head_input():
    torch.manual_seed(0)
    cfg = ModelConfig(name="cnn_small", dropout=0.5, feature_scale=4.0)
    model = build_model(cfg, 3).train()
    out = model(torch.randn(4, 3, 16, 16))
    expected = model.head(4.0 * out.features)
    torch.testing.assert_close(out.clean_logits, expected)
    assert not torch.allclose(out.logits, out.clean_logits)  # dropout acts on the logits only
    model.eval()
    out = model(torch.randn(4, 3, 16, 16))
    assert torch.equal(out.clean_logits, out.logits)


def test_the_packaged_imagenet_weights_are_torchvisions_file(tmp_path, monkeypatch):
    """The file is torchvision's own (its name carries the first 8 hex digits of its SHA-256)
    and is checked before it is read: a damaged or missing copy says to reinstall."""
    import hashlib

    from lionfer import models

    name, sha256 = models.PACKAGED_IMAGENET["mobilenet_v2"]
    path = models.WEIGHTS_DIR / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    assert name == f"mobilenet_v2-{sha256[:8]}.pth"
    assert (models.WEIGHTS_DIR / "LICENSE-torchvision.txt").read_text().startswith("BSD 3-Clause")

    damaged = tmp_path / name
    damaged.write_bytes(path.read_bytes()[:-1] + b"\0")
    monkeypatch.setattr(models, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(models, "_VERIFIED", set())
    with pytest.raises(ValueError, match="is damaged .*reinstall lionfer"):
        models.resolve_pretrained("mobilenet_v2", "imagenet")
    from lionfer.training import setup

    model, weights = (
        build_model(model_cfg("mobilenet_v2"), 7),
        model_cfg("mobilenet_v2", "imagenet"),
    )
    with pytest.raises(ValueError) as error:  # as a run reports it: the setting named once
        setup.load_pretrained(model, weights)
    assert str(error.value).startswith("model.pretrained=imagenet: ") and "damaged" in str(
        error.value
    )
    damaged.unlink()
    with pytest.raises(FileNotFoundError, match="missing; reinstall lionfer"):
        models.resolve_pretrained("mobilenet_v2", "imagenet")
    with pytest.raises(FileNotFoundError, match=r"^model.pretrained=imagenet: the packaged"):
        setup.load_pretrained(model, weights)


def test_the_error_names_the_weights_each_model_expects(tmp_path, msceleb_state):
    path = tmp_path / "resnet18_msceleb.pth"
    torch.save({"state_dict": msceleb_state}, path)
    for name in ("mobilenet_v2", "cnn_small"):
        model = build_model(model_cfg(name), 7)
        with pytest.raises(ValueError, match=f"expected a .*{name}") as error:
            load_pretrained(model, path)
        assert "resnet18 (conv1.weight" not in str(error.value)
