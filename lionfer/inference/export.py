"""`lionfer export`: a trained model (the EMA weights, eval mode) as ONNX or TorchScript.

The exported graph takes `input`, float32 (N, 3, S, S): RGB faces resized to S×S, scaled to [0, 1]
and normalised as (x − mean) / std; it returns `logits` and `probabilities`, both (N, C), and
`features`, (N, D): the face's embedding, the unit-length feature the classifier reads. N is
dynamic. Class names (and trained_classes, those the model had training labels of), S, mean,
std and this description are stored in the file: ONNX metadata_props, or the TorchScript extra
file `lionfer.json`. Each export is run once against PyTorch on a random batch before it is kept;
its largest probability difference must be at most TOLERANCE.

The export is made and checked in memory, then written whole through lionfer.atomic: a failed write
(a full disk) is an OSError naming --out, and leaves no partial file (TorchScript's own file writer
cannot report one: it aborts the process).
"""

from __future__ import annotations

import io
import itertools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lionfer.atomic import write_bytes_atomic
from lionfer.errors import InputError
from lionfer.inference.model_file import ModelInfo, checkpoint_file, torch_model
from lionfer.training.runfolder import check_out_file, refuse_run_file
from lionfer.version import __version__

FORMATS = ("onnx", "torchscript")
SUFFIXES = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
}
TOLERANCE = 1e-4  # max |p_onnx − p_torch| accepted (probabilities in [0, 1]; features alike)
CHECK_BATCH = 3  # differs from the export batch, so a batch size baked into the graph is caught
EXPORT_BATCH = 2
OPSET = 18


class ExportModule(nn.Module):
    """A lionfer model with plain tensor outputs: (logits, probabilities, features)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        output = self.model(x)
        return output.logits, output.logits.softmax(dim=1), output.features


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    info: ModelInfo
    max_difference: float  # largest |Δ probability| or |Δ feature| against PyTorch, a random batch

    def summary(self) -> str:
        i = self.info
        return (
            f"exported {i.model_name} ({len(i.class_names)} classes, input (N, 3, {i.image_size}, "
            f"{i.image_size})) as {self.format} to {self.path}; max difference "
            f"against PyTorch {self.max_difference:.2e} (tolerance {TOLERANCE:g})"
        )


def metadata(info: ModelInfo) -> dict[str, str]:
    """What a consumer needs to prepare inputs and read outputs, as strings."""
    s = info.image_size
    return {
        "lionfer_version": __version__,
        "model_name": info.model_name,
        "class_names": json.dumps(list(info.class_names)),
        "trained_classes": json.dumps(list(info.trained_classes)),
        "image_size": str(s),
        "mean": json.dumps(list(info.mean)),
        "std": json.dumps(list(info.std)),
        "input": (
            f"float32 (N, 3, {s}, {s}): RGB face crop resized to {s}x{s}, scaled to [0, 1], then "
            "(x - mean) / std per channel"
        ),
        "outputs": (
            "logits (N, C), probabilities (N, C), classes in class_names order; features (N, D), "
            "the face's unit-length embedding"
        ),
        "source_fingerprint": info.fingerprint,
    }


def export_format(out: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
        named = SUFFIXES.get(out.suffix.lower())
        if named is not None and named != fmt:  # m.onnx holding TorchScript reads as damaged
            raise InputError(
                f"--format {fmt} into {out.name}, a {named} file's name: name it for its format "
                f"or drop --format"
            )
        return fmt
    if out.suffix.lower() not in SUFFIXES:
        raise InputError(f"cannot tell the format from {out.name}; pass --format onnx|torchscript")
    return SUFFIXES[out.suffix.lower()]


def export(
    model: str | Path,
    out: str | Path,
    fmt: str | None = None,
    checkpoint: str = "last",
    overwrite: bool = False,
) -> ExportResult:
    """Export MODEL (a run folder or checkpoint) to out; see the module docstring."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; name the file, e.g. {out / 'model.onnx'}")
    fmt = export_format(out, fmt)
    check_out_file(out)
    refuse_run_file(out)
    if out.exists() and not overwrite:
        raise InputError(
            f"{out} already exists; pass --overwrite to replace it or choose another --out"
        )
    source = checkpoint_file(model, checkpoint)
    if out.exists() and out.resolve() == source.resolve():
        raise InputError(
            f"--out {out} is the checkpoint being exported; --overwrite would replace the run's "
            "model with its export: choose another --out"
        )
    if source.suffix.lower() == ".onnx":
        raise InputError(f"{source} is already an ONNX export; export from the run or checkpoint")
    module, info = torch_model(source, "cpu")
    wrapper = ExportModule(module).eval()
    if fmt == "onnx":
        data = _export_onnx(wrapper, info)
        difference = _check_onnx(wrapper, info, data)
    else:
        data = _export_torchscript(wrapper, info)
        difference = _check_torchscript(wrapper, info, data)
    if difference > TOLERANCE:
        raise RuntimeError(
            f"the {fmt} export differs from PyTorch by {difference:.2e} in probability or "
            f"embedding (tolerance {TOLERANCE:g}); it was not written"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, data)  # a failed write: an OSError naming out, no file left
    return ExportResult(out, fmt, info, difference)


def _example(info: ModelInfo, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, info.image_size, info.image_size, generator=generator)


# The oldest onnxscript whose exporter runs under the torch lionfer needs (older ones fail inside
# torch.onnx.export: "No module named 'onnx_ir'", "onnxscript._framework_apis.torch_2_11").
ONNXSCRIPT_MIN = (0, 6)


def onnxscript_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxscript")
    except PackageNotFoundError:
        return "unknown"


def check_onnxscript(installed: str) -> None:
    """Refuse an onnxscript older than ONNXSCRIPT_MIN, naming the upgrade (a version that cannot
    be read passes: the export then says what it could not import)."""
    parts = []
    for part in installed.split(".")[:2]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            return
        parts.append(int(digits))
    if tuple(parts) < ONNXSCRIPT_MIN:
        wanted = ".".join(map(str, ONNXSCRIPT_MIN))
        raise InputError(
            f"ONNX export needs onnxscript {wanted} or later with torch {torch.__version__}, and "
            f"{installed} is installed: pip install --upgrade 'lionfer[export]'"
        )


def _export_onnx(wrapper: ExportModule, info: ModelInfo) -> bytes:
    """The ONNX file's bytes, weights inside it: exported in memory (torch.onnx writes a file's
    weights beside it as external data, which an export must not need)."""
    try:
        import onnx  # noqa: F401  (the exporter's model format)
        import onnxruntime  # noqa: F401  (needed by the check; fail before the slow export)
        import onnxscript  # noqa: F401  (torch.onnx.export's dynamo exporter)
    except ImportError as error:
        raise InputError(
            f"ONNX export needs onnx, onnxscript and onnxruntime: pip install 'lionfer[export]' "
            f"({error})"
        ) from error
    check_onnxscript(onnxscript_version())
    batch = torch.export.Dim("batch")
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                (_example(info, EXPORT_BATCH, 0),),
                None,  # not saved: model_proto holds the weights
                input_names=["input"],
                output_names=["logits", "probabilities", "features"],
                dynamic_shapes={"x": {0: batch}},
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
    except ImportError as error:  # a part of onnxscript this torch's exporter imports
        raise InputError(
            f"ONNX export failed importing {error.name or error}: the installed onnxscript "
            f"({onnxscript_version()}) does not fit torch {torch.__version__}; pip install "
            f"--upgrade 'lionfer[export]'"
        ) from error
    graph = program.model_proto
    del graph.metadata_props[:]
    for key, value in metadata(info).items():
        graph.metadata_props.add(key=key, value=value)
    return graph.SerializeToString()


def _check_onnx(wrapper: ExportModule, info: ModelInfo, data: bytes) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = _example(info, CHECK_BATCH, 1)
    probs, features = session.run(["probabilities", "features"], {"input": x.numpy()})
    with torch.no_grad():
        _, expected, expected_features = wrapper(x)
    return max(
        float(np.abs(probs - expected.numpy()).max()),
        float(np.abs(features - expected_features.numpy()).max()),
    )


def _export_torchscript(wrapper: ExportModule, info: ModelInfo) -> bytes:
    """The TorchScript file's bytes. Saved into memory: torch.jit.save's own file writer, on a
    full disk, throws from a destructor and aborts the process, which no handler can catch."""
    # PyTorch marks TorchScript as deprecated (FutureWarning) but still loads and runs it.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(wrapper, _example(info, EXPORT_BATCH, 0))
        extra = {"lionfer.json": json.dumps(metadata(info), indent=2)}
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files=extra)
    return buffer.getvalue()


def _check_torchscript(wrapper: ExportModule, info: ModelInfo, data: bytes) -> float:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(io.BytesIO(data))
        x = _example(info, CHECK_BATCH, 1)
        (_, probs, features), (_, expected, expected_features) = loaded(x), wrapper(x)
        return max(
            float((probs - expected).abs().max()), float((features - expected_features).abs().max())
        )


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata stored by export() in an .onnx or TorchScript file."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        import onnx

        return {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
    files = {"lionfer.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), _extra_files=files)
    return json.loads(files["lionfer.json"])
