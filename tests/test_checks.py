"""Shared dataset checks on tiny trees: listing image folders, and finding copies of files."""

import os

import numpy as np
from PIL import Image

from lionfer.data.checks import copies_of, list_images


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
    assert copies_of(paths, others).tolist() == [False, True, True, True, False]
    assert copies_of(paths, []).tolist() == [False] * 5
    assert copies_of([], others).dtype == np.bool_
