"""`lionfer data stats` on a generated RAF-DB layout, and `lionfer prepare` → `lionfer train` on a
tiny boxed manifest: the data commands end to end, fixtures made in tmp_path."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from lionfer.cli import main
from lionfer.labels import CLASS_NAMES

RAF_TRAIN, RAF_TEST = 20, 3  # per class; enough for the 100-label rule (Fear 10, others 15)
MANIFEST_PER_CLASS = 6  # the 20% hold-out then leaves 1 test and 5 train images per class
FACE_BOX = (4, 6, 30, 28)  # x, y, w, h inside the 40×40 manifest images
FEAR = CLASS_NAMES[1]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def save_jpeg(path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


@pytest.fixture(scope="module")
def rafdb_root(tmp_path_factory):
    """RAF-DB basic, format A: EmoLabel/list_patition_label.txt (ids 1-7), Image/aligned/."""
    root = tmp_path_factory.mktemp("rafdb")
    lines, number = [], 0
    for split, per_class in (("train", RAF_TRAIN), ("test", RAF_TEST)):
        for file_id in range(1, 8):  # RAF-DB's own ids: canonical id + 1
            for _ in range(per_class):
                number += 1
                stem = f"{split}_{number:05d}"
                lines.append(f"{stem}.jpg {file_id}")
                save_jpeg(root / "Image" / "aligned" / f"{stem}_aligned.jpg", 8, number)
    (root / "EmoLabel").mkdir()
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def stats_args(root) -> list[str]:
    return ["data", "stats", "data.dataset=rafdb", f"data.root={root}", "data.num_labels=100"]


def test_data_stats_json_gives_exact_rafdb_counts(capsys, rafdb_root):
    code, stdout, err = run(capsys, *stats_args(rafdb_root), "--json")
    assert code == 0, err
    stats = json.loads(stdout)
    assert set(stats) == {"train", "test", "labeled", "unlabeled"}
    for part in stats.values():
        assert list(part) == list(CLASS_NAMES)  # canonical names, canonical order, no "(no label)"
    assert stats["train"] == dict.fromkeys(CLASS_NAMES, RAF_TRAIN)
    assert stats["test"] == dict.fromkeys(CLASS_NAMES, RAF_TEST)
    labeled = {name: 10 if name == FEAR else 15 for name in CLASS_NAMES}
    assert stats["labeled"] == labeled
    assert stats["unlabeled"] == {name: RAF_TRAIN - n for name, n in labeled.items()}


def test_data_stats_table_lists_every_class_and_a_total(capsys, rafdb_root):
    code, stdout, err = run(capsys, *stats_args(rafdb_root))
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in stdout.splitlines()}
    assert rows["class"] == ["train", "test", "labeled", "unlabeled"]
    for name in CLASS_NAMES:
        expected = [RAF_TRAIN, RAF_TEST, 10 if name == FEAR else 15, 10 if name == FEAR else 5]
        assert rows[name] == [str(n) for n in expected], name
    assert rows["total"] == ["140", "21", "100", "40"]


@pytest.mark.parametrize("make_root", ["missing", "empty"])
def test_data_stats_wrong_root_exits_2_naming_the_expected_file(capsys, tmp_path, make_root):
    root = tmp_path / "not-rafdb"
    if make_root == "empty":
        root.mkdir()
    code, stdout, err = run(capsys, *stats_args(root))
    assert code == 2 and not stdout
    assert "EmoLabel/list_patition_label.txt" in err and str(root) in err


def write_manifest(folder) -> None:
    """7 classes × MANIFEST_PER_CLASS 40×40 JPEGs with a face box each; no split column."""
    rows = []
    for label, name in enumerate(CLASS_NAMES):
        for k in range(MANIFEST_PER_CLASS):
            relative = f"images/{name.lower()}_{k}.jpg"
            save_jpeg(folder / relative, 40, 100 * label + k)
            rows.append((relative, name, *FACE_BOX))
    with (folder / "faces.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "label", "x", "y", "w", "h"))
        writer.writerows(rows)


def test_prepare_then_train_from_the_cache(capsys, tmp_path):
    write_manifest(tmp_path)
    cache, total = tmp_path / "cache", 7 * MANIFEST_PER_CLASS
    prepare_args = [
        "prepare",
        "data.dataset=manifest",
        f"data.root={tmp_path / 'faces.csv'}",
        "--out",
        str(cache),
        "--detector",
        "haar",
        "--size",
        "32",
        "--no-progress",
    ]
    code, stdout, err = run(capsys, *prepare_args)
    assert code == 0, err
    assert f"done {total}," in stdout and "no_face 0" in stdout and "errors 0" in stdout
    with (cache / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == total
    assert {r["split"] for r in rows} == {"train", "test"}
    test_rows = [r for r in rows if r["split"] == "test"]
    assert sorted(int(r["label"]) for r in test_rows) == list(range(7))  # 1 per class held out
    with Image.open(cache / rows[0]["path"]) as face:
        assert face.size == (32, 32)
    assert (cache / "failures.csv").read_text().strip() == "source,split,reason"

    # a second run finds every crop done and rewrites the same manifest
    code, stdout, err = run(capsys, *prepare_args)
    assert code == 0, err
    assert "done 0," in stdout and f"skipped_existing {total}," in stdout
    assert f"manifest rows {total}" in stdout
    assert json.loads((cache / "prepare.json").read_text())["counts"]["skipped_existing"] == total

    out = tmp_path / "run"
    code, stdout, err = run(
        capsys,
        "train",
        "data.dataset=manifest",
        f"data.root={cache}",
        "data.num_labels=14",
        "data.image_size=24",
        "train.steps=3",
        "train.eval_every=3",
        "train.batch_size=4",
        "--out",
        str(out),
        "--no-progress",
    )
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "manifest" and summary["steps"] == 3
    assert summary["num_labels"] == 14 and 0.0 <= summary["test_acc"] <= 1.0
    split = json.loads((out / "split.json").read_text())
    assert len(split["labeled"]) == 14 and len(split["unlabeled"]) == total - 7 - 14


def test_prepare_records_an_unreadable_raw_image_and_goes_on(capsys, tmp_path):
    write_manifest(tmp_path)
    broken = tmp_path / "images" / "happiness_0.jpg"
    broken.write_bytes(broken.read_bytes()[:100])
    code, stdout, err = run(
        capsys,
        "prepare",
        "data.dataset=manifest",
        f"data.root={tmp_path / 'faces.csv'}",
        "--out",
        str(tmp_path / "cache"),
        "--detector",
        "haar",
        "--size",
        "32",
        "--no-progress",
    )
    assert code == 0, err
    assert "done 41," in stdout and "unreadable 1," in stdout
    assert "happiness_0.jpg" in (tmp_path / "cache" / "failures.csv").read_text()


def test_data_stats_with_more_labels_than_images_still_counts_them(capsys, rafdb_root):
    argv = ["data", "stats", "data.dataset=rafdb", f"data.root={rafdb_root}"]
    code, stdout, err = run(capsys, *argv, "data.num_labels=1000")
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in stdout.splitlines()}
    assert rows["class"] == ["train", "test"] and rows["total"] == ["140", "21"]
    assert "note: no labeled/unlabeled split: data.num_labels=1000 exceeds the 140" in err
    assert "lower data.num_labels" in err
    code, stdout, err = run(capsys, *argv, "data.num_labels=1000", "--json")
    assert code == 0 and set(json.loads(stdout)) == {"train", "test"}


def faces_with_notes(root, per_class: int):
    """root/happy/ and root/sad/, per_class small images each, and a notes.txt among them."""
    for name in ("happy", "sad"):
        for k in range(per_class):
            path = root / name / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (40 * k, 0, 0)).save(path)
    (root / "happy" / "notes.txt").write_text("mine")
    return root


def test_data_stats_prints_the_datasets_notes(capsys, tmp_path):
    faces_with_notes(tmp_path / "faces", 5)
    argv = ["data", "stats", "data.dataset=folder", f"data.root={tmp_path / 'faces'}"]
    code, _, err = run(capsys, *argv, "data.num_labels=4")
    assert code == 0, err
    assert "note: no test split: held out" in err  # a note of the dataset's own
    assert "note: ignored 1 hidden or non-image file" in err  # notes.txt


def test_data_stats_refuses_settings_the_dataset_would_not_read(capsys, rafdb_root):
    argv = ["data", "stats", "data.dataset=rafdb", f"data.root={rafdb_root}"]
    code, stdout, err = run(capsys, *argv, "data.annotator=crowd10")
    assert code == 2 and not stdout
    assert "does not read data.annotator" in err
    code, stdout, err = run(capsys, *argv, "data.noise_rate=0.2")
    assert code == 2 and not stdout
    assert "changes no label with data.noise=none" in err


def test_train_prints_the_datasets_notes_once(capsys, tmp_path):
    from conftest import tiny

    faces_with_notes(tmp_path / "faces", 6)
    data = ["data.dataset=folder", f"data.root={tmp_path / 'faces'}", "data.num_labels=4"]
    argv = tiny(*data, "algorithm.name=supervised", "train.steps=1")
    code, _, err = run(capsys, "train", *argv, "--out", str(tmp_path / "run"), "--no-progress")
    assert code == 0, err
    assert err.count("note: ignored 1 hidden or non-image file") == 1
    unlabeled = "5 of 7 classes get no labeled image"  # a warning, not repeated as a note
    assert err.count(unlabeled) == 1 and f"warning: {unlabeled}" in err


def test_prepare_refuses_a_data_key_its_dataset_does_not_read(capsys, tmp_path):
    write_manifest(tmp_path)
    code, _, err = run(
        capsys,
        "prepare",
        "data.dataset=manifest",
        f"data.root={tmp_path / 'faces.csv'}",
        "data.variant=aligned",
        "--out",
        str(tmp_path / "cache"),
    )
    assert code == 2 and "does not read data.variant" in err
    assert not (tmp_path / "cache").exists()
