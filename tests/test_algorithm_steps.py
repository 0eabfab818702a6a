"""One step of each baseline whose loss is a weighted sum of the terms it logs: the loss is that
sum, the logs name the terms, and the pseudo-labels and mask describe the unlabeled batch. Fast
enough for mutmut's test selection (tests/test_algorithms.py holds the slower contract tests)."""

import pytest
import torch
from algorithm_helpers import B_ULB, EXPECTED_LOGS, NUM_CLASSES, build, tiny_batch, tiny_model

from lionfer.algorithms import remixmatch
from lionfer.algorithms.base import Progress
from lionfer.algorithms.pseudolabel import unlabeled_weight


def one_step(name: str, step: int = 20):
    torch.manual_seed(0)
    model = tiny_model().train()
    algorithm = build(name, model)
    out = algorithm.step(model, tiny_batch(algorithm.views), Progress(step, 100))
    return algorithm, out


def value(logs, key) -> float:
    return float(logs[key])


@pytest.mark.parametrize("name", ["pseudolabel", "mixmatch", "marginmix"])
def test_the_loss_is_the_supervised_term_plus_the_weighted_unlabeled_one(name):
    algorithm, out = one_step(name)  # step 20 of 100: a fifth of the way up a whole-run ramp
    logs = out.logs
    assert {"loss_sup"} | EXPECTED_LOGS[name] <= set(logs)
    cfg = algorithm.cfg
    if name == "pseudolabel":  # 0 until ramp_start, then linear to lambda_u at ramp_end
        weight = unlabeled_weight(0.2, cfg.ramp_start, cfg.ramp_end, cfg.lambda_u)
    else:
        weight = cfg.lambda_u * Progress(20, 100).ramp(cfg.rampup)
    assert 0 < weight < cfg.lambda_u
    assert value(logs, "weight_unsup") == pytest.approx(weight)
    assert value(logs, "loss_unsup") != 0
    expected = value(logs, "loss_sup") + value(logs, "weight_unsup") * value(logs, "loss_unsup")
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


def test_remixmatch_adds_its_unmixed_and_rotation_terms():
    algorithm, out = one_step("remixmatch")
    cfg, logs = algorithm.cfg, out.logs
    assert {"loss_sup"} | EXPECTED_LOGS["remixmatch"] <= set(logs)
    ramp = Progress(20, 100).ramp(cfg.rampup)
    assert value(logs, "weight_unsup") == pytest.approx(cfg.lambda_u * ramp)
    expected = (
        value(logs, "loss_sup")
        + value(logs, "weight_unsup") * value(logs, "loss_unsup")
        + ramp * cfg.lambda_u1 * value(logs, "loss_u1")
        + cfg.lambda_rot * value(logs, "loss_rot")
    )
    assert all(value(logs, k) > 0 for k in ("loss_unsup", "loss_u1", "loss_rot"))
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["pseudolabel", "mixmatch", "marginmix", "remixmatch"])
def test_pseudo_labels_and_mask_describe_the_unlabeled_batch(name):
    _, out = one_step(name)
    assert out.pseudo_labels.shape == (B_ULB,) and out.pseudo_labels.dtype == torch.long
    assert 0 <= int(out.pseudo_labels.min()) and int(out.pseudo_labels.max()) < NUM_CLASSES
    assert out.mask.shape == (B_ULB,) and out.mask.dtype == torch.bool
    if name in ("mixmatch", "marginmix"):  # every guess is used, softly
        assert out.mask.all()


def test_remixmatch_mixes_every_strong_view_and_the_weak_one(monkeypatch):
    pools = []
    real = remixmatch.mix_pool

    def recorded(whole, targets, views, *args):
        pools.append(views)
        return real(whole, targets, views, *args)

    monkeypatch.setattr(remixmatch, "mix_pool", recorded)
    torch.manual_seed(0)
    model = tiny_model().train()
    algorithm = build("remixmatch", model)
    batch = tiny_batch(algorithm.views)
    algorithm.step(model, batch, Progress(20, 100))
    (views,) = pools
    expected = (*batch.x_ulb[1:], batch.x_ulb[0])
    assert len(views) == len(expected)
    assert all(torch.equal(v, x) for v, x in zip(views, expected, strict=True))
