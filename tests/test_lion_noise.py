"""The noise check of LION's evidence rule (lion_noise.py): a fit of the given labels by the
evidence and a floor, and its likelihood-ratio z."""

import math

import pytest
import torch
from fakes import Passthrough
from test_lion_evidence import batch2, evidence_lion, heads_says_class_1, seen

from lionfer.algorithms.base import Progress
from lionfer.algorithms.hparams import lion_config
from lionfer.algorithms.lion_noise import (
    EVIDENCE_FLOOR,
    fixed_rate_fit,
    floor_log_likelihood,
    no_noise_read,
    noise_floor_fit,
)
from lionfer.algorithms.lion_report import noise_figures
from lionfer.errors import ConfigError


def test_floor_log_likelihood_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(2.0), 0.0]], dtype=torch.float64)
    labels = torch.tensor([1, 1])
    # T = 1: q = (1/4, 3/4) and (2/3, 1/3); ρ = 0.2 over C = 2: 0.8 q_y + 0.1
    expected = math.log(0.8 * 0.75 + 0.1) + math.log(0.8 / 3 + 0.1)
    got = floor_log_likelihood(
        logits, labels, torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.2)
    )
    assert float(got) == pytest.approx(expected)
    # T = 2 halves the logits: q_1 = sqrt(3) / (1 + sqrt(3)) and 1 / (sqrt(2) + 1); ρ = 0
    halved = math.log(math.sqrt(3) / (1 + math.sqrt(3))) + math.log(1 / (math.sqrt(2) + 1))
    got = floor_log_likelihood(
        logits, labels, torch.tensor(math.log(2.0), dtype=torch.float64), torch.tensor(0.0)
    )
    assert float(got) == pytest.approx(halved)


def sure_evidence(n: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, C) evidence for one class per image, from unsure (0.5 on it) to sure (0.999), the
    rest spread evenly, and that class. Labels drawn from it fall on another class at a rate
    that shrinks as the evidence grows sure, which a temperature fits and a floor does not."""
    generator = torch.Generator().manual_seed(seed)
    classes = torch.randint(num_classes, (n,), generator=generator)
    top = 0.5 + 0.499 * torch.rand(n, generator=generator)
    evidence = ((1 - top) / (num_classes - 1))[:, None].repeat(1, num_classes)
    evidence[torch.arange(n), classes] = top
    return evidence, classes


def slipped(labels: torch.Tensor, share: float, num_classes: int, seed: int) -> torch.Tensor:
    """labels with `share` of them moved to another class drawn uniformly."""
    generator = torch.Generator().manual_seed(seed)
    moved = torch.rand(len(labels), generator=generator) < share
    shift = torch.randint(1, num_classes, (len(labels),), generator=generator)
    return torch.where(moved, (labels + shift) % num_classes, labels)


def test_labels_the_evidence_always_names_look_nearly_right():
    evidence, truth = sure_evidence(2000, 7, seed=0)
    fit = noise_floor_fit(evidence, evidence.argmax(dim=1), 0.02)
    assert fit.rate < 1e-3 and fit.temperature < 0.5  # sharpened: no label goes elsewhere
    assert fit.clean_z > 5  # a floor of 2% would put 2000 · 2% · 6/7 labels elsewhere


def test_labels_drawn_from_the_evidence_fit_a_floor_near_0_on_average():
    """Labels as uncertain as the evidence says: what the floor takes is chance alone (its
    spread over draws reaches a few percent of 2,000 labels)."""
    rates, temperatures = [], []
    for seed in range(10):
        evidence, _ = sure_evidence(2000, 7, seed=seed)
        draw = torch.Generator().manual_seed(seed + 1)
        fit = noise_floor_fit(evidence, torch.multinomial(evidence, 1, generator=draw)[:, 0], 0.02)
        rates.append(fit.rate)
        temperatures.append(fit.temperature)
    assert sum(rates) / 10 < 0.01 and max(rates) < 0.05
    assert all(0.85 < t < 1.15 for t in temperatures)


def test_slips_on_images_the_evidence_is_sure_of_need_a_floor_at_their_rate():
    evidence, _ = sure_evidence(2000, 7, seed=0)
    truth = torch.multinomial(evidence, 1, generator=torch.Generator().manual_seed(1))[:, 0]
    labels = slipped(truth, 0.2, 7, seed=2)
    share = float((labels != truth).float().mean())
    fit = noise_floor_fit(evidence, labels, 0.02)
    # a floor ρ / C under every class puts ρ (C − 1) / C of the labels on a wrong class
    assert fit.rate * 6 / 7 == pytest.approx(share, abs=0.03)
    assert fit.clean_z == 0 and fit.temperature == pytest.approx(1.0, abs=0.2)
    assert noise_floor_fit(evidence, labels, 0.5).clean_z > 5  # far under half, though


def test_clean_z_is_the_signed_root_of_twice_the_log_likelihood_ratio():
    evidence, truth = sure_evidence(500, 4, seed=6)
    labels = slipped(truth, 0.01, 4, seed=7)
    fit = noise_floor_fit(evidence, labels, 0.1)
    logits = evidence.double().clamp_min(EVIDENCE_FLOOR).log()
    log_t = torch.tensor(math.log(fit.temperature), dtype=torch.float64)
    best = float(floor_log_likelihood(logits, labels, log_t, torch.tensor(fit.rate)))
    at_min, _ = fixed_rate_fit(logits, labels, 0.1)
    assert fit.rate < 0.1 and fit.clean_z == pytest.approx(math.sqrt(2 * (best - at_min)))
    # a rate just over the fitted one: a small z, still the root of the ratio
    near = fit.rate + 0.002
    close = noise_floor_fit(evidence, labels, near)
    at_near, _ = fixed_rate_fit(logits, labels, near)
    assert 0 < close.clean_z < math.sqrt(2)  # the log-likelihoods differ by under 1
    assert close.clean_z == pytest.approx(math.sqrt(2 * (best - at_near)), abs=1e-3)


def test_the_fit_is_the_same_whatever_the_dtype_or_device_of_its_inputs():
    evidence, truth = sure_evidence(200, 4, seed=3)
    labels = slipped(truth, 0.3, 4, seed=4)
    a = noise_floor_fit(evidence, labels, 0.5)
    b = noise_floor_fit(evidence.half().float(), labels.int(), 0.5)
    assert a.clean_z > 1 and a.clean_z == pytest.approx(b.clean_z, abs=1e-2)
    assert a.rate == pytest.approx(b.rate, abs=1e-3)


def test_evidence_of_zero_for_the_given_label_stays_finite():
    evidence, truth = sure_evidence(300, 3, seed=5)
    evidence[:, 0] = torch.where(truth == 0, evidence[:, 0], 0.0)  # nothing for class 0 ...
    labels = torch.where(torch.arange(300) < 30, 0, truth)  # ... where some images are labeled 0
    fit = noise_floor_fit(evidence, labels, 0.02)
    assert fit.rate > 0.05 and fit.clean_z == 0 and math.isfinite(fit.temperature)
    assert math.isfinite(noise_floor_fit(evidence, labels, 0.9).clean_z)


def test_no_read_is_step_minus_1_and_minus_inf():
    read = no_noise_read()
    assert read[0] == -1 and torch.isinf(read[1:]).all() and (read[1:] < 0).all()


# ---- the check in the evidence rule ----


def check_lion(noise_min: float, **fields):
    """200 images, labels 0, 1, 0, 1, ... on evidence for their label from unsure (0.6) to sure
    (0.99), but image 0: labeled 0 where the evidence is 0.95 for class 1, and every head sure of
    class 1, so that a decision on it relabels it. One confident slip in 200: ρ about 0.01."""
    labels = [i % 2 for i in range(200)]
    evidence = []
    for i, label in enumerate(labels):
        top = 0.6 + 0.39 * i / 199
        evidence.append([top, 1 - top] if label == 0 else [1 - top, top])
    evidence[0] = [0.05, 0.95]
    lion = evidence_lion(labels, min_visits=1, noise_min=noise_min, **fields)
    seen(lion, evidence)
    heads_says_class_1(lion)
    return lion


def visit_0(lion, step: int, total: int = 1000) -> None:
    lion.step(Passthrough(2), batch2([[0.5, 0.5]], [0], [0]), Progress(step, total))


@pytest.mark.parametrize(
    "noise_min, holds, label",
    [(0.2, True, 0), (0.005, False, 1), (0.0, False, 1)],
)
def test_labels_that_look_nearly_right_hold_decisions_back(noise_min, holds, label):
    lion = check_lion(noise_min)
    visit_0(lion, 0)
    assert int(lion.label[0]) == label
    if noise_min == 0:  # no check: no read
        assert lion.noise_reads.tolist() == [0, 0] and int(lion.noise_read[0]) == -1
        return
    assert lion.noise_reads.tolist() == [1, int(holds)]
    step, z, rate, temperature = lion.noise_read.tolist()
    assert step == 0 and 0.003 < rate < 0.03 and temperature > 0
    assert (z > 1.645) is holds and (z == 0) is (rate >= noise_min)


def test_a_read_at_exactly_noise_z_lets_decisions_go_on():
    probe = check_lion(0.2)
    visit_0(probe, 0)
    z = float(probe.noise_read[1])
    lion = check_lion(0.2, noise_z=z)
    visit_0(lion, 0)
    assert float(lion.noise_read[1]) == z and lion.noise_reads.tolist() == [1, 0]
    assert int(lion.label[0]) == 1


def test_the_check_is_read_every_hundredth_of_the_steps_and_holds_until_the_next_read():
    lion = check_lion(0.2)
    visit_0(lion, 0)
    assert lion.noise_reads.tolist() == [1, 1]
    lion.noise_read[1] = 0.0  # as if that read had let decisions go on: the step reads the flag
    lion._mirror_noise()
    visit_0(lion, 9)  # no read before step 10 (1% of 1,000): decisions go on, as last read
    assert lion.noise_reads.tolist() == [1, 1] and int(lion.label[0]) == 1
    lion.label[0] = 0
    visit_0(lion, 10)  # read again: held back
    assert lion.noise_reads.tolist() == [2, 2] and int(lion.label[0]) == 0
    assert int(lion.noise_read[0]) == 10


def test_the_check_fits_the_images_visited_alone():
    """An image not yet visited has no evidence of its own (its row is as first set), so the fit
    leaves it out: here the unvisited half would look like confident slips and let decisions
    go on."""
    lion = check_lion(0.2)
    lion.evidence_visits[100:] = 0
    lion.evidence[100::2] = torch.tensor([0.01, 0.99])  # labeled 0 (i % 2), sure of 1
    lion.evidence[101::2] = torch.tensor([0.99, 0.01])  # labeled 1, sure of 0
    visit_0(lion, 0)
    assert lion.noise_reads.tolist() == [1, 1]
    given = lion.info.given_labels
    fit = noise_floor_fit(lion.evidence[:100], given[:100], 0.2)
    assert float(lion.noise_read[2]) == pytest.approx(fit.rate, abs=1e-9)
    # a fit of every row would have let decisions go on
    assert noise_floor_fit(lion.evidence, given, 0.2).clean_z < 1.645


def test_the_check_is_read_only_once_the_audit_lets_decisions_go_on():
    lion = check_lion(0.2, evidence_start=0.5)
    visit_0(lion, 499)
    assert lion.noise_reads.tolist() == [0, 0]
    visit_0(lion, 500)
    assert lion.noise_reads.tolist() == [1, 1]
    visit_0(lion, 509)  # 9 steps after the first read: not read again
    assert lion.noise_reads.tolist() == [1, 1]
    visit_0(lion, 510)
    assert lion.noise_reads.tolist() == [2, 2]


def test_in_a_run_of_100_steps_the_check_is_read_every_step():
    lion = check_lion(0.2)
    visit_0(lion, 0, total=100)
    visit_0(lion, 1, total=100)
    assert lion.noise_reads.tolist() == [2, 2] and int(lion.noise_read[0]) == 1


def test_the_checks_figures_are_its_state_as_saved():
    state = {
        "noise_read": torch.tensor([594.0, 1.5, 0.01, 0.4]),
        "noise_reads": torch.tensor([10, 3]),
    }
    figures = noise_figures(state, 0.02, 1.5)
    assert figures == {
        "reads": 10,
        "held": 3,
        "noise_min": 0.02,
        "threshold": 1.5,
        "read_step": 594,
        "z": 1.5,
        "rate": pytest.approx(0.01),
        "temperature": pytest.approx(0.4),
        "holds": False,  # a z at the threshold, as stored, lets decisions go on
    }


def test_the_check_reads_given_labels_not_those_decisions_made():
    lion = check_lion(0.2)
    lion.label[:] = lion.evidence.argmax(dim=1)  # as if every slip had been relabeled
    visit_0(lion, 0)
    assert lion.noise_reads.tolist() == [1, 1]
    assert float(lion.noise_read[2]) > 0.003  # image 0's given label is still a slip


def test_a_saved_check_loads_as_saved_and_a_state_from_before_it_decides_without_one():
    lion = check_lion(0.2)
    visit_0(lion, 0)
    saved = {k: v.clone() for k, v in lion.state_dict().items()}
    fresh = check_lion(0.2)
    fresh.load_state_dict(saved)
    assert fresh.noise_reads.tolist() == [1, 1]
    assert fresh.noise_read.tolist() == saved["noise_read"].tolist()
    visit_0(fresh, 5)  # held back by the saved read, not read again
    assert int(fresh.label[0]) == 0 and fresh.noise_reads.tolist() == [1, 1]
    older = check_lion(0.2)
    older.load_state_dict({k: v for k, v in saved.items() if not k.startswith("noise")})
    assert older.noise_reads.tolist() == [-1, 0]
    visit_0(older, 5)
    assert int(older.label[0]) == 1 and older.noise_reads.tolist() == [-1, 0]


@pytest.mark.parametrize(
    "setting, value", [("noise_min", -0.1), ("noise_min", 1.0), ("noise_z", -1.0)]
)
def test_noise_settings_out_of_range_are_errors(setting, value):
    with pytest.raises(ConfigError, match=f"algorithm.{setting}"):
        lion_config("evidence", **{setting: value})
