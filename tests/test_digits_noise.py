"""The digits dataset (sklearn's bundled 8x8 digits) and label-noise injection."""

import re
from types import SimpleNamespace

import numpy as np
import pytest

from lionfer.config_sections import DataConfig
from lionfer.data.base import ImageSet
from lionfer.data.datasets import digits
from lionfer.data.noise import (
    DIGIT_CONFUSIONS,
    FER_CONFUSIONS,
    default_noise_map,
    image_features,
    inject_noise,
    instance_noise,
    parse_noise_map,
)
from lionfer.data.pipeline import load_dataset
from lionfer.errors import ConfigError
from lionfer.registry import DATASETS
from lionfer.training import train


def make_cfg(**overrides):
    fields = dict(image_size=16, data_seed=0)
    fields.update(overrides)
    return SimpleNamespace(**fields)


# --- digits -------------------------------------------------------------------------------------


def test_digits_registered():
    assert DATASETS.get("digits") is digits.load


def test_digits_shapes_split_and_labels():
    data = digits.load(make_cfg(image_size=24))
    assert data.class_names == tuple("0123456789") and data.num_classes == 10
    assert data.split_rule == "balanced"
    assert data.train.images.shape[1:] == (24, 24, 3) and data.train.images.dtype == np.uint8
    assert len(data.train) + len(data.test) == 1797
    assert set(data.train.ids).isdisjoint(data.test.ids)
    for part in (data.train, data.test):
        np.testing.assert_array_equal(part.labels, part.true_labels)
    # Stratified: every class is ~25% test.
    test_share = np.bincount(data.test.labels, minlength=10) / np.bincount(
        np.concatenate([data.train.labels, data.test.labels]), minlength=10
    )
    assert np.all(np.abs(test_share - 0.25) < 0.02)
    assert (data.train.images[..., 0] == data.train.images[..., 2]).all()  # grey in RGB


def test_digits_split_follows_data_seed():
    first, again = digits.load(make_cfg(data_seed=0)), digits.load(make_cfg(data_seed=0), seed=9)
    other = digits.load(make_cfg(data_seed=1))
    assert first.test.ids == again.test.ids
    assert first.train.images.tobytes() == again.train.images.tobytes()
    assert first.test.ids != other.test.ids


def test_digits_rejects_tiny_images():
    with pytest.raises(ValueError, match="image_size"):
        digits.load(make_cfg(image_size=4))


def test_bilinear_matrix_is_a_partition_of_unity():
    weights = digits.bilinear_matrix(8, 20)
    np.testing.assert_allclose(weights.sum(1), 1.0)
    np.testing.assert_allclose(digits.bilinear_matrix(8, 8), np.eye(8))


def test_upscale_values():
    image = np.zeros((1, 8, 8))
    image[0, :, 4:] = 16
    out = digits.upscale(image, 32)
    assert out.shape == (1, 32, 32, 3)
    assert out[0, :, :14].max() == 0 and out[0, :, 18:].min() == 255
    assert 0 < out[0, 5, 16, 0] < 255  # the edge is interpolated
    assert (digits.upscale(np.full((2, 8, 8), 4.0), 13) == 64).all()  # 4/16 of 255


# --- noise --------------------------------------------------------------------------------------


def balanced(n: int, num_classes: int) -> np.ndarray:
    return np.arange(n) % num_classes


def test_symmetric_flip_rate_and_targets():
    labels = balanced(10000, 7)
    noisy = inject_noise(labels, 7, "symmetric", 0.3, seed=0)
    flipped = noisy != labels
    assert abs(flipped.mean() - 0.3) < 0.02
    # Targets of flips from class 0 are spread evenly over the six other classes.
    targets = np.bincount(noisy[flipped & (labels == 0)], minlength=7)
    assert targets[0] == 0
    shares = targets[1:] / targets[1:].sum()
    assert np.all(np.abs(shares - 1 / 6) < 0.04)
    assert noisy.min() >= 0 and noisy.max() <= 6


def test_symmetric_noise_flips_only_to_classes_with_labels():
    # Happiness and Sadness of the 7 FER classes (a folder of two class folders): a flip never
    # invents a Surprise or a Neutral label the data does not have
    labels = np.repeat([3, 4], 500)
    noisy = inject_noise(labels, 7, "symmetric", 0.4, seed=0)
    assert set(noisy.tolist()) == {3, 4}
    assert abs((noisy != labels).mean() - 0.4) < 0.04
    features = np.random.default_rng(0).standard_normal((len(labels), 16))
    noisy = inject_noise(labels, 7, "instance", 0.4, seed=0, features=features)
    assert set(noisy.tolist()) == {3, 4} and (noisy != labels).any()


def test_with_every_class_present_symmetric_noise_is_unchanged():
    # the flips drawn before flips were limited to the classes present: (label + offset) % C
    labels = balanced(700, 7)
    rng = np.random.default_rng(5)
    flip = rng.random(len(labels)) < 0.3
    expected = np.where(flip, (labels + rng.integers(1, 7, len(labels))) % 7, labels)
    np.testing.assert_array_equal(inject_noise(labels, 7, "symmetric", 0.3, seed=5), expected)


@pytest.mark.parametrize(
    ("kind", "rate", "num_classes", "allowed"),
    [
        ("symmetric", 0.85, 7, True),  # the true class still the likeliest label (0.15 > 0.142)
        ("symmetric", 6 / 7, 7, False),  # every class equally likely: the labels say nothing
        ("symmetric", 1.0, 10, False),
        ("symmetric", 0.45, 2, True),
        ("symmetric", 0.5, 2, False),
        ("asymmetric", 0.45, 7, True),
        ("asymmetric", 0.5, 7, False),  # a Fear image as often labeled Surprise as Fear
        ("asymmetric", 0.55, 7, False),  # more often Surprise than Fear
        ("asymmetric", 1.0, 7, False),
        # instance noise: the symmetric bound, below which it runs (its wrong labels gather on
        # a few classes, so past the bound the true class is surely not the likeliest label)
        ("instance", 0.2, 7, True),
        ("instance", 0.4, 10, True),
        ("instance", 0.5, 7, True),
        ("instance", 0.85, 7, True),
        ("instance", 6 / 7, 7, False),
        ("instance", 1.0, 7, False),
        ("instance", 0.45, 2, True),
        ("instance", 0.5, 2, False),  # two classes: every wrong label is the other class
    ],
)
def test_a_rate_past_which_the_labels_stop_naming_the_classes_is_refused(
    kind, rate, num_classes, allowed
):
    labels = balanced(70, num_classes)
    extra = {"class_map": {1: 0}, "features": np.ones((70, 4))}
    if allowed:
        inject_noise(labels, num_classes, kind, rate, seed=0, **extra)
        return
    with pytest.raises(ConfigError, match=f"noise_rate={rate} is too high for {kind} noise"):
        inject_noise(labels, num_classes, kind, rate, seed=0, **extra)


@pytest.mark.parametrize(
    ("labels", "class_map", "message"),
    [
        # the default FER confusions on a folder of Happiness and Sadness: Sadness -> Neutral
        ([3, 4, 3, 4], FER_CONFUSIONS, "flip class 4 → class 6, but class 6 has no training"),
        ([3, 4, 3, 4], {1: 0}, "would flip no label"),
        # the default FER confusions on three general classes (bird, cat, dog)
        ([0, 1, 2, 0], FER_CONFUSIONS, "class id 5 is outside 0..2.*where data.noise_map is empty"),
    ],
)
def test_an_asymmetric_map_must_act_on_classes_the_labels_have(labels, class_map, message):
    with pytest.raises(ConfigError, match=message):
        inject_noise(np.array(labels), max(labels) + 1 if max(labels) < 3 else 7, "asymmetric",
                     0.3, seed=0, class_map=class_map)  # fmt: skip


def test_asymmetric_touches_only_mapped_classes():
    labels = balanced(10000, 7)
    noisy = inject_noise(labels, 7, "asymmetric", 0.4, seed=0, class_map=FER_CONFUSIONS)
    flipped = noisy != labels
    mapped = np.isin(labels, list(FER_CONFUSIONS))
    assert not flipped[~mapped].any()
    assert abs(flipped[mapped].mean() - 0.4) < 0.03
    for source, target in FER_CONFUSIONS.items():
        assert (noisy[flipped & (labels == source)] == target).all()


def test_noise_is_seeded_and_leaves_input_alone():
    labels = balanced(500, 7)
    original = labels.copy()
    first = inject_noise(labels, 7, "symmetric", 0.2, seed=3)
    np.testing.assert_array_equal(first, inject_noise(labels, 7, "symmetric", 0.2, seed=3))
    assert not np.array_equal(first, inject_noise(labels, 7, "symmetric", 0.2, seed=4))
    np.testing.assert_array_equal(labels, original)
    assert first is not labels


def test_none_and_unknown_labels():
    labels = np.array([0, 1, -1, 2, -1])
    np.testing.assert_array_equal(inject_noise(labels, 3, "none", 0.0, seed=0), labels)
    noisy = inject_noise(labels, 3, "symmetric", 0.6, seed=1)
    assert (noisy[labels == -1] == -1).all() and (noisy[labels >= 0] != labels[labels >= 0]).any()
    assert noisy[labels >= 0].min() >= 0 and noisy.max() <= 2


@pytest.mark.parametrize(
    ("kind", "rate", "class_map", "message"),
    [
        ("gaussian", 0.1, None, "none, symmetric, asymmetric, instance"),
        ("instance", 0.2, None, "needs features"),
        ("symmetric", 1.5, None, r"\[0, 1\]"),
        ("symmetric", -0.1, None, r"\[0, 1\]"),
        ("none", 0.2, None, "kind 'none'"),
        ("asymmetric", 0.2, None, "class_map"),
        ("asymmetric", 0.2, {7: 0}, "outside 0..6"),
    ],
)
def test_noise_errors(kind, rate, class_map, message):
    with pytest.raises(ValueError, match=message):
        inject_noise(balanced(20, 7), 7, kind, rate, seed=0, class_map=class_map)


def test_noise_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="0..6"):
        inject_noise(np.array([0, 9]), 7, "symmetric", 0.1, seed=0)


def test_parse_noise_map():
    assert parse_noise_map({"1": 0, "2": "5"}, 7) == {1: 0, 2: 5}
    assert parse_noise_map({}, 7) == {}
    with pytest.raises(ValueError, match="outside 0..6"):
        parse_noise_map({"1": 7}, 7)
    with pytest.raises(ValueError, match="outside 0..6"):
        parse_noise_map({"-1": 0}, 7)
    with pytest.raises(ValueError, match=r"'fear' = 0: .*integers 0..6, not names"):
        parse_noise_map({"fear": 0}, 7)
    with pytest.raises(ValueError, match="itself"):
        parse_noise_map({"3": 3}, 7)
    names = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
    assert parse_noise_map({"sadness": "Neutral", "1": "surprise"}, 7, names) == {4: 6, 1: 0}
    with pytest.raises(ValueError, match="'Sadnes' is not a class.*Did you mean 'Sadness'"):
        parse_noise_map({"Sadnes": 6}, 7, names)
    with pytest.raises(ValueError, match="itself"):
        parse_noise_map({"Fear": 1}, 7, names)


def test_default_noise_maps():
    assert default_noise_map("digits") == DIGIT_CONFUSIONS
    assert default_noise_map("rafdb") == FER_CONFUSIONS == {1: 0, 2: 5, 4: 6}
    default_noise_map("synthetic")[1] = 3  # a copy: the module constant stays intact
    assert FER_CONFUSIONS[1] == 0
    assert all(0 <= k < 10 and 0 <= v < 10 for k, v in DIGIT_CONFUSIONS.items())


# --- instance-dependent noise ---------------------------------------------------------------------


def test_instance_noise_flips_at_the_rate_and_keeps_unknown_labels():
    rng = np.random.default_rng(0)
    labels = balanced(20000, 7)
    labels[::50] = -1
    features = rng.standard_normal((len(labels), 64))
    noisy = inject_noise(labels, 7, "instance", 0.3, seed=0, features=features)
    known = labels >= 0
    assert abs((noisy[known] != labels[known]).mean() - 0.3) < 0.02
    assert (noisy[~known] == -1).all() and noisy.min() >= -1 and noisy.max() <= 6
    same = inject_noise(labels, 7, "instance", 0.3, seed=0, features=features)
    np.testing.assert_array_equal(noisy, same)
    assert not np.array_equal(noisy, inject_noise(labels, 7, "instance", 0.3, 1, None, features))
    clean = inject_noise(labels, 7, "instance", 0.0, seed=0, features=features)
    np.testing.assert_array_equal(clean, labels)


def test_instance_noise_sends_an_image_to_the_wrong_class_its_pixels_pick():
    # two kinds of image in one class, x and -x: each flips mostly to its own wrong class,
    # and the rates vary by image around the rate (sd 0.1), not one rate for all
    v = np.random.default_rng(1).standard_normal(256)
    v *= 16 / np.linalg.norm(v)  # the norm of a standardised 16 x 16 image
    labels = np.zeros(4006, dtype=np.int64)
    labels[4000:] = np.arange(1, 7)  # an image of each other class: flips may reach them all
    features = np.where((np.arange(4006) % 2 == 0)[:, None], v, -v)
    noisy = inject_noise(labels, 7, "instance", 0.5, seed=2, features=features)[:4000]
    targets = []
    for half in (0, 1):
        flipped = noisy[half::2][noisy[half::2] != 0]
        counts = np.bincount(flipped, minlength=7)
        assert counts.max() > 0.8 * counts.sum()
        targets.append(int(counts.argmax()))
    assert targets[0] != targets[1]
    symmetric = inject_noise(labels, 7, "symmetric", 0.5, seed=2)[:4000]
    assert np.bincount(symmetric[symmetric != 0]).max() < 0.25 * (symmetric != 0).sum()


def test_image_features_are_standardised_gray_pixels():
    pixels = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    pixels[1, :, :4] = 200  # half bright
    pixels[2] = np.arange(64, dtype=np.uint8).reshape(8, 8, 1) * 3
    rows = image_features(ImageSet(pixels, [0, 1, 2]))
    assert rows.shape == (3, 256)
    assert not rows[0].any()  # a flat image
    np.testing.assert_allclose(rows[1:].mean(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(rows[1:].std(axis=1), 1, atol=1e-9)


def test_instance_noise_on_digits_flips_labels_as_slips():
    data = load_dataset(DataConfig(dataset="digits", noise="instance", noise_rate=0.2), 0, ())
    train = data.train
    flipped = train.labels != train.true_labels
    assert 0.15 < flipped.mean() < 0.25
    assert (train.error_types[flipped] == 1).all()  # ERROR_TYPES.index("slip")
    assert any(note.startswith("instance noise at rate 0.2: ") for note in data.notes)


@pytest.mark.parametrize(
    "items, problem",
    [
        (["data.noise_rate=0.2"], "data.noise_rate=0.2 changes no label with data.noise=none"),
        (
            ["data.noise=symmetric", "data.noise_rate=0.2", 'data.noise_map={"1" = 0}'],
            "data.noise_map is read only by data.noise=asymmetric, not symmetric",
        ),
    ],
)
def test_noise_settings_that_would_change_nothing_stop_the_run(tiny_cfg, tmp_path, items, problem):
    with pytest.raises(ConfigError, match=re.escape(problem)):
        train(tiny_cfg(*items), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_noise_at_rate_zero_is_noted():
    data = load_dataset(DataConfig(dataset="digits", noise="symmetric", noise_rate=0.0), 0, ())
    assert (data.train.labels == data.train.true_labels).all()
    assert "symmetric noise at rate 0: no label flipped" in data.notes


# --- the edges of inject_noise --------------------------------------------------------------------


def test_a_label_equal_to_the_class_count_is_out_of_range():
    with pytest.raises(ConfigError) as refused:
        inject_noise(np.array([0, 7]), 7, "symmetric", 0.1, seed=0)
    assert str(refused.value) == "labels must be in 0..6 (or -1 for unknown)"
    inject_noise(np.array([0, 6, -1]), 7, "symmetric", 0.1, seed=0)


@pytest.mark.parametrize(
    ("kind", "features", "message"),
    [
        ("instance", None, "instance noise needs features, one row per label (image_features)"),
        (
            "instance",
            np.ones((19, 4)),  # one row short
            "instance noise needs features, one row per label (image_features)",
        ),
        (
            "asymmetric",
            None,
            "asymmetric noise needs a class_map (class id -> class id); pass "
            "default_noise_map(dataset_name) or parse_noise_map(cfg.noise_map, C)",
        ),
    ],
)
def test_noise_without_what_it_reads_says_so_in_full(kind, features, message):
    with pytest.raises(ConfigError) as refused:
        inject_noise(balanced(20, 7), 7, kind, 0.2, seed=0, features=features)
    assert str(refused.value) == message


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.float64])
def test_labels_of_another_type_come_back_as_int64_class_ids(dtype):
    labels = balanced(70, 7)
    features = np.random.default_rng(0).standard_normal((70, 4))
    for kind in ("none", "symmetric", "asymmetric", "instance"):
        rate = 0.0 if kind == "none" else 0.3
        extra = {"class_map": FER_CONFUSIONS, "features": features}
        noisy = inject_noise(labels.astype(dtype), 7, kind, rate, seed=1, **extra)
        assert noisy.dtype == np.int64
        np.testing.assert_array_equal(noisy, inject_noise(labels, 7, kind, rate, seed=1, **extra))
    # instance_noise alone as well
    as_given = instance_noise(labels.astype(dtype), features, 7, 0.3, np.random.default_rng(2))
    as_ids = instance_noise(labels, features, 7, 0.3, np.random.default_rng(2))
    assert as_given.dtype == np.int64
    np.testing.assert_array_equal(as_given, as_ids)


def test_a_map_side_that_is_neither_an_id_nor_a_name_is_refused():
    # TOML's true is no class id (bool is an int to Python)
    with pytest.raises(ConfigError, match="'2' = True: both sides must be class ids"):
        parse_noise_map({"2": True}, 7)
    # a name that holds digits is a name: "X3" is no id 3
    assert parse_noise_map({"X3": "b"}, 2, ("X3", "b")) == {0: 1}
    with pytest.raises(ConfigError, match="'X3' = 0: both sides must be class ids"):
        parse_noise_map({"X3": 0}, 7)
    names = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
    with pytest.raises(ConfigError) as refused:
        parse_noise_map({"Sadnes": 6}, 7, names)
    assert str(refused.value) == (
        "data.noise_map entry 'Sadnes' = 6: 'Sadnes' is not a class of this data (its classes: "
        "Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral; or ids 0..6). "
        "Did you mean 'Sadness'?"
    )


# --- instance noise, draw by draw -----------------------------------------------------------------


class ScriptedRng:
    """A generator whose draws are given: normal() hands out `normals` in turn (and records
    each call's loc, scale and size), standard_normal() the class maps, random() `uniforms`."""

    def __init__(self, normals, maps, uniforms):
        self.normals, self.maps, self.uniforms = list(normals), np.asarray(maps), uniforms
        self.calls = []

    def normal(self, loc, scale, size=None):
        self.calls.append((loc, scale, size))
        return np.array(self.normals.pop(0), dtype=np.float64)

    def standard_normal(self, shape):
        assert shape == self.maps.shape
        return self.maps.copy()

    def random(self, size):
        assert size == len(self.uniforms)
        return np.array(self.uniforms, dtype=np.float64)


def test_instance_flip_rates_outside_zero_to_one_are_redrawn_until_inside():
    # two classes: an image's one wrong class gets its flip rate q, its own class 1 - q. The
    # first draw puts q[0] above 1 and q[1] below 0: both are redrawn; q[0] again lands above 1
    # and is redrawn once more, to 0.02.
    rng = ScriptedRng(
        normals=[[1.5, -0.2, 0.3, 0.6], [1.7, 0.9], [0.02]],
        maps=np.zeros((2, 1, 2)),
        uniforms=[0.5, 0.95, 0.75, 0.5],
    )
    labels = np.array([0, 1, 0, 1])
    noisy = instance_noise(labels, np.ones((4, 1)), 2, 0.3, rng)
    assert rng.calls == [(0.3, 0.1, 4), (0.3, 0.1, 2), (0.3, 0.1, 1)]
    # q = (0.02, 0.9, 0.3, 0.6); a label flips where its draw passes 1 - q (class 0 first) or
    # falls below q (class 1 first, its wrong class 0 first in the cumulative sum)
    np.testing.assert_array_equal(noisy, [0, 1, 1, 0])


def test_instance_noise_picks_the_wrong_class_by_a_softmax_that_large_logits_do_not_break():
    # three classes, one feature of 1: image n's logits are its class's map row. Class 0 sends
    # its wrong labels 3:1 to classes 1 and 2 (logits 1000 and 1000 - ln 3), class 1 evenly to
    # 0 and 2 (logits -1000), class 2 evenly to 0 and 1 (logits 0): an exp of these overflows
    # or underflows unless each row's largest logit is taken off first.
    maps = np.array(
        [
            [[0.0, 1000.0, 1000.0 - np.log(3)]],
            [[-1000.0, 0.0, -1000.0]],
            [[0.0, 0.0, 0.0]],
        ]
    )
    rng = ScriptedRng(normals=[[0.4] * 4], maps=maps, uniforms=[0.7, 0.95, 0.9, 0.5])
    noisy = instance_noise(np.array([0, 0, 1, 2]), np.ones((4, 1)), 3, 0.4, rng)
    # q = 0.4 each. Class 0: p = (0.6, 0.3, 0.1), cumulative (0.6, 0.9, 1): 0.7 -> 1, 0.95 -> 2.
    # Class 1: p = (0.2, 0.6, 0.2), cumulative (0.2, 0.8, 1): 0.9 -> 2.
    # Class 2: p = (0.2, 0.2, 0.6), cumulative (0.2, 0.4, 1): 0.5 -> 2, kept.
    np.testing.assert_array_equal(noisy, [1, 2, 2, 2])


# --- what instance noise reads of an image --------------------------------------------------------


def standardised(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return (values - values.mean()) / values.std()


def test_image_features_upscale_bilinearly():
    # an 8 x 8 step from 50 to 200 at 16 x 16: output pixel j samples input x = j/2 - 1/4, so
    # pixels 7 and 8 of a row fall between input pixels 3 and 4: 50 + 150/4 = 87.5 -> 88 and
    # 50 + 150 * 3/4 = 162.5 -> 163. Bicubic resampling would undershoot 50 and overshoot 200.
    pixels = np.full((1, 8, 8, 3), 50, dtype=np.uint8)
    pixels[0, :, 4:] = 200
    row = [50] * 7 + [88, 163] + [200] * 7
    (features,) = image_features(ImageSet(pixels, [0]))
    np.testing.assert_allclose(features, standardised(np.tile(row, 16)), atol=1e-9)


def test_an_image_barely_off_flat_is_standardised_not_zeroed():
    # 16 x 16 (no resampling): one pixel of 101 among 100s, a standard deviation of 0.06
    pixels = np.full((1, 16, 16, 3), 100, dtype=np.uint8)
    pixels[0, 5, 9] = 101
    (features,) = image_features(ImageSet(pixels, [0]))
    gray = np.full(256, 100.0)
    gray[5 * 16 + 9] = 101
    np.testing.assert_allclose(features, standardised(gray), atol=1e-9)
    assert abs(features.std() - 1) < 1e-9
