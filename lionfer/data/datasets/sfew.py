"""SFEW 2.0 (7 classes): ROOT/Train/<Class>/*.png and ROOT/Val/<Class>/*.png, Val being the test
set (958 train / 436 val). Folders are named Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise and
map to canonical ids through labels.SFEW_FOLDERS, never through alphabetical order.
"""

from __future__ import annotations

from pathlib import Path

from lionfer import labels as L
from lionfer.data.base import FERData
from lionfer.data.checks import IMAGE_KINDS, require_dir
from lionfer.data.datasets.folder import find_child, image_set, scan_split

LAYOUT = "ROOT/Train/<Class>/*.png and ROOT/Val/<Class>/*.png"


def read_split(folder: Path, root: Path, test: bool):
    """(ImageSet of folder/<Class>/*, notes); an unknown class folder raises."""
    files, ignored = scan_split(folder)
    by_lower = {name.lower(): canonical for name, canonical in L.SFEW_FOLDERS.items()}
    unknown = sorted(name for name in files if name.lower() not in by_lower)
    if unknown:
        raise ValueError(
            f"SFEW: unknown class folders {unknown} in {folder}; expected the folders "
            f"{sorted(L.SFEW_FOLDERS)}. Rename them, or use data.dataset=folder with a "
            "data.class_map"
        )
    paths, labels = [], []
    for name, class_paths in files.items():
        paths += class_paths
        labels += [by_lower[name.lower()]] * len(class_paths)
    if not paths:
        raise FileNotFoundError(f"SFEW: no images ({IMAGE_KINDS}) under {folder}/<Class>/")
    notes = []
    absent = sorted(set(by_lower) - {name.lower() for name, p in files.items() if p})
    if absent:
        notes.append(f"SFEW: {folder.name} has no images for {absent}")
    if ignored:
        notes.append(f"SFEW: ignored {ignored} hidden or non-image files in {folder.name}")
    return image_set(paths, labels, root, test), notes


def load(cfg, seed: int) -> FERData:
    """Read SFEW from cfg.root, the folder holding Train/ and Val/."""
    if cfg.num_classes != 7:
        raise ValueError("SFEW has 7 classes (no Contempt); set data.num_classes=7")
    fix = f"data.root must be the folder that holds Train/ and Val/ ({LAYOUT})"
    root = require_dir(Path(cfg.root).expanduser(), "SFEW root", fix)
    train_dir = find_child(root, "train")
    val_dir = find_child(root, "val")
    if train_dir is None or val_dir is None:
        missing = "Train/" if train_dir is None else "Val/"
        raise FileNotFoundError(f"SFEW: no {missing} folder in {root}. {fix}")
    train, train_notes = read_split(train_dir, root, test=False)
    test, test_notes = read_split(val_dir, root, test=True)
    return FERData(
        name="sfew",
        class_names=L.CLASS_NAMES,
        train=train,
        test=test,
        split_rule="balanced",
        notes=train_notes + test_notes,
    )
