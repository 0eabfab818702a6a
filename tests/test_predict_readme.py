"""The README's Python example of lionfer.load runs as written, on a tiny run trained first; the
docs page on trained models shows the same example."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from predict_helpers import faces, scene, trained_run

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS_PAGE = ROOT / "docs" / "inference.md"  # Using a trained model


def load_example(page: Path) -> str:
    """The page's one Python block that calls lionfer.load."""
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)
    (code,) = [block for block in blocks if "lionfer.load(" in block]
    return code


def test_the_docs_page_shows_the_readme_example():
    assert load_example(DOCS_PAGE) == load_example(README)


def test_the_readme_python_example_runs(tmp_path, tmp_path_factory, monkeypatch, capsys):
    code = load_example(README)
    assert "lionfer.load(" in code and ".predict(" in code
    shutil.copytree(trained_run(tmp_path_factory), tmp_path / "runs/synthetic@140/lion/s0")
    (tmp_path / "photos").mkdir()
    scene(faces((3, 0))).save(tmp_path / "photos" / "group.png")
    Image.fromarray(faces((4,))[0]).save(tmp_path / "photos" / "face.png")
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5,
                             (320, 160))  # fmt: skip
    for _ in range(3):
        writer.write(np.ascontiguousarray(np.asarray(scene(faces((6,))))[:, :, ::-1]))
    writer.release()
    monkeypatch.chdir(tmp_path)

    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)

    table = namespace["table"]
    found = table[table["error"].isna()]
    assert (found["source"] == "photos/group.png").sum() == 2  # both faces of the group photo
    assert (found["source"] == "clip.mp4").sum() == 3 and found["frame"].max() == 2
    assert table["label"].notna().sum() == len(found)
    printed = capsys.readouterr().out.strip().splitlines()
    assert any("photos/group.png" in line for line in printed)
    assert printed[-1] in namespace["predictor"].class_names  # the crop's label
