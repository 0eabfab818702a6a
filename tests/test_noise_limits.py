"""Label noise at its limits: asymmetric noise without a map on classes that are not the FER
expressions, the rates refused for asymmetric and instance noise, the warning that names a class
whose images another class's label outvotes after the draw, and the labeled set's label quality
said for every method."""

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lionfer.config import DataConfig
from lionfer.data.noise import DIGIT_CONFUSIONS, FER_CONFUSIONS, inject_noise
from lionfer.data.pipeline import build_run_data, load_dataset, noise_map
from lionfer.errors import ConfigError
from lionfer.labels import CLASS_NAMES


def make_tree(root: Path, counts: dict[str, int], decodable: bool = True) -> Path:
    """Class folders of small PNGs; decodable=False writes files no decoder reads, so a check
    that passes must have been made before any image was decoded."""
    for c, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for k in range(count):
            path = root / name / f"{k:02d}.png"
            if decodable:
                pixels = np.random.default_rng(100 * c + k).integers(0, 256, (16, 16, 3))
                Image.fromarray(pixels.astype(np.uint8)).save(path)
            else:
                path.write_bytes(b"not an image")
    return root


def folder(root, **settings) -> DataConfig:
    return DataConfig(dataset="folder", root=str(root), **settings)


def asymmetric(root, **settings) -> DataConfig:
    return folder(root, **{"noise": "asymmetric", "noise_rate": 0.3, **settings})


def caught_warnings(make):
    """(what make() returned, the messages of the warnings it gave)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = make()
    return result, [str(w.message) for w in caught]


# --- 1. asymmetric noise without a map -----------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "classes", "example"),
    [
        # 15 general classes: the FER confusions were applied by id (k01 -> k00, ...), silently
        (
            {f"k{i:02d}": 6 for i in range(15)},
            "the classes k00, k01, k02, k03, k04, k05, k06, k07, k08, k09, k10, k11, ... "
            "(15 classes) are not the FER expressions",
            """'data.noise_map={"k00" = "k01"}' (flips k00 labels to k01)""",
        ),
        # 2 general classes: an error about a map entry the user never wrote
        (
            {"c00": 6, "c01": 6},
            "the classes c00, c01 are not the FER expressions",
            """'data.noise_map={"c00" = "c01"}'""",
        ),
    ],
)
def test_general_classes_have_no_default_map_and_are_refused_before_decoding(
    tmp_path, counts, classes, example
):
    root = make_tree(tmp_path, counts, decodable=False)
    with pytest.raises(ConfigError) as refused:
        load_dataset(asymmetric(root), seed=0)  # decoding would fail on the first image
    message = str(refused.value)
    assert message.startswith("data.noise=asymmetric without data.noise_map: ")
    assert classes in message and example in message
    # the map the message shows is one data.noise_map reads
    first, second = list(counts)[:2]
    ok = make_tree(tmp_path / "ok", counts)
    flips = asymmetric(ok, noise_map={first: second}, noise_rate=0.45)
    data = load_dataset(flips, seed=0, check=())
    flipped = data.train.labels != data.train.true_labels
    assert flipped.any() and set(data.train.true_labels[flipped].tolist()) == {0}


def test_only_classes_that_are_the_fer_expressions_get_the_fer_confusions(tmp_path):
    two = make_tree(tmp_path / "two", {"c00": 6, "c01": 6}, decodable=False)
    # a data.class_map numbering the classes its own way: refused, with ids that it gives
    with pytest.raises(ConfigError) as refused:
        load_dataset(asymmetric(two, class_map={"c00": 0, "c01": 1}), seed=0)
    message = str(refused.value)
    assert "data.class_map numbers classes its own way (c00 = 0, c01 = 1)" in message
    assert """'data.noise_map={"0" = 1}' (flips c00 labels to c01)""" in message
    faces = make_tree(tmp_path / "faces", {"happy": 6, "sad": 6}, decodable=False)
    with pytest.raises(ConfigError, match=r"its own way \(happy = 0\)"):
        load_dataset(asymmetric(faces, class_map={"happy": 0, "sad": 4}), seed=0)
    # a class_map that names the expressions, or maps expression names to their own ids, keeps
    # the FER confusions, as do the FER names themselves and a manifest's own numbers
    for class_map in ({"c00": "Sadness", "c01": "Neutral"}, {"sad": 4, "neutral": 6}, {}):
        cfg = DataConfig(dataset="folder", noise="asymmetric", class_map=class_map)
        assert noise_map(cfg, 7, CLASS_NAMES) == FER_CONFUSIONS
    manifest = DataConfig(dataset="manifest", noise="asymmetric", class_map={1: 0, 7: 6})
    assert noise_map(manifest, 7, CLASS_NAMES) == FER_CONFUSIONS
    assert noise_map(DataConfig(dataset="rafdb", noise="asymmetric"), 7, CLASS_NAMES) == (
        FER_CONFUSIONS
    )
    digits = DataConfig(dataset="digits", noise="asymmetric")
    assert noise_map(digits, 10, tuple("0123456789")) == DIGIT_CONFUSIONS
    # a folder of some FER expressions flips Sadness -> Neutral, as before
    some = make_tree(tmp_path / "some", {"happy": 10, "sad": 10, "neutral": 10})
    data = load_dataset(folder(some, noise="asymmetric", noise_rate=0.4), seed=0, check=())
    flipped = data.train.labels != data.train.true_labels
    assert set(data.train.true_labels[flipped].tolist()) == {4}
    assert set(data.train.labels[flipped].tolist()) == {6}
    # the other noises read no map: general classes take them without one
    for kind in ("symmetric", "instance"):
        ok = make_tree(tmp_path / kind, {"c00": 6, "c01": 6})
        data = load_dataset(folder(ok, noise=kind, noise_rate=0.3), seed=0, check=())
        assert (data.train.labels != data.train.true_labels).any()


# --- 2, 3. the rates refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rate", "num_classes", "limit"),
    [
        ("asymmetric", 0.5, 7, "Use a rate below 0.5"),
        ("instance", 0.5, 2, "Use a rate below 0.5"),
        ("instance", 0.9, 10, "Use a rate below 0.9"),
    ],
)
def test_asymmetric_from_one_half_and_instance_from_the_symmetric_bound_are_refused(
    kind, rate, num_classes, limit
):
    labels = np.arange(60) % num_classes
    features = np.random.default_rng(0).standard_normal((60, 8))
    with pytest.raises(ConfigError) as refused:
        inject_noise(labels, num_classes, kind, rate, 0, class_map={1: 0}, features=features)
    assert str(refused.value).endswith(limit)
    assert f"data.noise_rate={rate} is too high for {kind} noise" in str(refused.value)


def test_instance_noise_on_two_classes_at_one_is_refused_before_decoding(tmp_path):
    # it flipped 92% of the labels: every class inverted
    root = make_tree(tmp_path, {"c00": 6, "c01": 6}, decodable=False)
    with pytest.raises(ConfigError, match="too high for instance noise.*Use a rate below 0.5"):
        load_dataset(folder(root, noise="instance", noise_rate=1.0), seed=0)


# --- 2. a class outvoted after the draw ---------------------------------------------------------


def test_a_class_whose_images_another_label_outvotes_after_the_noise_is_named():
    cfg = DataConfig(dataset="digits", noise="instance", noise_rate=0.7)
    data, messages = caught_warnings(lambda: load_dataset(cfg, 0, ()))
    (message,) = [m for m in messages if m.startswith("after instance noise at rate 0.7, ")]
    assert message.endswith(": these labels no longer name their class; use a lower "
                            "data.noise_rate")  # fmt: skip
    named = re.findall(
        r"the images of (\d) are labeled (\d) more often than \1 \((\d+) against (\d+)\)", message
    )
    truth, labels = data.train.true_labels, data.train.labels
    expected = []
    for c in range(10):
        counts = np.bincount(labels[truth == c], minlength=10)
        other = int(np.argmax(np.where(np.arange(10) == c, -1, counts)))
        if counts[other] > counts[c]:
            expected.append((str(c), str(other), str(counts[other]), str(counts[c])))
    assert named == expected and len(named) >= 5  # most digits lose their labels at 0.7


@pytest.mark.parametrize(
    "settings",
    [
        {"dataset": "digits", "noise": "symmetric", "noise_rate": 0.4},
        {"dataset": "digits", "noise": "asymmetric", "noise_rate": 0.4},
        {"dataset": "digits", "noise": "instance", "noise_rate": 0.4},
        {"dataset": "synthetic", "annotator": "single", "noise": "symmetric", "noise_rate": 0.4},
        {"dataset": "synthetic", "annotator": "single", "noise": "asymmetric", "noise_rate": 0.4},
        {"dataset": "synthetic", "annotator": "single", "noise": "instance", "noise_rate": 0.4},
    ],
)
def test_the_usual_rates_name_no_class(settings):
    # the faces' annotators label Sadness Neutral often before any noise: the warning judges
    # what the noise did, against the labels before it
    _, messages = caught_warnings(lambda: load_dataset(DataConfig(**settings), 0, ()))
    assert not [m for m in messages if m.startswith("after ")]


def test_on_data_with_its_own_truth_the_classes_are_the_labels_before_the_noise():
    cfg = DataConfig(dataset="synthetic", noise="instance", noise_rate=0.8)
    _, messages = caught_warnings(lambda: load_dataset(cfg, 0, ()))
    (message,) = [m for m in messages if m.startswith("after instance noise at rate 0.8, ")]
    assert re.search(r"the images labeled (\w+) before the noise are labeled \w+ more often "
                     r"than \1 \(\d+ against \d+\)", message)  # fmt: skip


# --- 4. the labeled set's label quality ---------------------------------------------------------


def manifest_of(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A manifest of (label, split, true_label) rows, one small image each."""
    lines = ["path,label,split,true_label"]
    for i, (label, split, true_label) in enumerate(rows):
        Image.new("RGB", (16, 16), (10 * i, 0, 0)).save(root / f"{i}.png")
        lines.append(f"{i}.png,{label},{split},{true_label}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def test_the_labeled_sets_label_quality_is_noted_and_an_outvoted_class_warned(tmp_path):
    # three Happiness faces, two of them labeled sad; three Sadness faces labeled sad
    rows = [("happy", "train", "happy"), ("sad", "train", "happy"), ("sad", "train", "happy")]
    rows += [("sad", "train", "sad")] * 3 + [("happy", "test", ""), ("sad", "test", "")]
    cfg = DataConfig(dataset="manifest", root=str(manifest_of(tmp_path, rows)), num_labels=-1)
    run_data, messages = caught_warnings(lambda: build_run_data(cfg, 0))
    notes = run_data.data.notes
    assert "of the 6 labeled images, 2 are wrongly labeled (33%)" in notes
    warning = (
        "in the labeled set, the images of Happiness are labeled Sadness more often than "
        "Happiness (2 against 1): these labels no longer name their class; a larger "
        "data.num_labels gives a labeled set nearer the training set's label quality"
    )
    assert warning in messages and warning in notes


def test_a_labeled_set_noisier_than_the_rate_is_said_for_every_method(tiny_cfg, tmp_path):
    from lionfer.training import train

    items = ("data.noise=symmetric", "data.noise_rate=0.4", "algorithm.name=supervised")
    summary = train(tiny_cfg(*items, "train.steps=1"), tmp_path / "run", progress=False)
    cfg = tiny_cfg(*items).data
    run_data = build_run_data(cfg, 0, recheck=False)
    given, true = run_data.labeled.labels, run_data.labeled.true_labels
    wrong = int((given != true).sum())
    note = (
        f"of the {len(given)} labeled images, {wrong} are wrongly labeled "
        f"({wrong / len(given):.0%})"
    )
    assert note in summary["notes"]


def test_labeled_images_of_unknown_truth_are_left_out_of_the_quality_note(tmp_path):
    rows = [("happy", "train", "happy"), ("happy", "train", ""), ("sad", "train", "happy")]
    rows += [("sad", "train", "sad"), ("happy", "test", ""), ("sad", "test", "")]
    cfg = DataConfig(dataset="manifest", root=str(manifest_of(tmp_path, rows)), num_labels=-1)
    run_data, _ = caught_warnings(lambda: build_run_data(cfg, 0))
    assert (
        "of the 4 labeled images, 3 have a known true label; of these, 1 is wrongly labeled (33%)"
        in run_data.data.notes
    )


# --- 6. asymmetric map errors name the classes --------------------------------------------------


def test_a_map_that_flips_no_label_names_its_classes(tmp_path):
    root = make_tree(tmp_path, {"happy": 6, "sad": 6}, decodable=False)
    with pytest.raises(ConfigError) as refused:
        load_dataset(asymmetric(root, noise_map={"Fear": "Surprise"}), seed=0)
    assert (
        "asymmetric noise with the map Fear (1) → Surprise (0) would flip no label: none of its "
        "classes has training labels (classes with labels: Happiness (3), Sadness (4))"
    ) in str(refused.value)


# --- the labels drawn are the ones drawn before ---------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rate", "digest"),
    [
        ("symmetric", 0.4, "37fc0d33bd72804b"),
        ("asymmetric", 0.4, "cd48535ac7e9dc4d"),
        ("instance", 0.4, "371b17494697c1a5"),
    ],
)
def test_the_same_seed_flips_the_same_labels(kind, rate, digest):
    labels = np.arange(700) % 7
    features = np.random.default_rng(3).standard_normal((700, 16))
    noisy = inject_noise(labels, 7, kind, rate, 11, class_map=FER_CONFUSIONS, features=features)
    assert hashlib.sha256(noisy.astype("<i8").tobytes()).hexdigest()[:16] == digest
