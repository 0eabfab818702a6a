"""Exit codes: 2 for every bad input (the message names the key or file and the fix), 1 for a
runtime failure; and commands that never import torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lionfer.cli import main
from lionfer.labels import CLASS_NAMES

ROOT = Path(__file__).resolve().parent.parent


def save_png(path: Path, size: int = 16, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """ROOT/<class>/*.png, 4 per class (one is held out as test), and a manifest beside them."""
    root = tmp_path_factory.mktemp("faces")
    for c, name in enumerate(CLASS_NAMES):
        for k in range(4):
            save_png(root / "images" / name.lower() / f"{k}.png", seed=10 * c + k)
    return root / "images"


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def bad_split(folder: Path) -> Path:
    path = folder / "split.json"
    keys = ("labeled", "unlabeled", "val")
    payload = {k: [] for k in keys} | {"seed": 0, "rule": "balanced", "num_labels": 7}
    path.write_text(json.dumps(payload | {"source_hash": "0123456789abcdef"}))
    return path


def traversal_manifest(folder: Path) -> Path:
    path = folder / "m" / "manifest.csv"
    path.parent.mkdir()
    path.write_text("path,label\n../../../../etc/passwd,happy\n")
    return path


def utf16_config(folder: Path) -> Path:
    """A config saved as UTF-16 (as Windows Notepad may): TOML files are UTF-8."""
    path = folder / "utf16.toml"
    path.write_bytes("[train]\nsteps = 3\n".encode("utf-16"))
    return path


CASES = {
    "negative seed": (["seed=-1"], "seed: must be a non-negative integer"),
    "tiny image_size": (["data.image_size=8"], "data.image_size: must lie in [16, 1024]"),
    "unknown device": (["train.device=tpu"], "train.device: must be auto, cpu, cuda"),
    "unknown dataset": (["data.dataset=rafbd"], "data.dataset: unknown dataset 'rafbd'"),
    "unknown model": (["model.name=resnet"], "model.name: unknown model 'resnet'"),
    "folder without root": (["data.dataset=folder"], "data.root is empty"),
    "manifest without root": (
        ["data.dataset=manifest"],
        r"data.root is empty, but the manifest dataset reads files: set data.root to the face "
        r"cache `lionfer prepare` made",
    ),
    "missing root": (["data.dataset=folder", "data.root={tmp}/nope"], "image folder not found"),
    "labels beyond the data": (
        ["data.dataset=folder", "data.root={faces}", "data.num_labels=100"],
        "data.num_labels=100 exceeds the 21 labeled training images",
    ),
    "split of other data": (
        ["data.dataset=folder", "data.root={faces}", "data.split_file={split}"],
        "was made for another dataset or label list",
    ),
    "manifest escaping its folder": (
        ["data.dataset=manifest", "data.root={manifest}"],
        "points outside the manifest's folder",
    ),
    "missing weights": (["model.pretrained={tmp}/w.pth"], "model.pretrained: pretrained weights"),
    "config file and stray word": (["default", "extra"], "expected one config file"),
    "config file not UTF-8": (["{utf16}"], "utf16.toml is not UTF-8 text"),
    "class id as a protected class": (
        ["algorithm.recipe=released", "algorithm.protected_classes=[6]"],
        'algorithm.protected_classes: give class names, e.g. ["neutral"]; got 6',
    ),
    "class map to a list": (
        ["data.dataset=folder", "data.root={faces}", "data.class_map={{happy=[3]}}"],
        "data.class_map['happy'] = [3]: give a class id 0-7",
    ),
    "synthetic faces too small": (
        ["data.image_size=16"],
        "error: data.image_size: the synthetic faces are drawn at 24 to 224 px, got 16",
    ),
    "split file that is a folder": (["data.split_file={tmp}"], "is a folder; data.split_file"),
    "unlabeled weight not a number": (
        ["algorithm.name=fixmatch", "algorithm.lambda_u=nan"],
        "algorithm.lambda_u: must be >= 0 and finite",
    ),
    "packaged weights of another model": (  # named once, as the setting reads
        ["model.name=resnet18", "model.pretrained=imagenet"],
        "error: model.pretrained=imagenet: lionfer ships ImageNet weights only for",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_naming_the_key_or_file(capsys, tmp_path, faces, case):
    overrides, message = CASES[case]
    values = {
        "tmp": tmp_path,
        "faces": faces,
        "split": bad_split(tmp_path),
        "manifest": traversal_manifest(tmp_path),
        "utf16": utf16_config(tmp_path),
    }
    argv = [item.format(**values) for item in overrides]
    code, err = run(capsys, "train", *argv, "--out", tmp_path / "run", "--no-progress")
    assert code == 2, err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing was written


def test_a_corrupt_image_exits_2_before_training(capsys, tmp_path, faces):
    unlabeled = tmp_path / "unlabeled"
    for k in range(3):
        save_png(unlabeled / f"{k}.png", seed=k)
    (unlabeled / "3.png").write_bytes((unlabeled / "0.png").read_bytes()[:60])
    argv = ["data.dataset=folder", f"data.root={faces}", f"data.unlabeled_root={unlabeled}"]
    code, err = run(capsys, "train", *argv, "--out", tmp_path / "run")
    assert code == 2 and "1 of 4 unlabeled images cannot be read" in err and "3.png" in err
    assert not (tmp_path / "run").exists()


def test_a_runtime_failure_exits_1(capsys, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    argv = ["algorithm.name=supervised", "train.steps=1", "data.num_train=70", "data.num_test=14"]
    code, err = run(capsys, "train", *argv, "data.num_labels=7", "--out", tmp_path / "run")
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    assert "no checkpoint of this run was saved yet" in err


def test_help_version_list_and_config_show_never_import_torch():
    script = (
        "import sys\n"
        "from lionfer.cli import main\n"
        "for argv in (['list', 'algorithms'], ['list', 'models'], ['list', 'datasets'],\n"
        "             ['config', 'show', 'data.dataset=folder'], ['--help'], ['--version']):\n"
        "    try:\n"
        "        assert main(argv) == 0\n"
        "    except SystemExit as done:\n"
        "        assert done.code == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "lionfer 0.1.0" in done.stdout and "resnet18" in done.stdout


def test_python_dash_m_lionfer_runs_the_command():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "lionfer", "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "lionfer 0.1.0"


def test_a_reader_that_stops_reading_ends_the_command_quietly():
    # `lionfer list algorithms | head -n1`: the pipe closed before lionfer writes to it
    process = subprocess.Popen(
        [sys.executable, "-m", "lionfer", "list", "algorithms"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert (process.returncode, err.decode()) == (141, "")


def test_an_unlabeled_folder_of_the_labeled_images_is_named_when_nothing_is_left(
    capsys, tmp_path, faces
):
    argv = ["data.dataset=folder", f"data.root={faces}", f"data.unlabeled_root={faces}"]
    code, err = run(capsys, "train", *argv, "data.num_labels=-1", "--out", tmp_path / "run")
    assert code == 2 and "leaves none unlabeled" in err, err
    assert f"give data.unlabeled_root a folder of other images (none of {faces} is left" in err
    assert "add a folder of unlabeled images" not in err and not (tmp_path / "run").exists()
