"""The simulated annotators (lionfer.data.annotators) against their definitions, the legacy
annotator bit for bit, and the error types of labels changed by data.noise."""

import hashlib
from math import erf, exp, sqrt

import numpy as np
import pytest

from lionfer import config_sections
from lionfer.config import load_config
from lionfer.config_sections import DataConfig
from lionfer.data import annotators as ann
from lionfer.data.calibration import calibration
from lionfer.data.datasets import synthetic as syn
from lionfer.data.pipeline import build_run_data, load_dataset
from lionfer.errors import ConfigError

NONE, SLIP, AMBIGUITY = 0, 1, 2

# A fabricated geometry: three classes on one parameter, unit jitter, bounds far away except the
# lower one at -2.5; class 0's first partner is 1, 1's is 0, 2's is 1.
TOY = ann.FaceModel(
    prototypes=np.array([[0.0], [2.0], [6.0]]),
    jitter=np.array([1.0]),
    lower=np.array([-2.5]),
    upper=np.array([50.0]),
    first_partner=np.array([1, 0, 1]),
    partner_blend=0.8,
    blend_alpha=(0.5, 0.8),
)


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


# sha256 prefixes of the data sets as the generator made them before data.annotator existed:
# (train labels, train truth, test labels, train images, test images).
LEGACY = {
    (2100, 700, 0, 0.35, 32): (
        "275d38b75dd3a72c", "e67d534ff9fc8de1", "d68fb9881afd3a5b", "89d8b9d1805e2b32",
        "7dbbae5e8b8d0603",
    ),
    (300, 100, 3, 0.5, 24): (
        "4e92f8000562349f", "6dae52f22220bb0c", "feda3dae087bc4db", "f603f32b599e2c6b",
        "3b4ee160f247d0a4",
    ),
}  # fmt: skip


@pytest.mark.parametrize("key", sorted(LEGACY))
def test_legacy_annotator_reproduces_the_earlier_data_bit_for_bit(key):
    num_train, num_test, data_seed, ambiguity, size = key
    cfg = DataConfig(
        num_train=num_train, num_test=num_test, data_seed=data_seed, ambiguity=ambiguity,
        image_size=size, annotator="legacy",
    )  # fmt: skip
    data = syn.load(cfg)
    found = (
        digest(data.train.labels), digest(data.train.true_labels), digest(data.test.labels),
        digest(data.train.images), digest(data.test.images),
    )  # fmt: skip
    assert found == LEGACY[key]


# sha256 prefixes of (train labels, their error types) as each annotator draws them: the labels
# the published figures were measured on (the images and truth are LEGACY's, above).
ANNOTATED = {
    ("single", 2100, 700, 0, 0.35, 32): ("7306b57285ede0e4", "e6c5e7acd14147cd"),
    ("single", 300, 100, 3, 0.5, 24): ("5f7e4ec9eac23265", "d0747f6ec0aaad15"),
    ("crowd10", 300, 100, 3, 0.5, 24): ("32caf27b1c748831", "672da5712bd4ff44"),
    ("crowd40", 300, 100, 3, 0.5, 24): ("40420e2a217343f5", "3cfa13aa44b64bf0"),
}  # fmt: skip


@pytest.mark.parametrize("key", sorted(ANNOTATED))
def test_each_annotator_draws_the_labels_its_published_figures_were_measured_on(key):
    annotator, num_train, num_test, data_seed, ambiguity, size = key
    cfg = DataConfig(
        num_train=num_train, num_test=num_test, data_seed=data_seed, ambiguity=ambiguity,
        image_size=size, annotator=annotator,
    )  # fmt: skip
    data = syn.load(cfg)
    assert (digest(data.train.labels), digest(data.train.error_types)) == ANNOTATED[key]


def test_images_and_truth_do_not_depend_on_the_annotator():
    made = {
        mode: syn.generate(70, 24, 0.35, np.random.default_rng(5), mode) for mode in ann.ANNOTATORS
    }
    for faces in made.values():
        assert faces.images.tobytes() == made["legacy"].images.tobytes()
        np.testing.assert_array_equal(faces.true_labels, made["legacy"].true_labels)
    assert any(
        not np.array_equal(made[m].given_labels, made["legacy"].given_labels) for m in ann.MODES
    )


def test_the_truth_annotator_gives_clean_labels():
    faces = syn.generate(70, 24, 0.35, np.random.default_rng(5), "truth")
    np.testing.assert_array_equal(faces.given_labels, faces.true_labels)
    assert (faces.error_types == ann.NONE).all()
    np.testing.assert_array_equal(faces.votes, np.eye(7, dtype=np.int64)[faces.true_labels])
    assert "0 slips, 0 ambiguous" in syn.label_error_note(faces)


@pytest.mark.parametrize("mode, votes", [("single", 1), ("crowd10", 10), ("crowd40", 40)])
def test_votes_per_face_and_the_given_label_follow_the_mode(mode, votes):
    rng = np.random.default_rng(0)
    truth = np.arange(300) % 3
    geometry = TOY.prototypes[truth] + rng.normal(size=(300, 1))
    a = ann.annotate(geometry, truth, 0.3, mode, rng, TOY, np.array([1, 0, 1]), {})
    assert a.votes.shape == (300, 3) and (a.votes.sum(1) == votes).all()
    if mode == "single":
        np.testing.assert_array_equal(a.labels, a.votes.argmax(1))
        assert (a.votes.max(1) == 1).all()
    elif mode == "crowd10":
        np.testing.assert_array_equal(a.labels, ann.ferplus_majority(a.votes))
    else:
        top = a.votes[np.arange(300), a.labels]
        assert (top == a.votes.max(1)).all()  # a plurality winner
    np.testing.assert_array_equal(a.error_types, ann.error_types(a.labels, truth, a.presence))


def test_ferplus_majority_rule_by_hand():
    counts = np.array(
        [
            [6, 4, 0],  # 6 > 5: class 0
            [5, 5, 0],  # a tie: no majority
            [4, 3, 3],  # 4 of 10 is not more than half
            [3, 1, 1],  # single votes dropped: 3 of 3
            [1, 1, 1],  # every class has one vote: nothing is left
            [2, 2, 1],  # 2 of 4 after dropping is exactly half
            [0, 9, 1],
        ]
    )
    assert ann.ferplus_majority(counts).tolist() == [0, -1, -1, 0, -1, -1, 1]


def test_plurality_breaks_ties_at_random_among_the_top_classes():
    counts = np.array([[20, 20, 0]] * 400 + [[5, 30, 5]])
    winners = ann.plurality(counts, np.random.default_rng(0))
    assert set(winners[:400].tolist()) == {0, 1} and 0.4 < winners[:400].mean() < 0.6
    assert winners[400] == 1


def test_error_types_by_hand():
    presence = np.array([[1.0, 0.3, 0.0], [1.0, 0.2, 0.0], [0.9, 0.0, 0.25], [0.5, 0.5, 0.0]])
    given = np.array([1, 1, 2, -1])
    truth = np.array([0, 0, 0, 0])
    assert ann.error_types(given, truth, presence).tolist() == [AMBIGUITY, SLIP, AMBIGUITY, -1]
    assert ann.error_types(truth, truth, presence).tolist() == [NONE] * 4


def pdf(v, m, sigma=1.0):
    """The Gaussian density N(v; m, sigma²) up to its constant, which cancels in a posterior."""
    return exp(-0.5 * ((v - m) / sigma) ** 2)


def cdf(v, m, sigma=1.0):
    return 0.5 * (1 + erf((v - m) / (sigma * sqrt(2))))


def test_posterior_without_blends_is_the_gaussian_likelihood_by_hand():
    x = np.array([[1.5], [3.0], [-2.5]])  # the last one sits on the lower bound: clipped
    posterior, presence = ann.geometry_posteriors(x, 0.0, TOY)
    for row, value in enumerate((1.5, 3.0)):
        like = np.array([pdf(value, m) for m in (0.0, 2.0, 6.0)])
        np.testing.assert_allclose(posterior[row], like / like.sum(), rtol=1e-9)
    mass = np.array([cdf(-2.5, m) for m in (0.0, 2.0, 6.0)])  # the mass below the bound
    np.testing.assert_allclose(posterior[2], mass / mass.sum(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(presence, posterior)


def test_a_blend_half_way_shows_both_classes():
    # Half way between classes 0 and 1 (each other's first partner), class 2 far away: with every
    # face blended, either could dominate, and both are almost surely present.
    model = TOY._replace(prototypes=np.array([[0.0], [2.0], [40.0]]))
    posterior, presence = ann.geometry_posteriors(np.array([[1.0]]), 1.0, model)
    assert abs(posterior[0, 0] - posterior[0, 1]) < 1e-9 and posterior[0, 2] < 0.01
    assert presence[0, 0] > 0.95 and presence[0, 1] > 0.95
    np.testing.assert_allclose(posterior.sum(1), 1.0)
    assert (presence >= posterior - 1e-12).all()


def test_perceived_flattens_by_the_temperature_and_tilts_to_favoured_classes():
    p = np.array([[0.64, 0.32, 0.04]])
    np.testing.assert_allclose(ann.perceived(p, 1.0, {}), p)
    flat = ann.perceived(p, 2.0, {})
    np.testing.assert_allclose(flat, np.sqrt(p) / np.sqrt(p).sum())
    tilted = ann.perceived(p, 1.0, {2: 4.0})
    np.testing.assert_allclose(tilted, np.array([[0.64, 0.32, 0.16]]) / 1.12)
    with pytest.raises(ValueError, match="temperature"):
        ann.perceived(p, 0.0)


def test_cast_votes_slips_as_defined():
    rng = np.random.default_rng(0)
    seen = np.tile([0.0, 1.0, 0.0], (2000, 1))  # everyone sees class 1
    sure = ann.cast_votes(seen, np.ones((2000, 3)), rng)
    assert (sure == 1).all()
    confused = ann.cast_votes(seen, np.zeros((2000, 3)), rng, np.array([1, 2, 0]), 0.0)
    assert (confused == 2).all()  # every vote slips to the confusion of class 1
    uniform = ann.cast_votes(seen, np.zeros((2000, 3)), rng, np.array([1, 2, 0]), 1.0)
    assert (uniform != 1).all() and 0.45 < (uniform == 0).mean() < 0.55
    half = ann.cast_votes(seen, np.zeros((2000, 10)), rng, np.array([1, 2, 0]), 0.5)
    assert 0.70 < (half == 2).mean() < 0.80  # half by the confusion, a quarter by chance


def test_unknown_mode_and_config_value_are_refused():
    with pytest.raises(ValueError, match="'crowd7'; use one of single, crowd10, crowd40$"):
        ann.annotate(np.zeros((1, 1)), np.zeros(1, int), 0.3, "crowd7", np.random.default_rng(0),
                     TOY)  # fmt: skip
    with pytest.raises(ValueError, match="annotator"):
        syn.generate(7, 24, 0.3, np.random.default_rng(0), "crowd7")
    with pytest.raises(ConfigError, match="data.annotator"):
        load_config(None, ["data.annotator=crowd7"])
    assert config_sections.ANNOTATORS == ann.ANNOTATORS
    assert DataConfig().annotator == "single"


def test_synthetic_train_set_carries_error_types_of_its_labels():
    cfg = DataConfig(num_train=140, num_test=35, image_size=24, annotator="crowd10")
    data = syn.load(cfg)
    train = data.train
    assert train.error_types is not None
    unknown = train.labels < 0
    assert (train.error_types[unknown] == -1).all()
    right = ~unknown & (train.labels == train.true_labels)
    assert (train.error_types[right] == NONE).all()
    assert np.isin(train.error_types[~unknown & ~right], [SLIP, AMBIGUITY]).all()


def test_single_annotator_is_calibrated_near_published_agreement():
    figures = calibration(n=7000)
    assert 0.58 <= figures["agreement"] <= 0.67
    by_class = figures["agreement_by_class"]
    assert max(by_class) - min(by_class) > 0.1  # class-dependent
    assert np.argmax(by_class) == 3  # Happiness is the easiest to agree on
    modes = figures["modes"]
    assert modes["crowd10"]["wrong"] < modes["single"]["wrong"]
    assert modes["crowd40"]["wrong"] < modes["single"]["wrong"]
    assert modes["crowd10"]["unknown"] > 0 and modes["single"]["unknown"] == 0


def test_labels_changed_by_noise_are_slips():
    overrides = ["data.dataset=digits", "data.noise=symmetric", "data.noise_rate=0.3"]
    cfg = load_config(None, [*overrides, "data.num_labels=50"])
    data = load_dataset(cfg.data, seed=0, check=())
    train = data.train
    flipped = train.labels != train.true_labels
    assert flipped.any() and (~flipped).any()
    assert (train.error_types[flipped] == SLIP).all()
    assert (train.error_types[~flipped] == NONE).all()
    run = build_run_data(cfg.data, seed=0, recheck=False)
    assert run.labeled.error_types is not None and len(run.labeled.error_types) == 50


def test_noise_on_annotated_faces_keeps_the_annotator_types_where_unchanged():
    cfg = load_config(
        None,
        ["data.num_train=140", "data.num_test=35", "data.image_size=24", "data.noise=symmetric",
         "data.noise_rate=0.5"],
    )  # fmt: skip
    clean = syn.load(cfg.data)
    noisy = load_dataset(cfg.data, seed=0, check=()).train
    changed = noisy.labels != clean.train.labels
    assert changed.any()
    np.testing.assert_array_equal(noisy.error_types[~changed], clean.train.error_types[~changed])
    back = changed & (noisy.labels == noisy.true_labels)
    assert (noisy.error_types[changed & ~back] == SLIP).all()
    assert (noisy.error_types[back] == NONE).all()


def test_packaged_sweeps_on_the_embedded_faces_pin_the_legacy_annotator():
    from lionfer.experiments.sweep_file import PACKAGED_SWEEPS, expand, load_sweep

    published = {"embedded", "lion-embedded", "lion-embedded-10", "lion-resnet18", "lion-scratch"}
    named = {
        "lion-evidence-faces": {"single"},
        "lion-evidence-crowd10": {"crowd10"},
        "evidence-ablation-faces": {"single"},
        "showcase": {"single"},  # the embedded default as users run it
        "demo": {"single"},  # make demo: the embedded default too
    }
    synthetic_sweeps = []
    for path in sorted(PACKAGED_SWEEPS.glob("*.toml")):
        points = expand(load_sweep(path))
        on_faces = [cfg for _, cfg in points if cfg.data.dataset == "synthetic"]
        if on_faces:
            synthetic_sweeps.append(path.stem)
            expected = named.get(path.stem, {"legacy"})
            assert {cfg.data.annotator for cfg in on_faces} == expected, path.stem
    assert published | set(named) <= set(synthetic_sweeps)


def test_ferplus_drops_single_votes_before_it_counts_the_half():
    counts = np.array(
        [
            [2, 1, 1],  # the single votes go: 2 of 2, class 0
            [4, 2, 2],  # two votes stay: 4 of 8 is exactly half, no majority
        ]
    )
    assert ann.ferplus_majority(counts).tolist() == [0, -1]


def test_draws_reach_the_last_class():
    p = np.array([[0.0, 0.0, 1.0], [0.5, 0.0, 0.5]])
    draws = ann._draw(p, np.array([[0.3, 0.9], [0.2, 0.7]]))
    assert draws.tolist() == [[2, 2], [0, 2]]


def test_posterior_at_the_upper_bound_is_the_mass_above_it():
    """Jitter 2 and an upper bound at 3: a face clipped there holds P(x ≥ 3 | class) of each
    class; one inside holds its Gaussian density."""
    model = TOY._replace(jitter=np.array([2.0]), lower=np.array([-2.5]), upper=np.array([3.0]))
    posterior, _ = ann.geometry_posteriors(np.array([[3.0], [-2.5], [1.0]]), 0.0, model)
    above = np.array([1 - cdf(3.0, m, 2.0) for m in (0.0, 2.0, 6.0)])
    below = np.array([cdf(-2.5, m, 2.0) for m in (0.0, 2.0, 6.0)])
    inside = np.array([pdf(1.0, m, 2.0) for m in (0.0, 2.0, 6.0)])
    np.testing.assert_allclose(posterior[0], above / above.sum(), rtol=1e-9)
    np.testing.assert_allclose(posterior[1], below / below.sum(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(posterior[2], inside / inside.sum(), rtol=1e-9)


def test_where_the_geometry_tells_nothing_presence_is_the_blend_prior():
    """A jitter so wide that every component is equally likely: the posterior is the uniform
    prior and presence[c] = 1/C + (ambiguity/C) Σ_{a≠c} w_a(c), w_a(b) = (1 − 0.8)/2 for any other
    class b plus 0.8 for a's first partner (0 → 1, 1 → 0, 2 → 1): Σ = 1.0, 1.8, 0.2."""
    flat = TOY._replace(jitter=np.array([1e6]), lower=np.array([-1e9]), upper=np.array([1e9]))
    posterior, presence = ann.geometry_posteriors(np.array([[1.0]]), 0.5, flat)
    np.testing.assert_allclose(posterior[0], [1 / 3] * 3, rtol=1e-6)
    expected = 1 / 3 + 0.5 / 3 * np.array([1.0, 1.8, 0.2])
    np.testing.assert_allclose(presence[0], expected, rtol=1e-6)


def test_an_annotation_carries_the_posterior_and_presence_its_votes_came_from():
    x = np.array([[1.5], [3.0], [-2.5]])
    rng = np.random.default_rng(0)
    votes = ann.annotate(x, np.array([0, 1, 0]), 0.3, "crowd10", rng, TOY, np.array([1, 2, 0]), {})
    posterior, presence = ann.geometry_posteriors(x, 0.3, TOY)
    np.testing.assert_allclose(votes.posterior, posterior)
    np.testing.assert_allclose(votes.presence, presence)
