"""Label noise at its limits: asymmetric noise without a map on classes that are not the FER
expressions, the rates refused for asymmetric and instance noise, the warning that names a class
whose images another class's label outvotes after the draw, and the labeled set's label quality
said for every method."""

import hashlib
import re
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lionfer.config_sections import DataConfig
from lionfer.data.noise import (
    DIGIT_CONFUSIONS,
    FER_CONFUSIONS,
    check_noise_fits,
    checked_map,
    class_map_ids,
    default_noise_map,
    example_noise_map,
    inject_noise,
    listed,
    outvoted_classes,
    own_numbered,
    parse_noise_map,
)
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


# --- the refusals' words --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rate", "labels", "message"),
    [
        (
            "symmetric",
            0.5,
            [0, 1] * 5,
            "data.noise_rate=0.5 is too high for symmetric noise: on 2 classes the true class "
            "would be no likelier a label than each other one, so the labels would no longer name "
            "the classes. Use a rate below 0.5",
        ),
        (
            "instance",
            0.9,
            list(range(10)),
            "data.noise_rate=0.9 is too high for instance noise: on 10 classes the true class "
            "would be no likelier a label than each other one even were the wrong labels spread "
            "evenly (instance noise gathers them), so the labels would no longer name the "
            "classes. Use a rate below 0.9",
        ),
        (
            "asymmetric",
            0.5,
            [0, 1] * 5,
            "data.noise_rate=0.5 is too high for asymmetric noise: a mapped class's images would "
            "be labeled as the class it maps to no less often than as their own class, so the "
            "labels would no longer name the classes. Use a rate below 0.5",
        ),
        # one class present: nothing to flip to, whatever the rate
        (
            "symmetric",
            0.1,
            [4] * 10,
            "symmetric noise needs labels of at least 2 classes to flip between; these labels "
            "have 1",
        ),
        (
            "instance",
            0.1,
            [4] * 10,
            "instance noise needs labels of at least 2 classes to flip between; these labels "
            "have 1",
        ),
    ],
)
def test_a_refused_rate_says_why_in_full(kind, rate, labels, message):
    features = np.ones((len(labels), 4))
    with pytest.raises(ConfigError) as refused:
        inject_noise(np.array(labels), 10, kind, rate, 0, class_map={1: 0}, features=features)
    assert str(refused.value) == message


def test_asymmetric_noise_on_one_class_is_refused_by_its_map_not_by_the_class_count():
    # the rate check asks 2 classes of symmetric and instance noise only: an asymmetric map
    # from the one class with labels fails as a map (its target has no labels)
    with pytest.raises(ConfigError) as refused:
        inject_noise(np.array([4] * 10), 7, "asymmetric", 0.3, 0, class_map={4: 6})
    assert str(refused.value).startswith(
        "asymmetric noise would flip class 4 → class 6, but class 6 has no training labels "
        "(classes with labels: class 4); "
    )


# --- the map checks made before decoding, by class names ----------------------------------------


def test_a_map_by_class_names_is_checked_and_its_errors_name_the_classes():
    # Sadness -> Neutral on a folder of Happiness, Sadness and Neutral faces: read by names
    assert checked_map({"Sadness": "Neutral"}, 7, np.array([3, 4, 6]), CLASS_NAMES) == {4: 6}
    # labels as floats (a column read as numbers) are class ids as well
    for labels in (np.array([3, 4, 3, 4]), np.array([3.0, 4.0, 3.0, 4.0])):
        with pytest.raises(ConfigError) as refused:
            check_noise_fits("asymmetric", 0.3, {"Sadness": "Neutral"}, labels, 7, CLASS_NAMES)
        assert str(refused.value).startswith(
            "asymmetric noise would flip Sadness (4) → Neutral (6), but Neutral (6) has no "
            "training labels (classes with labels: Happiness (3), Sadness (4)); "
        )
    with pytest.raises(ConfigError) as refused:
        check_noise_fits("asymmetric", 0.3, FER_CONFUSIONS, np.array([3, 3]), 7, CLASS_NAMES)
    assert str(refused.value).startswith(
        "asymmetric noise with the map Fear (1) → Surprise (0), Disgust (2) → Anger (5), "
        "Sadness (4) → Neutral (6) would flip no label: none of its classes has training labels "
        "(classes with labels: Happiness (3)); "
    )


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        # two classes with labels are enough for an example; names outside ASCII as they are
        (("Überraschung", "Angst"), ['{"Angst" = "Überraschung"}', '{"1" = 0}']),
        # a whole-number name ("-1") is read as an id: the example is by id alone
        (("-1", "X1"), ['{"1" = 0}']),
        (("X1", "b"), ['{"b" = "X1"}', '{"1" = 0}']),  # "X1" is a name
    ],
)
def test_a_refused_map_on_two_classes_suggests_one_by_names_that_read_as_names(names, expected):
    labels = np.array([0, 1, 0, 1])
    with pytest.raises(ConfigError) as refused:
        check_noise_fits("asymmetric", 0.3, {names[1]: names[1]}, labels, 2, names)
    assert str(refused.value).split("e.g. ")[-1].split(" or ") == expected
    for example in expected:  # each is a data.noise_map this data accepts
        written = tomllib.loads(f"noise_map = {example}")["noise_map"]
        check_noise_fits("asymmetric", 0.3, written, labels, 2, names)


def test_only_asymmetric_noise_reads_a_map_and_only_when_one_is_given():
    labels = np.array([3, 4, 3, 4])
    # a map that would flip no label here is no error for symmetric noise, which reads none
    check_noise_fits("symmetric", 0.3, {"Fear": "Surprise"}, labels, 7, CLASS_NAMES)
    check_noise_fits("asymmetric", 0.3, None, labels, 7, CLASS_NAMES)


# --- a class outvoted -----------------------------------------------------------------------------


def test_outvoted_classes_leave_out_images_unknown_in_either_labeling():
    # a: 1 image kept, 2 labeled b; b: 1 image kept. The image of b with no label and the image
    # of unknown class labeled a count for neither class.
    reference = [0, 0, 0, 1, 1, -1]
    labels = [0, 1, 1, -1, 1, 0]
    expected = ["the images of a are labeled b more often than a (2 against 1)"]
    assert outvoted_classes(np.array(reference), np.array(labels), ("a", "b")) == expected
    as_floats = (np.array(reference, dtype=float), np.array(labels, dtype=float))
    assert outvoted_classes(*as_floats, ("a", "b")) == expected


# --- the default map's helpers --------------------------------------------------------------------


def test_a_class_map_that_drops_a_class_gives_it_no_id():
    class_map = {"happy": 3, "sad": "Sadness", "other": -1, "unsure": "-1"}
    assert class_map_ids(class_map) == {"happy": 3, "sad": 4}
    assert default_noise_map("folder", (), {"sad": "Sadness", "neutral": 6, "x": -1}) == (
        FER_CONFUSIONS
    )


def test_keys_that_are_numbers_keep_the_fer_meaning_of_the_ids_they_get():
    # a manifest's own numbers, signed or not, are no names of their own; "X1" and "x2" are
    assert own_numbered({"1": 0, "-1": 6, "+2": 1, "X1": 0, "x2": 3, "sad": 4}) == ["X1", "x2"]


def test_a_class_map_with_one_id_for_every_class_is_refused_with_its_numbering():
    with pytest.raises(ConfigError, match=r"its own way \(cat = 0, dog = 0\)") as refused:
        default_noise_map("folder", (), {"cat": 0, "dog": 0})
    assert "e.g." not in str(refused.value)  # no map flipping a class to itself
    assert "it gives every class one id" in str(refused.value)


def test_one_general_class_is_refused_without_a_map_that_flips_it_to_itself():
    with pytest.raises(ConfigError, match="these data have one class") as refused:
        default_noise_map("folder", ("c00",))
    assert "e.g." not in str(refused.value)


def test_listed_names_all_of_twelve_classes_and_counts_more():
    names = [f"k{i:02d}" for i in range(13)]
    assert listed(names[:12]) == ", ".join(names[:12])
    assert listed(names) == f"{', '.join(names[:12])}, ... (13 classes)"


@pytest.mark.parametrize(
    ("names", "example", "pair"),
    [
        # classes named by whole numbers are written by id: map_side reads such a side as an id
        (("3", "5", "8"), """'data.noise_map={"0" = "1"}' (flips 3 labels to 5)""", {0: 1}),
        (("-1", "X1"), """'data.noise_map={"0" = "X1"}' (flips -1 labels to X1)""", {0: 1}),
        # names outside ASCII are written as they are, not as JSON escapes
        (
            ("Überraschung", "Angst"),
            """'data.noise_map={"Überraschung" = "Angst"}' (flips Überraschung labels to Angst)""",
            {0: 1},
        ),
    ],
)
def test_the_example_noise_map_flips_the_first_class_to_the_second(names, example, pair):
    assert example_noise_map(names) == example
    table = re.search(r"data\.noise_map=(\{.*\})'", example).group(1)  # as a user writes it
    written = tomllib.loads(f"noise_map = {table}")["noise_map"]
    assert parse_noise_map(written, len(names), names) == pair
