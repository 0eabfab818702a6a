"""What noise errors suggest is itself accepted: an asymmetric map's example pairs classes that
have training labels, and "Use a rate below X" never prints an X above the true bound."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest

from lionfer.data.noise import FER_CONFUSIONS, check_noise_fits, check_rate
from lionfer.errors import ConfigError
from lionfer.labels import CLASS_NAMES

HAPPY_SAD_ANGRY = np.array([3, 4, 5, 3, 4, 5])  # a folder of happy, sad and angry faces


def examples(message: str) -> list[str]:
    """The example maps after "e.g." in a message."""
    return message.split("e.g. ")[-1].split(" or ")


@pytest.mark.parametrize(
    ("class_map", "names", "expected"),
    [
        (FER_CONFUSIONS, CLASS_NAMES, ['{"Sadness" = "Happiness"}', '{"4" = 3}']),  # → Neutral
        ({"9": 0}, CLASS_NAMES, ['{"Sadness" = "Happiness"}', '{"4" = 3}']),  # no class 9
        (FER_CONFUSIONS, (), ['{"4" = 3}']),  # no names: by id only
    ],
)
def test_the_example_map_pairs_classes_that_have_training_labels(class_map, names, expected):
    with pytest.raises(ConfigError) as refused:
        check_noise_fits("asymmetric", 0.3, class_map, HAPPY_SAD_ANGRY, 7, names)
    assert examples(str(refused.value)) == expected
    for example in expected:  # each suggested map is accepted
        source, target = (side.strip(' {}"') for side in example.split("="))
        check_noise_fits("asymmetric", 0.3, {source: target}, HAPPY_SAD_ANGRY, 7, names)


@pytest.mark.parametrize("num_present", range(2, 13))
def test_the_rate_bound_printed_is_not_above_the_true_one(num_present):
    bound = Fraction(num_present - 1, num_present)
    check_rate("symmetric", float(bound) - 1e-4, num_present)  # allowed: below the bound
    with pytest.raises(ConfigError) as refused:
        check_rate("symmetric", float(bound), num_present)
    printed = re.search(r"Use a rate below (.*)$", str(refused.value)).group(1)
    decimal = re.search(r"\d+\.\d+", printed).group()
    assert Fraction(decimal) <= bound and bound - Fraction(decimal) < Fraction(1, 1000)
    if Fraction(decimal) != bound:
        assert printed.startswith(f"{num_present - 1}/{num_present} ")


def test_a_rate_refused_on_3_classes_is_not_below_the_bound_printed():
    check_rate("symmetric", 0.6666, 3)
    with pytest.raises(ConfigError, match=r"rate=0.6667 .* Use a rate below 2/3 \(0\.666\.\.\.\)$"):
        check_rate("symmetric", 0.6667, 3)  # 0.6667 > 2/3: "below 0.667" had allowed it
