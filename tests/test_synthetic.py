"""The synthetic face generator: determinism, shapes, labels and the annotator model."""

from types import SimpleNamespace

import numpy as np
import pytest

from lionfer.data.datasets import synthetic as syn
from lionfer.labels import CLASS_NAMES
from lionfer.registry import DATASETS


def make_cfg(**overrides):
    fields = dict(
        image_size=24, data_seed=0, num_train=70, num_test=35, ambiguity=0.35, num_classes=7
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_registered():
    assert DATASETS.get("synthetic") is syn.load


def test_same_data_seed_gives_same_bytes_whatever_the_run_seed():
    first, second = syn.load(make_cfg(), seed=0), syn.load(make_cfg(), seed=7)
    assert first.train.images.tobytes() == second.train.images.tobytes()
    assert first.test.images.tobytes() == second.test.images.tobytes()
    np.testing.assert_array_equal(first.train.labels, second.train.labels)
    np.testing.assert_array_equal(first.train.true_labels, second.train.true_labels)


def test_different_data_seeds_differ():
    first, second = syn.load(make_cfg(data_seed=0)), syn.load(make_cfg(data_seed=1))
    assert first.train.images.tobytes() != second.train.images.tobytes()
    assert not np.array_equal(first.train.true_labels, second.train.true_labels)


def test_test_set_does_not_depend_on_train_size():
    small, large = syn.load(make_cfg(num_train=14)), syn.load(make_cfg(num_train=28))
    assert small.test.images.tobytes() == large.test.images.tobytes()


def test_shapes_labels_and_metadata():
    data = syn.load(make_cfg(image_size=32))
    assert data.name == "synthetic" and data.class_names == CLASS_NAMES
    assert data.split_rule == "balanced" and data.unlabeled is None
    assert data.train.images.shape == (70, 32, 32, 3) and data.train.images.dtype == np.uint8
    assert data.test.images.shape == (35, 32, 32, 3)
    for part in (data.train, data.test):
        assert part.labels.min() >= 0 and part.labels.max() <= 6
        assert np.bincount(part.true_labels, minlength=7).tolist() == [len(part) // 7] * 7
    np.testing.assert_array_equal(data.test.labels, data.test.true_labels)
    assert data.train.load(0).size == (32, 32)
    assert any(note.startswith("given labels wrong on") for note in data.notes)


@pytest.mark.parametrize("size", [24, 64, 128, 224])
def test_render_sizes(size):
    images = syn.render(syn.PROTOTYPES[:2], size, np.random.default_rng(0))
    assert images.shape == (2, size, size, 3) and images.dtype == np.uint8
    assert images.std() > 10  # a picture, not a flat fill


def test_render_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="columns"):
        syn.render(np.zeros((2, 3)), 32, rng)
    with pytest.raises(ValueError, match="24..224"):
        syn.render(syn.PROTOTYPES, 16, rng)
    with pytest.raises(ValueError, match="ambiguity"):
        syn.generate(7, 32, 1.5, rng)
    with pytest.raises(ValueError, match="num_classes = 7"):
        syn.load(make_cfg(num_classes=8))


def test_each_prototype_renders_differently():
    images = syn.render(syn.PROTOTYPES, 48, np.random.default_rng(0), plain=True)
    flat = images.reshape(7, -1).astype(np.int64)
    distances = np.abs(flat[:, None] - flat[None]).sum(-1)
    assert (distances[~np.eye(7, dtype=bool)] > 0).all()


def test_mouth_geometry_changes_only_the_lower_face():
    closed = syn.prototype(6)
    opened = closed.copy()
    opened[syn.PARAM_NAMES.index("mouth_open")] = 1.0
    a = syn.render(closed, 64, np.random.default_rng(3), plain=True)[0].astype(int)
    b = syn.render(opened, 64, np.random.default_rng(3), plain=True)[0].astype(int)
    assert (a[:32] == b[:32]).all()  # eyes, brows, forehead untouched
    assert np.abs(a[32:] - b[32:]).sum() > 1000


def test_raised_brows_move_dark_pixels_up():
    def face(height: float) -> np.ndarray:
        geometry = syn.prototype(6)
        geometry[syn.PARAM_NAMES.index("brow_height")] = height
        return syn.render(geometry, 96, np.random.default_rng(0), plain=True)[0].mean(-1)

    raised, lowered = face(1.2), face(-1.2)
    rows = np.arange(96)[:, None].repeat(96, 1)
    brow_when_raised = rows[raised < lowered - 40].mean()  # where only the raised face is dark
    brow_when_lowered = rows[lowered < raised - 40].mean()
    assert brow_when_raised < brow_when_lowered - 5


def test_annotator_errors_are_more_common_on_blended_faces():
    rng = np.random.default_rng(0)
    true = rng.permutation(np.arange(20000) % 7)
    _, second, alpha, blended = syn.sample_geometry(true, 0.35, rng)
    given = syn.annotate(true, second, alpha, rng)
    wrong = given != true
    assert 0.30 < blended.mean() < 0.40
    assert 0.03 < wrong[~blended].mean() < 0.07  # 1 - CLEAR_AGREEMENT
    assert 0.35 < wrong[blended].mean() < 0.50
    assert 0.12 < wrong.mean() < 0.25
    # A wrong label on a blend is mostly the blended-in class B.
    assert (given[blended & wrong] == second[blended & wrong]).mean() > 0.8
    assert ((alpha >= 0.5) & (alpha <= 0.8))[blended].all()


def test_no_ambiguity_means_no_blends():
    rng = np.random.default_rng(1)
    faces = syn.generate(70, 24, 0.0, rng)
    assert not faces.blended.any()
    np.testing.assert_array_equal(faces.second, faces.true_labels)
    assert faces.geometry.shape == (70, len(syn.PARAM_NAMES))


def test_label_error_note_matches_the_data():
    faces = syn.generate(140, 24, 0.5, np.random.default_rng(2))
    wrong = 100 * (faces.given_labels != faces.true_labels).mean()
    assert syn.label_error_note(faces).startswith(f"given labels wrong on {wrong:.1f}%")
