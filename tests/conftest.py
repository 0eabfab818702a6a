"""Shared fixtures: tiny configs that run the real training path in seconds on CPU."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from lionfer.config import load_config

# Two threads for the tiny models, unless OMP_NUM_THREADS says otherwise: `make mutation` runs
# the tests in forked children, which hang on a thread pool the parent started.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str):
    """A script of benchmarks/ as a module, to call its sections from a test (benchmarks/ on the
    path, as when the script runs, for the helpers the scripts share)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = [
    "model.name=cnn_small",  # the packaged default.toml trains a pretrained MobileNetV2
    'model.pretrained=""',
    "model.feature_scale=1.0",
    "data.num_workers=0",
    "data.num_train=210",
    "data.num_test=70",
    "data.num_labels=28",
    "data.image_size=24",
    "train.steps=12",
    "train.batch_size=4",
    "train.eval_every=6",
    "train.log_every=3",
    "train.checkpoint_every=6",
    "train.eval_batch_size=64",
]


def tiny(*overrides) -> list[str]:
    """TINY and the overrides; the embedded faces' sizes only where they are the dataset (a new
    run refuses keys its dataset does not read)."""
    named = [item.partition("=")[2] for item in overrides if item.startswith("data.dataset=")]
    faces = not named or named[-1] == "synthetic"
    return [*(t for t in TINY if faces or not t.startswith(FACES_ONLY)), *overrides]


FACES_ONLY = ("data.num_train=", "data.num_test=")


@pytest.fixture
def tiny_cfg():
    def make(*overrides):
        return load_config(None, tiny(*overrides))

    return make


# A model file for the inference tests (tests/predict_helpers.py's make_checkpoint: a small
# model of the seven classes), one per module, and a Predictor of it with the Haar detector.


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from predict_helpers import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def predictor(checkpoint):
    from lionfer.inference.predictor import load

    return load(checkpoint, detector="haar", batch_size=4)
