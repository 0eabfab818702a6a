"""Shared dataset checks on tiny trees: listing image folders, and finding copies of files and
images that appear twice."""

import os

import numpy as np
import pytest
from PIL import Image

from lionfer.data import checks, image_copies
from lionfer.data.base import FERData, ImageSet
from lionfer.data.checks import list_images
from lionfer.data.image_check import check_images
from lionfer.data.image_copies import TAIL_BYTES, copies_of, same_images
from lionfer.data.images import ImageError
from lionfer.data.pipeline import drop_labeled_copies
from lionfer.errors import InputError, MissingInputError


def write_image(path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, 0, 0)).save(path)


def test_list_images_follows_linked_folders_once(tmp_path):
    # happy/extra -> store/more (a linked folder), happy/loop -> happy (a loop), a nested folder
    store = tmp_path / "store" / "more"
    write_image(store / "a.png")
    write_image(store / "b.jpg")
    happy = tmp_path / "happy"
    write_image(happy / "c.png")
    write_image(happy / "2020" / "may" / "d.bmp")
    (happy / "notes.txt").write_text("x")
    os.symlink(store, happy / "extra")
    os.symlink(happy, happy / "loop")
    images, ignored = list_images(happy, recursive=True)
    names = [p.relative_to(happy).as_posix() for p in images]
    assert names == ["2020/may/d.bmp", "c.png", "extra/a.png", "extra/b.jpg"]
    assert ignored == 1


def test_list_images_lists_a_link_to_a_missing_image_for_the_check_to_name(tmp_path):
    write_image(tmp_path / "a.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "b.png")  # the image moved away
    os.symlink(tmp_path / "gone.txt", tmp_path / "c.txt")  # not an image either way
    os.symlink(tmp_path / "gone.png", tmp_path / ".d.png")  # hidden
    images, ignored = list_images(tmp_path)
    assert [p.name for p in images] == ["a.png", "b.png"] and ignored == 0


def test_all_listed_files_missing_gives_the_reader_s_fix(tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    with pytest.raises(MissingInputError, match="data.root is probably wrong"):
        checks.check_listed_files(paths, False, "rafdb")
    with pytest.raises(MissingInputError, match=r"a.png\)\. Keep the list beside") as info:
        checks.check_listed_files(paths, False, "manifest", "Keep the list beside its images")
    assert "data.variant" not in str(info.value)


def test_drop_duplicates_words_a_conflict_as_the_file_does():
    names, labels = ["a.jpg", "b.jpg", "a.jpg"], [0, 3, 6]  # labels: ids mapped from the file's
    with pytest.raises(InputError) as error:
        checks.drop_duplicates(names, labels, "list.txt", [2, 5, 9], written=["1", "4", "7"])
    assert str(error.value) == (
        "list.txt: 'a.jpg' is listed twice with different labels (1 on line 2, 7 on line 9); "
        "remove the wrong entry"
    )
    with pytest.raises(InputError, match=r"\(happy on entry 1, sad on entry 3\)"):
        checks.drop_duplicates(names, labels, written=["happy", "neutral", "sad"])
    # without them: the labels given and the entries' positions, as before
    with pytest.raises(InputError, match=r"^label list: 'a.jpg' .*\(0 on entry 1, 6 on entry 3\)"):
        checks.drop_duplicates(names, labels)
    keep, notes = checks.drop_duplicates(names, [0, 3, 0], "list.txt", written=["1", "4", "1"])
    assert keep.tolist() == [True, True, False]
    assert notes == ["dropped 1 duplicate entries in list.txt (each kept once)"]


def test_copies_of_finds_the_same_file_and_byte_copies(tmp_path):
    write_image(tmp_path / "train" / "a.png", 10)
    write_image(tmp_path / "train" / "b.png", 20)
    write_image(tmp_path / "unl" / "other.png", 30)  # another image of the same size
    (tmp_path / "unl" / "copy.png").write_bytes((tmp_path / "train" / "b.png").read_bytes())
    os.symlink(tmp_path / "train" / "a.png", tmp_path / "unl" / "link.png")
    others = [tmp_path / "train" / "a.png", tmp_path / "train" / "b.png"]
    paths = [
        tmp_path / "unl" / "other.png",
        tmp_path / "unl" / "copy.png",
        tmp_path / "unl" / "link.png",
        tmp_path / "unl" / "../train/a.png",
        tmp_path / "unl" / "missing.png",
    ]
    assert copies_of(paths, others)[0].tolist() == [False, True, True, True, False]
    assert copies_of(paths, [])[0].tolist() == [False] * 5
    assert copies_of([], others)[0].dtype == np.bool_


def test_same_images_groups_copies_by_content_not_by_size_or_tail(tmp_path):
    tail = bytes(range(256)) * (TAIL_BYTES // 256 + 1)
    files = {
        "a": b"A" + tail,  # a and b: the same size and the same last TAIL_BYTES, other bytes
        "b": b"B" + tail,
        "a_copy": b"A" + tail,
        "c": b"C" * 50,
        "missing": None,
    }
    for name, data in files.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    os.symlink(tmp_path / "c", tmp_path / "c_link")
    train = ImageSet([str(tmp_path / n) for n in ("a", "b", "c", "missing")], [0, 1, 2, 0])
    test = ImageSet([str(tmp_path / n) for n in ("a_copy", "c_link", "missing")], [1, 2, 0])
    groups = sorted(sorted(g) for g in same_images([train, test]))
    assert groups == [[(0, 0), (1, 0)], [(0, 2), (1, 1)]]
    # what is held per file of a shared size is a digest of its tail, not the tail itself
    from lionfer.data.image_copies import _tail

    assert len(_tail(str(tmp_path / "a"))) == 16 and _tail(str(tmp_path / "a")) == _tail(
        str(tmp_path / "b")
    )
    assert _tail(str(tmp_path / "a")) != _tail(str(tmp_path / "c"))


def test_same_images_compares_arrays_and_face_boxes(tmp_path):
    pixels = np.zeros((4, 6, 6), dtype=np.uint8)
    pixels[1] = pixels[3] = 7
    arrays = ImageSet(pixels, [0, 1, 2, 3])
    assert sorted(sorted(g) for g in same_images([arrays])) == [[(0, 0), (0, 2)], [(0, 1), (0, 3)]]
    # one photo, three faces: two boxes the same, one another face
    write_image(tmp_path / "p.png")
    boxes = [[0, 0, 5, 5], [0, 0, 5, 5], [5, 5, 5, 5]]
    boxed = ImageSet([str(tmp_path / "p.png")] * 3, [0, 1, 1], boxes=boxes)
    assert same_images([boxed]) == [[(0, 0), (0, 1)]]


def test_leaving_out_unlabeled_copies_hashes_each_file_once(tmp_path, monkeypatch):
    # an unlabeled file the size of a train and a test file, with their last bytes: each of the
    # three is hashed once, where comparing with train and with test apart hashed it twice
    tail = bytes(range(256)) * (TAIL_BYTES // 256 + 1)
    for name, first in (("unl", b"U"), ("train", b"A"), ("test", b"B")):
        (tmp_path / name).write_bytes(first + tail)
    hashed = []
    real_digest = image_copies._digest
    monkeypatch.setattr(
        image_copies, "_digest", lambda path: hashed.append(path) or real_digest(path)
    )
    data = FERData(
        "files",
        ("a", "b"),
        ImageSet([str(tmp_path / "train")], [0]),
        ImageSet([str(tmp_path / "test")], [1]),
        ImageSet([str(tmp_path / "unl")], [-1]),
    )
    drop_labeled_copies(data)
    assert sorted(hashed) == sorted(
        os.path.realpath(tmp_path / n) for n in ("unl", "train", "test")
    )
    assert data.unlabeled is not None and not data.notes  # other bytes: no copy


def test_a_face_box_outside_its_image_is_a_bad_image(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (40, 30)).save(path)
    boxes = [
        [5, 5, 20, 20],  # inside
        [30, 20, 20, 20],  # past the right and bottom edges: padded, kept
        [45, 0, 10, 10],  # right of the image
        [0, 35, 10, 10],  # below it upright, inside it turned a quarter (30 wide, 40 high)
        [-20, 0, 10, 10],  # ends left of it
        [0, 0, 0, 0],  # no box: the whole image
    ]
    images = ImageSet([str(path)] * len(boxes), np.zeros(len(boxes), int), boxes=boxes)
    with pytest.raises(ImageError, match=r"2 of 6 train .*x 45, y 0, w 10, h 10\) lies "):
        check_images(images, "train", skip_bad=False)
    found = check_images(images, "train", skip_bad=True)
    assert found.keep.tolist() == [True, True, False, True, False, True]
    assert "skipped 2 unreadable train images" in found.notes[0]


def test_a_missing_file_or_folder_is_named_with_a_latin_1_byte_as_xnn(tmp_path):
    latin = os.fsdecode(os.fsencode(tmp_path) + b"/man\xe9")
    os.mkdir(latin)
    with pytest.raises(MissingInputError, match=r"the file .*/man\\xe9/manifest.csv\. "):
        checks.require_file(os.path.join(latin, "manifest.csv"), "image manifest", "")
    with pytest.raises(MissingInputError, match=r"the folder .*/man\\xe9/faces\. "):
        checks.require_dir(os.path.join(latin, "faces"), "image folder", "")
