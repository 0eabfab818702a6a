"""RAF-DB (both layouts) and SFEW readers on tiny generated copies of their exact layouts."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lionfer.config_sections import DataConfig
from lionfer.data.datasets import rafdb, sfew
from lionfer.data.pipeline import read_dataset
from lionfer.errors import InputError
from lionfer.labels import CLASS_NAMES
from lionfer.registry import DATASETS

# RAF file id -> how many train / test images the fake list holds
TRAIN_PER_ID = {1: 2, 2: 1, 3: 1, 4: 3, 5: 1, 6: 1, 7: 2}
TEST_PER_ID = {1: 1, 4: 1, 7: 1}


def write_image(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def raf_entries() -> list[tuple[str, int]]:
    entries, n = [], 0
    for split, per_id, digits in (("train", TRAIN_PER_ID, 5), ("test", TEST_PER_ID, 4)):
        for raf_id, count in per_id.items():
            for _ in range(count):
                n += 1
                entries.append((f"{split}_{n:0{digits}d}.jpg", raf_id))
    return entries


def make_raf_a(root: Path, entries, variants=("aligned",), text: str | None = None) -> Path:
    """The official layout; the list's last line has no trailing newline, like the real file."""
    listing = root / "EmoLabel" / "list_patition_label.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text(text if text is not None else "\n".join(f"{n} {i}" for n, i in entries))
    for name, raf_id in entries:
        if "aligned" in variants:
            write_image(root / "Image" / "aligned" / f"{name[:-4]}_aligned.jpg", raf_id)
        if "original" in variants:
            write_image(root / "Image" / "original" / name, raf_id)
    return root


def make_raf_b(root: Path, entries, third_column: bool = False) -> Path:
    """The Ada-CM/LION layout: zero-based ids, one list and one image folder per split."""
    (root / "labels").mkdir(parents=True)
    for split in ("train", "test"):
        lines = []
        for name, raf_id in entries:
            if name.startswith(split):
                aligned = f"{name[:-4]}_aligned.jpg"
                lines.append(f"{aligned} {raf_id - 1}" + (" 0.9" if third_column else ""))
                write_image(root / "images" / split / aligned, raf_id)
        (root / "labels" / f"RAF_{split}_label2.txt").write_text("\n".join(lines) + "\n")
    return root


def cfg(root, **kwargs) -> DataConfig:
    return DataConfig(root=str(root), **kwargs)


def test_rafdb_is_registered():
    assert DATASETS.get("rafdb") is rafdb.load and DATASETS.get("sfew") is sfew.load


def test_rafdb_format_a_aligned_paths_labels_and_split(tmp_path):
    root = make_raf_a(tmp_path / "basic", raf_entries())
    data = rafdb.load(cfg(root), seed=0)
    assert data.class_names == CLASS_NAMES and data.split_rule == "rafdb"
    assert len(data.train) == 11 and len(data.test) == 3
    assert data.train.ids[0] == "train_00001.jpg"
    assert data.train.images[0] == str(root / "Image/aligned/train_00001_aligned.jpg")
    assert data.test.images[0] == str(root / "Image/aligned/test_0012_aligned.jpg")
    # file id 1 Surprise -> 0, 2 Fear -> 1, ..., 7 Neutral -> 6
    assert np.bincount(data.train.labels, minlength=7).tolist() == [2, 1, 1, 3, 1, 1, 2]
    assert data.test.labels.tolist() == [0, 3, 6]
    assert all(i.startswith("train") for i in data.train.ids)
    assert all(i.startswith("test") for i in data.test.ids)
    assert data.train.true_labels is None
    assert np.array_equal(data.test.true_labels, data.test.labels)
    # the image written for file id 7 (value 7) is the one labelled Neutral
    neutral = int(np.flatnonzero(data.train.labels == 6)[0])
    assert np.asarray(data.train.load(neutral))[0, 0, 0] == 7


def test_rafdb_variants(tmp_path):
    entries = raf_entries()
    both = make_raf_a(tmp_path / "both", entries, variants=("aligned", "original"))
    original = rafdb.load(cfg(both, variant="original"), seed=0)
    assert original.train.images[0] == str(both / "Image/original/train_00001.jpg")
    assert rafdb.load(cfg(both), seed=0).train.images[0].endswith("_aligned.jpg")
    only_original = make_raf_a(tmp_path / "orig", entries, variants=("original",))
    assert rafdb.load(cfg(only_original), seed=0).train.images[0].endswith("train_00001.jpg")
    with pytest.raises(ValueError, match="variant"):
        rafdb.load(cfg(both, variant="cropped"), seed=0)


def test_rafdb_tolerates_blank_lines_crlf_and_trailing_newline(tmp_path):
    entries = raf_entries()
    text = "\r\n".join(f"{n} {i}" for n, i in entries[:5]) + "\r\n\n  \n"
    text += "\n".join(f"{n}  {i}" for n, i in entries[5:]) + "\n"
    data = rafdb.load(cfg(make_raf_a(tmp_path, entries, text=text)), seed=0)
    assert len(data.train) + len(data.test) == len(entries)


def test_rafdb_format_b_zero_based_lists(tmp_path):
    root = make_raf_b(tmp_path / "RAFdataset", raf_entries(), third_column=True)
    data = rafdb.load(cfg(root), seed=0)
    assert len(data.train) == 11 and len(data.test) == 3
    assert data.train.images[0] == str(root / "images/train/train_00001_aligned.jpg")
    assert data.test.ids[0] == "test/test_0012_aligned.jpg"
    assert np.bincount(data.train.labels, minlength=7).tolist() == [2, 1, 1, 3, 1, 1, 2]
    assert data.test.labels.tolist() == [0, 3, 6]
    assert any("format B" in note for note in data.notes)
    with pytest.raises(ValueError, match="format A only"):
        rafdb.load(cfg(root, variant="aligned"), seed=0)


def test_rafdb_format_b_rejects_id_7(tmp_path):
    root = make_raf_b(tmp_path, raf_entries())
    listing = root / "labels/RAF_train_label2.txt"
    listing.write_text(listing.read_text() + "train_99999_aligned.jpg 7\n")
    with pytest.raises(ValueError, match=r"RAF_train_label2.txt, line 12: label id 7"):
        rafdb.load(cfg(root), seed=0)


def test_rafdb_label_file_override(tmp_path):
    entries = raf_entries()
    root = make_raf_a(tmp_path / "a", entries)
    (root / "mine.txt").write_text("\n".join(f"{n} {i}" for n, i in entries[:4] + entries[-1:]))
    data = rafdb.load(cfg(root, label_file="mine.txt"), seed=0)
    assert (len(data.train), len(data.test)) == (4, 1)
    root_b = make_raf_b(tmp_path / "b", entries)
    (root_b / "few.txt").write_text("train_00001_aligned.jpg 0\ntrain_00003_aligned.jpg 1\n")
    (root_b / "t.txt").write_text("test_0012_aligned.jpg 0\n")
    data = rafdb.load(cfg(root_b, label_file="few.txt,t.txt"), seed=0)
    assert data.train.labels.tolist() == [0, 1] and data.test.labels.tolist() == [0]


def test_rafdb_wrong_root_lists_both_layouts(tmp_path):
    (tmp_path / "Image").mkdir()
    with pytest.raises(FileNotFoundError, match="EmoLabel.*RAF_train_label2.txt"):
        rafdb.load(cfg(tmp_path), seed=0)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        rafdb.load(cfg(tmp_path / "nowhere"), seed=0)


def test_rafdb_images_missing_everywhere_means_wrong_root(tmp_path):
    root = make_raf_a(tmp_path, raf_entries(), variants=())
    write_image(root / "Image" / "aligned" / "other_00001.jpg")
    with pytest.raises(FileNotFoundError) as error:
        rafdb.load(cfg(root), seed=0)
    message = str(error.value)
    assert f"none of the 14 listed images exist (the first expected is {root}" in message
    assert "Image/aligned/train_00001_aligned.*)" in message
    assert "by its name with any image extension (avif, bmp" in message
    assert "data.root is probably wrong" in message


@pytest.mark.parametrize("extension", [".png", ".JPG", ".jpeg", ".Png"])
@pytest.mark.parametrize("variant", ["aligned", "original"])
def test_rafdb_finds_images_whatever_their_extension(tmp_path, extension, variant):
    root = make_raf_a(tmp_path, raf_entries(), variants=(variant,))
    for path in sorted((root / "Image" / variant).iterdir()):
        value = np.asarray(Image.open(path))[0, 0, 0]
        path.unlink()
        write_image(path.with_suffix(extension), value)  # saved in the extension's format
    (root / "Image" / variant / ".train_00001.txt").write_text("x")
    data = rafdb.load(cfg(root), seed=0)
    assert (len(data.train), len(data.test)) == (11, 3)
    stem = "train_00001_aligned" if variant == "aligned" else "train_00001"
    assert data.train.images[0] == str(root / "Image" / variant / f"{stem}{extension}")
    assert data.train.ids[0] == "train_00001.jpg"
    neutral = int(np.flatnonzero(data.train.labels == 6)[0])
    assert np.asarray(data.train.load(neutral))[0, 0, 0] == 7


def test_rafdb_prefers_the_jpg_where_a_stem_has_two_files(tmp_path):
    root = make_raf_a(tmp_path, raf_entries())
    write_image(root / "Image" / "aligned" / "train_00001_aligned.png")
    data = rafdb.load(cfg(root), seed=0)
    assert data.train.images[0] == str(root / "Image/aligned/train_00001_aligned.jpg")


@pytest.mark.parametrize(("variant", "present"), [("original", "aligned"), ("aligned", "original")])
def test_rafdb_variant_whose_folder_is_missing_names_the_one_there(tmp_path, variant, present):
    root = make_raf_a(tmp_path, raf_entries(), variants=(present,))
    with pytest.raises(FileNotFoundError) as error:
        rafdb.load(cfg(root, variant=variant), seed=0)
    message = str(error.value)
    assert f"data.variant={variant}, but the folder {root / 'Image' / variant} does not" in message
    assert f"holds {present}/ instead: set data.variant={present} (or leave it empty)" in message
    assert "data.root is probably wrong" not in message
    (root / "Image" / f"{variant}.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises(FileNotFoundError, match=rf"extract {variant}.zip in .*Image or set"):
        rafdb.load(cfg(root, variant=variant), seed=0)


def test_rafdb_some_missing_images_error_or_skip(tmp_path):
    root = make_raf_a(tmp_path, raf_entries())
    (root / "Image/aligned/train_00002_aligned.jpg").unlink()
    (root / "Image/aligned/test_0013_aligned.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="2 of 14 .*train_00002_aligned.*skip_bad=true"):
        rafdb.load(cfg(root), seed=0)
    data = rafdb.load(cfg(root, skip_bad=True), seed=0)
    assert (len(data.train), len(data.test)) == (10, 2)
    assert "train_00002.jpg" not in data.train.ids
    assert any("skipped 2 missing files" in note for note in data.notes)


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("train_00099.jpg", "line 15: expected '<image name> <label id>'"),
        ("train_00099.jpg 3 4", "line 15: expected"),
        ("train_00099.jpg happy", "line 15: expected"),
        ("train_00099.jpg 8", r"line 15: label id 8 is out of range; valid ids are \[1, 2"),
        ("train_00099.jpg 0", "line 15: label id 0 is out of range"),
        ("val_0001.jpg 3", "line 15: 'val_0001.jpg' starts with neither"),
    ],
)
def test_rafdb_malformed_lines_name_file_and_line(tmp_path, bad_line, message):
    entries = raf_entries()
    text = "\n".join(f"{n} {i}" for n, i in entries) + "\n" + bad_line
    root = make_raf_a(tmp_path, entries, text=text)
    with pytest.raises(ValueError, match=message) as error:
        rafdb.load(cfg(root), seed=0)
    assert "list_patition_label.txt" in str(error.value)


def test_rafdb_duplicates_kept_once_conflicts_rejected(tmp_path):
    entries = raf_entries()
    text = "\n".join(f"{n} {i}" for n, i in entries + entries[:2])
    data = rafdb.load(cfg(make_raf_a(tmp_path / "dup", entries, text=text)), seed=0)
    assert len(data.train) == 11
    assert any("2 duplicate entries" in note for note in data.notes)
    text = "\n".join(f"{n} {i}" for n, i in entries + [(entries[0][0], 5)])
    root = make_raf_a(tmp_path / "conflict", entries, text=text)
    with pytest.raises(ValueError) as error:
        rafdb.load(cfg(root), seed=0)
    # the ids and line numbers of the file (its ids are 1-7), not canonical ids or positions
    assert str(error.value) == (
        f"{root / 'EmoLabel/list_patition_label.txt'}: 'train_00001.jpg' is listed twice with "
        "different labels (1 on line 1, 5 on line 15); remove the wrong entry"
    )


def test_rafdb_format_b_conflict_names_its_list_ids_and_lines(tmp_path):
    root = make_raf_b(tmp_path, raf_entries())
    listing = root / "labels/RAF_test_label2.txt"
    listing.write_text(listing.read_text() + "\ntest_0012_aligned.jpg 4\n")
    with pytest.raises(ValueError) as error:
        rafdb.load(cfg(root), seed=0)
    assert str(error.value) == (
        f"{listing}: 'test_0012_aligned.jpg' is listed twice with different labels "
        "(0 on line 1, 4 on line 5); remove the wrong entry"
    )


def test_rafdb_refuses_eight_classes(tmp_path):
    with pytest.raises(ValueError, match="7 classes"):
        rafdb.load(cfg(make_raf_a(tmp_path, raf_entries()), num_classes=8), seed=0)


def test_rafdb_list_not_utf8_names_the_line(tmp_path):
    entries = raf_entries()
    root = make_raf_a(tmp_path, entries)
    text = "\n".join(f"{n} {i}" for n, i in entries)
    (root / "EmoLabel/list_patition_label.txt").write_bytes(("\ufeff" + text).encode("utf-16-le"))
    with pytest.raises(
        ValueError, match=r"list_patition_label.txt, line 1: byte 0xff is not UTF-8"
    ):
        rafdb.load(cfg(root), seed=0)


def test_rafdb_list_naming_the_aligned_files(tmp_path):
    entries = raf_entries()
    text = "\n".join(f"{n[:-4]}_aligned.jpg {i}" for n, i in entries)
    root = make_raf_a(tmp_path, entries, variants=("aligned", "original"), text=text)
    data = rafdb.load(cfg(root), seed=0)
    official = rafdb.load(cfg(make_raf_a(tmp_path / "official", entries)), seed=0)
    assert data.train.labels.tolist() == official.train.labels.tolist()
    assert data.test.labels.tolist() == official.test.labels.tolist()
    assert data.train.images[0] == str(root / "Image/aligned/train_00001_aligned.jpg")
    assert data.train.ids[0] == "train_00001_aligned.jpg"
    original = rafdb.load(cfg(root, variant="original"), seed=0)
    assert original.train.images[0] == str(root / "Image/original/train_00001.jpg")


def test_rafdb_images_one_folder_deeper_are_named(tmp_path):
    root = make_raf_a(tmp_path, raf_entries())
    aligned = root / "Image" / "aligned"
    aligned.rename(root / "Image" / "unpacked")
    aligned.mkdir()
    (root / "Image" / "unpacked").rename(aligned / "aligned")  # aligned.zip unpacked in aligned/
    with pytest.raises(FileNotFoundError) as error:
        rafdb.load(cfg(root), seed=0)
    message = str(error.value)
    assert f"The first one is at {aligned / 'aligned' / 'train_00001_aligned.jpg'}" in message
    assert f"move the images of {aligned / 'aligned'} into {aligned}" in message
    assert "data.root is probably wrong" not in message


def test_rafdb_packed_images_say_extract(tmp_path):
    root = make_raf_a(tmp_path, raf_entries())
    for path in (root / "Image/aligned").iterdir():
        path.unlink()
    (root / "Image/aligned").rmdir()
    (root / "Image/aligned.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises(FileNotFoundError, match=r"Extract aligned.zip in .*Image"):
        rafdb.load(cfg(root), seed=0)


def test_rafdb_root_above_basic_or_the_kaggle_copy_says_what_to_set(tmp_path):
    root = make_raf_a(tmp_path / "RAF-DB" / "basic", raf_entries())
    with pytest.raises(FileNotFoundError, match=rf"set data.root={root}$"):
        rafdb.load(cfg(tmp_path / "RAF-DB"), seed=0)
    kaggle = tmp_path / "kaggle" / "DATASET"
    for split in ("train", "test"):
        for raf_id in range(1, 8):
            write_image(kaggle / split / str(raf_id) / f"{split}_{raf_id}_aligned.jpg")
    for where in (kaggle, kaggle.parent):
        with pytest.raises(FileNotFoundError) as error:
            rafdb.load(cfg(where), seed=0)
        assert f"data.dataset=folder data.root={kaggle} 'data.class_map={{1=0," in str(error.value)
    # the suggested command reads the copy with RAF-DB's labels
    folder = DATASETS.get("folder")(
        DataConfig(root=str(kaggle), class_map={str(i): i - 1 for i in range(1, 8)}), 0
    )
    assert sorted(folder.test.labels.tolist()) == list(range(7))
    assert folder.test.labels[folder.test.ids.index("test/7/test_7_aligned.jpg")] == 6  # Neutral


# SFEW folder -> images in Train and Val; canonical ids from labels.SFEW_FOLDERS
SFEW_COUNTS = {
    "Angry": (3, 1),
    "Disgust": (1, 1),
    "Fear": (2, 1),
    "Happy": (4, 2),
    "Neutral": (2, 1),
    "Sad": (1, 1),
    "Surprise": (2, 1),
}
EXTENSIONS = (".png", ".jpg", ".JPEG", ".bmp")


def make_sfew(root: Path, train="Train", val="Val", lower=False) -> Path:
    for split, column in ((train, 0), (val, 1)):
        for name, counts in SFEW_COUNTS.items():
            folder = root / split / (name.lower() if lower else name)
            for k in range(counts[column]):
                write_image(folder / f"{name}_{k}{EXTENSIONS[k % 4]}")
    return root


def test_sfew_folders_map_by_name_not_alphabetically(tmp_path):
    root = make_sfew(tmp_path / "SFEW_2")
    (root / "Train/Happy/.DS_Store").write_text("x")
    (root / "Train/Happy/notes.txt").write_text("x")
    data = sfew.load(cfg(root), seed=0)
    assert len(data.train) == 15 and len(data.test) == 8
    assert data.class_names == CLASS_NAMES and data.split_rule == "balanced"
    pairs = zip(data.train.ids, data.train.labels, strict=True)
    by_folder = {i.split("/")[1]: int(c) for i, c in pairs}
    assert by_folder["Neutral"] == 6 and by_folder["Angry"] == 5 and by_folder["Surprise"] == 0
    assert by_folder == {
        "Surprise": 0,
        "Fear": 1,
        "Disgust": 2,
        "Happy": 3,
        "Sad": 4,
        "Angry": 5,
        "Neutral": 6,
    }
    # SU FE DI HA SA AN NE
    assert np.bincount(data.train.labels, minlength=7).tolist() == [2, 2, 1, 4, 1, 3, 2]
    assert np.bincount(data.test.labels, minlength=7).tolist() == [1, 1, 1, 2, 1, 1, 1]
    assert all(i.startswith("Val/") for i in data.test.ids)
    assert np.array_equal(data.test.true_labels, data.test.labels)
    assert any("ignored 2" in note for note in data.notes)
    assert any(i.endswith(".JPEG") for i in data.train.ids)


def test_sfew_accepts_lower_case_folders(tmp_path):
    data = sfew.load(cfg(make_sfew(tmp_path, "train", "val", lower=True)), seed=0)
    assert np.bincount(data.train.labels, minlength=7).tolist() == [2, 2, 1, 4, 1, 3, 2]


def test_sfew_unknown_class_folder_lists_expected_names(tmp_path):
    root = make_sfew(tmp_path)
    write_image(root / "Train/Contempt/a.png")
    with pytest.raises(ValueError, match=r"\['Contempt'\].*'Angry', 'Disgust'"):
        sfew.load(cfg(root), seed=0)


def test_sfew_wrong_root(tmp_path):
    root = make_sfew(tmp_path / "data")
    with pytest.raises(FileNotFoundError, match=rf"no Train/ folder.*set data.root={root}$"):
        sfew.load(cfg(tmp_path), seed=0)
    with pytest.raises(FileNotFoundError, match="no Train/ folder.*holds Train/ and Val/"):
        sfew.load(cfg(root / "Val"), seed=0)
    with pytest.raises(FileNotFoundError, match="SFEW root not found"):
        sfew.load(cfg(tmp_path / "nowhere"), seed=0)
    for path in (root / "Val").rglob("*.*"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="no images"):
        sfew.load(cfg(root), seed=0)


def by_folder_counts(data) -> tuple[list[int], list[int]]:
    return (
        np.bincount(data.train.labels, minlength=7).tolist(),
        np.bincount(data.test.labels, minlength=7).tolist(),
    )


@pytest.mark.parametrize(
    ("train", "val"),
    [
        ("Train_Aligned_Faces", "Val_Aligned_Faces_new"),  # the aligned-face archives, unpacked
        ("Train/Train_Aligned_Faces", "Val/Val_Aligned_Faces"),  # ... into Train/ and Val/
        ("Train/Train", "Val/Val"),  # Train.zip unpacked into a Train/ folder
    ],
)
def test_sfew_reads_the_aligned_faces_and_wrapped_folders(tmp_path, train, val):
    expected = by_folder_counts(sfew.load(cfg(make_sfew(tmp_path / "plain")), seed=0))
    data = sfew.load(cfg(make_sfew(tmp_path / "other", train, val)), seed=0)
    assert by_folder_counts(data) == expected
    pairs = zip(data.train.ids, data.train.labels, strict=True)
    assert {i.split("/")[-2]: int(c) for i, c in pairs}["Neutral"] == 6
    assert all(i.startswith(f"{train}/") for i in data.train.ids)
    assert all(i.startswith(f"{val}/") for i in data.test.ids)
    notes = "\n".join(data.notes)
    assert f"SFEW: read {train.split('/')[0]}/ as Train/" in notes or f"in {train}/" in notes


def test_sfew_ignores_macos_zip_metadata(tmp_path):
    root = make_sfew(tmp_path)
    (root / "Train/__MACOSX/Happy").mkdir(parents=True)
    (root / "Train/__MACOSX/Happy/._Happy_0.png").write_bytes(b"\x00\x05\x16\x07")
    data = sfew.load(cfg(root), seed=0)
    assert len(data.train) == 15
    assert "SFEW: ignored 1 hidden or non-image file in Train" in data.notes


def test_sfew_missing_split_says_what_is_there(tmp_path):
    root = make_sfew(tmp_path / "SFEW_2")
    for path in sorted((root / "Val").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "Val").rmdir()
    (root / "Val.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises(FileNotFoundError, match=r"no Val/ folder in .*, but Val.zip: extract it"):
        sfew.load(cfg(root), seed=0)
    (root / "Val.zip").unlink()
    (root / "Validation").mkdir()
    with pytest.raises(FileNotFoundError) as error:
        sfew.load(cfg(root), seed=0)
    assert str(error.value) == (
        f"sfew: no Val/ folder in {root} (it holds the folders ['Train', 'Validation']). "
        "Rename Validation/ to Val/"
    )


def test_sfew_errors_name_the_dataset_once(tmp_path):
    root = make_sfew(tmp_path)
    write_image(root / "Train/Happiness/a.png")
    with pytest.raises(InputError, match=r"^sfew: unknown class folders \['Happiness'\]"):
        read_dataset(DataConfig(dataset="sfew", root=str(root)), seed=0)
