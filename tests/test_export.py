"""`lionfer export`: ONNX and TorchScript files that give PyTorch's outputs, with their metadata."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from predict_helpers import IMAGE_SIZE, faces, make_checkpoint

from lionfer.cli import main
from lionfer.inference.export import TOLERANCE, export, read_metadata
from lionfer.inference.model_file import torch_model
from lionfer.inference.predictor import InputError, load
from lionfer.labels import CLASS_NAMES

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", seed=3)


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    result = export(checkpoint, out)
    assert result.format == "onnx" and result.max_difference <= TOLERANCE
    return out


def reference(checkpoint: Path, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    model, _ = torch_model(checkpoint)
    with torch.no_grad():
        output = model(x)
    logits = output.logits
    return logits.numpy(), logits.softmax(dim=1).numpy(), output.features.numpy()


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_runtime_gives_pytorchs_outputs_for_any_batch(onnx_file, checkpoint, batch):
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities", "features"]
    x = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(9))
    logits, probs, features = session.run(None, {"input": x.numpy()})
    expected_logits, expected_probs, expected_features = reference(checkpoint, x)
    assert probs.shape == (batch, len(CLASS_NAMES)) and features.shape == (batch, 128)
    np.testing.assert_allclose(probs, expected_probs, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(features, expected_features, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)


def test_onnx_metadata_holds_classes_size_and_normalisation(onnx_file):
    meta = read_metadata(onnx_file)
    assert json.loads(meta["class_names"]) == list(CLASS_NAMES)
    assert int(meta["image_size"]) == IMAGE_SIZE
    assert json.loads(meta["mean"]) == [0.5] * 3 and json.loads(meta["std"]) == [0.5] * 3
    assert "(x - mean) / std" in meta["input"] and meta["model_name"] == "cnn_small"


def test_a_predictor_on_the_onnx_file_matches_the_checkpoint(onnx_file, checkpoint):
    crops = [Image.fromarray(f) for f in faces((0, 3, 6))]
    from_onnx = load(onnx_file).probabilities(crops)
    from_torch = load(checkpoint).probabilities(crops)
    np.testing.assert_allclose(from_onnx, from_torch, atol=TOLERANCE, rtol=0)
    onnx_embeddings = load(onnx_file).embeddings(crops)
    np.testing.assert_allclose(onnx_embeddings, load(checkpoint).embeddings(crops), atol=TOLERANCE)
    assert onnx_embeddings.shape == (3, 128)
    assert load(onnx_file).info.class_names == CLASS_NAMES


def test_torchscript_export_runs_any_batch_and_carries_metadata(capsys, checkpoint, tmp_path):
    out = tmp_path / "model.pt"
    assert main(["export", str(checkpoint), "--format", "torchscript", "--out", str(out)]) == 0
    assert "max difference against PyTorch" in capsys.readouterr().out
    assert json.loads(read_metadata(out)["class_names"]) == list(CLASS_NAMES)
    x = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        logits, probs, features = torch.jit.load(str(out))(x)
    _, expected_probs, expected_features = reference(checkpoint, x)
    np.testing.assert_allclose(probs.detach().numpy(), expected_probs, atol=1e-6)
    np.testing.assert_allclose(features.detach().numpy(), expected_features, atol=1e-6)
    with pytest.raises(InputError, match="TorchScript export"):
        load(out)  # an export is not a training checkpoint
    assert main(["export", str(checkpoint), "--format", "torchscript", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_export_refuses_to_overwrite_and_names_bad_formats(checkpoint, onnx_file, tmp_path):
    with pytest.raises(InputError, match="already exists.*--overwrite"):
        export(checkpoint, onnx_file)
    with pytest.raises(InputError, match="--format onnx|torchscript"):
        export(checkpoint, tmp_path / "model.bin")
    with pytest.raises(InputError, match="already an ONNX export"):
        export(onnx_file, tmp_path / "again.onnx")
    for name, fmt in (("model.onnx", "torchscript"), ("model.ts", "onnx")):
        with pytest.raises(InputError, match=f"--format {fmt} into {name}, a .* file's name"):
            export(checkpoint, tmp_path / name, fmt)
    assert not list(tmp_path.iterdir())  # nothing half-written was left behind


def test_an_onnx_file_exported_without_embeddings_predicts_but_names_how_to_get_them(
    checkpoint, tmp_path
):
    import onnx

    from lionfer.inference.export import ExportModule, metadata

    class Older(ExportModule):  # as lionfer exported before embeddings were
        def forward(self, x):
            logits = self.model(x).logits
            return logits, logits.softmax(dim=1)

    module, info = torch_model(checkpoint)
    old = tmp_path / "old.onnx"
    batch = torch.export.Dim("batch")
    with torch.no_grad():
        torch.onnx.export(
            Older(module).eval(),
            (torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE),),
            str(old),
            input_names=["input"],
            output_names=["logits", "probabilities"],
            dynamic_shapes={"x": {0: batch}},
            opset_version=18,
            dynamo=True,
        )
    graph = onnx.load(str(old))
    for key, value in metadata(info).items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(old))
    crops = [Image.fromarray(f) for f in faces((0, 3))]
    assert load(old).probabilities(crops).shape == (2, len(CLASS_NAMES))
    with pytest.raises(InputError, match="exported without embeddings.*lionfer export"):
        load(old).embeddings(crops)
    with pytest.raises(InputError, match="exported without embeddings"):
        load(old, embeddings=True)


def test_an_onnxscript_too_old_for_the_exporter_is_refused_naming_the_upgrade():
    """onnxscript before 0.6 fails inside torch.onnx.export under torch 2.14 ("No module named
    'onnx_ir'"): refused first, in one line."""
    from lionfer.errors import InputError
    from lionfer.inference.export import check_onnxscript

    for old in ("0.2.0", "0.5.7"):
        with pytest.raises(InputError, match=rf"onnxscript 0.6 or later .* {old} is installed"):
            check_onnxscript(old)
    for fine in ("0.6.0", "0.6.0rc1", "0.7.2", "1.0", "unknown", ""):
        check_onnxscript(fine)
