"""Every algorithm on the data shapes users bring rather than benchmarks: two or three classes of
their own, one labeled image a class, a class without labeled images, fewer unlabeled images
than a batch, a labeled set of one class. Each trains to a summary with finite figures, or stops
before the run folder exists with an error naming the fix."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import Passthrough, info, rows
from PIL import Image

from lionfer.algorithms.base import Batch, Progress
from lionfer.algorithms.flexmatch import FlexMatch
from lionfer.algorithms.hparams import (
    FlexMatchConfig,
    FullySupervisedConfig,
    MarginMixConfig,
    SupervisedConfig,
    lion_config,
)
from lionfer.algorithms.lion import Lion
from lionfer.algorithms.lion_evidence_rules import DEMOTE, KEEP, nearest_prototype_agrees
from lionfer.algorithms.marginmix import MarginMix, centroid_guess
from lionfer.algorithms.mixmatch import sharpen
from lionfer.errors import ConfigError
from lionfer.schedules import METHODS as SHOWCASE_METHODS
from lionfer.training import train

T = torch.tensor

METHODS = list(SHOWCASE_METHODS)  # every algorithm, LION with each recipe


def method(name: str) -> list[str]:
    algorithm, _, recipe = name.partition(":")
    return [f"algorithm.name={algorithm}", *([f"algorithm.recipe={recipe}"] * bool(recipe))]


def make_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """A class folder per name, each image a colour of its class with its own noise."""
    rng = np.random.default_rng(seed)
    for c, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            pixels = rng.normal(60 + 80 * c, 30, (20, 20, 3)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k:02d}.png")
    return root


def finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


@pytest.mark.parametrize("name", METHODS)
def test_every_method_trains_on_two_classes_one_label_each_and_few_unlabeled_images(
    name, tiny_cfg, tmp_path
):
    # cat/dog: two general classes; 10 images each, 2 held out, 1 labeled, so 14 unlabeled
    # (fewer than a batch of 16) and a labeled batch of 4 drawn from 2 labeled images
    root = make_folder(tmp_path / "pets", {"cat": 10, "dog": 10})
    items = ["data.dataset=folder", f"data.root={root}", "data.num_labels=2", "train.steps=3"]
    items += ["train.unlabeled_ratio=4", "train.eval_every=3"]
    items += ["algorithm.epoch_steps=1"] if name == "adacm" else []  # its margins updated too
    summary = train(tiny_cfg(*items, *method(name)), tmp_path / "run", progress=False)
    assert summary["class_names"] == ["cat", "dog"] and summary["steps"] == 3
    assert finite(summary), summary
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["test_acc"] == summary["test_acc"]


def test_a_dataset_of_one_class_is_refused_before_the_run_starts(tiny_cfg, tmp_path):
    # unchecked, the evidence rule fails mid-run on it (an index out of range in its verdicts)
    # and every other method trains a classifier with one answer
    root = make_folder(tmp_path / "cats", {"cat": 10})
    items = ["data.dataset=folder", f"data.root={root}", "data.num_labels=3"]
    unlabeled = make_folder(tmp_path / "more", {"u": 6}, seed=1) / "u"
    for name in ("lion:evidence", "fixmatch"):
        out = tmp_path / name.replace(":", "_")
        cfg = tiny_cfg(*items, f"data.unlabeled_root={unlabeled}", *method(name))
        with pytest.raises(ConfigError, match=r"the data has one class \(cat\).*one more class"):
            train(cfg, out, progress=False)
        assert not out.exists()


def test_one_fer_class_with_images_is_refused_before_the_run_starts(tiny_cfg, tmp_path):
    # happy/ alone: seven FER classes, one with images; unchecked, 100% on its one class
    root = make_folder(tmp_path / "faces", {"happy": 10})
    items = ["data.dataset=folder", f"data.root={root}", "data.num_labels=-1"]
    refused = pytest.raises(ConfigError, match=r"only 1 of the data's 7 classes has training")
    with refused, pytest.warns(UserWarning, match="6 of 7 classes get no labeled image"):
        train(tiny_cfg(*items, "algorithm.name=supervised"), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_a_budget_that_labels_one_class_asks_for_one_label_per_class(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError) as caught, pytest.warns(UserWarning, match="give at least 7"):
        train(tiny_cfg("data.num_labels=1"), tmp_path / "r", progress=False)
    message = str(caught.value)
    assert re.search(r"name 1 class \(\w+\) of the 7 with training images", message)
    assert "raise data.num_labels to at least 7, one image a class" in message
    assert not (tmp_path / "r").exists()


def test_label_smoothing_outside_zero_one_is_refused_when_the_config_is_read():
    # unchecked, torch refuses it at the first step, after the run folder is written
    for config in (SupervisedConfig, FullySupervisedConfig):
        with pytest.raises(ConfigError, match="algorithm.label_smoothing: must lie in"):
            config(label_smoothing=1.5)
        assert config(label_smoothing=0.1).label_smoothing == 0.1


def guess_batch(labels):
    """Two labeled rows (features (1, 0) and (0, 1)) and one unlabeled image p = (.5, .3, .2)
    with feature (1, 0), for Passthrough(3)."""
    return Batch.from_views(
        rows([[1 / 3] * 3, [1 / 3] * 3], [[1.0, 0.0], [0.0, 1.0]]),
        T(labels),
        T([0, 1]),
        ("weak", "weak"),
        (rows([[0.5, 0.3, 0.2]], [[1.0, 0.0]]),) * 2,
        T([0]),
    )


def test_marginmix_blends_the_centroids_in_when_a_class_has_no_labeled_image():
    # class 2 has no labeled image, so it never gets a centroid: a blend that waits for it
    # leaves Margin-Mix as MixMatch with a margin for the whole run
    cfg = MarginMixConfig(distance_temperature=0.5, centroid_weight=0.5, temperature=0.5)
    marginmix = MarginMix(cfg, info(3, given=(0, 1, 0, 1)))
    guess = marginmix._guess(Passthrough(3), guess_batch([0, 1]))
    by_centroid = 1 / (1 + math.exp(-2))  # d = (0, 1) to the centroids of classes 0 and 1
    blend = T([[0.25 + 0.5 * by_centroid, 0.15 + 0.5 * (1 - by_centroid), 0.1]])
    assert torch.allclose(guess, sharpen(blend, 0.5))
    # still q̄ alone until every class with labeled images has a centroid
    waiting = MarginMix(cfg, info(3, given=(0, 1, 0, 1)))
    plain = waiting._guess(Passthrough(3), guess_batch([0, 0]))
    assert torch.allclose(plain, sharpen(T([[0.5, 0.3, 0.2]]), 0.5))


def test_the_centroid_guess_gives_no_share_to_a_class_without_a_centroid():
    centroids = T([[2.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    guess = centroid_guess(T([[1.0, 0.0]]), centroids, 0.5, T([True, True, False]))
    by_centroid = 1 / (1 + math.exp(-2))
    assert torch.allclose(guess, T([[by_centroid, 1 - by_centroid, 0.0]]))
    assert torch.equal(
        centroid_guess(T([[1.0, 0.0]]), centroids, 0.5, T([False] * 3)), T([[0.0] * 3])
    )


def test_the_prototype_check_demotes_every_relabel_while_no_class_has_a_prototype():
    # argmax over no prototype is class 0: a relabel to class 0 would pass unwitnessed
    verdict = T([0, 1, DEMOTE, KEEP])
    features = torch.ones(4, 2)
    prototypes, none_ready = torch.zeros(3, 2), T([False, False, False])
    out = nearest_prototype_agrees(verdict, features, prototypes, none_ready)
    assert out.tolist() == [DEMOTE, DEMOTE, DEMOTE, KEEP]


@pytest.mark.parametrize(
    "recipe, says",
    [
        ("robust", r"once 90% of the labeled images .* at the end 0% were"),
        (
            "paper",
            r"after 30% of the steps \(algorithm.disambiguation_start\), which the run's last "
            r"step did not reach; lower algorithm.disambiguation_start",
        ),
    ],
)
def test_a_run_whose_disambiguation_never_began_says_so_in_its_summary(recipe, says):
    # a robust run whose labeled set is never 90% fitted relabels nothing: the summary says why
    lion = Lion(lion_config(recipe), info(3, given=(0, 1, 2, 0)))
    (warning,) = lion.summary()["warnings"]
    assert re.search(f"disambiguation never began, so no label was changed: .*{says}", warning)
    lion.started.fill_(True)
    lion.clear_at_start.fill_(0.9)
    assert "warnings" not in lion.summary()
    assert "warnings" not in Lion(lion_config("evidence"), info(3, given=(0, 1, 2, 0))).summary()


def test_flexmatch_records_an_image_held_twice_in_a_batch_from_its_first_row():
    # 3 unlabeled images for a batch of 4: image 0 comes twice, its two views confident of two
    # classes; unordered writes would leave the winner to the device (the last, on a CPU)
    flexmatch = FlexMatch(FlexMatchConfig(), info(3, given=(0, 1, 2), num_unlabeled=3))
    weak = rows([[0.01, 0.98, 0.01], [0.01, 0.01, 0.98], [0.98, 0.01, 0.01], [0.4, 0.3, 0.3]])
    batch = Batch(rows([[0.5, 0.25, 0.25]]), T([0]), T([0]), weak, weak, T([0, 0, 1, 2]))
    flexmatch.step(Passthrough(3), batch, Progress(0, 10))
    assert flexmatch.selected_label.tolist() == [1, 0, -1]


def test_marginmix_logs_the_share_of_labeled_classes_with_a_centroid():
    cfg = MarginMixConfig(distance_temperature=0.5, centroid_weight=0.5, temperature=0.5)
    marginmix = MarginMix(cfg, info(3, given=(0, 1, 0, 1)))  # class 2 has no labeled image
    half = marginmix.step(Passthrough(3), guess_batch([0, 0]), Progress(1, 10))
    assert half.logs["centroids_ready"].item() == pytest.approx(0.5)  # class 0's of 0 and 1
    full = marginmix.step(Passthrough(3), guess_batch([0, 1]), Progress(2, 10))
    assert full.logs["centroids_ready"].item() == pytest.approx(1.0)


def test_the_never_began_warning_gives_the_figures_it_waited_for():
    robust = Lion(lion_config("robust"), info(3, given=(0, 1, 2, 0)))
    robust.running.copy_(T([0.5, 0.6]))
    robust.running_steps.fill_(1000)  # the bias correction is then 1
    (warning,) = robust.summary()["warnings"]
    assert "at the end 60% were" in warning
    paper = Lion(lion_config("paper", disambiguation_start=0.7), info(3, given=(0, 1, 2, 0)))
    (warning,) = paper.summary()["warnings"]
    assert "it begins after 70% of the steps" in warning
