"""SFEW 2.0 (7 classes): ROOT/Train/<Class>/*.png and ROOT/Val/<Class>/*.png, Val being the test
set (958 train / 436 val). Folders are named Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise and
map to canonical ids through labels.SFEW_FOLDERS, never through alphabetical order. The aligned
faces of the release (Train_Aligned_Faces.zip, Val_Aligned_Faces_new.zip) are read too, unpacked
either in place of Train/ and Val/ or into them (Train/Train_Aligned_Faces/<Class>/).
"""

from __future__ import annotations

from pathlib import Path

from lionfer import labels as L
from lionfer.data.base import FERData
from lionfer.data.checks import IMAGE_KINDS, require_dir
from lionfer.data.datasets.folder import find_child, image_set, scan_split

LAYOUT = "ROOT/Train/<Class>/*.png and ROOT/Val/<Class>/*.png"


def is_wrapper(name: str, split: str) -> bool:
    """A folder that holds a split's class folders one level down: Train/Train/ (an archive
    unpacked into a folder of its name) or Train/Train_Aligned_Faces/ (the aligned faces)."""
    name = name.lower()
    return name == split or name.startswith(f"{split}_aligned_faces")


def read_split(folder: Path, root: Path, test: bool, split: str = ""):
    """(ImageSet of folder/<Class>/*, notes); an unknown class folder raises. A folder whose only
    subfolder is a wrapper of split (is_wrapper) is read through it."""
    files, ignored = scan_split(folder)
    by_lower = {name.lower(): canonical for name, canonical in L.SFEW_FOLDERS.items()}
    unknown = sorted(name for name in files if name.lower() not in by_lower)
    if split and len(files) == 1 and is_wrapper(unknown[0] if unknown else "", split):
        inner = folder / unknown[0]
        image_set_, inner_notes = read_split(inner, root, test)
        note = f"SFEW: read the class folders in {inner.relative_to(root).as_posix()}/"
        return image_set_, [note] + inner_notes + _ignored_note(ignored, folder)
    if unknown:
        raise ValueError(
            f"sfew: unknown class folders {unknown} in {folder}; expected the folders "
            f"{sorted(L.SFEW_FOLDERS)}. Rename them, or use data.dataset=folder with a "
            "data.class_map"
        )
    paths, labels = [], []
    for name, class_paths in files.items():
        paths += class_paths
        labels += [by_lower[name.lower()]] * len(class_paths)
    if not paths:
        raise FileNotFoundError(f"sfew: no images ({IMAGE_KINDS}) under {folder}/<Class>/")
    notes = []
    absent = sorted(set(by_lower) - {name.lower() for name, p in files.items() if p})
    if absent:
        notes.append(f"SFEW: {folder.name} has no images for {absent}")
    return image_set(paths, labels, root, test), notes + _ignored_note(ignored, folder)


def _ignored_note(ignored: int, folder: Path) -> list[str]:
    if not ignored:
        return []
    files = "file" if ignored == 1 else "files"
    return [f"SFEW: ignored {ignored} hidden or non-image {files} in {folder.name}"]


def split_folder(root: Path, split: str) -> Path | None:
    """ROOT/Train (any case), else the one ROOT/Train_Aligned_Faces* folder; likewise for val."""
    exact = find_child(root, split)
    if exact is not None:
        return exact
    aligned = [c for c in sorted(root.iterdir()) if c.is_dir() and is_wrapper(c.name, split)]
    return aligned[0] if len(aligned) == 1 else None


def missing_split(root: Path, split: str, fix: str) -> FileNotFoundError:
    """The error for a root without a split's folder, naming what it holds instead."""
    name = split.capitalize()
    archives = sorted(
        p.name
        for p in root.iterdir()
        if p.is_file() and p.name.lower().startswith(split) and p.suffix.lower() == ".zip"
    )
    if archives:
        return FileNotFoundError(
            f"sfew: no {name}/ folder in {root}, but {', '.join(archives)}: extract it there"
        )
    folders = sorted(c for c in root.iterdir() if c.is_dir() and not c.name.startswith("."))
    below = [c for c in folders if split_folder(c, split) is not None]
    # Validation/ for Val/, Training/ for Train/: the split under a longer name
    renamed = [
        c for c in folders if c.name.lower().startswith(split) and not is_wrapper(c.name, split)
    ]
    if below:
        fix = f"The SFEW folders are one level down: set data.root={below[0]}"
    elif len(renamed) == 1:
        fix = f"Rename {renamed[0].name}/ to {name}/"
    holds = f" (it holds the folders {[c.name for c in folders]})" if folders else ""
    return FileNotFoundError(f"sfew: no {name}/ folder in {root}{holds}. {fix}")


def load(cfg, seed: int) -> FERData:
    """Read SFEW from cfg.root, the folder holding Train/ and Val/."""
    if cfg.num_classes != 7:
        raise ValueError("SFEW has 7 classes (no Contempt); set data.num_classes=7")
    fix = f"data.root must be the folder that holds Train/ and Val/ ({LAYOUT})"
    root = require_dir(Path(cfg.root).expanduser(), "SFEW root", fix)
    train_dir = split_folder(root, "train")
    val_dir = split_folder(root, "val")
    if train_dir is None or val_dir is None:
        raise missing_split(root, "train" if train_dir is None else "val", fix)
    train, train_notes = read_split(train_dir, root, test=False, split="train")
    test, test_notes = read_split(val_dir, root, test=True, split="val")
    for folder, split in ((train_dir, "Train"), (val_dir, "Val")):
        if folder.name.lower() != split.lower():  # the aligned faces in place of Train/, Val/
            train_notes.append(f"SFEW: read {folder.name}/ as {split}/")
    return FERData(
        name="sfew",
        class_names=L.CLASS_NAMES,
        train=train,
        test=test,
        split_rule="balanced",
        notes=train_notes + test_notes,
    )
