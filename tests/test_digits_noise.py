"""The digits dataset (sklearn's bundled 8x8 digits) and label-noise injection."""

import re
from types import SimpleNamespace

import numpy as np
import pytest

from lionfer.config import DataConfig
from lionfer.data.base import ImageSet
from lionfer.data.datasets import digits
from lionfer.data.noise import (
    DIGIT_CONFUSIONS,
    FER_CONFUSIONS,
    default_noise_map,
    image_features,
    inject_noise,
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
