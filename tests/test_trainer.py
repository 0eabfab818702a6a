"""The training loop: run folder contract, resume = uninterrupted, NaN stop, no overwrite."""

import csv
import json
import math
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lionfer.config_sections import ModelConfig
from lionfer.data.images import ImageError
from lionfer.errors import (
    CheckpointError,
    ConfigError,
    InputError,
    Interrupted,
    NonFiniteLoss,
    RunExistsError,
)
from lionfer.labels import CLASS_NAMES
from lionfer.training.checkpoint import check_state_fits, load_checkpoint
from lionfer.training.metrics_log import MetricsLog
from lionfer.training.run import train


@pytest.mark.parametrize("algorithm", ["supervised", "fixmatch", "lion"])
def test_every_algorithm_writes_the_run_contract(tiny_cfg, tmp_path, algorithm):
    out = tmp_path / algorithm
    summary = train(tiny_cfg(f"algorithm.name={algorithm}"), out, progress=False)
    for name in (
        "config.toml",
        "meta.json",
        "split.json",
        "metrics.jsonl",
        "summary.json",
        "relabels.csv",
        "confusion.csv",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "summary.json").read_text())
    assert saved == summary
    for key in (
        "algorithm",
        "dataset",
        "num_labels",
        "seed",
        "steps",
        "test_acc",
        "test_acc_raw",
        "mean_class_acc",
        "per_class_acc",
        "confusion_matrix",
    ):
        assert key in summary, key
    assert summary["algorithm"] == algorithm and summary["steps"] == 12
    assert summary["num_labels"] == 28 and 0.0 <= summary["test_acc"] <= 1.0
    assert sum(map(sum, summary["confusion_matrix"])) == 70
    events = [
        json.loads(line)["event"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert events.count("eval") == 2 and events[0] == "start"
    if algorithm == "lion":
        assert {"count", "precision", "recall"} <= set(summary["relabel"])
        assert {"mean_size", "correct_fraction"} <= set(summary["clb"])
        assert "pseudo_label_acc" in summary or summary["mask_rate"] == 0
    with (out / "relabels.csv").open() as f:
        assert next(csv.reader(f))[:6] == [
            "index",
            "id",
            "given_label",
            "current_label",
            "step",
            "true_label",
        ]


def test_resume_equals_uninterrupted(tiny_cfg, tmp_path):
    cfg = tiny_cfg("algorithm.name=lion", "algorithm.evidence_start=0.25")
    full = train(cfg, tmp_path / "full", progress=False)
    assert train(cfg, tmp_path / "split", progress=False, stop_after=5) is None
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["step"] == 5
    resumed = train(cfg, tmp_path / "split", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for part in ("model", "ema", "algorithm"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"
    assert without_speed(full) == without_speed(resumed)  # every figure of the summary
    assert replayed(tmp_path / "full") == replayed(tmp_path / "split")


def replayed(run: Path) -> list[dict]:
    """The train and eval records of a run, without the measured speed."""
    records = MetricsLog(run / "metrics.jsonl").records()
    return [without_speed(r) for r in records if r["event"] in ("train", "eval")]


def test_existing_run_is_never_overwritten_unless_asked(tiny_cfg, tmp_path):
    cfg = tiny_cfg("algorithm.name=supervised", "train.steps=2", "train.eval_every=2")
    train(cfg, tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "summary.json").read_text()
    with pytest.raises(RunExistsError, match="resume=True"):
        train(cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "summary.json").read_text() == before
    train(cfg, tmp_path / "run", overwrite=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(cfg, tmp_path / "other", resume=True, progress=False)


def test_nan_loss_stops_naming_the_step(tiny_cfg, tmp_path):
    cfg = tiny_cfg("algorithm.name=supervised", "train.lr=1e30", "train.steps=50")
    with pytest.raises(NonFiniteLoss) as info:
        train(cfg, tmp_path / "run", progress=False)
    message = str(info.value)
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    last = json.loads(records[-1])
    assert last["event"] == "error" and last["error"] == f"NonFiniteLoss: {message}"
    assert last["checkpoint"] == "checkpoints/error.pt"  # the state that gave the NaN
    first = last["non_finite_step"]
    noticed = "" if first == last["step"] else f", noticed at step {last['step']}"
    assert message.startswith(f"loss is nan at step {first}{noticed} ")  # the event's steps
    saved = f"the state at step {last['step']} is saved as {tmp_path / 'run' / last['checkpoint']}"
    assert message.endswith(f"; {saved}, for inspection only")
    assert "no checkpoint of this run was saved" not in message  # error.pt was
    assert load_checkpoint(tmp_path / "run" / last["checkpoint"])["step"] == last["step"]


def refuse_non_standard(constant: str):
    raise ValueError(f"{constant} is not standard JSON")


def test_a_non_finite_step_is_named_and_no_checkpoint_follows_it(tiny_cfg, tmp_path, monkeypatch):
    from lionfer.algorithms.supervised import Supervised

    original = Supervised.step

    def nan_at_step_4(self, model, batch, progress):
        out = original(self, model, batch, progress)
        if progress.step == 4:  # read back only at the next boundary (step 6), not at once
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Supervised, "step", nan_at_step_4)
    cfg = tiny_cfg("algorithm.name=supervised", "train.checkpoint_every=2")
    # the 5th step (Progress counts from 0) went NaN; it is read at the checkpoint of step 6
    last = re.escape(str(tmp_path / "run" / "checkpoints" / "last.pt"))
    message = (
        r"loss is nan at step 5, noticed at step 6 .*; "
        rf"the last good checkpoint is {last} \(step 4\); "
        r"the state at step 6 is saved as .*error\.pt, for inspection only$"
    )
    with pytest.raises(NonFiniteLoss, match=message):
        train(cfg, tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 4
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "error.pt")["step"] == 6
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line, parse_constant=refuse_non_standard) for line in lines]
    assert records[-1]["event"] == "error" and records[-1]["checkpoint"] == "checkpoints/error.pt"
    assert records[-1]["step"] == 6 and records[-1]["non_finite_step"] == 5
    assert records[-1]["loss"] == "NaN" and math.isnan(float(records[-1]["loss"]))  # its logs,
    assert math.isfinite(records[-1]["loss_sup"])  # in standard JSON
    assert [r["step"] for r in records if r["event"] == "train"] == [3]  # none after the NaN


def test_ctrl_c_saves_a_checkpoint_first(tiny_cfg, tmp_path, monkeypatch):
    from lionfer.training.trainer import Trainer

    original = Trainer.train_step

    def interrupt_at_step_3(self, lb, ulb):
        if self.step == 3:
            raise KeyboardInterrupt
        original(self, lb, ulb)

    monkeypatch.setattr(Trainer, "train_step", interrupt_at_step_3)
    cfg = tiny_cfg("algorithm.name=fixmatch")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 3
    monkeypatch.setattr(Trainer, "train_step", original)
    assert train(cfg, tmp_path / "run", resume=True, progress=False)["steps"] == 12


def test_a_ctrl_c_during_an_evaluation_keeps_the_last_saved_checkpoint(
    tiny_cfg, tmp_path, monkeypatch
):
    """A last.pt of the step whose evaluation was cut short would resume after it: that
    evaluation would never be made."""
    from lionfer.training.trainer import Trainer

    original = Trainer._evaluate

    def interrupt_at_step_6(self):
        if self.step == 6:
            signal.raise_signal(signal.SIGINT)  # the first Ctrl-C: stop at the next boundary
            raise KeyboardInterrupt  # the second, while the evaluation runs
        return original(self)

    monkeypatch.setattr(Trainer, "_evaluate", interrupt_at_step_6)
    cfg = tiny_cfg("algorithm.name=fixmatch", "train.checkpoint_every=4", "train.eval_every=6")
    with pytest.raises(Interrupted, match="at step 6; checkpoints/last.pt keeps step 4; resume"):
        train(cfg, tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 4
    monkeypatch.setattr(Trainer, "_evaluate", original)
    train(cfg, tmp_path / "run", resume=True, progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in records if r["event"] == "eval"] == [6, 12]


def test_pretrained_weights_are_loaded_and_reported(tiny_cfg, tmp_path, capsys):

    from lionfer.models import build_model

    source = build_model(ModelConfig(name="cnn_small"), 7)
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    cfg_items = ("algorithm.name=supervised", "train.steps=2", "train.eval_every=2")
    cfg = tiny_cfg(*cfg_items, f"model.pretrained={tmp_path / 'weights.pt'}")
    train(cfg, tmp_path / "run", progress=False)
    start = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["weights"].startswith("loaded") and "weights.pt" in start["weights"]
    # a lionfer checkpoint of the same classes in another order: its head's rows follow the
    # names, and the command line says so before training
    from lionfer.labels import CLASS_NAMES

    torch.save(
        {"ema": source.state_dict(), "class_names": list(reversed(CLASS_NAMES))},
        tmp_path / "last.pt",
    )
    capsys.readouterr()
    cfg = tiny_cfg(*cfg_items, f"model.pretrained={tmp_path / 'last.pt'}")
    train(cfg, tmp_path / "run3", progress=False, command="lionfer train")
    note = capsys.readouterr().err
    assert "note: model.pretrained: loaded" in note
    assert f"matched its head to this run's classes by name ({', '.join(CLASS_NAMES)} from" in note
    trained = torch.load(tmp_path / "run3" / "checkpoints" / "last.pt", weights_only=True)
    assert trained["class_names"] == list(CLASS_NAMES)
    missing = tiny_cfg(f"model.pretrained={tmp_path / 'nope.pt'}")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        train(missing, tmp_path / "run2", progress=False)
    assert not (tmp_path / "run2").exists()  # a failed start leaves no run folder behind


def save_png(path: Path, seed: int, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def faces_with_unlabeled(root: Path, unlabeled: int = 4) -> list[str]:
    for c, name in enumerate(CLASS_NAMES):
        for k in range(3):
            save_png(root / "faces" / name.lower() / f"{k}.png", seed=10 * c + k)
    for k in range(unlabeled):
        save_png(root / "unlabeled" / f"{k}.png", seed=100 + k)
    return [
        "data.dataset=folder",
        f"data.root={root / 'faces'}",
        f"data.unlabeled_root={root / 'unlabeled'}",
        "data.num_labels=7",
        "data.image_size=16",
        "algorithm.name=supervised",
        "train.steps=2",
        "train.eval_every=2",
    ]


def test_a_corrupt_unlabeled_image_is_caught_before_step_1_or_skipped(tiny_cfg, tmp_path):
    overrides = faces_with_unlabeled(tmp_path)
    broken = tmp_path / "unlabeled" / "2.png"
    broken.write_bytes(broken.read_bytes()[:50])
    with pytest.raises(ImageError, match=r"1 of 4 unlabeled images cannot be read.*2\.png"):
        train(tiny_cfg(*overrides), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # found before the run folder was made
    summary = train(tiny_cfg(*overrides, "data.skip_bad=true"), tmp_path / "run", progress=False)
    note = "skipped 1 unreadable unlabeled images (data.skip_bad=true): unlabeled/2.png"
    assert note in summary["notes"]
    assert summary["num_unlabeled"] == 7 + 3  # the unlabeled half of train, and 3 extra images
    start = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert note in start["notes"]


def test_resume_refuses_a_changed_unlabeled_folder(tiny_cfg, tmp_path):
    cfg = tiny_cfg(*faces_with_unlabeled(tmp_path))
    assert train(cfg, tmp_path / "run", progress=False, stop_after=1) is None
    (tmp_path / "unlabeled" / "3.png").unlink()
    with pytest.raises(InputError, match="4 then, 3 now; missing: unlabeled/3.png"):
        train(None, tmp_path / "run", resume=True, progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 1
    save_png(tmp_path / "unlabeled" / "3.png", seed=103)  # back as it was
    save_png(tmp_path / "faces" / "happiness" / "9.png", seed=999)  # a new training image
    with pytest.raises(InputError, match=r"training images or their labels changed since the run"):
        train(None, tmp_path / "run", resume=True, progress=False)
    (tmp_path / "faces" / "happiness" / "9.png").unlink()
    assert train(None, tmp_path / "run", resume=True, progress=False)["steps"] == 2


def test_per_sample_state_must_cover_the_sets_it_indexes():
    from types import SimpleNamespace

    run_data = SimpleNamespace(
        data=SimpleNamespace(class_names=("a", "b")), labeled=[0] * 4, unlabeled=[0] * 300
    )
    fresh = {"label": torch.zeros(4), "bank": torch.zeros(300, 2, dtype=torch.bool)}
    saved = {"label": torch.zeros(4), "bank": torch.zeros(301, 2, dtype=torch.bool)}
    state = {"class_names": ["a", "b"], "algorithm": saved}
    with pytest.raises(
        CheckpointError, match=r"'bank' has shape \(301, 2\), but the unlabeled set"
    ):
        check_state_fits(state, fresh, run_data, Path("last.pt"))
    check_state_fits({**state, "algorithm": fresh}, fresh, run_data, Path("last.pt"))
    with pytest.raises(CheckpointError, match="trained on the classes"):
        check_state_fits({**state, "class_names": ["a", "c"]}, fresh, run_data, Path("last.pt"))


def test_a_class_without_labels_is_a_warning_and_a_note(tiny_cfg):
    from lionfer.data.pipeline import build_run_data

    cfg = tiny_cfg("data.num_labels=3")
    with pytest.warns(UserWarning, match=r"4 of 7 classes get no labeled image") as caught:
        run_data = build_run_data(cfg.data, cfg.seed)
    assert "data.num_labels=3 is too small" in str(caught[0].message)
    assert "the test images of those classes count as errors" in str(caught[0].message)
    assert any("get no labeled image" in note for note in run_data.data.notes)


SMALL = ("data.num_train=70", "data.num_test=14", "data.num_labels=14", "train.steps=4")


def edit_config(run: Path, section: str, key: str, value: str) -> None:
    """Set `key = value` in [section] of the run's config.toml, as a user would by hand."""
    lines, current = (run / "config.toml").read_text().splitlines(), ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.partition("=")[0].strip() == key:
            lines[i] = f"{key} = {value}"
    (run / "config.toml").write_text("\n".join(lines) + "\n")


def test_resume_refuses_a_config_toml_edited_to_train_otherwise(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg("algorithm.name=supervised", *SMALL)
    assert train(cfg, run, progress=False, stop_after=2) is None
    records = (run / "metrics.jsonl").read_text()
    edit_config(run, "train", "lr", "0.01")
    edit_config(run, "", "seed", "3")
    with pytest.raises(CheckpointError, match=r"seed \(0 then, 3 now\), train.lr \(0.0005 then"):
        train(None, run, resume=True, progress=False)
    assert (run / "metrics.jsonl").read_text() == records  # nothing written
    edit_config(run, "train", "lr", "0.0005")
    edit_config(run, "", "seed", "0")
    edit_config(run, "train", "eval_every", "1")  # how the run is carried out: allowed
    edit_config(run, "data", "num_workers", "1")
    assert train(None, run, resume=True, progress=False)["steps"] == 4
    resume = [r for r in MetricsLog(run / "metrics.jsonl").records() if r["event"] == "resume"]
    assert resume[0]["changed"] == {"data.num_workers": [0, 1], "train.eval_every": [6, 1]}


def test_resume_may_raise_train_steps_and_says_what_that_changes(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg("algorithm.name=supervised", *SMALL)
    assert train(cfg, run, progress=False, stop_after=3) is None
    edit_config(run, "train", "steps", "2")
    with pytest.raises(CheckpointError, match="at step 3, past train.steps=2.*3 or more"):
        train(None, run, resume=True, progress=False)
    edit_config(run, "train", "steps", "6")
    with pytest.warns(UserWarning, match="train.steps is 6 .*4 when the run began"):
        assert train(None, run, resume=True, progress=False)["steps"] == 6


def test_resume_with_another_config_given_is_refused_not_ignored(tiny_cfg, tmp_path):
    cfg = tiny_cfg("algorithm.name=supervised", *SMALL)
    assert train(cfg, tmp_path / "run", progress=False, stop_after=2) is None
    other = tiny_cfg("algorithm.name=supervised", *SMALL, "train.lr=0.01")
    with pytest.raises(ConfigError, match=r"differs from it: train.lr \(0.0005 there, 0.01 given"):
        train(other, tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ConfigError, match="either resumed or overwritten"):
        train(cfg, tmp_path / "run", resume=True, overwrite=True, progress=False)
    assert train(cfg, tmp_path / "run", resume=True, progress=False)["steps"] == 4


def test_a_run_resumes_without_the_weights_file_it_began_from(tiny_cfg, tmp_path):
    from lionfer.models import build_model

    weights = tmp_path / "weights.pt"
    torch.save(build_model(ModelConfig(name="cnn_small"), 7).state_dict(), weights)
    cfg = tiny_cfg("algorithm.name=supervised", *SMALL, f"model.pretrained={weights}")
    full = train(cfg, tmp_path / "full", progress=False)
    assert train(cfg, tmp_path / "run", progress=False, stop_after=2) is None
    weights.unlink()  # moved or deleted: the checkpoint holds the weights since
    assert (
        train(None, tmp_path / "run", resume=True, progress=False)["test_acc"] == full["test_acc"]
    )


def without_speed(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "steps_per_s"}


def test_two_runs_in_one_process_repeat_and_leave_the_random_generators(tiny_cfg, tmp_path):
    import random
    import threading

    cfg = tiny_cfg("algorithm.name=fixmatch", *SMALL)
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    first = train(cfg, tmp_path / "a", progress=False)
    after = (torch.rand(1), random.random(), np.random.rand())
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    assert (torch.rand(1), random.random(), np.random.rand()) == after  # as train() found them
    done = {}
    thread = threading.Thread(  # not the main thread: no signal handlers, the same run
        target=lambda: done.update(summary=train(cfg, tmp_path / "b", progress=True))
    )
    thread.start()
    thread.join()
    assert without_speed(done["summary"]) == without_speed(first)
    assert_same_checkpoints(tmp_path / "a", tmp_path / "b")


def test_train_restores_the_gpu_generators_where_cuda_is_in_use(monkeypatch):
    from lionfer.training.run import random_state, set_random_state

    restored = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: ["gpu0", "gpu1"])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    set_random_state(random_state())
    assert restored == [["gpu0", "gpu1"]]
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # CUDA not started: unread
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("CUDA started"))
    set_random_state(random_state())
    assert restored == [["gpu0", "gpu1"]]


def test_a_generator_restore_that_fails_hides_no_error_and_frees_train(monkeypatch, tmp_path):
    from lionfer.errors import InputError
    from lionfer.training import run as run_module

    def refuses(*state):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(run_module, "set_random_state", refuses)
    (tmp_path / "file").write_text("")
    for _ in range(2):  # the second is not refused as "already running"
        with pytest.raises(InputError, match="inside a file|is a file|not a folder"):
            train(None, tmp_path / "file" / "run", resume=True, progress=False)
    monkeypatch.setattr(run_module, "random_state", refuses)  # reading them fails too
    with pytest.raises(RuntimeError, match="device-side assert"):
        train(None, tmp_path / "file" / "run", resume=True, progress=False)
    monkeypatch.undo()
    with pytest.raises(InputError, match="inside a file|is a file|not a folder"):  # not "running"
        train(None, tmp_path / "file" / "run", resume=True, progress=False)


def assert_same_checkpoints(a: Path, b: Path) -> None:
    first, second = (load_checkpoint(run / "checkpoints" / "last.pt") for run in (a, b))
    for part in ("model", "ema", "optimizer", "algorithm"):
        for key, value in first[part].items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, second[part][key]), f"{part}.{key}"


def test_one_run_at_a_time_in_a_process(tiny_cfg, tmp_path):
    from lionfer.training import run

    assert run._RUNNING.acquire(blocking=False)  # as while another thread trains
    try:
        with pytest.raises(InputError, match="already running in this process"):
            train(tiny_cfg(*SMALL), tmp_path / "run", progress=False)
    finally:
        run._RUNNING.release()
    assert not (tmp_path / "run").exists()
    assert train(tiny_cfg("algorithm.name=supervised", *SMALL), tmp_path / "run", progress=False)


def test_resuming_a_finished_run_leaves_its_summary_as_it_was(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg("algorithm.name=fixmatch", *SMALL)
    first = train(cfg, run, progress=False)
    files = {name: (run / name).read_text() for name in ("relabels.csv", "confusion.csv")}
    again = train(None, run, resume=True, progress=False)
    assert "mask_rate" in first and without_speed(again) == without_speed(first)
    assert {name: (run / name).read_text() for name in files} == files


def test_train_takes_a_config_and_says_how_to_build_one(tmp_path):
    from lionfer.errors import ConfigError

    for cfg in ("cfg.toml", {"train": {"steps": 3}}):
        with pytest.raises(ConfigError, match=r"train\(\) takes a Config, not a (str|dict): "):
            train(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match=r"needs a Config unless it resumes a run"):
        train(None, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_logs_a_warning_it_logged_before_it_stopped_once(tiny_cfg, tmp_path):
    """LION warns once a run (its flag is not in the checkpoint): the resumed process warns
    again, and metrics.jsonl still holds the warning once, as a run never stopped does."""
    import warnings

    from lionfer.training.metrics_log import MetricsLog

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"event": "warning", "step": 3, "message": "began at step 2 with 0% clear"})
    with warnings.catch_warnings(), log.recording_warnings(lambda: 9):
        warnings.warn("began at step 2 with 0% clear", stacklevel=1)
        warnings.warn("something new", stacklevel=1)
    assert [(r["step"], r["message"]) for r in log.records()] == [
        (3, "began at step 2 with 0% clear"),
        (9, "something new"),
    ]


def test_a_finished_run_that_trains_on_reads_as_unfinished_until_it_ends(tiny_cfg, tmp_path):
    from lionfer.config import replace, save_config

    run = tmp_path / "run"
    cfg = tiny_cfg("algorithm.name=fixmatch", "train.steps=6", "train.eval_every=3")
    train(cfg, run, progress=False)
    save_config(replace(cfg, "train.steps=12"), run / "config.toml")
    with pytest.warns(UserWarning, match="train.steps is 12"):
        assert train(None, run, resume=True, progress=False, stop_after=3) is None
    assert not any(
        (run / name).exists() for name in ("summary.json", "relabels.csv", "confusion.csv")
    )
    assert train(None, run, resume=True, progress=False)["steps"] == 12
    assert json.loads((run / "summary.json").read_text())["steps"] == 12
