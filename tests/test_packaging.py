"""What pip installs: the wheel carries the configs, the ImageNet weights of the default (with
their licence) and py.typed; the sdist carries the tests, the benchmark scripts and the
documentation pages they read; the metadata states ranges, a licence and one version. Built
offline from a copy of the source."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import lionfer
from lionfer.models import PACKAGED_IMAGENET

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ["lionfer", "tests", "benchmarks", "pyproject.toml", "README.md", "LICENSE"]
SOURCE += ["MANIFEST.in", "constraints.txt", "Makefile", "docs", "mkdocs.yml", "CONTRIBUTING.md"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of the source tree, so that building leaves no build/ or egg-info behind."""
    copy = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCE:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, copy / name, ignore=ignore)
        else:
            shutil.copy2(path, copy / name)
    return copy


def build(source: Path, out: Path, *args: str) -> Path:
    """A wheel (pip, no network: no build isolation, no dependencies) or an sdist (build)."""
    if args == ("--sdist",):
        if importlib.util.find_spec("build") is None:
            pytest.skip("the sdist is built with the `build` package (the dev extra has it)")
        command = [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir"]
    else:
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        command += ["--no-index", "--wheel-dir"]
    subprocess.run([*command, str(out), str(source)], check=True, capture_output=True)
    (built,) = out.iterdir()
    return built


def test_the_wheel_carries_weights_configs_and_py_typed(source, tmp_path):
    wheel = build(source, tmp_path)
    assert wheel.name == f"lionfer-{lionfer.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        weights, sha256 = PACKAGED_IMAGENET["mobilenet_v2"]
        assert f"lionfer/weights/{weights}" in names
        assert "lionfer/weights/LICENSE-torchvision.txt" in names
        assert {"lionfer/py.typed", "lionfer/configs/default.toml"} <= names
        assert "lionfer/configs/sweeps/lion-embedded.toml" in names
        info = f"lionfer-{lionfer.__version__}.dist-info"
        assert f"{info}/licenses/LICENSE" in names
        for notice in ("LICENSE-torchvision.txt", "MTCNN-LICENSE.txt"):  # the shipped weights'
            assert f"{info}/licenses/lionfer/weights/{notice}" in names
        metadata = archive.read(f"{info}/METADATA").decode()
        import hashlib

        data = archive.read(f"lionfer/weights/{weights}")
        assert hashlib.sha256(data).hexdigest() == sha256
    assert "License-Expression: MIT AND BSD-3-Clause" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert not any("==" in line.split(";")[0] for line in requires), requires  # ranges, not pins
    assert "Requires-Dist: opencv-python-headless<5,>=4.8" in requires  # 5 lacks Haar
    assert not any("requests" in line for line in requires)
    assert any(
        line.startswith("Requires-Dist: scikit-image") and "extra ==" in line for line in requires
    )
    assert not any(line.startswith("Requires-Dist: fdet") for line in requires)
    assert not any(name.startswith("tests/") for name in names)


def test_the_sdist_carries_the_tests_and_what_they_read(source, tmp_path):
    sdist = build(source, tmp_path, "--sdist")
    top = f"lionfer-{lionfer.__version__}"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    for script in (ROOT / "benchmarks").glob("*.py"):
        assert f"{top}/benchmarks/{script.name}" in names
    assert {f"{top}/tests/conftest.py", f"{top}/LICENSE", f"{top}/constraints.txt"} <= names
    assert f"{top}/lionfer/weights/{PACKAGED_IMAGENET['mobilenet_v2'][0]}" in names
    for page in (ROOT / "docs").glob("*.md"):  # the tests check their commands and links
        assert f"{top}/docs/{page.name}" in names
    assert {f"{top}/mkdocs.yml", f"{top}/CONTRIBUTING.md", f"{top}/docs/hooks.py"} <= names


def test_one_version_and_a_spdx_licence():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert project["license"] == "MIT AND BSD-3-Clause"  # the code and MTCNN; torchvision's
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    pins = [d for d in project["dependencies"] if "==" in d]
    assert not pins, pins
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    pinned = {line.split("==")[0].lower() for line in constraints if "==" in line}
    for requirement in project["dependencies"]:
        name = requirement.split(">")[0].split("<")[0].split("=")[0].strip().lower()
        assert name.replace("-", "_") in {p.replace("-", "_") for p in pinned}, name
