"""Every registered algorithm against the contract: one step on a tiny network, state through a
checkpoint, training end to end on the embedded data and on digits; and the Trainer's side of the
contract (views, algorithm modules, the periodic hook, every label for full supervision)."""

import copy
import json
import math

import pytest
import torch
from algorithm_helpers import EXPECTED_LOGS, build, tiny_batch, tiny_model

import lionfer.algorithms  # noqa: F401  (registers the algorithms)
from lionfer.algorithms.base import Progress
from lionfer.data import transforms
from lionfer.errors import ConfigError, InputError
from lionfer.registry import ALGORITHMS
from lionfer.training.checkpoint import load_checkpoint, save_checkpoint
from lionfer.training.run import build_trainer, train
from lionfer.training.setup import data_config

NAMES = ALGORITHMS.names()


def test_every_method_of_the_comparison_is_registered():
    assert {
        "supervised",
        "fullysupervised",
        "pseudolabel",
        "mixmatch",
        "uda",
        "remixmatch",
        "marginmix",
        "fixmatch",
        "adacm",
        "flexmatch",
        "freematch",
        "softmatch",
        "lion",
    } <= set(NAMES)
    assert set(NAMES) <= set(EXPECTED_LOGS), "add the new algorithm's logs to EXPECTED_LOGS"


@pytest.mark.parametrize("name", NAMES)
def test_views_name_transforms(name):
    for view in ALGORITHMS.get(name).views:
        assert view in ("weak", "strong"), view
        assert callable(getattr(transforms, view))


@pytest.mark.parametrize("name", NAMES)
def test_to_leaves_no_tensor_of_the_algorithm_behind(name):
    # the Trainer moves the algorithm to the run's device; "meta" stands in for a GPU here
    algorithm = build(name, tiny_model()).to(torch.device("meta"))
    tensors = {k: v for k, v in vars(algorithm).items() if isinstance(v, torch.Tensor)}
    assert {k: v.device.type for k, v in tensors.items()} == dict.fromkeys(tensors, "meta")
    modules = algorithm.modules()  # LION's cross-fitted heads, ReMixMatch's rotation head
    assert modules is None or {p.device.type for p in modules.parameters()} == {"meta"}


@pytest.mark.parametrize("name", NAMES)
def test_one_step_trains_and_state_round_trips(name, tmp_path):
    torch.manual_seed(0)
    model = tiny_model().train()
    algorithm = build(name, model)
    batch = tiny_batch(algorithm.views)
    out = algorithm.step(model, batch, Progress(20, 100))

    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads), "no gradient reached the model"
    if algorithm.modules() is not None:
        assert all(p.grad is not None for p in algorithm.modules().parameters())

    assert {"loss_sup"} | EXPECTED_LOGS[name] <= set(out.logs)
    for key, value in out.logs.items():
        if isinstance(value, torch.Tensor):
            assert value.dim() == 0 and not value.requires_grad, key
        else:
            assert isinstance(value, float), key
        assert math.isfinite(float(value)), key
    if out.mask is not None:
        assert out.mask.dtype == torch.bool and out.mask.shape == out.pseudo_labels.shape

    # Through a checkpoint file (weights_only load) into a fresh instance.
    modules = algorithm.modules()
    save_checkpoint(
        {
            "algorithm": algorithm.state_dict(),
            "modules": modules.state_dict() if modules is not None else {},
        },
        tmp_path / "state.pt",
    )
    saved = torch.load(tmp_path / "state.pt", weights_only=True)  # the file format of checkpoints
    fresh = build(name, model)
    fresh.load_state_dict(saved["algorithm"])
    if modules is not None:
        fresh.modules().load_state_dict(saved["modules"])
    for key, value in algorithm.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key

    # Restored state continues exactly like the original.
    next_batch = tiny_batch(algorithm.views, seed=1)
    losses = []
    for algo in (algorithm, fresh):
        torch.manual_seed(1)
        losses.append(algo.step(copy.deepcopy(model), next_batch, Progress(21, 100)).loss)
    assert torch.equal(losses[0], losses[1])


def test_a_wrong_state_is_refused_naming_the_keys():
    model = tiny_model()
    algorithm = build("flexmatch", model)
    with pytest.raises(ValueError, match="selected_label"):
        algorithm.load_state_dict({"thresholds": torch.zeros(3)})


# ---- the Trainer's side ----


def test_full_supervision_labels_every_training_image(tiny_cfg, tmp_path):
    cfg = tiny_cfg("algorithm.name=fullysupervised", "train.steps=2", "train.eval_every=2")
    assert data_config(cfg).num_labels == -1 and cfg.data.num_labels == 28
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["num_labels"] == 210 and summary["num_unlabeled"] == 0
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(split["labeled"]) == 210 and split["num_labels"] == -1
    held_out = tiny_cfg("algorithm.name=fullysupervised", "data.val_fraction=0.2")
    trainer = build_trainer(held_out, tmp_path / "unused", progress=False)
    # A stratified fifth of the given labels, rounded per class.
    assert len(trainer.run_data.labeled) + len(trainer.run_data.val) == 210
    assert 40 <= len(trainer.run_data.val) <= 44


def test_full_supervision_refuses_a_split_that_hides_labels(tiny_cfg, tmp_path):
    train(tiny_cfg("algorithm.name=supervised", "train.steps=1"), tmp_path / "ssl", progress=False)
    split = tmp_path / "ssl" / "split.json"
    cfg = tiny_cfg("algorithm.name=fullysupervised", f"data.split_file={split}")
    with pytest.raises(ConfigError, match="leaves 182 of them unlabeled"):
        train(cfg, tmp_path / "full", progress=False)
    assert not (tmp_path / "full").exists()


@pytest.mark.parametrize("name", ["lion", "fixmatch", "adacm"])
def test_a_semi_supervised_run_with_no_unlabeled_image_says_so(tiny_cfg, tmp_path, name):
    cfg = tiny_cfg(f"algorithm.name={name}", "data.num_labels=-1")
    with pytest.raises(ConfigError, match=f"{name} learns from unlabeled images, but data.num"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    # a split file that labels everything, as full supervision writes
    train(tiny_cfg("algorithm.name=fullysupervised", "train.steps=1"), tmp_path / "full",
          progress=False)  # fmt: skip
    split = tmp_path / "full" / "split.json"
    with pytest.raises(ConfigError, match="split .*split.json labels all 210 training images"):
        train(tiny_cfg(f"algorithm.name={name}", f"data.split_file={split}", "data.num_labels=-1"),
              tmp_path / "run", progress=False)  # fmt: skip
    with pytest.raises(InputError, match="data.num_labels=28, but split file .* labels 210"):
        train(tiny_cfg(f"algorithm.name={name}", f"data.split_file={split}"), tmp_path / "run",
              progress=False)  # fmt: skip
    # supervised training draws no unlabeled image, so everything labeled is fine for it
    assert train(tiny_cfg("algorithm.name=supervised", "data.num_labels=-1", "train.steps=1"),
                 tmp_path / "sup", progress=False)["num_unlabeled"] == 0  # fmt: skip


def test_default_run_folder_says_all_labels_for_full_supervision(tiny_cfg):
    from lionfer.cli_run_folder import default_out

    assert "synthetic@all" in str(default_out(tiny_cfg("algorithm.name=fullysupervised")))
    assert "synthetic@28" in str(default_out(tiny_cfg("algorithm.name=fixmatch")))


def test_algorithm_modules_are_optimised_and_checkpointed(tiny_cfg, tmp_path):
    cfg = tiny_cfg("algorithm.name=remixmatch", "train.steps=3", "train.eval_every=3")
    trainer = build_trainer(cfg, tmp_path / "run", progress=False)
    head = trainer.algorithm.modules()
    assert len(trainer.optimizer.param_groups) == 2
    assert {id(p) for p in trainer.optimizer.param_groups[1]["params"]} == {
        id(p) for p in head.parameters()
    }
    before = head.weight.detach().clone()
    trainer.out.mkdir()
    trainer.fit()
    assert not torch.equal(before, head.weight)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert torch.equal(saved["algorithm_modules"]["weight"], head.weight.detach())
    assert saved["algorithm"]["p_model_position"] == 3


def test_algorithms_without_modules_keep_one_parameter_group(tiny_cfg, tmp_path):
    trainer = build_trainer(tiny_cfg("algorithm.name=fixmatch"), tmp_path / "run", progress=False)
    assert len(trainer.optimizer.param_groups) == 1


def test_labeled_probs_are_the_ema_model_on_weak_views_seeded_by_step(tiny_cfg, tmp_path):
    trainer = build_trainer(tiny_cfg("algorithm.name=adacm"), tmp_path / "run", progress=False)
    trainer.model.train()
    probs, labels = trainer._labeled_probs()
    again, _ = trainer._labeled_probs()
    assert probs.shape == (28, 7) and torch.equal(probs, again)
    assert torch.allclose(probs.sum(dim=1), torch.ones(28))
    assert torch.equal(labels, torch.as_tensor(trainer.run_data.labeled.labels))
    assert trainer.model.training  # the live model is left in training mode
    trainer.step = 1
    assert not torch.equal(trainer._labeled_probs()[0], probs)  # new step, new weak views


def test_periodic_hook_runs_every_epoch_and_resume_is_exact(tiny_cfg, tmp_path):
    cfg = tiny_cfg(
        "algorithm.name=adacm", "algorithm.epoch_steps=3", "train.steps=8", "train.eval_every=8"
    )
    full = train(cfg, tmp_path / "full", progress=False)
    assert train(cfg, tmp_path / "split", progress=False, stop_after=4) is None
    resumed = train(cfg, tmp_path / "split", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["algorithm"]["epoch"] == 2  # the hook ran after steps 3 and 6
    assert (a["algorithm"]["thresholds"] >= 0.8).all()
    for part in ("model", "ema", "algorithm"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"
    assert full["test_acc"] == resumed["test_acc"]


def test_mixup_and_rotation_head_resume_exactly(tiny_cfg, tmp_path):
    cfg = tiny_cfg("algorithm.name=remixmatch", "train.steps=6", "train.eval_every=6")
    train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "split", progress=False, stop_after=3)
    train(cfg, tmp_path / "split", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for part in ("model", "algorithm", "algorithm_modules"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"


# ---- end to end on the embedded data and on digits ----


@pytest.mark.parametrize("dataset", ["synthetic", "digits"])
@pytest.mark.parametrize("name", NAMES)
def test_trains_end_to_end(name, dataset, tiny_cfg, tmp_path):
    cfg = tiny_cfg(
        f"algorithm.name={name}",
        f"data.dataset={dataset}",
        "train.steps=4",
        "train.eval_every=4",
        "train.log_every=2",
        "train.checkpoint_every=4",
        *(["algorithm.epoch_steps=2"] if name == "adacm" else []),
    )
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["algorithm"] == name and summary["steps"] == 4
    assert 0.0 <= summary["test_acc"] <= 1.0
    assert len(summary["class_names"]) == (10 if dataset == "digits" else 7)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    trains = [r for r in records if r["event"] == "train"]
    assert len(trains) == 2
    for record in trains:
        assert math.isfinite(record["loss"])
        assert {"loss_sup"} | EXPECTED_LOGS[name] <= set(record)
