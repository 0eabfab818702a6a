"""A user's own images as they come: misspelt and differently cased class names, too few images
for a test set, unlabeled folders that hold labeled images, linked folders, stray files."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lionfer.config_sections import DataConfig
from lionfer.data.datasets import folder, manifest
from lionfer.data.pipeline import dataset_stats, load_dataset
from lionfer.errors import ConfigError, InputError, MissingInputError
from lionfer.labels import CLASS_NAMES

FER_FOLDERS = ("happy", "Sad", "neutral ", "Angry")


def write_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value % 256, value // 256, 0)).save(path)


def make_tree(root: Path, names, count: int = 5, start: int = 0) -> Path:
    for c, name in enumerate(names):
        for k in range(count):
            write_image(root / name / f"{k}.png", start + 10 * c + k)
    return root


def cfg(root, **kwargs) -> DataConfig:
    return DataConfig(dataset=kwargs.pop("dataset", "folder"), root=str(root), **kwargs)


def test_a_misspelt_class_folder_is_refused_with_the_name_it_resembles(tmp_path):
    # one typo among FER names used to make a general classifier of 'hapy', 'Sad', ...
    root = make_tree(tmp_path, ("hapy", "Sad", "neutral ", "Angry"))
    with pytest.raises(ConfigError, match=r"hapy: class 'hapy' .*did you mean 'happy'"):
        folder.load(cfg(root), seed=0)
    fixed = folder.load(cfg(root, class_map={"hapy": 3, "Sad": 4, "neutral ": 6, "Angry": 5}), 0)
    assert fixed.class_names == CLASS_NAMES
    general = folder.load(cfg(make_tree(tmp_path / "pets", ("cat", "dog", "cow"))), seed=0)
    assert general.class_names == ("cat", "cow", "dog")  # no FER name: general classes


def test_a_misspelt_manifest_label_is_refused_naming_its_line(tmp_path):
    rows = [f"{i}.png,{label}" for i, label in enumerate(["happy", "sad", "suprise", "sad"])]
    for i in range(4):
        write_image(tmp_path / f"{i}.png", i)
    (tmp_path / "manifest.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(ConfigError, match=r"line 4: class 'suprise' .*did you mean 'surprise'"):
        manifest.load(cfg(tmp_path, dataset="manifest"), seed=0)


def test_general_class_names_differing_in_case_or_spaces_are_one_class(tmp_path):
    make_tree(tmp_path / "train", ("cat", "dog"))
    make_tree(tmp_path / "test", ("Cat", "dog "), count=2, start=100)
    data = folder.load(cfg(tmp_path), seed=0)
    assert data.class_names == ("Cat", "dog")  # the first spelling in sorted order
    assert data.test.labels.tolist() == [0, 0, 1, 1]
    assert any("differ only in case or spaces" in note for note in data.notes)


def test_too_few_images_for_a_test_set_is_an_error_not_an_empty_test_set(tmp_path):
    # 2 images a class: 20% of each rounds to 0, and the run used to fail at its first evaluation
    root = make_tree(tmp_path / "two", ("happy", "sad"), count=2)
    with pytest.raises(InputError, match="too few labeled images to hold out a test set"):
        folder.load(cfg(root), seed=0)
    assert len(folder.load(cfg(make_tree(tmp_path / "three", ("happy",), 3)), 0).test) == 1
    make_tree(tmp_path / "split" / "train", ("happy", "sad"))
    (tmp_path / "split" / "test" / "happy").mkdir(parents=True)
    with pytest.raises(MissingInputError, match="no test images found .*split/test"):
        folder.load(cfg(tmp_path / "split"), seed=0)


def test_unlabeled_images_that_are_labeled_or_test_images_are_left_out(tmp_path):
    # data.unlabeled_root = data.root, and a copy of a test image among the unlabeled photos
    root = make_tree(tmp_path / "faces", ("happy", "sad"))
    unlabeled = make_tree(tmp_path / "unl", ("batch",), count=3, start=500)
    data = folder.load(cfg(root), seed=0)
    test_file = Path(data.test.images[0])
    (unlabeled / "batch" / "copy.png").write_bytes(test_file.read_bytes())
    same_root = load_dataset(cfg(root, unlabeled_root=str(root)), seed=0, check=())
    assert same_root.unlabeled is None
    assert any("left out 10 of the 10 extra unlabeled" in n for n in same_root.notes)
    loaded = load_dataset(cfg(root, unlabeled_root=str(unlabeled)), seed=0, check=())
    assert loaded.unlabeled.ids == [f"unlabeled/batch/{k}.png" for k in range(3)]
    assert any("left out 1 of the 4 " in n and "1 of them test" in n for n in loaded.notes)


def test_linked_class_folders_and_stray_files_are_counted(tmp_path):
    root = make_tree(tmp_path / "faces", ("happy", "sad"))
    make_tree(tmp_path / "elsewhere", ("more",), count=5, start=200)
    os.symlink(tmp_path / "elsewhere" / "more", root / "happy" / "more")
    os.symlink(tmp_path / "elsewhere" / "more", root / "Angry")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "happy" / "Thumbs.db").write_bytes(b"\0")
    (root / "happy" / "._0.png").write_bytes(b"\0\5\26\7")
    data = folder.load(cfg(root), seed=0)
    counts = np.bincount(np.concatenate([data.train.labels, data.test.labels]), minlength=7)
    assert counts.tolist() == [0, 0, 0, 10, 5, 5, 0]  # happy 5 + 5 linked, sad 5, Angry 5
    assert any("ignored 3 hidden or non-image files" in note for note in data.notes)


def test_photos_that_appear_twice_are_named_with_their_labels(tmp_path):
    root = make_tree(tmp_path / "faces", ("train/happy", "train/sad", "test/happy", "test/sad"))
    train, test = root / "train", root / "test"
    (train / "sad" / "same_face.png").write_bytes((train / "happy" / "0.png").read_bytes())
    (train / "happy" / "again.png").write_bytes((train / "happy" / "1.png").read_bytes())
    (test / "sad" / "seen.png").write_bytes((train / "sad" / "2.png").read_bytes())
    (test / "happy" / "also_sad.png").write_bytes((test / "sad" / "4.png").read_bytes())
    os.symlink(train / "sad" / "3.png", test / "sad" / "linked.png")
    data = load_dataset(cfg(root), seed=0)
    notes = [n for n in data.notes if "copy" in n or "copies" in n]
    assert notes == [
        "2 training images are copies of another training image (the same file by another path, "
        "or byte-identical; 2 images appear more than once): 1 of these carries different labels, "
        "e.g. train/happy/0.png (Happiness) and train/sad/same_face.png (Sadness); each copy "
        "trains on its "
        "own label, so keep the copy whose label is right and remove the others",
        "1 test image is a copy of another test image (the same file by another path, or "
        "byte-identical; 1 image appears more than once): 1 of these carries different labels, "
        "e.g. test/happy/also_sad.png (Happiness) and test/sad/4.png (Sadness); test accuracy "
        "scores each copy by its own label, so keep the copy whose label is right and remove the "
        "others",
        "2 test images are also training images (the same file or a byte-identical copy), e.g. "
        "the test image test/sad/seen.png (Sadness) is the training image train/sad/2.png "
        "(Sadness): test accuracy counts them as seen images; remove one copy of each",
    ]
    _, stats_notes = dataset_stats(cfg(root), seed=0)
    assert notes[0] in stats_notes and notes[1] in stats_notes
    unchecked = load_dataset(cfg(root), seed=0, check=())
    assert len(unchecked.train) == len(data.train) and len(unchecked.test) == len(data.test)


def test_copies_with_one_label_are_noted_as_weighing_more(tmp_path):
    root = make_tree(tmp_path / "faces", ("train/happy", "train/sad", "test/happy", "test/sad"))
    for k in range(2):
        (root / "train/sad" / f"dup{k}.png").write_bytes((root / "train/sad/0.png").read_bytes())
    data = load_dataset(cfg(root), seed=0)
    assert [n for n in data.notes if "copy" in n or "copies" in n] == [
        "2 training images are copies of another training image (the same file by another "
        "path, or byte-identical; 1 image appears more than once), each with one label: "
        "those images weigh more in training"
    ]
    clean = load_dataset(cfg(make_tree(tmp_path / "clean", ("happy", "sad"))), seed=0)
    assert not any("cop" in n for n in clean.notes)


def test_the_example_of_copies_with_different_labels_shows_two_labels(tmp_path):
    # three copies, two under happy/ and one under sad/: the example names a happy and the sad one
    root = make_tree(tmp_path / "faces", ("train/happy", "train/sad", "test/happy", "test/sad"))
    photo = (root / "train/happy/0.png").read_bytes()
    (root / "train/happy/same.png").write_bytes(photo)
    (root / "train/sad/same.png").write_bytes(photo)
    data = load_dataset(cfg(root), seed=0)
    (note,) = [n for n in data.notes if "different labels" in n]
    assert "e.g. train/happy/0.png (Happiness) and train/sad/same.png (Sadness);" in note
    assert note.startswith("2 training images are copies of another training image")
