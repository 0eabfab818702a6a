"""The folder and manifest readers (a user's own images) on tiny generated trees and CSVs."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from lionfer.config_sections import DataConfig
from lionfer.data.datasets import folder, manifest
from lionfer.errors import ConfigError, InputError
from lionfer.labels import CLASS_NAMES, CLASS_NAMES_8
from lionfer.registry import DATASETS


def write_image(path: Path, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.arange(size * size * 3, dtype=np.uint8).reshape(size, size, 3)
    Image.fromarray(pixels).save(path)


def make_tree(root: Path, counts: dict[str, int]) -> Path:
    for name, count in counts.items():
        for k in range(count):
            write_image(root / name / f"{k:02d}.png")
    return root


def cfg(root, **kwargs) -> DataConfig:
    return DataConfig(root=str(root), **kwargs)


def test_readers_are_registered():
    assert DATASETS.get("folder") is folder.load and DATASETS.get("manifest") is manifest.load


def test_folder_fer_names_are_canonical_with_stratified_holdout(tmp_path):
    root = make_tree(tmp_path, {"happy": 10, "Angry": 5, "sad": 5, "surprised": 10})
    (root / "happy" / ".hidden.png").write_text("x")
    (root / "happy" / "readme.md").write_text("x")
    (root / "labels.txt").write_text("x")
    data = folder.load(cfg(root), seed=0)
    assert data.class_names == CLASS_NAMES and data.split_rule == "balanced"
    test_counts = np.bincount(data.test.labels, minlength=7)
    train_counts = np.bincount(data.train.labels, minlength=7)
    # happy -> 3, Angry -> 5, sad -> 4, surprised -> 0; 20% of each class held out
    assert test_counts.tolist() == [2, 0, 0, 2, 1, 1, 0]
    assert train_counts.tolist() == [8, 0, 0, 8, 4, 4, 0]
    assert not set(data.train.ids) & set(data.test.ids)
    assert np.array_equal(data.test.true_labels, data.test.labels)
    assert any("held out a stratified 20%" in note for note in data.notes)
    assert any("ignored 3" in note for note in data.notes)
    again = folder.load(cfg(root), seed=5)  # the test set follows data_seed, not the run seed
    assert again.test.ids == data.test.ids
    other = folder.load(cfg(root, data_seed=1), seed=0)
    assert other.test.ids != data.test.ids


def test_folder_reads_every_still_image_format(tmp_path):
    # webp, tiff, gif, jfif/jpe (JPEG), avif are images like png and jpg; .txt is not
    formats = {"a.webp": "WEBP", "b.tif": "TIFF", "c.gif": "GIF", "d.jfif": "JPEG"}
    formats |= {"e.jpe": "JPEG", "f.bmp": "BMP", "g.JPEG": "JPEG"}
    if features.check("avif"):  # Pillow builds since 11.3
        formats["h.avif"] = "AVIF"
    pixels = np.full((8, 8, 3), 128, dtype=np.uint8)
    for name, fmt in formats.items():
        (tmp_path / "happy").mkdir(exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "happy" / name, fmt)
    make_tree(tmp_path, {"sad": 2})
    (tmp_path / "happy" / "notes.txt").write_text("x")
    data = folder.load(cfg(tmp_path), seed=0)
    names = {Path(p).name for p in data.train.images + data.test.images}
    assert names == set(formats) | {"00.png", "01.png"}
    assert any("ignored 1" in note for note in data.notes)


def test_folder_train_test_layout(tmp_path):
    make_tree(tmp_path / "train", {"neutral": 3, "fear": 2})
    make_tree(tmp_path / "test", {"neutral": 1, "fear": 1, "disgust": 1})
    data = folder.load(cfg(tmp_path), seed=0)
    assert sorted(data.train.labels.tolist()) == [1, 1, 6, 6, 6]
    assert sorted(data.test.labels.tolist()) == [1, 2, 6]
    assert data.train.ids[0].startswith("train/") and data.test.ids[0].startswith("test/")
    assert data.train.images[0] == str(tmp_path / data.train.ids[0])
    assert not any("held out" in note for note in data.notes)


def test_folder_contempt_gives_eight_classes(tmp_path):
    data = folder.load(cfg(make_tree(tmp_path, {"contempt": 5, "happy": 5})), seed=0)
    assert data.class_names == CLASS_NAMES_8
    assert set(data.train.labels.tolist()) == {3, 7}


def test_folder_other_names_are_general_classes(tmp_path):
    data = folder.load(cfg(make_tree(tmp_path, {"dog": 5, "cat": 5, "bird": 5})), seed=0)
    assert data.class_names == ("bird", "cat", "dog")
    assert {
        i.split("/")[0]: int(c) for i, c in zip(data.train.ids, data.train.labels, strict=True)
    } == {"bird": 0, "cat": 1, "dog": 2}
    assert any("general classes" in note for note in data.notes)


def test_folder_class_map(tmp_path):
    root = make_tree(tmp_path, {"pos": 5, "neg": 5, "junk": 5})
    data = folder.load(cfg(root, class_map={"pos": 3, "NEG": "sad", "junk": -1}), seed=0)
    assert data.class_names == CLASS_NAMES
    assert sorted(set(data.train.labels.tolist())) == [3, 4]
    assert len(data.train) + len(data.test) == 10
    assert any("dropped the classes ['junk']" in note for note in data.notes)
    with pytest.raises(ValueError, match="'junk' is not in data.class_map"):
        folder.load(cfg(root, class_map={"pos": 3, "neg": 4}), seed=0)
    with pytest.raises(ValueError, match="canonical ids are 0-6"):
        folder.load(cfg(root, class_map={"pos": 9, "neg": 4, "junk": 1}), seed=0)


@pytest.mark.parametrize("value", [True, 3.5, [3], {"x": 3}, float("inf")])
def test_class_map_values_are_class_ids_or_names(tmp_path, value):
    """true would be class 1 and 3.5 class 3 by int(); a list, table or inf a traceback."""
    root = make_tree(tmp_path, {"pos": 2, "neg": 2})
    with pytest.raises(ConfigError, match=r"data.class_map\['pos'\] = .*: give a class id 0-7"):
        folder.load(cfg(root, class_map={"pos": value, "neg": 4}), seed=0)


def test_folder_unlabeled_root_recursive(tmp_path):
    root = make_tree(tmp_path / "labeled", {"happy": 5, "sad": 5})
    write_image(tmp_path / "photos" / "a.jpg")
    write_image(tmp_path / "photos" / "2024" / "b.png")
    (tmp_path / "photos" / "list.csv").write_text("x")
    data = folder.load(cfg(root, unlabeled_root=str(tmp_path / "photos")), seed=0)
    assert data.unlabeled.ids == ["unlabeled/2024/b.png", "unlabeled/a.jpg"]
    assert data.unlabeled.labels.tolist() == [-1, -1]
    assert data.unlabeled.load(0).size == (8, 8)
    with pytest.raises(FileNotFoundError, match="unlabeled image folder not found"):
        folder.load(cfg(root, unlabeled_root=str(tmp_path / "none")), seed=0)


def test_a_data_root_naming_an_image_file_says_it_is_a_file(tmp_path):
    root = make_tree(tmp_path, {"happy": 2, "sad": 2})
    image = next((root / "happy").iterdir())
    with pytest.raises(FileNotFoundError, match=f"image folder: {image} is a file, not a folder"):
        folder.load(cfg(image), seed=0)


def test_a_contempt_folder_makes_eight_classes_and_says_so(tmp_path):
    root = make_tree(tmp_path, {"happy": 5, "sad": 5, "contempt": 5})
    data = folder.load(cfg(root), seed=0)
    assert data.class_names == CLASS_NAMES_8
    assert any(
        n.startswith("the class 'contempt' is Contempt, AffectNet's eighth") for n in data.notes
    )
    data = folder.load(cfg(root, class_map={"happy": 3, "sad": 4, "contempt": -1}), seed=0)
    assert data.class_names == CLASS_NAMES and not any("eighth" in n for n in data.notes)


def test_an_unlabeled_root_among_the_class_folders_is_no_class(tmp_path):
    """data.unlabeled_root=my_faces/unlabeled beside my_faces/happy/...: read as unlabeled images,
    not as a class named "unlabeled" (which turned the FER classes into general ones)."""
    root = make_tree(tmp_path / "faces", {"happy": 5, "sad": 5, "neutral": 5})
    for k in range(3):
        write_image(root / "unlabeled" / f"u{k}.png")
    data = folder.load(cfg(root, unlabeled_root=str(root / "unlabeled")), seed=0)
    assert data.class_names == CLASS_NAMES and len(data.train) + len(data.test) == 15
    assert len(data.unlabeled) == 3
    split = make_tree(tmp_path / "split" / "train", {"happy": 5, "sad": 5})
    make_tree(tmp_path / "split" / "test", {"happy": 2, "sad": 2})
    write_image(split / "unlabeled" / "u.png")
    data = folder.load(cfg(tmp_path / "split", unlabeled_root=str(split / "unlabeled")), seed=0)
    assert data.class_names == CLASS_NAMES and len(data.train) == 10 and len(data.unlabeled) == 1


def test_folder_refuses_a_file_name_that_is_not_utf8(tmp_path):
    """A Latin-1 name (an old zip, CD or Windows share): the run's files could not name it."""
    root = make_tree(tmp_path / "data", {"happy": 5, "sad": 5})
    write_image(root / "happy" / os.fsdecode(b"caf\xe9.png"))
    with pytest.raises(InputError, match=r"happy/caf\\xe9.png: the file name is not UTF-8") as info:
        folder.load(cfg(root), seed=0)
    assert "rename" in str(info.value)


def test_folder_bad_roots(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found.*one folder per class"):
        folder.load(cfg(tmp_path / "missing"), seed=0)
    (tmp_path / "empty" / "happy").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images found"):
        folder.load(cfg(tmp_path / "empty"), seed=0)
    make_tree(tmp_path / "only_test" / "test", {"happy": 2})
    with pytest.raises(FileNotFoundError, match="no train/ folder"):
        folder.load(cfg(tmp_path / "only_test"), seed=0)


def test_folder_names_the_images_it_leaves_out(tmp_path):
    make_tree(tmp_path / "train", {"happy": 3, "sad": 3})
    make_tree(tmp_path / "val", {"happy": 2, "sad": 1})
    write_image(tmp_path / "stray.png")
    (tmp_path / "readme.txt").write_text("x")
    data = folder.load(cfg(tmp_path), seed=0)
    assert len(data.train) + len(data.test) == 6
    (note,) = [n for n in data.notes if n.startswith("left out 3 images beside train/")]
    assert "val/ (3 images)" in note and "rename val/ to test/" in note
    assert "data.unlabeled_root" in note
    assert any(n.startswith(f"left out 1 image lying directly in {tmp_path},") for n in data.notes)
    assert "ignored 1 hidden or non-image file" in data.notes
    # beside train/ and test/: class folders and val/, but not the data.unlabeled_root
    make_tree(tmp_path / "test", {"happy": 1, "sad": 1})
    make_tree(tmp_path, {"happy": 4})
    write_image(tmp_path / "extra" / "u.png")
    data = folder.load(cfg(tmp_path, unlabeled_root=str(tmp_path / "extra")), seed=0)
    (note,) = [n for n in data.notes if n.startswith("left out 7 images beside train/ and test/")]
    assert "happy/ (4 images), val/ (3 images)." in note and "rename" not in note
    assert "extra/" not in note and len(data.unlabeled) == 1


def test_folder_names_images_outside_class_folders(tmp_path):
    make_tree(tmp_path, {"happy": 3, "sad": 3})
    write_image(tmp_path / "loose.png")
    notes = folder.load(cfg(tmp_path), seed=0).notes
    assert any(n.startswith(f"left out 1 image lying directly in {tmp_path}") for n in notes)
    assert not any(n.startswith("ignored") for n in notes)  # an image, not another file


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_images(root: Path, names) -> None:
    for name in names:
        write_image(root / name, size=16)


def test_manifest_splits_labels_and_relative_paths(tmp_path):
    make_images(tmp_path / "data", [f"img/{k}.png" for k in range(8)])
    write_csv(
        tmp_path / "data" / "manifest.csv",
        "path,label,split,true_label\n"
        "img/0.png,happy,train,\n"
        "img/1.png,3,train,\n"
        "img/2.png,Anger,,\n"
        "img/3.png,,train,sad\n"
        "img/4.png,,unlabeled,\n"
        "img/5.png,-1,unlabeled,0\n"
        "img/6.png,neutral,test,\n"
        "img/7.png,0,test,\n",
    )
    for root in (tmp_path / "data", tmp_path / "data" / "manifest.csv"):
        data = manifest.load(cfg(root), seed=0)
        assert data.class_names == CLASS_NAMES
        assert data.train.ids == ["img/0.png", "img/1.png", "img/2.png"]
        assert data.train.labels.tolist() == [3, 3, 5]
        assert data.train.images[0] == str(tmp_path / "data" / "img" / "0.png")
        assert data.test.labels.tolist() == [6, 0]
        assert np.array_equal(data.test.true_labels, data.test.labels)
        assert data.unlabeled.ids == ["img/3.png", "img/4.png", "img/5.png"]
        assert data.unlabeled.labels.tolist() == [-1, -1, -1]
        assert data.unlabeled.true_labels.tolist() == [4, -1, 0]
        assert data.train.true_labels is None  # no train row gives its true_label


def test_a_train_row_without_its_true_label_has_no_known_truth(tmp_path):
    make_images(tmp_path / "data", [f"img/{k}.png" for k in range(4)])
    write_csv(
        tmp_path / "data" / "manifest.csv",
        "path,label,split,true_label\n"
        "img/0.png,happy,train,sad\n"
        "img/1.png,happy,train,\n"
        "img/2.png,neutral,test,neutral\n"
        "img/3.png,neutral,test,\n",
    )
    data = manifest.load(cfg(tmp_path / "data"), seed=0)
    assert data.train.labels.tolist() == [3, 3]
    assert data.train.true_labels.tolist() == [4, -1]  # known wrong; unknown, not "right"


def test_manifest_without_test_rows_holds_out_20_percent(tmp_path):
    names = [f"{k}.jpg" for k in range(20)]
    make_images(tmp_path, names)
    rows = [f"{n},{'happy' if k < 10 else 'sad'}" for k, n in enumerate(names)]
    write_csv(tmp_path / "manifest.csv", "path,label\n" + "\n".join(rows))
    data = manifest.load(cfg(tmp_path), seed=0)
    assert np.bincount(data.test.labels, minlength=7).tolist() == [0, 0, 0, 2, 2, 0, 0]
    assert len(data.train) == 16 and data.unlabeled is None
    assert any("held out" in note for note in data.notes)


def test_manifest_face_boxes_crop(tmp_path):
    make_images(tmp_path, ["a.png", "b.png"])
    write_csv(
        tmp_path / "m.csv",
        "path,label,split,x,y,w,h\na.png,happy,,2,3,5,6\nb.png,sad,test,0,0,4,4\n",
    )
    data = manifest.load(cfg(tmp_path / "m.csv"), seed=0)
    assert data.train.boxes.tolist() == [[2, 3, 5, 6]]
    assert data.train.load(0).size == (5, 6)
    assert data.test.boxes.tolist() == [[0, 0, 4, 4]]


def test_manifest_general_classes_and_class_map(tmp_path):
    make_images(tmp_path, ["a.png", "b.png", "c.png"])
    write_csv(
        tmp_path / "manifest.csv", "path,label,split\na.png,dog,\nb.png,cat,\nc.png,dog,test\n"
    )
    data = manifest.load(cfg(tmp_path), seed=0)
    assert data.class_names == ("cat", "dog") and data.train.labels.tolist() == [1, 0]
    mapped = manifest.load(cfg(tmp_path, class_map={"dog": 3, "cat": 4}), seed=0)
    assert mapped.class_names == CLASS_NAMES and mapped.train.labels.tolist() == [3, 4]


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("path,lab\na.png,happy\n", ValueError, "line 1: the header lacks \\['label'\\]"),
        (  # no header row: the first row is taken for one, and said to look like a row
            "a.png,happy\nb.png,sad\n",
            ValueError,
            "line 1: the header lacks .*; it looks like a row: add the line 'path,label' above it",
        ),
        (  # blank lines before the header are skipped, and the lines named are the file's
            "\n\npath,label\na.png,happy\nb.png,9\n",
            ValueError,
            r"line 5: label id 9 is out of range",
        ),
        ("\n\npath,lab\na.png,happy\n", ValueError, "line 3: the header lacks \\['label'\\]"),
        ("path,label,x,y\na.png,happy,1,2\n", ValueError, "needs all four columns"),
        ("path,label\na.png,happy\nb.png,sad,extra\n", ValueError, "line 3: 3 fields"),
        ("path,label,split\na.png,happy,val\n", ValueError, "line 2: split 'val' must be"),
        ("path,label\na.png,happy\nb.png,9\n", ValueError, r"line 3: label id 9 is out of range"),
        ("path,label,split\na.png,happy,\nb.png,,test\n", ValueError, "line 3: a test image"),
        ("path,label\na.png,happy\nb.png,3\nb.png,cow\n", ValueError, "line 4: label 'cow'"),
        (
            "path,label,split\na.png,happy,train\na.png,happy,test\n",
            ValueError,
            "listed as train \\(line 2\\) and as test \\(line 3\\)",
        ),
        (  # a blank line: the lines named are the file's, not the entries' numbers
            "path,label\na.png,happy\n\nb.png,sad\na.png,sad\n",
            ValueError,
            "'a.png' is listed twice with different labels "
            "\\('happy' on line 2, 'sad' on line 5\\)",
        ),
        (  # labels as the file writes them, not canonical ids; a path written otherwise named
            "path,label\na.png,3\nb.png,sad\n./a.png,Anger\n",
            ValueError,
            "different labels \\('3' on line 2, 'Anger' as './a.png' on line 4\\)",
        ),
        ("path,label,x,y,w,h\na.png,happy,1,2,0,3\n", ValueError, "line 2: the face box"),
        ("path,label\n", ValueError, "lists no images"),
    ],
)
@pytest.mark.filterwarnings("ignore:class names .* are not FER expressions")  # happy + cow
def test_manifest_bad_input_names_file_and_line(tmp_path, text, error, message):
    make_images(tmp_path, ["a.png", "b.png"])
    write_csv(tmp_path / "manifest.csv", text)
    with pytest.raises(error, match=message):
        manifest.load(cfg(tmp_path), seed=0)


def test_manifest_missing_files(tmp_path):
    make_images(tmp_path, ["a.png", "b.png", "c.png"])
    rows = "path,label,split\na.png,happy,\nb.png,sad,\nc.png,sad,test\ngone.png,happy,\n"
    write_csv(tmp_path / "manifest.csv", rows)
    with pytest.raises(FileNotFoundError, match="1 of 4 .*gone.png.*skip_bad=true"):
        manifest.load(cfg(tmp_path), seed=0)
    data = manifest.load(cfg(tmp_path, skip_bad=True), seed=0)
    assert data.train.ids == ["a.png", "b.png"]
    assert any("skipped 1 missing file " in note for note in data.notes)
    write_csv(tmp_path / "elsewhere" / "manifest.csv", rows)
    with pytest.raises(FileNotFoundError, match="none of the 4 listed images"):
        manifest.load(cfg(tmp_path / "elsewhere"), seed=0)
    with pytest.raises(FileNotFoundError, match="image manifest not found"):
        manifest.load(cfg(tmp_path / "nowhere"), seed=0)


def test_manifest_duplicates_kept_once(tmp_path):
    make_images(tmp_path, ["a.png", "b.png"])
    write_csv(
        tmp_path / "manifest.csv", "path,label,split\na.png,happy,\na.png,3,\nb.png,sad,test\n"
    )
    data = manifest.load(cfg(tmp_path), seed=0)
    assert data.train.ids == ["a.png"]
    assert any("1 duplicate entries" in note for note in data.notes)


@pytest.mark.parametrize("outside", ["../../../../etc/passwd", "../other/x.png", "{abs}"])
def test_manifest_paths_must_stay_inside_its_folder(tmp_path, outside):
    make_images(tmp_path / "data", ["a.png", "b.png"])
    make_images(tmp_path / "other", ["x.png"])
    outside = outside.format(abs=tmp_path / "other" / "x.png")
    rows = f"path,label,split\na.png,happy,\nb.png,sad,test\n{outside},sad,\n"
    write_csv(tmp_path / "data" / "manifest.csv", rows)
    with pytest.raises(InputError, match=r"line 4: the image path .* points outside") as info:
        manifest.load(cfg(tmp_path / "data"), seed=0)
    assert "data.allow_outside_root=true" in str(info.value)
    if outside.endswith("x.png"):  # a trusted manifest may reach outside
        data = manifest.load(cfg(tmp_path / "data", allow_outside_root=True), seed=0)
        assert data.train.images[-1] == str(tmp_path / "other" / "x.png")


def test_manifest_absolute_and_dotted_paths_inside_the_folder_are_fine(tmp_path):
    make_images(tmp_path / "data", ["img/a.png", "b.png"])
    rows = (
        f"path,label,split\n{tmp_path / 'data' / 'img' / 'a.png'},happy,\nimg/../b.png,sad,test\n"
    )
    write_csv(tmp_path / "data" / "manifest.csv", rows)
    data = manifest.load(cfg(tmp_path / "data"), seed=0)
    assert data.test.images == [str(tmp_path / "data" / "b.png")]


def test_a_cameras_raw_photos_in_a_folder_are_named_in_its_note(tmp_path):
    make_images(tmp_path / "photos", ["happy/a.png", "happy/b.png", "sad/c.png", "sad/d.png"])
    make_images(tmp_path / "photos", ["happy/e.png", "sad/f.png"])
    (tmp_path / "photos" / ".trash").mkdir()
    for name in ("sad/IMG_1.CR2", "sad/IMG_2.nef", ".DS_Store", ".trash/IMG_0.NEF"):
        (tmp_path / "photos" / name).write_bytes(b"II*\x00" + bytes(16))
    data = folder.load(cfg(tmp_path / "photos"), seed=0)
    assert (
        "ignored 3 hidden or non-image files, 2 of them camera RAW photos (.cr2, .nef, .arw, "
        ".dng, ...), which lionfer does not read: export them as JPEG or PNG" in data.notes
    )
    only_raw = tmp_path / "raw"
    (only_raw / "happy").mkdir(parents=True)
    (only_raw / "happy" / "IMG_3.ARW").write_bytes(b"II*\x00")
    with pytest.raises(InputError, match=r"\(1 other file, 1 of them a camera RAW photo "):
        folder.load(cfg(only_raw), seed=0)
    with pytest.raises(InputError, match="data.unlabeled_root=.*1 of them a camera RAW photo"):
        folder.load(cfg(tmp_path / "photos", unlabeled_root=str(only_raw)), seed=0)
    plain = tmp_path / "plain"
    make_images(plain, [f"{c}/{k}.png" for c in ("happy", "sad") for k in range(3)])
    (plain / ".DS_Store").write_bytes(b"\x00")
    notes = folder.load(cfg(plain), seed=0).notes
    assert "ignored 1 hidden or non-image file" in notes  # no RAW photo: no word of them


def test_manifest_ids_counting_from_one_are_refused(tmp_path):
    # RAF-DB's ids 1-7: read as canonical ids, 7 (Neutral) became Contempt and every class shifted
    make_images(tmp_path, [f"{k}{s}.png" for k in range(1, 8) for s in "ab"])
    rows = "".join(f"{k}a.png,{k},train\n{k}b.png,{k},test\n" for k in range(1, 8))
    write_csv(tmp_path / "manifest.csv", "path,label,split\n" + rows)
    with pytest.raises(InputError, match=r"line 14: label id 7 .*look 1-based.*class_map=\{1=0"):
        manifest.load(cfg(tmp_path), seed=0)
    one_based = {str(k): k - 1 for k in range(1, 8)}
    data = manifest.load(cfg(tmp_path, class_map=one_based), seed=0)
    assert data.class_names == CLASS_NAMES
    assert data.train.labels.tolist() == data.test.labels.tolist() == list(range(7))
    eight = manifest.load(cfg(tmp_path, num_classes=8), seed=0)  # canonical, without Surprise
    assert eight.class_names == CLASS_NAMES_8
    assert not any("id 7" in note for note in eight.notes)
    (tmp_path / "prepare.json").write_text("{}")  # lionfer prepare's cache: canonical ids
    prepared = manifest.load(cfg(tmp_path), seed=0)
    assert prepared.class_names == CLASS_NAMES_8 and not any("id 7" in n for n in prepared.notes)


def test_manifest_contempt_id_beside_zero_is_said(tmp_path):
    make_images(tmp_path, [f"{k}{s}.png" for k in range(7) for s in "ab"] + ["c.png"])
    rows = "".join(f"{k}a.png,{k},train\n{k}b.png,{k},test\n" for k in range(7))
    write_csv(tmp_path / "manifest.csv", "path,label,split\n" + rows + "c.png,7,train\n")
    data = manifest.load(cfg(tmp_path), seed=0)
    assert data.class_names == CLASS_NAMES_8
    (note,) = [n for n in data.notes if "id 7" in n]
    assert "1 labels are id 7, Contempt" in note and "line 16" in note
    assert "data.num_classes=8" in note
    assert not any("id 7" in n for n in manifest.load(cfg(tmp_path, num_classes=8), seed=0).notes)
