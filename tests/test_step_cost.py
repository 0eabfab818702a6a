"""What a training step costs the host: no synchronisation inside any algorithm's step (LION with
every part of its per-sample machinery busy included) and none in the Trainer's step."""

import pytest
import torch
import torch.nn.functional as F
from fakes import Passthrough

import lionfer.algorithms  # noqa: F401  (registers the algorithms)
from lionfer.algorithms.base import AlgorithmInfo, Batch, Progress
from lionfer.algorithms.hparams import lion_config
from lionfer.algorithms.lion import Lion
from lionfer.config_sections import ModelConfig
from lionfer.models import build_model
from lionfer.registry import ALGORITHMS
from lionfer.syncs import count_syncs
from lionfer.training.run import build_trainer

C, D, M, N, B = 4, 8, 40, 60, 16


def test_the_counter_sees_each_kind_of_sync_and_restores_torch():
    x = torch.arange(6.0)
    with count_syncs() as counted:
        x[0].item()
        bool(x[1] > 0)
        x[x > 2]
        x[torch.tensor([1, 2])]  # integer indices: no sync
        torch.where(x > 2, x, 0.0)  # three arguments: no sync
        torch.where(x > 2)
        x.tolist()
        float(x.sum())
    assert counted.calls == [
        "Tensor.item",
        "Tensor.__bool__",
        "Tensor[mask]",
        "torch.where(cond)",
        "Tensor.tolist",
        "Tensor.__float__",
    ]
    assert "item" not in torch.Tensor.__dict__ and "__getitem__" not in torch.Tensor.__dict__
    with count_syncs() as counted:
        pass
    assert counted.count == 0


def test_on_cuda_a_sync_counts_once(monkeypatch):
    """CUDA's sync debug mode warns for a sync inside a wrapped call (counted by the wrapper) and
    for one no wrapper sees (a blocking copy): each counts once, never twice. The debug mode is
    faked with warnings, so this runs on a CPU."""
    import warnings

    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    item = torch.Tensor.item

    def warning_item(self):
        warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=2)
        return item(self)

    monkeypatch.setattr(torch.Tensor, "item", warning_item)
    x = torch.arange(3.0)
    with count_syncs("cuda") as counted:
        x[0].item()  # the wrapper and the debug mode both see it
        x[1:].sum()  # no sync
        warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)
    assert counted.count == 2, str(counted)
    assert counted.calls[0] == "Tensor.item" and counted.calls[1].startswith("cuda: ")


def busy_lion_batch(generator):
    """Labeled rows that are clear, disputed and unsure; unlabeled rows that are reliable and
    unreliable with small classes; unit features. Probabilities go in as Passthrough rows."""

    def probs(kind, label):
        p = torch.full((C,), 0.1 / (C - 1))
        if kind == "clear":
            p[label] = 0.9
        elif kind == "disputed":
            p = torch.full((C,), 0.02)
            p[(label + 1) % C], p[label] = 0.6, 0.34
        else:
            p = torch.softmax(torch.randn(C, generator=generator), 0)
        return p / p.sum()

    def rows(kinds, labels):
        p = torch.stack([probs(k, int(y)) for k, y in zip(kinds, labels, strict=True)])
        q = F.normalize(torch.randn(len(p), D, generator=generator), dim=1)
        return torch.cat([p.log(), q], dim=1)

    labels = torch.randint(0, C, (B,), generator=generator)
    kinds = ["clear", "disputed", "unsure", "clear"] * (B // 4)
    pseudo = torch.randint(0, C, (B,), generator=generator)
    ulb_kinds = ["clear", "unsure"] * (B // 2)
    x_w = rows(ulb_kinds, pseudo)
    return Batch(
        rows(kinds, labels),
        labels,
        torch.randperm(M, generator=generator)[:B],
        x_w,
        x_w + 0.1 * torch.randn(x_w.shape, generator=generator),
        torch.randperm(N, generator=generator)[:B],
    )


def busy_lion():
    """LION after its start: prototypes for every class, some samples already ambiguous."""
    generator = torch.Generator().manual_seed(0)
    cfg = lion_config(  # thresholds that this batch meets, so every part of the step runs
        "robust",
        disambiguation_start=0.0,
        min_visits=1,
        reliable_threshold=0.85,
        complementary_threshold=0.05,
        bank_keep=1,
    )
    lion = Lion(cfg, AlgorithmInfo(C, M, N, D, torch.randint(0, C, (M,), generator=generator)))
    lion.prototypes = F.normalize(torch.randn(C, D, generator=generator), dim=1)
    lion.prototype_ready[:] = True
    lion.started.fill_(True)
    return lion, generator


def test_a_busy_lion_step_syncs_no_more_than_fixmatch_and_uses_every_part():
    lion, generator = busy_lion()
    model = Passthrough(C)
    for step in range(3):  # visits accumulate: candidates, weights, relabels, the bank
        batch = busy_lion_batch(generator)
        before = {k: v.clone() for k, v in lion.state_dict().items()}
        with count_syncs() as lion_syncs:
            out = lion.step(model, batch, Progress(10 + step, 100))
        assert lion_syncs.count == 0, str(lion_syncs)
    assert 0 < float(out.logs["mask_rate"]) < 1
    assert 0 < float(out.logs["clear_rate"]) < 1 and float(out.logs["ambiguous_rate"]) > 0
    assert not torch.equal(before["prototypes"], lion.prototypes)
    assert lion.ambiguous.any() and lion.candidates.any() and lion.bank.any()
    assert (lion.relabel_step >= 0).any()

    fixmatch = ALGORITHMS.get("fixmatch")(ALGORITHMS.entry("fixmatch").config(), lion.info)
    with count_syncs() as fixmatch_syncs:
        fixmatch.step(model, batch, Progress(12, 100))
    assert lion_syncs.count <= fixmatch_syncs.count


@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_no_algorithm_syncs_inside_its_step(name):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="cnn_small"), 3).train()
    cls = ALGORITHMS.get(name)
    given = torch.tensor([0, 1, 2, 0, 1, 2])
    algorithm = cls(ALGORITHMS.entry(name).config(), AlgorithmInfo(3, 6, 8, 128, given))
    views = tuple(torch.randn(4, 3, 16, 16) for _ in cls.views)
    idx_ulb = torch.tensor([0, 3, 5, 7]) if views else None
    batch = Batch.from_views(
        torch.randn(4, 3, 16, 16), given[:4], torch.arange(4), cls.views, views, idx_ulb
    )
    algorithm.step(model, batch, Progress(20, 100))
    with count_syncs() as counted:
        algorithm.step(model, batch, Progress(21, 100))
    assert counted.count == 0, str(counted)


@pytest.mark.parametrize(
    "overrides", [["algorithm.name=fixmatch"], ["algorithm.evidence_start=0.0"]]
)
def test_the_trainer_step_reads_nothing_back(tiny_cfg, tmp_path, overrides):
    cfg = tiny_cfg(*overrides)
    trainer = build_trainer(cfg, tmp_path / "run", progress=False)
    # Adam on the CPU reads its step counters (CPU tensors even on a GPU); fused Adam, the one a
    # GPU run uses, does not.
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    trainer.optimizer = torch.optim.Adam(params, lr=cfg.train.lr, fused=True)
    labeled, unlabeled = trainer.loaders()
    labeled, unlabeled = iter(labeled), iter(unlabeled)
    trainer.train_step(next(labeled), next(unlabeled))
    lb, ulb = next(labeled), next(unlabeled)
    with count_syncs() as counted:
        trainer.train_step(lb, ulb)
    assert counted.count == 0, str(counted)
    assert trainer.window.count == 2 and "loss" in trainer.window.means()
