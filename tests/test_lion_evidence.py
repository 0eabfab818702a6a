"""LION's evidence rule (recipe `evidence`): its pure pieces against hand-computed numbers, and
the step's bookkeeping (out-of-fold heads, verdicts held for min_visits, demoted images)."""

import math

import pytest
import torch
from fakes import Passthrough
from test_lion import labeled_batch, make_lion

from lionfer.algorithms.base import AlgorithmInfo, Progress
from lionfer.algorithms.hparams import lion_config
from lionfer.algorithms.lion import (
    DEMOTE,
    KEEP,
    CrossFitHeads,
    Lion,
    class_thresholds,
    elr_loss,
    evidence_verdict,
    stratified_folds,
    streak_update,
)
from lionfer.algorithms.lion_audit import audit_counts, audit_rows, no_trail, shuffled_by_class
from lionfer.algorithms.lion_config import LION_RECIPES, unread_settings
from lionfer.algorithms.lion_evidence_rules import (
    calibrated_evidence,
    cross_fit_loss,
    heads_trained,
    nearest_prototype_agrees,
    soft_target_loss,
    training_heads,
    within_known_classes,
)
from lionfer.errors import ConfigError
from lionfer.metrics import excess_agreement_z
from lionfer.training import train


def T(x):
    return torch.tensor(x)


def test_elr_loss_is_log_of_one_minus_agreement_over_masked_rows():
    logits = torch.log(T([[0.5, 0.5], [0.9, 0.1]]))
    targets = T([[1.0, 0.0], [0.0, 1.0]])
    # row 0: log(1 − 0.5); row 1: log(1 − 0.1)
    both = elr_loss(logits, targets, T([True, True]))
    assert both.item() == pytest.approx((math.log(0.5) + math.log(0.9)) / 2, rel=1e-5)
    assert elr_loss(logits, targets, T([False, True])).item() == pytest.approx(math.log(0.9))


def test_elr_gradient_pulls_p_toward_its_target():
    logits = torch.zeros(1, 2, requires_grad=True)
    elr_loss(logits, T([[1.0, 0.0]]), T([True])).backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # descent raises p_0


def test_soft_elr_is_the_cross_entropy_toward_its_target_over_masked_rows():
    logits = torch.log(T([[0.5, 0.5], [0.8, 0.2]]))
    targets = T([[1.0, 0.0], [0.25, 0.75]])
    # row 0: −log 0.5; row 1: −(0.25 log 0.8 + 0.75 log 0.2)
    row1 = -(0.25 * math.log(0.8) + 0.75 * math.log(0.2))
    both = soft_target_loss(logits, targets, T([True, True]))
    assert both.item() == pytest.approx((-math.log(0.5) + row1) / 2, rel=1e-5)
    assert soft_target_loss(logits, targets, T([False, True])).item() == pytest.approx(row1)


def test_soft_elr_beside_the_label_trains_p_to_the_mixture_of_label_and_target():
    """CE on label 0 plus 3 × the soft term toward t: the minimum is p = (y + 3t) / 4. It keeps
    class 0 for t = (0.31, 0.45, 0.24) (0.4825 against 0.3375) and gives it up for
    t = (0.1, 0.8, 0.1) (0.325 against 0.6)."""
    for t, keeps in (([0.31, 0.45, 0.24], True), ([0.1, 0.8, 0.1], False)):
        target = T([t])
        logits = torch.zeros(1, 3, requires_grad=True)
        opt = torch.optim.SGD([logits], lr=0.5)
        for _ in range(2000):
            opt.zero_grad()
            ce = torch.nn.functional.cross_entropy(logits, T([0]))
            (ce + 3 * soft_target_loss(logits, target, T([True]))).backward()
            opt.step()
        probs = logits.detach().softmax(dim=1)[0]
        expected = (torch.nn.functional.one_hot(T(0), 3) + 3 * target[0]) / 4
        assert torch.allclose(probs, expected, atol=1e-3)
        assert (probs.argmax().item() == 0) == keeps


def test_stratified_folds_deal_each_class_over_every_fold():
    labels = T([0, 1, 0, 1, 0, 1, 0, 1, 2, 2])
    folds = stratified_folds(labels, 2)
    for c in (0, 1):
        assert sorted(folds[labels == c].tolist()) == [0, 0, 1, 1]
    assert sorted(folds[labels == 2].tolist()) == [0, 1]
    assert torch.equal(folds, stratified_folds(labels, 2))  # seeded


def test_shuffled_by_class_keeps_the_seeded_order_within_each_class():
    # 300 images: enough for torch's default (unstable) sort to reorder ties, which would make
    # the folds and the audit depend on the sort's implementation rather than on the seed
    labels = torch.arange(300) % 7
    order = torch.randperm(300, generator=torch.Generator().manual_seed(3))
    expected = [i for c in range(7) for i in order.tolist() if labels[i] == c]
    assert shuffled_by_class(labels, 3).tolist() == expected


def test_stratified_folds_default_to_seed_0_which_every_published_table_used():
    labels = torch.arange(40) % 4
    assert torch.equal(stratified_folds(labels, 5), stratified_folds(labels, 5, seed=0))
    assert not torch.equal(stratified_folds(labels, 5), stratified_folds(labels, 5, seed=1))


def test_class_thresholds_average_own_class_evidence_over_active_images():
    evidence = T([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9], [0.0, 1.0]])
    labels = T([0, 0, 1, 1])
    thresholds = class_thresholds(evidence, labels, T([True, True, True, False]))
    assert thresholds.tolist() == pytest.approx([0.7, 0.9])
    # a class with no active image: 1/C
    none = class_thresholds(evidence, labels, T([True, True, False, False]))
    assert none.tolist() == pytest.approx([0.7, 0.5])


def test_verdict_relabels_demotes_or_keeps():
    thresholds = T([0.6, 0.6, 0.6])
    evidence = T(
        [
            [0.2, 0.7, 0.1],  # label 0: 0.2 < 0.5·0.6 and class 1 at 0.7 ≥ 0.6 → relabel to 1
            [0.25, 0.4, 0.35],  # label 0: against, but no class reaches its threshold → demote
            [0.35, 0.6, 0.05],  # label 0: 0.35 ≥ 0.3, not against → keep
            [0.3, 0.6, 0.1],  # label 0: exactly 0.5·t is not against → keep
            [0.2, 0.6, 0.2],  # label 0: against, and class 1 exactly at its threshold → relabel
        ]
    )
    verdict = evidence_verdict(evidence, T([0, 0, 0, 0, 0]), thresholds, 0.5, 1.0)
    assert verdict.tolist() == [1, DEMOTE, KEEP, KEEP, 1]


def test_a_relabel_needs_its_class_margin_times_every_other_but_the_label():
    thresholds = T([0.5, 0.3, 0.3, 0.3])
    evidence = T(
        [
            [0.05, 0.5, 0.3, 0.15],  # label 0 against; class 1 is 0.5 < 2 · 0.3: split → demote
            [0.05, 0.6, 0.3, 0.05],  # class 1 exactly twice the runner-up → relabel to 1
            [0.2, 0.6, 0.1, 0.1],  # the label's own 0.2 is no runner-up → relabel to 1
        ]
    )
    labels = T([0, 0, 0])
    assert evidence_verdict(evidence, labels, thresholds, 0.5, 2.0).tolist() == [DEMOTE, 1, 1]
    # margin 1 is the best other class alone
    assert evidence_verdict(evidence, labels, thresholds, 0.5, 1.0).tolist() == [1, 1, 1]


def test_a_relabel_margin_with_two_classes_has_no_runner_up():
    verdict = evidence_verdict(T([[0.1, 0.9]]), T([0]), T([0.6, 0.6]), 0.5, 3.0)
    assert verdict.tolist() == [1]


def test_streak_counts_repeated_verdicts():
    streak = streak_update(T([3, 3, 0]), T([1, DEMOTE, KEEP]), T([1, 2, KEEP]))
    assert streak.tolist() == [4, 1, 1]


def test_heads_train_outside_their_fold_and_judge_inside_it():
    heads = CrossFitHeads(folds=2, num_classes=3, feature_dim=2, scale=10.0)
    lion = evidence_lion([0, 1], heads=heads, num_classes=3)
    lion.fold[:] = T([0, 1])
    batch = labeled_batch([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3]], [0, 1], [0, 1])
    out = lion.step(Passthrough(3), batch, Progress(0, 10))
    out.loss.backward()
    # head 0 saw only row 1 (label 1), head 1 only row 0: each row's evidence is the other head's
    logits = heads(T([[1.0, 0.0], [1.0, 0.0]])).detach()
    expected = torch.stack([logits[0, 0], logits[1, 1]]).softmax(dim=1)
    assert torch.allclose(lion.evidence, expected)
    assert heads.weight.grad[0, 1].abs().sum() > 0 and heads.weight.grad[1, 0].abs().sum() > 0
    assert lion.evidence_visits.tolist() == [1, 1]


def test_verdict_is_carried_out_after_min_visits_in_a_row():
    lion = evidence_lion([0, 0, 1, 1], min_visits=2)
    seen(lion, LOOKS_LIKE_1)
    heads_says_class_1(lion)
    batch = batch2([[0.5, 0.5]], [0], [0])
    lion.step(Passthrough(2), batch, Progress(5, 10))
    assert lion.label.tolist() == [0, 0, 1, 1] and lion.streak[0] == 1
    lion.step(Passthrough(2), batch, Progress(6, 10))
    assert lion.label.tolist() == [1, 0, 1, 1] and lion.relabel_step[0] == 6
    assert not lion.demoted.any()


def test_demoted_image_gets_no_supervised_loss_and_is_restored_when_evidence_agrees():
    lion = evidence_lion(
        [0, 0, 1, 1],
        min_visits=1,
        lambda_elr=0.0,
        evidence_scale=1.0,
        use_negative_learning=False,
    )
    seen(lion, UNDECIDED)
    identity_heads(lion)
    # the heads give (0.25, 0.75). Thresholds (0.575, 0.85): image 0 has 0.25 < 0.5 · 0.575,
    # and class 1 at 0.75 < 0.85 → demote
    x = AGAINST_0
    lion.step(Passthrough(2), batch2([[0.6, 0.4]], [0], [0], feats=x), Progress(5, 10))
    assert lion.evidence[0].tolist() == pytest.approx([0.25, 0.75], abs=1e-3)
    assert lion.demoted.tolist() == [True, False, False, False]
    out = lion.step(Passthrough(2), batch2([[0.6, 0.4]], [0], [0], feats=x), Progress(6, 10))
    assert lion.demoted[0]
    assert out.logs["loss_sup"].item() == 0.0
    # its head now gives (0.73, 0.27): not against label 0, so restored with its label
    lion.step(Passthrough(2), batch2([[0.6, 0.4]], [0], [0], feats=[[1.0, 0.0]]), Progress(7, 10))
    assert not lion.demoted.any() and lion.label.tolist() == [0, 0, 1, 1]


def test_evidence_state_is_saved_and_heads_are_the_algorithms_module():
    lion = evidence_lion([0, 1])
    state = lion.state_dict()
    names = ("evidence", "demoted", "fold", "streak", "verdict", "bank_lb", "elr_target")
    for name in names + ("label", "prototypes", "bank", "relabel_step"):  # LION's own too
        assert name in state
    assert lion.modules() is lion.heads
    paper = make_lion([0, 1], recipe="paper")
    assert paper.modules() is None and "evidence" not in paper.state_dict()


def test_unknown_protected_class_is_an_error_naming_the_classes():
    with pytest.raises(
        ConfigError, match="names 'netural', 'joy', .* are Surprise, Fear, Neutral$"
    ):
        make_lion(
            [0], names=("Surprise", "Fear", "Neutral"), protected_classes=("netural", "fear", "joy")
        )


def test_released_recipes_own_neutral_is_skipped_where_the_dataset_has_none():
    digits = tuple(str(c) for c in range(3))
    lion = make_lion([0], recipe="released", names=digits)
    assert not lion.protected.any()
    faces = make_lion([0], recipe="released", names=("Surprise", "Fear", "Neutral"))
    assert faces.protected.tolist() == [False, False, True]


def test_weight_init_under_mean_update_is_an_error():
    with pytest.raises(ConfigError, match="weight_init"):
        lion_config("robust", weight_init="uniform")


def test_the_other_rules_settings_moved_from_the_recipe_are_named():
    # each recipe as it comes sets nothing it does not read
    assert all(unread_settings(lion_config(recipe)) == [] for recipe in LION_RECIPES)
    # deciding by prototypes, the evidence rule's settings
    assert unread_settings(lion_config("robust", lambda_elr=3.0, relabel_margin=2.0)) == [
        "relabel_margin",
        "lambda_elr",
    ]
    assert unread_settings(lion_config("paper", lambda_elr=0.0)) == []  # its own value
    # deciding from evidence, the prototypes' rule's: τ (Eq. 1) and Eq. 6's thresholds
    moved = lion_config(clear_threshold=0.9, relabel_threshold=0.85, lambda_elr=1.0)
    assert unread_settings(moved) == ["clear_threshold", "relabel_threshold"]
    # the settings both rules read are never named
    assert unread_settings(lion_config(min_visits=2, protected_classes=("neutral",))) == []
    assert unread_settings(lion_config("robust", min_visits=2, ema_momentum=0.9)) == []
    # a recipe decided by the other rule: its own values are not the user's
    assert unread_settings(lion_config("evidence", disambiguation="prototypes")) == []
    assert unread_settings(lion_config("robust", disambiguation="evidence")) == []
    moved = lion_config("evidence", disambiguation="prototypes", elr_target="own")
    assert unread_settings(moved) == ["elr_target"]
    moved = lion_config("robust", disambiguation="evidence", lambda_elr=1.0, min_visits=1)
    assert unread_settings(moved) == []


def test_a_run_that_would_ignore_the_other_rules_settings_does_not_start(tiny_cfg, tmp_path):
    cfg = tiny_cfg("algorithm.recipe=robust", "algorithm.lambda_elr=0")
    assert cfg.algorithm.lambda_elr == 0  # robust's own value: nothing moved, the run starts
    cfg = tiny_cfg("algorithm.recipe=robust", "algorithm.lambda_elr=1", "algorithm.audit_z=2")
    problem = "algorithm.audit_z, algorithm.lambda_elr are read only by the evidence rule"
    with pytest.raises(ConfigError, match=problem):
        train(cfg, tmp_path / "run", progress=False)
    cfg = tiny_cfg("algorithm.clear_threshold=0.9")  # τ on the default recipe
    problem = (
        "algorithm.clear_threshold is read only by the prototypes' rule .* train with "
        "algorithm.recipe=paper, released or robust"
    )
    with pytest.raises(ConfigError, match=problem):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_config_written_for_one_recipe_run_with_another_says_so(tmp_path, capsys):
    from lionfer.cli import main

    assert main(["config", "show"]) == 0  # every setting of the default recipe, pinned
    (tmp_path / "cfg.toml").write_text(capsys.readouterr().out)
    code = main(["train", str(tmp_path / "cfg.toml"), "algorithm.recipe=paper", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "this run decides from evidence (algorithm.disambiguation=evidence)" in err
    assert "while algorithm.recipe=paper decides by prototypes" in err
    assert "lionfer config show algorithm.recipe=paper > FILE" in err


UNLABELED_2 = ([[0.6, 0.4]], [[0.6, 0.4]], [[0.0, 1.0]])  # one unreliable image, 2 classes


def batch2(probs, labels, idx, feats=None):
    return labeled_batch(probs, labels, idx, feats=feats, unlabeled=UNLABELED_2)


def unit(rows):
    return [[v / math.hypot(*row) for v in row] for row in rows]


def heads_says_class_1(lion):
    """Every head maps every feature to class 1 with certainty (cosine logits ×10 → p ≈ 1)."""
    lion.heads.weight.data[:] = T([[[0.0, -1.0], [1.0, 0.0]]] * lion.cfg.folds)


def identity_heads(lion):
    """Every head's class c points along axis c; with evidence_scale 1 the feature AGAINST_0
    (cos = (−0.104, 0.995)) gets softmax(cos) = (0.25, 0.75)."""
    lion.heads.weight.data[:] = T([[[1.0, 0.0], [0.0, 1.0]]] * lion.cfg.folds)


AGAINST_0 = [[-0.104, 0.9946]]

# The running evidence of four images labeled 0, 0, 1, 1, images 1-3 agreeing with their
# labels: image 0 looks like class 1, or is undecided.
LOOKS_LIKE_1 = [[0.05, 0.95], [0.9, 0.1], [0.1, 0.9], [0.2, 0.8]]
UNDECIDED = [[0.5, 0.5], [0.9, 0.1], [0.1, 0.9], [0.2, 0.8]]


def seen(lion, evidence):
    """Every image visited once before, with this running evidence."""
    lion.evidence_visits[:] = 1
    lion.evidence[:] = T(evidence)


def evidence_lion(given, heads=None, num_classes=2, names=(), **fields):
    """The evidence recipe; without its prototype check unless asked (that check has its own
    tests below), so that each rule's test reads that rule alone."""
    fields = {
        "evidence_agreement": "none",
        "evidence_momentum": 0.0,
        "evidence_start": 0.0,
        "folds": 2,
        "use_negative_consistency": False,
        "evidence_audit": 0.0,  # the audit has its own tests below
        **fields,
    }
    cfg = lion_config("evidence", **fields)
    info = AlgorithmInfo(num_classes, len(given), 1, 2, T(given), tuple(names))
    lion = Lion(cfg, info)
    if heads is not None:
        lion.heads = heads
    return lion


@pytest.mark.parametrize("margin, verdict", [(1.0, 1), (2.0, DEMOTE)])
def test_the_configured_relabel_margin_decides_a_split_between_two_classes(margin, verdict):
    # image 0, labeled 0, is against its label (0.05) and for class 1 (0.55 ≥ t_1 = 0.475),
    # with 0.4 for class 2: under twice. evidence_momentum 1: the evidence stays as set.
    given = [0, 0, 1, 1, 2, 2]
    lion = evidence_lion(
        given, num_classes=3, min_visits=1, evidence_momentum=1.0, relabel_margin=margin
    )
    others = [[0.8, 0.1, 0.1], [0.3, 0.45, 0.25], [0.25, 0.5, 0.25], [0.1, 0.1, 0.8]]
    seen(lion, [[0.05, 0.55, 0.4], *others, [0.1, 0.1, 0.8]])
    batch = labeled_batch([[0.4, 0.3, 0.3]] * 6, given, list(range(6)))
    lion.step(Passthrough(3), batch, Progress(5, 10))
    assert lion.verdict[0] == verdict
    assert lion.label[0] == max(verdict, 0) and bool(lion.demoted[0]) == (verdict == DEMOTE)


def test_in_sample_ablation_reads_a_head_that_trained_on_the_image():
    heads = CrossFitHeads(folds=2, num_classes=3, feature_dim=2, scale=10.0)
    lion = evidence_lion([0, 1], heads=heads, num_classes=3, evidence_heads="in_sample")
    lion.fold[:] = T([0, 1])
    batch = labeled_batch([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3]], [0, 1], [0, 1])
    logits = heads(T([[1.0, 0.0], [1.0, 0.0]])).detach()
    lion.step(Passthrough(3), batch, Progress(0, 10))
    expected = torch.stack([logits[0, 1], logits[1, 0]]).softmax(dim=1)  # the other fold's head
    assert torch.allclose(lion.evidence, expected)


def test_without_demotion_evidence_for_no_class_keeps_the_label():
    lion = evidence_lion([0, 0, 1, 1], min_visits=1, evidence_scale=1.0, demote=False)
    seen(lion, UNDECIDED)
    identity_heads(lion)
    lion.step(
        Passthrough(2), batch2([[0.6, 0.4]], [0], [0], feats=AGAINST_0), Progress(5, 10)
    )  # the same evidence that demotes it above
    assert not lion.demoted.any() and lion.verdict[0] == KEEP


def test_evidence_and_elr_targets_are_running_averages_over_visits():
    heads = CrossFitHeads(folds=2, num_classes=3, feature_dim=2, scale=10.0)
    lion = evidence_lion(
        [0],
        heads=heads,
        num_classes=3,
        evidence_momentum=0.5,
        elr_momentum=0.25,
        evidence_start=1.0,  # no decisions: the running averages alone
    )
    oof = heads(T([[1.0, 0.0]])).detach()[0, lion.fold[0]].softmax(dim=0)
    p1, p2 = [0.5, 0.3, 0.2], [0.2, 0.5, 0.3]
    lion.step(Passthrough(3), labeled_batch([p1], [0], [0]), Progress(0, 10))
    assert torch.allclose(lion.evidence[0], oof) and torch.allclose(lion.elr_target[0], T(p1))
    lion.evidence[0] = T([0.2, 0.2, 0.6])
    lion.step(Passthrough(3), labeled_batch([p2], [0], [0]), Progress(1, 10))
    assert torch.allclose(lion.evidence[0], 0.5 * T([0.2, 0.2, 0.6]) + 0.5 * oof)
    assert torch.allclose(lion.elr_target[0], 0.25 * T(p1) + 0.75 * T(p2))
    assert lion.evidence_visits.tolist() == [2]


def test_calibrated_elr_targets_read_the_evidence_against_the_class_thresholds():
    evidence = T([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    thresholds = T([0.5, 0.25, 0.8])
    # (1, 1.2, 0.25) / 2.45 and (0.2, 0.4, 1) / 1.6
    expected = T([[1 / 2.45, 1.2 / 2.45, 0.25 / 2.45], [0.125, 0.25, 0.625]])
    assert torch.allclose(calibrated_evidence(None, evidence, thresholds), expected)
    # equal thresholds leave the evidence as it is
    same = calibrated_evidence(None, evidence, T([0.4, 0.4, 0.4]))
    assert torch.allclose(same, evidence)


def elr_on_a_first_visit(**settings):
    """ELR's logged term and the Lion that gave it, for one image (label 0) on its first visit:
    its own target is its p = (0.6, 0.4); its head (identity weights, scale 1) predicts
    softmax(cos) = (0.25, 0.75) for the feature below. That head trains on images of both
    classes (2 and 3, in the other fold)."""
    lion = evidence_lion(
        [0, 1, 0, 1],
        lambda_elr=1.0,
        evidence_scale=1.0,
        evidence_start=1.0,  # no decisions
        use_negative_learning=False,
        **settings,
    )
    identity_heads(lion)
    lion.fold[:] = T([0, 0, 1, 1])
    batch = batch2([[0.6, 0.4]], [0], [0], feats=AGAINST_0)
    return lion.step(Passthrough(2), batch, Progress(1, 10)).logs["loss_elr"].item(), lion


def test_elr_pulls_toward_its_own_early_predictions_or_the_out_of_fold_evidence():
    losses = {
        target: elr_on_a_first_visit(elr_target=target)[0]
        for target in ("own", "evidence", "calibrated")
    }
    assert losses["own"] == pytest.approx(math.log(1 - (0.36 + 0.16)), rel=1e-4)
    assert losses["evidence"] == pytest.approx(math.log(1 - (0.6 * 0.25 + 0.4 * 0.75)), abs=2e-3)
    # calibrated: the one image visited sets class 0's threshold to its own e_0 = 0.25; class 1,
    # with no image visited, has 1/C = 0.5; (0.25 / 0.25, 0.75 / 0.5) = (1, 1.5) → (0.4, 0.6)
    assert losses["calibrated"] == pytest.approx(math.log(1 - (0.6 * 0.4 + 0.4 * 0.6)), abs=2e-3)
    # elr_form=soft: the cross-entropy toward the same evidence, −(0.25 log 0.6 + 0.75 log 0.4)
    soft, _ = elr_on_a_first_visit(elr_form="soft")
    assert soft == pytest.approx(-(0.25 * math.log(0.6) + 0.75 * math.log(0.4)), abs=2e-3)
    # the recipe, told nothing, pulls toward the evidence with ELR's own term
    loss, lion = elr_on_a_first_visit()
    assert (lion.cfg.elr_target, lion.cfg.elr_form) == ("evidence", "log")
    assert loss == pytest.approx(losses["evidence"])


@pytest.mark.parametrize(
    "protected, labels", [((), [1, 0, 0, 1]), (("b",), [0, 0, 1, 1]), (("a",), [0, 0, 1, 1])]
)
def test_evidence_never_relabels_to_or_from_a_protected_class(protected, labels):
    lion = evidence_lion([0, 0, 1, 1], names=("A", "B"), min_visits=1, protected_classes=protected)
    lion.fold[:] = T([0, 1, 0, 1])  # the heads judging images 0 and 2 train on 1 (A) and 3 (B)
    seen(lion, [[0.05, 0.95], [0.9, 0.1], [0.95, 0.05], [0.2, 0.8]])
    heads_says_class_1(lion)  # image 0 (label 0) looks like class 1: a relabel to B
    lion.step(Passthrough(2), batch2([[0.5, 0.5]], [0], [0]), Progress(5, 10))
    lion.heads.weight.data[:] = T([[[1.0, 0.0], [0.0, -1.0]]] * 2)  # now every image looks like A
    lion.step(Passthrough(2), batch2([[0.5, 0.5]], [1], [2]), Progress(6, 10))  # image 2: from B
    assert lion.label.tolist() == labels and not lion.demoted.any()


def test_heads_trained_counts_each_heads_images_by_class_outside_its_fold():
    folds, labels = T([0, 1, 2, 0, 1, 2]), T([0, 0, 0, 1, 1, 2])
    trains = T([True, True, False, True, True, True])  # image 2 set aside
    # per fold: 0 holds classes 0, 1; 1 holds 0, 1; 2 holds 2 (image 2 does not train)
    counts = heads_trained(folds, labels, trains, num_heads=3, num_classes=3)
    assert counts.tolist() == [[1, 1, 1], [1, 1, 1], [2, 2, 0]]


def test_a_head_judges_only_within_the_classes_it_trains_on():
    verdict = T([1, 0, DEMOTE, KEEP, 1])
    labels = T([0, 1, 0, 0, 0])
    known = T(
        [
            [True, True],  # knows both: relabel to 1 stands
            [False, True],  # a relabel to a class it never trained on: a demotion
            [False, True],  # knows nothing of the label: no verdict, not even a demotion
            [True, True],
            [True, False],  # relabel to 1, which it does not know: a demotion
        ]
    )
    assert within_known_classes(verdict, labels, known).tolist() == [1, DEMOTE, KEEP, KEEP, DEMOTE]


def test_an_image_whose_head_never_saw_its_class_keeps_its_label_and_elr_pulls_to_its_own_p():
    """One image a class: image 0's head trains on image 1 alone (class 1), so its certainty for
    class 1 is no evidence against label 0."""
    lion = evidence_lion(
        [0, 1], min_visits=1, lambda_elr=1.0, evidence_scale=1.0, use_negative_learning=False
    )
    identity_heads(lion)
    batch = batch2([[0.6, 0.4]], [0], [0], feats=AGAINST_0)
    out = lion.step(Passthrough(2), batch, Progress(5, 10))
    assert lion.label.tolist() == [0, 1] and not lion.demoted.any()
    assert lion.verdict.tolist() == [KEEP, KEEP]
    # ELR toward its own p (0.6, 0.4), not toward the evidence (0.25, 0.75)
    assert out.logs["loss_elr"].item() == pytest.approx(math.log(1 - (0.36 + 0.16)), rel=1e-4)


def test_a_demoted_image_whose_head_never_saw_its_class_stays_demoted():
    lion = evidence_lion([0, 1], min_visits=1, use_negative_learning=False)
    identity_heads(lion)
    lion.demoted[0] = True  # demoted while its class had other images, say
    lion.step(Passthrough(2), batch2([[0.6, 0.4]], [0], [0], feats=AGAINST_0), Progress(5, 10))
    assert lion.demoted.tolist() == [True, False] and lion.label.tolist() == [0, 1]


def test_the_evidence_rules_labeled_loss_weighs_each_term_once():
    """L = λ_s L_S + λ_ELR ELR + the demoted rows' λ_Re CE + the heads' CE + λ_Re L_Re (no
    negative learning): image 0 is demoted and confident (0.97 ≥ γ), image 1 is kept."""
    lion = evidence_lion(
        [0, 0, 1, 1],
        lambda_supervised=2.0,
        lambda_elr=3.0,
        lambda_reliable=0.5,
        evidence_start=1.0,  # no decisions: image 0 stays demoted
        use_negative_learning=False,
    )
    lion.demoted[0] = True
    # features (0, 1): the heads' random start calls them class 1, so their CE is not ~0
    batch = batch2([[0.97, 0.03], [0.6, 0.4]], [0, 0], [0, 1], feats=[[0.0, 1.0]] * 2)
    out = lion.step(Passthrough(2), batch, Progress(1, 10))
    logs = out.logs
    demoted = 0.5 * -math.log(0.97)
    expected = (
        2.0 * logs["loss_sup"] + 3.0 * logs["loss_elr"] + demoted + logs["loss_heads"]
    ) + 0.5 * logs["loss_reliable"]
    assert logs["loss_heads"] > 0 and logs["loss_elr"] < 0 and logs["loss_sup"] > 0
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


# ---- the prototype check (evidence_agreement = "prototype", the default) ----


def test_the_default_recipe_checks_relabels_against_the_prototypes():
    assert lion_config().evidence_agreement == "prototype"
    assert lion_config("evidence").evidence_agreement == "prototype"


def test_prototype_check_keeps_a_relabel_the_nearest_prototype_names_and_demotes_the_rest():
    verdict = T([1, 1, KEEP, DEMOTE, 0, 1, 0])
    features = T(
        [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [0.0, -1.0], [1.0, 0.0]]
    )
    prototypes = T([[0.0, 2.0], [3.0, 0.0]])  # class 0 points up, class 1 right (any length)
    ready = T([True, True])
    # cosines: row 0 (0, 1) → class 1; row 1 (1, 0) → class 0, not its verdict 1; row 4
    # (0.8, 0.6) → class 0, its verdict; row 5 (−1, 0) → class 1; row 6, a relabel to class 0,
    # (0, 1) → class 1; keep and demote pass unchanged
    out = nearest_prototype_agrees(verdict, features, prototypes, ready)
    assert out.tolist() == [1, DEMOTE, KEEP, DEMOTE, 0, 1, DEMOTE]
    # a class without a prototype yet is never the nearest, even where every cosine to a ready
    # one is negative (row 5): rows 0, 5 and 6 now find class 0 only
    out = nearest_prototype_agrees(verdict, features, prototypes, T([True, False]))
    assert out.tolist() == [DEMOTE, DEMOTE, KEEP, DEMOTE, 0, DEMOTE, 0]


@pytest.mark.parametrize("prototype_1, outcome", [([1.0, 0.0], "relabel"), ([0.0, -1.0], "demote")])
def test_a_held_relabel_goes_through_only_where_the_prototypes_agree(prototype_1, outcome):
    lion = evidence_lion([0, 0, 1, 1], min_visits=2, evidence_agreement="prototype")
    seen(lion, LOOKS_LIKE_1)
    heads_says_class_1(lion)  # image 0 (label 0, feature (1, 0)) looks like class 1
    lion.prototypes[:] = T([[0.0, 1.0], prototype_1])
    lion.prototype_ready[:] = True
    batch = batch2([[0.5, 0.5]], [0], [0])
    lion.step(Passthrough(2), batch, Progress(5, 10))
    lion.step(Passthrough(2), batch, Progress(6, 10))
    if outcome == "relabel":  # class 1's prototype is nearest to (1, 0)
        assert lion.label.tolist() == [1, 0, 1, 1] and not lion.demoted.any()
    else:  # class 1's prototype points away: the relabel becomes a demotion
        assert lion.label.tolist() == [0, 0, 1, 1] and lion.demoted.tolist() == [1, 0, 0, 0]


# ---- the cross-fitting, the verdicts and the demoted rows, piece by piece ----


def test_each_head_trains_on_every_fold_but_its_own_and_none_on_a_demoted_row():
    trains = training_heads(T([0, 1, 2, 0]), 3, T([False, False, False, True]))
    assert trains.tolist() == [
        [False, True, True],
        [True, False, True],
        [True, True, False],
        [False, False, False],
    ]


def test_cross_fit_loss_is_the_mean_ce_over_the_pairs_of_row_and_head_that_train():
    # logits = log p, so each head's softmax is the p written here: (B = 2, K = 2, C = 2)
    logits = torch.log(T([[[0.5, 0.5], [0.8, 0.2]], [[0.9, 0.1], [0.25, 0.75]]]))
    labels = T([0, 1])
    both = cross_fit_loss(logits, labels, T([[False, True], [True, False]]))
    assert both.item() == pytest.approx((-math.log(0.8) - math.log(0.1)) / 2, rel=1e-5)
    one = cross_fit_loss(logits, labels, T([[False, True], [False, False]]))
    assert one.item() == pytest.approx(-math.log(0.8), rel=1e-5)
    assert cross_fit_loss(logits, labels, torch.zeros(2, 2, dtype=torch.bool)).item() == 0.0


def test_heads_give_scaled_cosines_and_start_alike_without_drawing_from_the_global_seed():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    heads = CrossFitHeads(folds=2, num_classes=2, feature_dim=2, scale=10.0)
    assert torch.equal(torch.random.get_rng_state(), before)  # a run's own draws stay put
    assert torch.equal(heads.weight, CrossFitHeads(2, 2, 2, 10.0).weight)
    # each class's weight is normalised on its own: (2, 0) → (1, 0), (1, 1) → (s, s), ...
    heads.weight.data[:] = T([[[2.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [-1.0, 1.0]]])
    s = 1 / math.sqrt(2)
    # rows (3, 4) and (0, −2) are (0.6, 0.8) and (0, −1) once normalised
    expected = 10 * T([[[0.6, 1.4 * s], [1.4 * s, 0.2 * s]], [[0.0, -s], [-s, -s]]])
    assert torch.allclose(heads(T([[3.0, 4.0], [0.0, -2.0]])), expected, atol=1e-6)


def test_elr_stays_finite_and_exact_where_p_is_certain_of_its_target():
    # p is clamped to [1e-4, 1 − 1e-4] and renormalised: (1 − 1e-4, 1e-4, 1e-4) / (1 + 1e-4)
    loss = elr_loss(T([[100.0, 0.0, 0.0]]), T([[1.0, 0.0, 0.0]]), T([True]))
    assert loss.item() == pytest.approx(math.log(1 - (1 - 1e-4) / (1 + 1e-4)), rel=1e-3)


def test_a_class_level_with_the_label_is_no_evidence_for_a_relabel():
    # label 0 at 0.45 is against it (< 0.5 · 0.95); class 1 reaches its threshold but only ties
    verdict = evidence_verdict(T([[0.45, 0.45, 0.1]]), T([0]), T([0.95, 0.4, 0.4]), 0.5, 1.0)
    assert verdict.tolist() == [DEMOTE]


def test_an_image_twice_in_a_batch_is_judged_once_from_its_first_row():
    lion = evidence_lion([0, 0, 1, 1], min_visits=1, use_negative_learning=False)
    seen(lion, UNDECIDED)
    heads_says_class_1(lion)  # class 0 points to (0, −1), class 1 to (1, 0)
    # image 0 twice: its first view looks like class 1 (a relabel), its second like class 0
    batch = batch2([[0.5, 0.5], [0.5, 0.5]], [0, 0], [0, 0], feats=[[1.0, 0.0], [0.0, -1.0]])
    lion.step(Passthrough(2), batch, Progress(5, 10))
    assert lion.evidence[0, 1] > 0.99 and lion.evidence_visits[0] == 2
    assert lion.label.tolist() == [1, 0, 1, 1] and lion.verdict[0] == 1


@pytest.mark.parametrize(
    "use_disambiguation, evidence_start, decides",
    [(True, 0.5, True), (True, 0.6, False), (False, 0.0, False)],
)
def test_decisions_begin_at_evidence_start_and_only_with_disambiguation_on(
    use_disambiguation, evidence_start, decides
):
    lion = evidence_lion(
        [0, 0, 1, 1],
        min_visits=1,
        evidence_start=evidence_start,
        use_disambiguation=use_disambiguation,
    )
    seen(lion, LOOKS_LIKE_1)
    heads_says_class_1(lion)
    lion.step(Passthrough(2), batch2([[0.5, 0.5]], [0], [0]), Progress(5, 10))  # fraction 0.5
    assert lion.label.tolist() == ([1, 0, 1, 1] if decides else [0, 0, 1, 1])


def test_thresholds_come_from_the_visited_images_only():
    """Image 2 (label 0) has no evidence yet. Counted with zeros it would pull t_0 from 0.575 to
    0.383, and image 0's 0.25 would no longer be against label 0."""
    lion = evidence_lion(
        [0, 0, 0, 1, 1], min_visits=1, evidence_scale=1.0, use_negative_learning=False
    )
    lion.evidence_visits[:] = T([1, 1, 0, 1, 1])
    lion.evidence[:] = T([[0.5, 0.5], [0.9, 0.1], [0.0, 0.0], [0.1, 0.9], [0.1, 0.9]])
    identity_heads(lion)
    # the heads give (0.25, 0.75): against 0, class 1 under t_1 = 0.9
    lion.step(Passthrough(2), batch2([[0.6, 0.4]], [0], [0], feats=AGAINST_0), Progress(5, 10))
    assert lion.demoted.tolist() == [True, False, False, False, False]


def test_a_demotion_waits_for_min_visits_like_a_relabel():
    lion = evidence_lion(
        [0, 0, 1, 1], min_visits=2, evidence_scale=1.0, use_negative_learning=False
    )
    seen(lion, UNDECIDED)
    identity_heads(lion)
    batch = batch2([[0.6, 0.4]], [0], [0], feats=AGAINST_0)
    lion.step(Passthrough(2), batch, Progress(5, 10))
    assert lion.verdict[0] == DEMOTE and not lion.demoted.any()
    lion.step(Passthrough(2), batch, Progress(6, 10))
    assert lion.demoted.tolist() == [True, False, False, False]


def test_only_demoted_rows_train_as_unlabeled_with_banks_of_their_own():
    """Image 0 is demoted and unsure, image 1 kept and confident, image 2 kept and unsure (no
    decisions). δ = 0.4 and bank_keep 2: image 0's bank takes class 2 (0.2 ≤ δ) and stops, as two
    classes must stay out. The kept rows get no bank, no self-training and no L_NL."""
    lion = evidence_lion(
        [0, 0, 1, 1],
        num_classes=3,
        evidence_start=1.0,
        lambda_supervised=2.0,
        lambda_elr=3.0,
        elr_target="own",  # t = p on a first visit, so ELR's value is worked out from p alone
        lambda_reliable=0.5,
        lambda_negative=2.0,
        reliable_threshold=0.95,
        complementary_threshold=0.4,
        bank_keep=2,
    )
    lion.demoted[0] = True
    lion.verdict[0] = DEMOTE
    unsure, sure = [0.5, 0.3, 0.2], [0.97, 0.02, 0.01]
    batch = labeled_batch([unsure, sure, unsure], [0, 0, 1], [0, 1, 2])
    out = lion.step(Passthrough(3), batch, Progress(1, 10))
    assert lion.bank_lb.tolist() == [[False, False, True]] + [[False] * 3] * 3
    logs = out.logs
    assert logs["loss_nl_demoted"].item() == pytest.approx(-(1 - 0.2))  # image 0 alone
    # ELR over the kept rows only, on their first visit (t = p): log(1 − Σ p²)
    elr = (math.log(1 - (0.97**2 + 0.02**2 + 0.01**2)) + math.log(1 - 0.38)) / 2
    assert logs["loss_elr"].item() == pytest.approx(elr, rel=1e-4)
    assert logs["clear_rate"].item() == pytest.approx(2 / 3)  # kept
    assert logs["ambiguous_rate"].item() == pytest.approx(1 / 3)  # a verdict other than keep
    expected = (
        2.0 * logs["loss_sup"]
        + 3.0 * logs["loss_elr"]
        + logs["loss_heads"]
        + 2.0 * logs["loss_nl_demoted"]
        + 0.5 * logs["loss_reliable"]
        + 2.0 * logs["loss_nl"]
    )
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(
    "gamma, bank", [(0.5, [False, False, False]), (0.51, [False, False, True])]
)
def test_a_demoted_row_at_gamma_is_reliable_and_one_just_under_it_grows_its_bank(gamma, bank):
    """p = (0.5, 0.5, 0) is exact under softmax. At γ = 0.5 the demoted image 0 is reliable
    (confidence ≥ γ): it trains on its pseudo-label and its bank stays empty. At γ = 0.51 it is
    unreliable and its bank takes class 2 (0 ≤ δ)."""
    lion = evidence_lion(
        [0, 1],
        num_classes=3,
        evidence_start=1.0,
        reliable_threshold=gamma,
        complementary_threshold=0.4,
        bank_keep=1,
    )
    lion.demoted[0] = True
    lion.verdict[0] = DEMOTE
    lion.step(Passthrough(3), labeled_batch([[0.5, 0.5, 0.0]], [0], [0]), Progress(1, 10))
    assert lion.bank_lb[0].tolist() == bank


def test_only_kept_images_predicted_as_their_label_feed_the_prototypes():
    lion = evidence_lion([0, 0, 0, 1])
    lion.demoted[2] = True
    # image 0 kept and predicted 0; image 1 kept, predicted 1; image 2 demoted, predicted 0
    batch = batch2(
        [[0.7, 0.3], [0.3, 0.7], [0.8, 0.2]],
        [0, 0, 0],
        [0, 1, 2],
        feats=[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],
    )
    lion.step(Passthrough(2), batch, Progress(0, 10))
    assert lion.prototype_ready.tolist() == [True, False]
    assert torch.allclose(lion.prototypes[0], T([1.0, 0.0]))


# ---- the audit (evidence_audit) ----


def test_the_audit_takes_a_share_of_every_class_and_leaves_two_of_each_to_judge():
    labels = T([0] * 20 + [1] * 10 + [2] * 3 + [3] * 2 + [4])
    audit = audit_rows(labels, 0.1)
    assert torch.bincount(labels[audit], minlength=5).tolist() == [2, 1, 1, 0, 0]
    assert audit_rows(labels, 0.1).tolist() == audit.tolist()  # seeded
    assert audit_rows(labels, 0.1, seed=2).tolist() != audit.tolist()
    assert not audit_rows(labels, 0.0).any()
    # round half to even on a share: 0.25 · 10 = 2.5 → 2; two of every class stay out
    labels = T([0] * 10 + [1] * 2 + [2] * 4)
    assert torch.bincount(labels[audit_rows(labels, 0.25)], minlength=3).tolist() == [2, 0, 1]
    assert torch.bincount(labels[audit_rows(labels, 0.49)], minlength=3).tolist() == [5, 0, 2]
    assert torch.bincount(labels[audit_rows(labels, 0.8)], minlength=3).tolist() == [8, 0, 2]


def test_an_audit_no_class_can_give_an_image_to_stops_every_decision_from_the_start():
    lion = evidence_lion([0, 0, 1, 1], min_visits=1, evidence_audit=0.3)  # two of each class
    assert not lion.audit.any() and not bool(lion.audit_passed)
    lion.fold[:] = T([0, 1, 0, 1])
    seen(lion, LOOKS_LIKE_1)
    heads_says_class_1(lion)
    lion.step(Passthrough(2), batch2([[0.5, 0.5]], [0], [0]), Progress(5, 10))
    assert lion.label.tolist() == [0, 0, 1, 1] and not lion.demoted.any()
    assert int(lion.audit_step) == -1  # nothing to read
    off = evidence_lion([0, 0, 1, 1], min_visits=1)  # no audit asked for: decisions go on
    off.fold[:] = T([0, 1, 0, 1])
    seen(off, LOOKS_LIKE_1)
    heads_says_class_1(off)
    off.step(Passthrough(2), batch2([[0.5, 0.5]], [0], [0]), Progress(5, 10))
    assert bool(off.audit_passed) and off.label.tolist() == [1, 0, 1, 1]


def test_an_audit_of_one_image_is_none_and_stops_every_decision():
    """One image could not stop decisions whatever the evidence said of it (20 judged images
    named at 85%, it missed: z = 2.1, under 3), so it is no audit; two can (z = 3.1)."""
    assert excess_agreement_z(17, 20, 0, 1) < 3.0 < excess_agreement_z(17, 19, 0, 2)
    labels = T([0, 0, 0, 1, 1, 2, 2])  # only class 0 has the three labeled images to give one
    assert not audit_rows(labels, 0.1).any()
    assert audit_rows(T([0, 0, 0, 1, 1, 1]), 0.1).sum() == 2  # two classes give one each
    lion = evidence_lion([0, 0, 0, 1, 1], min_visits=1, evidence_audit=0.1)
    assert not lion.audit.any() and not bool(lion.audit_passed)


def test_audit_counts_give_the_z_of_the_trained_labels_agreement_above_the_audits():
    # evidence names labels 0, 1, 1, 0, 1, 0; labels 0, 1, 1, 0 | 0, 1
    evidence = T([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6], [0.7, 0.3]])
    labels = T([0, 1, 1, 0, 0, 1])
    judged = T([True, True, True, True, False, False])
    audit = ~judged
    # 4 of 4 against 0 of 2: pooled 2/3, z = 1 / sqrt(2/9 · (1/4 + 1/2))
    counts = audit_counts(evidence, labels, judged, audit)
    assert counts == (4, 4, 0, 2)
    assert excess_agreement_z(*counts) == pytest.approx(1 / math.sqrt(1 / 6))
    assert audit_counts(evidence, labels, judged, torch.zeros(6, dtype=torch.bool)) is None
    assert audit_counts(evidence, labels, torch.zeros(6, dtype=torch.bool), audit) is None
    # only the rows asked for count: image 3 dropped from the judged set leaves 3 of 3
    fewer = judged & T([True, True, True, False, False, False])
    z = 1 / math.sqrt((3 / 5) * (2 / 5) * (1 / 3 + 1 / 2))
    counts = audit_counts(evidence, labels, fewer, audit)
    assert counts == (3, 3, 0, 2) and excess_agreement_z(*counts) == pytest.approx(z)


def audited_lion(**fields):
    """Labels 0, 0, 0, 1, 1, 1, images 2 and 5 the audit, every head certain of class 1; read
    once unless asked (the reads after an inconclusive one have their own tests below)."""
    fields = {"audit_reads": 1, **fields}
    lion = evidence_lion([0, 0, 0, 1, 1, 1], min_visits=1, evidence_audit=0.3, **fields)
    lion.audit[:] = T([False, False, True, False, False, True])
    lion.evidence_visits[:] = 1
    heads_says_class_1(lion)
    return lion


# every image's label named but the audit's image 2
NAMED_BUT_2 = [[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]]
# every trained image's label named, neither of the audit's
NAMED_BUT_AUDIT = [[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.9, 0.1]]


def test_the_audit_trains_unlabeled_until_the_first_decision_and_then_lets_decisions_go_on():
    lion = audited_lion(use_negative_learning=False, evidence_start=0.5)
    lion.evidence[:] = T(NAMED_BUT_2)
    batch = batch2([[0.6, 0.4], [0.6, 0.4]], [0, 0], [0, 2])
    out = lion.step(Passthrough(2), batch, Progress(4, 10))  # before the first decision
    assert (
        bool(lion.audit_open)
        and int(lion.audit_step) == -1
        and float(lion.audit_z) == float("-inf")
    )
    assert lion.audit_agreement.tolist() == [-1.0, -1.0]  # not read yet
    assert out.logs["clear_rate"].item() == pytest.approx(0.5)  # image 2 trains unlabeled
    kept, feeds = lion._examine_kept(T([[0.9, 0.1], [0.9, 0.1]]), T([0, 0]), T([1, 2]))
    assert kept.tolist() == [True, False] and feeds.tolist() == [True, False]
    assert lion.label.tolist() == [0, 0, 0, 1, 1, 1]
    lion.evidence[:] = T(NAMED_BUT_2)
    out = lion.step(Passthrough(2), batch, Progress(5, 10))  # the first decision
    # the heads name class 1 for images 0 and 2: 3 of 4 given labels named against 1 of 2 of
    # the audit's, z = 0.25 / sqrt(4/6 · 2/6 · (1/4 + 1/2)) ≤ 3
    assert not bool(lion.audit_open) and int(lion.audit_step) == 5 and bool(lion.audit_passed)
    assert float(lion.audit_z) == pytest.approx(0.25 / math.sqrt(1 / 6))
    assert lion.audit_agreement.tolist() == pytest.approx([3 / 4, 1 / 2])  # the rates z compares
    # decisions go on, the audit's images with the others: image 2, given 0, now looks like 1
    assert lion.label.tolist() == [1, 0, 1, 1, 1, 1]
    assert out.logs["clear_rate"].item() == 1.0


def test_the_audit_reads_the_given_labels_not_the_labels_decisions_made():
    lion = audited_lion()
    lion.evidence[:] = T(NAMED_BUT_AUDIT)
    lion.label[:] = T([1, 1, 0, 1, 1, 1])  # as if images 0 and 1 had been relabeled to 1
    lion.step(Passthrough(2), batch2([[0.6, 0.4]], [1], [3]), Progress(5, 10))
    # given labels 0, 0 | 1, 1 named by evidence 0, 0 | 1, 1; the audit's 0 and 1 by 1 and 0:
    # 4 of 4 against 0 of 2 (with the current labels it would be 2 of 4)
    assert float(lion.audit_z) == pytest.approx(excess_agreement_z(4, 4, 0, 2))
    assert lion.audit_agreement.tolist() == [1.0, 0.0]


def test_an_audit_that_finds_the_labels_learnt_stops_every_decision_of_the_run():
    lion = audited_lion(audit_z=1.0)
    lion.evidence[:] = T(NAMED_BUT_AUDIT)
    batch = batch2([[0.6, 0.4], [0.6, 0.4]], [0, 0], [0, 2])
    out = lion.step(Passthrough(2), batch, Progress(5, 10))
    # after the visit: 3 of 4 given labels named, 0 of 2 of the audit's, z = √3 > 1
    assert not bool(lion.audit_open) and int(lion.audit_step) == 5
    assert not bool(lion.audit_passed)
    assert float(lion.audit_z) == pytest.approx(math.sqrt(3))
    assert lion.label.tolist() == [0, 0, 0, 1, 1, 1]  # no decision
    assert out.logs["clear_rate"].item() == 1.0  # the audit trains on its labels
    lion.evidence[:] = T(NAMED_BUT_2)  # later visits decide nothing, and read it no more
    lion.step(Passthrough(2), batch2([[0.6, 0.4]], [0], [0]), Progress(6, 10))
    assert lion.label.tolist() == [0, 0, 0, 1, 1, 1] and int(lion.audit_step) == 5
    assert float(lion.audit_z) == pytest.approx(math.sqrt(3))
    assert not lion.demoted.any() and not bool(lion.audit_passed)


def test_at_z_equal_to_audit_z_decisions_go_on():
    lion = audited_lion(audit_z=excess_agreement_z(3, 4, 0, 2))
    lion.evidence[:] = T(NAMED_BUT_AUDIT)
    lion.step(Passthrough(2), batch2([[0.6, 0.4]], [0], [0]), Progress(5, 10))
    assert bool(lion.audit_passed) and int(lion.audit_step) == 5
    assert lion.label.tolist() == [1, 0, 0, 1, 1, 1]


def test_an_audit_none_of_whose_images_was_seen_lets_decisions_go_on():
    lion = audited_lion()
    lion.evidence[:] = T(NAMED_BUT_AUDIT)
    lion.evidence_visits[:] = T([1, 1, 0, 1, 1, 0])
    lion.step(Passthrough(2), batch2([[0.6, 0.4]], [0], [0]), Progress(5, 10))
    assert (
        bool(lion.audit_passed)
        and int(lion.audit_step) == 5
        and float(lion.audit_z) == float("-inf")
    )
    assert lion.audit_agreement.tolist() == [-1.0, -1.0]  # no rate of an unseen audit
    assert lion.label.tolist() == [1, 0, 0, 1, 1, 1]


# NAMED_BUT_AUDIT: 4 of 4 given labels named against 0 of 2 of the audit's,
# z = 1 / sqrt(4/6 · 2/6 · (1/4 + 1/2)) = √6 ≈ 2.45; NAMED_BUT_2: 4 of 4 against 1 of 2,
# z = 1/2 / sqrt(5/6 · 1/6 · 3/4) = 6 / √15 ≈ 1.55
Z_BUT_AUDIT, Z_BUT_2 = math.sqrt(6), 6 / math.sqrt(15)


def waiting_lion(**fields):
    """The audit read every 2 steps of 10, up to 3 times; a z in (2, 3] is inconclusive."""
    fields = {"evidence_start": 0.2, "audit_reads": 3, "audit_wait_z": 2.0, **fields}
    return audited_lion(use_negative_learning=False, **fields)


def visit_2_and_3(lion, step):
    """A visit of images 2 (the audit's, given 0) and 3 (given 1): the heads name class 1 for
    both, as the evidence already does, so the audit's counts stay as they are."""
    batch = batch2([[0.6, 0.4], [0.6, 0.4]], [0, 1], [2, 3])
    return lion.step(Passthrough(2), batch, Progress(step, 10))


def test_an_inconclusive_audit_keeps_its_images_and_decides_nothing_until_a_read_concludes():
    lion = waiting_lion()
    lion.evidence[:] = T(NAMED_BUT_AUDIT)
    out = visit_2_and_3(lion, 2)  # the first read: z ≈ 2.45, in (2, 3]
    assert excess_agreement_z(4, 4, 0, 2) == pytest.approx(Z_BUT_AUDIT)
    assert bool(lion.audit_open) and int(lion.audit_step) == -1 and bool(lion.audit_passed)
    assert lion.audit_trail[0].tolist() == pytest.approx([2.0, Z_BUT_AUDIT])
    assert lion.audit_trail[1:, 0].tolist() == [-1.0, -1.0]
    assert float(lion.audit_z) == float("-inf") and lion.audit_agreement.tolist() == [-1.0, -1.0]
    assert lion.label.tolist() == [0, 0, 0, 1, 1, 1]  # image 2's evidence is for 1: no decision
    assert out.logs["clear_rate"].item() == pytest.approx(0.5)  # image 2 still trains unlabeled
    visit_2_and_3(lion, 3)  # 3 / 10 < 0.4: no read, no decision
    assert lion.audit_trail[1, 0].item() == -1.0 and lion.label.tolist() == [0, 0, 0, 1, 1, 1]
    # saved and loaded mid-wait, the audit goes on from its second read
    fresh = waiting_lion()
    fresh.load_state_dict({k: v.clone() for k, v in lion.state_dict().items()})
    fresh.evidence[:] = T(NAMED_BUT_2)
    out = visit_2_and_3(fresh, 4)  # the second read: z ≈ 1.55 ≤ 2, decisions go on
    assert excess_agreement_z(4, 4, 1, 2) == pytest.approx(Z_BUT_2)
    assert not bool(fresh.audit_open) and int(fresh.audit_step) == 4
    assert bool(fresh.audit_passed) and float(fresh.audit_z) == pytest.approx(Z_BUT_2)
    assert fresh.audit_trail[:2].flatten().tolist() == pytest.approx(
        [2.0, Z_BUT_AUDIT, 4.0, Z_BUT_2]
    )
    assert fresh.audit_trail[2].tolist() == [-1.0, float("-inf")]
    assert fresh.audit_agreement.tolist() == pytest.approx([1.0, 0.5])
    assert fresh.label.tolist() == [0, 0, 1, 1, 1, 1]  # image 2, given 0, relabeled to 1
    assert out.logs["clear_rate"].item() == 1.0


def test_an_audit_read_again_stops_the_run_where_its_z_then_passes_audit_z():
    lion = waiting_lion(audit_wait_z=1.0, audit_z=2.0)
    lion.evidence[:] = T(NAMED_BUT_2)
    visit_2_and_3(lion, 2)  # z ≈ 1.55 in (1, 2]: inconclusive
    assert bool(lion.audit_open) and lion.label.tolist() == [0, 0, 0, 1, 1, 1]
    lion.evidence[:] = T(NAMED_BUT_AUDIT)
    out = visit_2_and_3(lion, 4)  # z ≈ 2.45 > 2: the labels are learnt, no decision in the run
    assert int(lion.audit_step) == 4 and not bool(lion.audit_passed)
    assert float(lion.audit_z) == pytest.approx(Z_BUT_AUDIT)
    assert lion.label.tolist() == [0, 0, 0, 1, 1, 1]
    assert out.logs["clear_rate"].item() == 1.0  # the audit trains on its labels
    lion.evidence[:] = T(NAMED_BUT_2)
    visit_2_and_3(lion, 6)  # read no more, and no decision
    assert lion.audit_trail[2, 0].item() == -1.0 and lion.label.tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("audit_z, passed", [(3.0, True), (2.4, False)])
def test_the_last_read_is_held_to_audit_z_alone(audit_z, passed):
    lion = waiting_lion(audit_reads=2, audit_z=audit_z, audit_wait_z=1.0)
    lion.evidence[:] = T(NAMED_BUT_2)
    visit_2_and_3(lion, 2)  # z ≈ 1.55 in (1, audit_z]: inconclusive
    assert bool(lion.audit_open)
    lion.evidence[:] = T(NAMED_BUT_AUDIT)
    visit_2_and_3(lion, 4)  # the last read: z ≈ 2.45, inconclusive no more
    assert not bool(lion.audit_open) and int(lion.audit_step) == 4
    assert bool(lion.audit_passed) is passed
    assert lion.label.tolist() == ([0, 0, 1, 1, 1, 1] if passed else [0, 0, 0, 1, 1, 1])


def test_one_read_lets_a_z_between_the_lines_decide_as_before():
    lion = waiting_lion(audit_reads=1)  # the wait line is not used
    lion.evidence[:] = T(NAMED_BUT_AUDIT)
    visit_2_and_3(lion, 2)
    assert int(lion.audit_step) == 2 and bool(lion.audit_passed)
    assert lion.audit_trail.flatten().tolist() == pytest.approx([2.0, Z_BUT_AUDIT])
    assert lion.label.tolist() == [0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"audit_reads": 0}, "audit_reads"),
        ({"audit_reads": 10, "evidence_start": 0.1}, "audit_reads"),  # the last read at the end
        ({"audit_reads": 2, "audit_wait_z": 3.5}, "audit_wait_z"),
    ],
)
def test_audit_reads_that_cannot_all_fall_in_the_run_or_a_wait_line_above_audit_z_are_errors(
    fields, key
):
    with pytest.raises(ConfigError, match=key):
        lion_config("evidence", **fields)
    lion_config("evidence", audit_reads=9, evidence_start=0.1)  # the last read at 90%
    lion_config("evidence", evidence_start=0.5, evidence_audit=0.0)  # no audit: no reads
    lion_config("evidence", evidence_start=0.0)  # decisions from step 0: reads on steps 0, 1, 2
    lion_config("evidence", audit_reads=1, audit_wait_z=3.5)  # one read: no wait line


def test_the_default_recipe_holds_a_tenth_of_each_class_as_its_audit():
    lion = make_lion([0] * 20 + [1] * 10, recipe="evidence")
    assert lion.cfg.evidence_audit == 0.1
    assert (lion.cfg.audit_reads, lion.cfg.audit_wait_z, lion.cfg.audit_z) == (3, 1.645, 3.0)
    assert lion.audit_trail.shape == (3, 2)
    assert torch.bincount(lion.label[lion.audit]).tolist() == [2, 1]
    assert bool(lion.audit_open)
    for name in ("audit", "audit_step", "audit_z", "audit_passed", "audit_trail"):
        assert name in lion.state_dict()
    assert not bool(evidence_lion([0, 1]).audit_open)  # no audit: nothing to hold open
    # without disambiguation there are no decisions to audit, and no label is held out
    off = make_lion([0] * 20 + [1] * 10, recipe="evidence", use_disambiguation=False)
    assert not off.audit.any() and not bool(off.audit_open)


@pytest.mark.parametrize("value", [-0.1, 0.5])
def test_an_audit_share_outside_its_range_is_an_error(value):
    with pytest.raises(ConfigError, match="evidence_audit"):
        lion_config("evidence", evidence_audit=value)
    with pytest.raises(ConfigError, match="audit_z"):
        lion_config("evidence", audit_z=0.0)


def test_a_saved_audit_loads_as_saved_and_a_state_from_before_it_as_no_audit():
    lion = audited_lion(audit_z=1.0)
    lion.evidence[:] = T(NAMED_BUT_AUDIT)
    lion.step(Passthrough(2), batch2([[0.6, 0.4]], [0], [0]), Progress(5, 10))
    saved = {k: v.clone() for k, v in lion.state_dict().items()}
    assert not bool(saved["audit_passed"]) and int(saved["audit_step"]) == 5
    fresh = audited_lion(audit_z=1.0)
    fresh.load_state_dict(saved)
    assert fresh.audit.tolist() == saved["audit"].tolist() and int(fresh.audit_step) == 5
    assert not bool(fresh.audit_passed) and not bool(fresh.audit_open)
    assert fresh.audit_agreement.tolist() == pytest.approx([3 / 4, 0.0])  # its rates, as saved
    # a state saved before the audit kept its rates: the audit as saved, its rates unknown
    unrated = audited_lion(audit_z=1.0)
    unrated.load_state_dict({k: v for k, v in saved.items() if k != "audit_agreement"})
    assert int(unrated.audit_step) == 5 and not bool(unrated.audit_passed)
    assert unrated.audit_agreement.tolist() == [-1.0, -1.0]
    # one saved before the audit kept its reads: its one read as the first
    untrailed = audited_lion(audit_z=1.0, audit_wait_z=1.0, audit_reads=3, evidence_start=0.1)
    untrailed.load_state_dict({k: v for k, v in saved.items() if k != "audit_trail"})
    assert untrailed.audit_trail[0].tolist() == pytest.approx([5.0, math.sqrt(3)])
    assert untrailed.audit_trail[1:].tolist() == [[-1.0, float("-inf")]] * 2
    assert not bool(untrailed.audit_open) and not bool(untrailed.audit_passed)
    # one that stored the audit's open flag (derived from audit_step now): the flag is dropped
    flagged = audited_lion(audit_z=1.0)
    flagged.load_state_dict({**saved, "audit_open": T(True)})
    assert int(flagged.audit_step) == 5 and not bool(flagged.audit_open)
    fresh.evidence[:] = T(NAMED_BUT_2)  # it made no decision before the save, nor after
    fresh.step(Passthrough(2), batch2([[0.6, 0.4]], [0], [0]), Progress(6, 10))
    assert fresh.label.tolist() == [0, 0, 0, 1, 1, 1]
    # a state saved before the audit: none, read never, decisions go on
    old = {k: v for k, v in saved.items() if not k.startswith("audit")}
    older = audited_lion()
    older.load_state_dict(old)
    assert not older.audit.any() and older.audit.dtype == torch.bool
    assert not bool(older.audit_open) and bool(older.audit_passed)
    assert int(older.audit_step) == -1 and older.audit_step.dtype == torch.long
    older.evidence[:] = T(NAMED_BUT_2)
    older.step(Passthrough(2), batch2([[0.6, 0.4]], [0], [0]), Progress(6, 10))
    assert older.label.tolist() == [1, 0, 0, 1, 1, 1] and int(older.audit_step) == -1


def test_an_audit_read_at_step_0_lets_its_images_train_on_their_labels_from_then():
    lion = audited_lion(use_negative_learning=False)
    lion.evidence[:] = T(NAMED_BUT_2)
    batch = batch2([[0.6, 0.4], [0.6, 0.4]], [0, 0], [0, 2])
    out = lion.step(Passthrough(2), batch, Progress(0, 10))  # evidence_start 0: read at step 0
    assert int(lion.audit_step) == 0 and bool(lion.audit_passed)
    assert out.logs["clear_rate"].item() == 1.0 and not bool(lion.audit_open)


def test_with_decisions_from_step_0_an_inconclusive_audit_is_read_again_on_the_next_step():
    lion = waiting_lion(evidence_start=0.0)
    lion.evidence[:] = T(NAMED_BUT_AUDIT)
    visit_2_and_3(lion, 0)  # z ≈ 2.45: inconclusive
    assert bool(lion.audit_open) and lion.audit_trail[0].tolist() == pytest.approx([0, Z_BUT_AUDIT])
    lion.evidence[:] = T(NAMED_BUT_2)
    visit_2_and_3(lion, 1)  # z ≈ 1.55: decisions go on
    assert int(lion.audit_step) == 1 and bool(lion.audit_passed)
    assert lion.audit_trail[:2].flatten().tolist() == pytest.approx([0, Z_BUT_AUDIT, 1, Z_BUT_2])
    assert lion.label.tolist() == [0, 0, 1, 1, 1, 1]


def test_a_read_at_exactly_audit_z_before_the_last_waits_and_one_at_exactly_audit_wait_z_decides():
    at_stop = waiting_lion(audit_z=Z_BUT_AUDIT)
    at_stop.evidence[:] = T(NAMED_BUT_AUDIT)
    visit_2_and_3(at_stop, 2)  # z = audit_z: not above it, and above the wait line
    assert bool(at_stop.audit_open) and int(at_stop.audit_step) == -1
    at_wait = waiting_lion(audit_wait_z=Z_BUT_2)
    at_wait.evidence[:] = T(NAMED_BUT_2)
    visit_2_and_3(at_wait, 2)  # z = audit_wait_z: not above it, so decisions go on
    assert int(at_wait.audit_step) == 2 and bool(at_wait.audit_passed)


def test_the_trail_of_a_state_saved_before_it_was_kept_holds_its_one_read_even_at_step_0():
    assert no_trail(2, 0, 1.5).tolist() == [[0.0, 1.5], [-1.0, float("-inf")]]
    assert no_trail(2).tolist() == [[-1.0, float("-inf")]] * 2
    # a state saved before the audit, loaded into a run that reads it up to 3 times
    lion = audited_lion(audit_reads=3, audit_wait_z=1.0, evidence_start=0.1)
    old = {k: v for k, v in lion.state_dict().items() if not k.startswith("audit")}
    lion.load_state_dict(old)
    assert lion.audit_trail.shape == (3, 2) and not lion.audit.any()


def test_an_inconclusive_read_with_a_negative_z_counts_as_a_read():
    lion = waiting_lion(audit_wait_z=-2.0)
    # judged images 0, 1, 3, 4: 2 of 4 given labels named; the audit's 2 and 5: 2 of 2, so
    # z = −1/2 / sqrt(4/6 · 2/6 · 3/4) ≈ −1.22, in (−2, 3]
    lion.evidence[:] = T([[0.1, 0.9], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    visit_4 = batch2([[0.6, 0.4]], [1], [4])  # the heads name image 4's label, 1, again
    lion.step(Passthrough(2), visit_4, Progress(2, 10))
    assert bool(lion.audit_open)
    assert lion.audit_trail[0].tolist() == pytest.approx([2.0, -0.5 / math.sqrt(1 / 6)])
    lion.step(Passthrough(2), visit_4, Progress(3, 10))  # the next read is due at 40%, not now
    assert lion.audit_trail[:, 0].tolist() == [2.0, -1.0, -1.0] and bool(lion.audit_open)
