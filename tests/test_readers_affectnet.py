"""AffectNet reader on hand-made copies of both releases: the CSV lists with face boxes and the
pre-cropped .npy layout, label mapping class by class, drop counts, and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lionfer.config_sections import DataConfig
from lionfer.data.datasets import affectnet

HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
    "valence,arousal"
)
LANDMARKS = ";".join(["1.0"] * 136)
# AffectNet expression id -> canonical id (0 SU, 1 FE, 2 DI, 3 HA, 4 SA, 5 AN, 6 NE, 7 CO).
CANONICAL = {0: 6, 1: 3, 2: 4, 3: 0, 4: 1, 5: 2, 6: 5, 7: 7}


def cfg(root: Path, **overrides) -> DataConfig:
    return DataConfig(dataset="affectnet", root=str(root), **overrides)


def save_image(path: Path, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 80, 40)).save(path)


def csv_row(name: str, expression: int, box=(2, 3, 10, 12)) -> str:
    x, y, w, h = box
    return f'{name},{x},{y},{w},{h},"{LANDMARKS}",{expression},0.1,-0.2'


def write_list(path: Path, rows: list[str], header: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(([HEADER] if header else []) + rows) + "\n")


def csv_release(root: Path, extra_train: list[str] = (), images: bool = True) -> Path:
    """Train: one face per id 0..10, a negative-width box, a duplicate; val: one face per 0..7."""
    train = [csv_row(f"1/train_{e}.jpg", e, (e, e + 1, 10 + e, 12 + e)) for e in range(11)]
    train += [csv_row("2/bad_box.jpg", 1, (0, 0, -1, -1)), train[1]]  # train[1] again: duplicate
    test = [csv_row(f"3/val_{e}.jpg", e) for e in range(8)]
    write_list(root / affectnet.CSV_LISTS / "training.csv", train + list(extra_train))
    write_list(root / affectnet.CSV_LISTS / "validation.csv", test)
    if images:
        # Images only for classes 0..7: rows that are dropped (8, 9, 10, bad box) need none.
        for e in range(8):
            save_image(root / affectnet.CSV_IMAGES / f"1/train_{e}.jpg")
            save_image(root / affectnet.CSV_IMAGES / f"3/val_{e}.jpg")
    (root / affectnet.CSV_IMAGES).mkdir(parents=True, exist_ok=True)
    return root


def npy_release(root: Path, train_ids: dict[int, object], val_ids: dict[int, object]) -> Path:
    for folder, ids in (("train_set", train_ids), ("val_set", val_ids)):
        (root / folder / "annotations").mkdir(parents=True, exist_ok=True)
        (root / folder / "images").mkdir(parents=True, exist_ok=True)
        for i, value in ids.items():
            save_image(root / folder / "images" / f"{i}.jpg", (16, 16))
            np.save(root / folder / "annotations" / f"{i}_exp.npy", np.asarray(value))
    return root


def by_id(image_set) -> dict[str, int]:
    return dict(zip(image_set.ids, image_set.labels.tolist(), strict=True))


# --- CSV release ----------------------------------------------------------------------------


def test_csv_maps_every_class_and_keeps_boxes(tmp_path):
    data = affectnet.load(cfg(csv_release(tmp_path)), seed=0)
    assert data.name == "affectnet" and data.split_rule == "balanced"
    assert data.class_names[0] == "Surprise" and len(data.class_names) == 7
    train = by_id(data.train)
    assert train == {f"1/train_{e}.jpg": CANONICAL[e] for e in range(7)}
    # Spelled out once, so a wrong table cannot pass by matching itself.
    assert train["1/train_0.jpg"] == 6  # Neutral
    assert train["1/train_3.jpg"] == 0  # Surprise
    assert train["1/train_6.jpg"] == 5  # Anger
    assert by_id(data.test) == {f"3/val_{e}.jpg": CANONICAL[e] for e in range(7)}
    row = data.train.ids.index("1/train_4.jpg")
    assert data.train.boxes[row].tolist() == [4, 5, 14, 16]  # face_x, face_y, width, height
    assert data.train.images[row] == str(tmp_path / affectnet.CSV_IMAGES / "1/train_4.jpg")
    assert data.train.load(row).size == (14, 16)  # cropped by the box


def test_csv_counts_each_drop_reason(tmp_path):
    data = affectnet.load(cfg(csv_release(tmp_path)), seed=0)
    notes = "\n".join(data.notes)
    assert "affectnet train: kept 7 of 13 listed faces" in notes
    for reason in ("1 None", "1 Uncertain", "1 Non-Face", "1 Contempt (7-class mode)"):
        assert f"affectnet train: dropped {reason}" in notes
    assert f"affectnet train: dropped 1 {affectnet.EMPTY_BOX}" in notes
    training = tmp_path / affectnet.CSV_LISTS / "training.csv"
    assert f"dropped 1 duplicate entries in {training} (each kept once)" in notes
    assert "affectnet test: kept 7 of 8 listed faces" in notes
    assert "validation set is the test set" in notes


def test_csv_eight_classes_keep_contempt(tmp_path):
    data = affectnet.load(cfg(csv_release(tmp_path), num_classes=8), seed=0)
    assert len(data.class_names) == 8 and data.class_names[7] == "Contempt"
    assert by_id(data.train)["1/train_7.jpg"] == 7
    assert by_id(data.test)["3/val_7.jpg"] == 7
    assert len(data.train) == 8 and len(data.test) == 8
    assert "Contempt" not in "\n".join(data.notes)


def test_csv_without_header_reads_release_order(tmp_path):
    csv_release(tmp_path)
    write_list(
        tmp_path / affectnet.CSV_LISTS / "validation.csv",
        [csv_row(f"3/val_{e}.jpg", e) for e in range(8)],
        header=False,
    )
    data = affectnet.load(cfg(tmp_path), seed=0)
    assert len(data.test) == 7
    assert any("has no header row" in note for note in data.notes)


def test_csv_training_entry_that_is_a_test_image_is_dropped(tmp_path):
    root = csv_release(tmp_path, extra_train=[csv_row("3/val_2.jpg", 2)])
    data = affectnet.load(cfg(root), seed=0)
    assert "3/val_2.jpg" not in data.train.ids and "3/val_2.jpg" in data.test.ids
    assert "affectnet: dropped 1 training entries that are also test images" in data.notes


def test_wrong_root_names_both_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="Manually_Annotated_file_lists.*train_set"):
        affectnet.load(cfg(tmp_path), seed=0)
    with pytest.raises(FileNotFoundError, match="AffectNet root not found"):
        affectnet.load(cfg(tmp_path / "nowhere"), seed=0)
    with pytest.raises(ValueError, match="data.root is empty"):
        affectnet.load(cfg(""), seed=0)


def test_variant_must_match_the_layout(tmp_path):
    csv_release(tmp_path)
    with pytest.raises(FileNotFoundError, match="data.variant=npy"):
        affectnet.load(cfg(tmp_path, variant="npy"), seed=0)
    with pytest.raises(ValueError, match="csv, npy or empty"):
        affectnet.load(cfg(tmp_path, variant="aligned"), seed=0)
    assert len(affectnet.load(cfg(tmp_path, variant="csv"), seed=0).train) == 7
    (tmp_path / "train_set").mkdir()
    with pytest.raises(ValueError, match="holds both layouts"):
        affectnet.load(cfg(tmp_path), seed=0)


def test_label_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="label_file is not used"):
        affectnet.load(cfg(csv_release(tmp_path), label_file="x.csv"), seed=0)


def test_missing_validation_list(tmp_path):
    csv_release(tmp_path)
    (tmp_path / affectnet.CSV_LISTS / "validation.csv").unlink()
    with pytest.raises(FileNotFoundError, match="validation.csv"):
        affectnet.load(cfg(tmp_path), seed=0)


def test_listed_image_missing_fails_or_is_skipped(tmp_path):
    csv_release(tmp_path)
    (tmp_path / affectnet.CSV_IMAGES / "1/train_2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="1 of 7 listed images is missing.*train_2.jpg"):
        affectnet.load(cfg(tmp_path), seed=0)
    data = affectnet.load(cfg(tmp_path, skip_bad=True), seed=0)
    assert len(data.train) == 6 and "1/train_2.jpg" not in data.train.ids
    assert any("skipped 1 missing file " in note for note in data.notes)


def test_no_images_at_all_means_a_wrong_root(tmp_path):
    csv_release(tmp_path, images=False)
    with pytest.raises(FileNotFoundError, match="data.root is probably wrong"):
        affectnet.load(cfg(tmp_path, skip_bad=True), seed=0)


def test_label_id_out_of_range_names_file_and_line(tmp_path):
    root = csv_release(tmp_path, extra_train=[csv_row("1/train_0.jpg", 11)])
    with pytest.raises(ValueError, match=r"training.csv, line 15: label id 11 is out of range"):
        affectnet.load(cfg(root), seed=0)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('1/x.jpg,abc,0,10,10,"",1,0,0', r"line 15: face_x is 'abc', expected an integer"),
        ("1/x.jpg,0,0,10", r"line 15: 4 fields, expected 9; fix or delete that line"),
        ('1/x.jpg,0,0,10,10,"",happy,0,0', r"line 15: expression is 'happy'"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, row, message):
    root = csv_release(tmp_path, extra_train=[row])
    with pytest.raises(ValueError, match=message):
        affectnet.load(cfg(root), seed=0)


def test_duplicate_with_different_labels_is_an_error(tmp_path):
    root = csv_release(tmp_path, extra_train=[csv_row("1/train_1.jpg", 2)])
    with pytest.raises(ValueError) as error:
        affectnet.load(cfg(root), seed=0)
    # the file's lines (header on line 1; rows of dropped classes before it count too)
    assert str(error.value) == (
        f"{root / affectnet.CSV_LISTS / 'training.csv'}: '1/train_1.jpg' is listed twice with "
        "different labels (1 on line 3, 2 on line 15); remove the wrong entry"
    )


@pytest.mark.parametrize("case", [str.lower, str.upper])
def test_csv_header_in_any_case(tmp_path, case):
    expected = affectnet.load(cfg(csv_release(tmp_path / "plain")), seed=0)
    root = csv_release(tmp_path / "other")
    for name in ("training.csv", "validation.csv"):
        path = root / affectnet.CSV_LISTS / name
        path.write_text(path.read_text().replace(HEADER, case(HEADER), 1))
    data = affectnet.load(cfg(root), seed=0)
    assert by_id(data.train) == by_id(expected.train)
    assert data.train.boxes.tolist() == expected.train.boxes.tolist()
    assert not any("no header row" in note for note in data.notes)
    path = root / affectnet.CSV_LISTS / "training.csv"
    header, rest = path.read_text().split("\n", 1)
    path.write_text(header.replace(case("expression"), "mood") + "\n" + rest)
    with pytest.raises(ValueError, match=r"lacks the columns \['expression'\]"):
        affectnet.load(cfg(root), seed=0)


@pytest.mark.parametrize("text", ["", HEADER + "\n"])
def test_empty_list_is_an_error(tmp_path, text):
    csv_release(tmp_path)
    (tmp_path / affectnet.CSV_LISTS / "training.csv").write_text(text)
    with pytest.raises(ValueError, match="lists no images"):
        affectnet.load(cfg(tmp_path), seed=0)


def test_header_without_expression_column(tmp_path):
    csv_release(tmp_path)
    (tmp_path / affectnet.CSV_LISTS / "training.csv").write_text(
        "subDirectory_filePath,face_x,face_y,face_width,face_height\n1/train_0.jpg,0,0,5,5\n"
    )
    with pytest.raises(ValueError, match=r"lacks the columns \['expression'\]"):
        affectnet.load(cfg(tmp_path), seed=0)


def test_affectnet_keep_is_pure_and_counts_reasons():
    expression = np.array([0, 7, 8, 9, 10, 3, 3])
    boxes = np.array([[0, 0, 5, 5]] * 5 + [[0, 0, -1, 5], [0, 0, 5, 0]])
    keep, dropped = affectnet.affectnet_keep(expression, boxes, 7)
    assert keep.tolist() == [True, False, False, False, False, False, False]
    assert dropped == {
        "Contempt (7-class mode)": 1, "None": 1, "Uncertain": 1, "Non-Face": 1,
        affectnet.EMPTY_BOX: 2,
    }  # fmt: skip
    keep8, dropped8 = affectnet.affectnet_keep(expression, None, 8)
    assert keep8.tolist() == [True, True, False, False, False, True, True]
    assert "Contempt (7-class mode)" not in dropped8


# --- .npy release ---------------------------------------------------------------------------


def test_npy_release_reads_int_and_string_ids_in_numeric_order(tmp_path):
    # ids 0..10 so that "10" must sort after "9"; values as ints and as strings ('3').
    train = {i: (str(i % 8) if i % 2 else i % 8) for i in range(11)}
    train[10] = 8  # None: dropped
    root = npy_release(tmp_path, train, {0: "3", 1: 7, 2: np.int64(0)})
    data = affectnet.load(cfg(root), seed=0)
    assert any("npy release" in note for note in data.notes)
    assert data.train.boxes is None and data.test.boxes is None
    expected = [i for i in range(10) if i % 8 != 7]  # 7 is Contempt: dropped in 7 classes
    assert data.train.ids == [f"train_set/images/{i}.jpg" for i in expected]
    assert data.train.labels.tolist() == [CANONICAL[i % 8] for i in expected]
    assert data.train.images[0] == str(tmp_path / "train_set/images/0.jpg")
    assert by_id(data.test) == {"val_set/images/0.jpg": 0, "val_set/images/2.jpg": 6}
    assert "affectnet train: dropped 1 None" in data.notes
    assert data.train.load(0).size == (16, 16)
    data8 = affectnet.load(cfg(root, num_classes=8, variant="npy"), seed=0)
    assert by_id(data8.test)["val_set/images/1.jpg"] == 7


def test_npy_bad_annotation_fails_or_is_skipped(tmp_path):
    root = npy_release(tmp_path, {0: 1, 1: 2, 2: 3}, {0: 1})
    (root / "train_set/annotations/1_exp.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="cannot read .*1_exp.npy"):
        affectnet.load(cfg(root), seed=0)
    data = affectnet.load(cfg(root, skip_bad=True), seed=0)
    assert data.train.ids == ["train_set/images/0.jpg", "train_set/images/2.jpg"]
    assert any("skipped 1 unreadable annotations" in note for note in data.notes)


def test_npy_label_out_of_range_names_the_file(tmp_path):
    root = npy_release(tmp_path, {0: 1, 1: 12}, {0: 1})
    with pytest.raises(ValueError, match=r"1_exp.npy: label id 12 is out of range"):
        affectnet.load(cfg(root), seed=0)


def test_npy_missing_image_and_unlabelled_image(tmp_path):
    root = npy_release(tmp_path, {0: 1, 1: 2, 2: 3}, {0: 1})
    save_image(root / "train_set/images/99.jpg")
    data = affectnet.load(cfg(root), seed=0)
    assert len(data.train) == 3
    assert "affectnet train_set: ignored 1 image without an _exp.npy" in data.notes
    # hidden files (macOS's .DS_Store, its ._ copies of each file) are neither images nor labels
    (root / "train_set/images/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "train_set/images/._0.jpg").write_bytes(b"\x00\x05\x16\x07")
    (root / "train_set/annotations/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "train_set/annotations/._0_exp.npy").write_bytes(b"\x00\x05\x16\x07")
    (root / "train_set/images/notes.txt").write_text("x")
    data = affectnet.load(cfg(root), seed=0)
    assert len(data.train) == 3
    assert "affectnet train_set: ignored 1 image without an _exp.npy" in data.notes
    (root / "train_set/images/2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="listed images is missing.*2.jpg"):
        affectnet.load(cfg(root), seed=0)


def test_npy_without_annotations(tmp_path):
    root = npy_release(tmp_path, {}, {0: 1})
    with pytest.raises(FileNotFoundError, match="holds no <i>_exp.npy files"):
        affectnet.load(cfg(root), seed=0)
    other = npy_release(tmp_path / "other", {0: 1}, {0: 1})
    (other / "val_set/annotations/0_exp.npy").unlink()
    (other / "val_set/annotations").rmdir()
    with pytest.raises(FileNotFoundError, match="annotation folder not found.*val_set"):
        affectnet.load(cfg(other), seed=0)


@pytest.mark.parametrize(
    "value",
    [
        np.asarray("3"),
        np.asarray(b"5"),
        np.int64(6),
        np.array([2], dtype=np.int32),
        np.array([[4]], dtype=">i2"),
        np.float64(1.0),
        np.arange(3),
    ],
)
@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_small_npy_matches_np_load(tmp_path, value, version):
    path = tmp_path / "x.npy"
    with path.open("wb") as file:
        np.lib.format.write_array(file, np.asarray(value), version=version)
    fast = affectnet.small_npy(path.read_bytes())
    assert fast is not None
    expected = np.load(path).reshape(-1)
    assert fast.dtype == expected.dtype and fast.tolist() == expected.tolist()


def test_small_npy_leaves_odd_files_to_np_load(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert affectnet.small_npy(path.read_bytes()) is None
    assert affectnet.small_npy(b"not numpy") is None
    with pytest.raises(ValueError, match="cannot read"):
        affectnet.read_expression(path)  # pickles are refused
    np.save(path, np.asarray("12x"))
    with pytest.raises(ValueError, match="expression is '12x'"):
        affectnet.read_expression(path)


# --- CSV files as downloads and spreadsheets leave them ---------------------------------------


def test_csv_rows_without_a_face_box_are_dropped_and_counted(tmp_path):
    no_box = [
        '1/nan.jpg,NaN,3,10,12,"",1,0.1,-0.2',  # Happiness, but no box: dropped, counted
        '1/empty.jpg,2,3,,12,"",4,0.1,-0.2',  # Fear, an empty field (pandas writes NaN so)
        '1/none.jpg,,,,,"",9,-2,-2',  # Uncertain: dropped as Uncertain, box or not
    ]
    root = csv_release(tmp_path, extra_train=no_box)
    for name in ("nan", "empty"):
        save_image(root / affectnet.CSV_IMAGES / f"1/{name}.jpg")
    data = affectnet.load(cfg(root), seed=0)
    assert by_id(data.train) == {f"1/train_{e}.jpg": CANONICAL[e] for e in range(7)}
    assert f"affectnet train: dropped 2 {affectnet.NO_BOX}" in data.notes
    assert "affectnet train: dropped 2 Uncertain" in data.notes
    assert "affectnet train: kept 7 of 16 listed faces" in data.notes


def test_csv_box_that_ends_before_the_image_is_dropped(tmp_path):
    outside = [csv_row("1/left.jpg", 1, (-40, 3, 30, 12)), csv_row("1/above.jpg", 1, (2, -9, 5, 9))]
    root = csv_release(tmp_path, extra_train=outside)
    for name in ("left", "above"):
        save_image(root / affectnet.CSV_IMAGES / f"1/{name}.jpg")
    data = affectnet.load(cfg(root), seed=0)
    assert "1/left.jpg" not in data.train.ids and "1/above.jpg" not in data.train.ids
    assert f"affectnet train: dropped 2 {affectnet.OUTSIDE_BOX}" in data.notes
    partly = csv_release(tmp_path / "partly", extra_train=[csv_row("1/p.jpg", 1, (-5, -5, 20, 20))])
    save_image(partly / affectnet.CSV_IMAGES / "1/p.jpg")
    data = affectnet.load(cfg(partly), seed=0)
    row = data.train.ids.index("1/p.jpg")  # partly inside: kept, cropped to the image
    assert data.train.load(row).size == (15, 15)


@pytest.mark.parametrize(
    "folder", ["Manually_Annotated", "Manually_Annotated_compressed", affectnet.CSV_IMAGES]
)
def test_csv_images_unpacked_one_folder_deeper_are_found(tmp_path, folder):
    root = csv_release(tmp_path / "release")
    (root / affectnet.CSV_IMAGES).rename(tmp_path / "images")
    (root / folder).mkdir(exist_ok=True)
    (tmp_path / "images").rename(root / folder / affectnet.CSV_IMAGES)
    data = affectnet.load(cfg(root), seed=0)
    inner = root / folder / affectnet.CSV_IMAGES
    assert data.train.images[0] == str(inner / "1/train_0.jpg")
    assert any(note.startswith(f"affectnet: images read from {inner}") for note in data.notes)
    assert by_id(data.train) == {f"1/train_{e}.jpg": CANONICAL[e] for e in range(7)}


def test_csv_images_left_packed_say_extract(tmp_path):
    root = csv_release(tmp_path, images=False)
    (root / affectnet.CSV_IMAGES).rmdir()
    (root / "Manually_Annotated.tar").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"Extract Manually_Annotated.tar in .* so that"):
        affectnet.load(cfg(root), seed=0)


def test_csv_list_not_utf8_names_the_line(tmp_path):
    root = csv_release(tmp_path, extra_train=[csv_row("1/café.jpg", 1)])
    path = root / affectnet.CSV_LISTS / "training.csv"
    path.write_bytes(path.read_text().encode("latin-1"))
    with pytest.raises(ValueError, match=r"training.csv, line 15: byte 0xe9 is not UTF-8 text"):
        affectnet.load(cfg(root), seed=0)


def test_csv_list_with_semicolons_or_the_lists_folder_as_root(tmp_path):
    root = csv_release(tmp_path)
    lists = root / affectnet.CSV_LISTS
    with pytest.raises(
        FileNotFoundError, match=rf"holds the lists themselves: set data.root={root}"
    ):
        affectnet.load(cfg(lists), seed=0)
    (lists / "training.csv").write_text(HEADER.replace(",", ";") + "\n")
    with pytest.raises(ValueError, match="holds no comma; AffectNet lists are comma-separated"):
        affectnet.load(cfg(root), seed=0)
