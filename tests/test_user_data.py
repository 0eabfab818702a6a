"""Training on a user's own images as they come: manifests written by spreadsheets, pandas or
Windows, links that point nowhere, stray labels, and label noise on a folder that has only some
of the classes. Each either trains or stops, before the run folder exists, naming the fix."""

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lionfer.config_sections import DataConfig
from lionfer.data.datasets import folder, manifest
from lionfer.data.images import ImageError
from lionfer.data.pipeline import load_dataset
from lionfer.errors import ConfigError, InputError, MissingInputError
from lionfer.labels import CLASS_NAMES
from lionfer.training import train


def write_image(path: Path, seed: int, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def make_tree(root: Path, counts: dict[str, int], start: int = 0) -> Path:
    for c, (name, count) in enumerate(counts.items()):
        for k in range(count):
            write_image(root / name / f"{k:02d}.png", start + 100 * c + k)
    return root


def manifest_dir(root: Path, text: str | bytes, count: int = 10) -> Path:
    for k in range(count):
        write_image(root / "img" / f"{k}.png", k)
    data = text.encode() if isinstance(text, str) else text
    (root / "manifest.csv").write_bytes(data)
    return root


def cfg(root, dataset: str = "manifest", **kwargs) -> DataConfig:
    return DataConfig(dataset=dataset, root=str(root), **kwargs)


def contents(root: Path) -> dict[str, bytes]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).digest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- manifests ----------------------------------------------------------------------------------


def test_labels_written_as_whole_numbers_are_class_ids(tmp_path):
    # pandas writes an int column with a gap as floats: 3.0, 4.0, and "" for the gap
    rows = [f"img/{k}.png,{float(3 + k % 2) if k < 8 else ''}" for k in range(10)]
    root = manifest_dir(tmp_path, "path,label\n" + "\n".join(rows) + "\n")
    data = manifest.load(cfg(root), seed=0)
    assert data.class_names == CLASS_NAMES  # not general classes named '3.0' and '4.0'
    assert sorted(set(data.train.labels.tolist()) | set(data.test.labels.tolist())) == [3, 4]
    assert len(data.unlabeled) == 2


def test_a_label_that_is_a_fraction_is_refused_naming_its_line(tmp_path):
    root = manifest_dir(tmp_path, "path,label\nimg/0.png,3\nimg/1.png,3.5\n")
    with pytest.raises(InputError, match=r"line 3: label '3.5' is a number but not a class id"):
        manifest.load(cfg(root), seed=0)


def test_a_manifest_that_is_not_utf8_names_the_line_and_the_fix(tmp_path):
    text = "path,label\nimg/0.png,happy\nimg/1.png,sad\nimg/é.png,sad\n".encode("latin-1")
    root = manifest_dir(tmp_path, text)
    with pytest.raises(InputError, match=r"manifest.csv, line 4: byte 0xe9 is not UTF-8.*UTF-8"):
        manifest.load(cfg(root), seed=0)


def test_a_manifest_from_windows_reads(tmp_path):
    # a byte order mark, CRLF line ends, backslashes between folders, blank lines
    rows = [f"img\\{k}.png,{['happy', 'sad'][k % 2]}" for k in range(10)]
    text = "\ufeffpath,label\r\n\r\n" + "\r\n".join(rows) + "\r\n,\r\n"
    data = manifest.load(cfg(manifest_dir(tmp_path, text.encode())), seed=0)
    assert len(data.train) + len(data.test) == 10
    assert all(Path(p).is_file() for p in data.train.images)


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_manifest_separated_by_semicolons_or_tabs_reads(tmp_path, separator):
    # spreadsheets where the decimal mark is a comma save CSV with semicolons
    rows = [f"img/{k}.png{separator}{['happy', 'sad'][k % 2]}" for k in range(10)]
    text = f"path{separator}label\n" + "\n".join(rows) + "\n"
    data = manifest.load(cfg(manifest_dir(tmp_path, text)), seed=0)
    assert len(data.train) + len(data.test) == 10
    assert f"manifest: read as separated by {separator!r}" in data.notes


def test_a_prepared_manifest_s_source_column_is_read_past_quietly(tmp_path):
    rows = "".join(
        f"img/{k}.png,{'happy' if k % 2 else 'sad'},photos/{k}.jpg,x\n" for k in range(10)
    )
    root = manifest_dir(tmp_path, "path,label,source,comment\n" + rows)
    data = load_dataset(cfg(root), seed=0, check=())
    assert [n for n in data.notes if "ignored the columns" in n] == [
        "manifest: ignored the columns ['comment']"
    ]


def test_a_manifest_row_without_a_box_is_the_whole_image(tmp_path):
    rows = "".join(f"img/{k}.png,{'happy' if k % 2 else 'sad'},2,3,10,12\n" for k in range(9))
    root = manifest_dir(tmp_path, "path,label,x,y,w,h\n" + rows + "img/9.png,sad,,,,\n")
    data = load_dataset(cfg(root), seed=0, check=())
    sizes = {
        name: images.load(i).size
        for images in (data.train, data.test)
        for i, name in enumerate(images.ids)
    }
    assert sizes.pop("img/9.png") == (20, 20)  # whole
    assert set(sizes.values()) == {(10, 12)}  # their boxes
    (root / "manifest.csv").write_text("path,label,x,y,w,h\n" + rows + "img/9.png,sad,1,,,\n")
    with pytest.raises(InputError, match="line 11: x, y, w, h must be integers.*all four or none"):
        load_dataset(cfg(root), seed=0, check=())


def test_a_manifest_with_only_unlabeled_rows_says_so(tmp_path):
    rows = [f"img/{k}.png,,unlabeled" for k in range(10)]
    root = manifest_dir(tmp_path, "path,label,split\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match="has no labeled training images; give some rows a label"):
        manifest.load(cfg(root), seed=0)


def test_one_image_written_two_ways_is_one_entry(tmp_path):
    rows = "path,label,split\nimg/0.png,happy,\n./img/0.png,happy,\nimg/1.png,sad,test\n"
    data = manifest.load(cfg(manifest_dir(tmp_path, rows)), seed=0)
    assert data.train.ids == ["img/0.png"]
    assert any("dropped 1 duplicate entries" in note for note in data.notes)
    leak = "path,label,split\nimg/0.png,happy,\nimg/x/../0.png,happy,test\n"
    (tmp_path / "manifest.csv").write_text(leak)
    with pytest.raises(InputError, match=r"listed as train \(line 2\) and as test \(line 3\)"):
        manifest.load(cfg(tmp_path), seed=0)


def test_a_manifest_away_from_its_images_says_where_paths_are_read(tmp_path):
    manifest_dir(tmp_path / "data", "")
    rows = "path,label\n" + "".join(f"img/{k}.png,happy\n" for k in range(3))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "manifest.csv").write_text(rows)
    with pytest.raises(MissingInputError, match="relative to the manifest's folder") as info:
        manifest.load(cfg(tmp_path / "elsewhere"), seed=0)
    assert "data.variant" not in str(info.value)  # a manifest has no variant to pick


# --- folders ------------------------------------------------------------------------------------


def test_a_link_to_a_missing_image_is_named_not_dropped_unsaid(tmp_path):
    root = make_tree(tmp_path, {"happy": 5, "sad": 5})
    os.symlink(tmp_path / "moved" / "x.png", root / "happy" / "x.png")
    data = folder.load(cfg(root, "folder"), seed=0)
    assert "happy/x.png" in data.train.ids + data.test.ids
    with pytest.raises(ImageError, match="happy/x.png is a symbolic link to .* does not exist"):
        load_dataset(cfg(root, "folder"), seed=0)
    kept = load_dataset(cfg(root, "folder", skip_bad=True), seed=0)
    assert len(kept.train) + len(kept.test) == 10
    assert any("skipped 1 unreadable" in note for note in kept.notes)


def test_fer_names_beside_another_name_warn_that_the_classes_are_general(tmp_path):
    root = make_tree(tmp_path, {"happy": 5, "sad": 5, "misc": 5})
    with pytest.warns(UserWarning, match=r"\['misc'\] are not FER expressions .*\('misc' = -1\)"):
        data = folder.load(cfg(root, "folder"), seed=0)
    assert data.class_names == ("happy", "misc", "sad")
    mapped = folder.load(cfg(root, "folder", class_map={"happy": 3, "sad": 4, "misc": -1}), 0)
    assert mapped.class_names == CLASS_NAMES


# --- label noise on a user's classes ------------------------------------------------------------


def test_photos_without_class_folders_say_how_to_sort_them(tmp_path):
    for k in range(3):
        write_image(tmp_path / f"{k}.jpg", k)
    with pytest.raises(MissingInputError, match="its 3 images lie in it directly.*unlabeled_root"):
        load_dataset(cfg(tmp_path, "folder"), seed=0, check=())


def test_a_zip_s_macos_metadata_folder_is_no_class(tmp_path):
    root = make_tree(tmp_path, {"happy": 4, "sad": 4})
    (root / "__MACOSX" / "happy").mkdir(parents=True)
    (root / "__MACOSX" / "happy" / "._00.png").write_bytes(b"\0\5\26\7")
    data = load_dataset(cfg(root, "folder"), seed=0, check=())
    assert set(data.train.labels.tolist()) | set(data.test.labels.tolist()) == {3, 4}
    assert any("ignored 1 hidden or non-image file" in note for note in data.notes)


def test_noise_on_a_folder_of_some_fer_classes_flips_only_between_them(tmp_path):
    root = make_tree(tmp_path, {"happy": 10, "sad": 10})
    for kind in ("symmetric", "instance"):
        data = load_dataset(cfg(root, "folder", noise=kind, noise_rate=0.4), seed=0, check=())
        assert set(data.train.labels.tolist()) == {3, 4}
        assert (data.train.labels != data.train.true_labels).any()


@pytest.mark.parametrize(
    ("counts", "settings", "problem"),
    [
        # Sadness -> Neutral, the default FER confusion, on a folder without neutral faces
        (
            {"happy": 10, "sad": 10},
            {},
            "flip Sadness \\(4\\) → Neutral \\(6\\), but Neutral \\(6\\) has no training labels "
            "\\(classes with labels: Happiness \\(3\\), Sadness \\(4\\)\\)",
        ),
        # general classes have no default map
        ({"cat": 10, "dog": 10, "owl": 10}, {}, "the classes cat, dog, owl are not the FER"),
        ({"cat": 10, "dog": 10}, {"noise_map": {"0": 1}, "noise_rate": 0.6}, "too high"),
    ],
)
def test_asymmetric_noise_the_classes_cannot_carry_is_refused(tmp_path, counts, settings, problem):
    root = make_tree(tmp_path, counts)
    settings = {"noise": "asymmetric", "noise_rate": 0.3, **settings}
    with pytest.raises(ConfigError, match=problem):
        load_dataset(cfg(root, "folder", **settings), seed=0, check=())


def test_an_asymmetric_map_names_the_classes_of_the_data(tmp_path):
    root = make_tree(tmp_path, {"cat": 10, "dog": 10, "owl": 10})
    by_name = {"noise": "asymmetric", "noise_rate": 0.4, "noise_map": {"Cat": "owl"}}
    by_id = {**by_name, "noise_map": {"0": 2}}
    named, numbered = (
        load_dataset(cfg(root, "folder", **s), seed=0, check=()) for s in (by_name, by_id)
    )
    assert np.array_equal(named.train.labels, numbered.train.labels)
    flipped = named.train.labels != named.train.true_labels
    assert flipped.any() and set(named.train.true_labels[flipped].tolist()) == {0}
    assert set(named.train.labels[flipped].tolist()) == {2}
    misspelt = {**by_name, "noise_map": {"cat": "owel"}}
    with pytest.raises(
        ConfigError, match="'owel' is not a class of this data.*cat, dog, owl.*'owl'"
    ):
        load_dataset(cfg(root, "folder", **misspelt), seed=0, check=())


def test_a_noisy_run_on_a_user_folder_trains_and_leaves_the_images_alone(tiny_cfg, tmp_path):
    root = make_tree(tmp_path / "faces", {"big cat": 6, "chien é": 6, "日本": 6})
    write_image(root / "big cat" / "gray.png", 1, "L")
    write_image(root / "chien é" / "alpha.PNG", 2, "RGBA")
    write_image(root / "日本" / "nested" / "cmyk.jpg", 3, "CMYK")
    (root / "日本" / ".DS_Store").write_bytes(b"\0")
    before = contents(root)
    items = ["data.dataset=folder", f"data.root={root}", "data.num_labels=6", "train.steps=2"]
    noisy = [*items, "data.noise=symmetric", "data.noise_rate=0.3", "algorithm.name=supervised"]
    summary = train(tiny_cfg(*noisy), tmp_path / "run", progress=False)
    assert summary["class_names"] == ["big cat", "chien é", "日本"]
    assert any(
        re.match(r"symmetric noise at rate 0.3: \d+ labels flipped", n) for n in summary["notes"]
    )
    with pytest.raises(ConfigError, match="too high for symmetric noise: on 3 classes"):
        train(tiny_cfg(*items, "data.noise=symmetric", "data.noise_rate=0.7"), tmp_path / "no")
    assert not (tmp_path / "no").exists()
    assert contents(root) == before


def test_a_noise_the_labels_cannot_carry_is_refused_before_any_image_is_decoded(tmp_path):
    root = make_tree(tmp_path, {"cat": 4, "dog": 4})
    (root / "cat" / "broken.png").write_bytes(b"not a png")  # would stop the image check first
    settings = {"noise": "symmetric", "noise_rate": 0.5}
    with pytest.raises(ConfigError, match="too high for symmetric noise: on 2 classes"):
        load_dataset(cfg(root, "folder", **settings), seed=0)
    with pytest.raises(ImageError, match="broken.png"):  # the image check, once the noise fits
        load_dataset(cfg(root, "folder", noise="symmetric", noise_rate=0.3), seed=0)


def test_a_budget_too_small_for_the_classes_asks_for_as_many_labels_as_classes_with_images(
    tmp_path,
):
    from lionfer.data.pipeline import build_run_data

    root = make_tree(tmp_path, {"happy": 4, "sad": 4})  # 2 of the 7 FER classes have images
    with pytest.warns(UserWarning) as caught:
        build_run_data(cfg(root, "folder", num_labels=1), seed=0, recheck=False)
    message = " ".join(str(w.message) for w in caught)
    assert "too small to label every class that has images: give at least 2" in message
    assert "Surprise, Fear, Disgust, Anger, Neutral have no training images" in message


def test_a_run_folder_inside_the_image_folders_is_refused(tiny_cfg, tmp_path):
    root = make_tree(tmp_path / "faces", {"happy": 6, "sad": 6})
    items = ["data.dataset=folder", f"data.root={root}", "data.num_labels=4", "train.steps=1"]
    for out in (root / "runs" / "x", root / "happy" / "run"):
        with pytest.raises(ConfigError, match=r"lies inside data.root=.*Choose an --out outside"):
            train(tiny_cfg(*items, "algorithm.name=supervised"), out, progress=False)
        assert not out.exists()
    assert sorted(p.name for p in root.iterdir()) == ["happy", "sad"]


def test_a_manifest_row_naming_a_folder_says_so(tmp_path):
    rows = [f"img/{k}.png,{['happy', 'sad'][k % 2]}" for k in range(10)]
    root = manifest_dir(tmp_path, "path,label\n" + "\n".join([*rows, "img,happy"]) + "\n")
    with pytest.raises(
        MissingInputError, match=r"1 listed entry is a folder, not an image file \(first: .*img\)"
    ):
        manifest.load(cfg(root), seed=0)


def test_a_manifest_whose_every_row_names_a_folder_says_so(tmp_path):
    root = manifest_dir(tmp_path, "path,label\nimg,happy\n")
    with pytest.raises(MissingInputError, match="1 listed entry is a folder"):
        manifest.load(cfg(root), seed=0)
