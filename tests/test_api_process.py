"""lionfer's Python API in a long-lived process (a notebook): a run trained in a background
thread records only its own warnings and leaves nothing installed; loading a model draws nothing
from torch's global generator; train() trains under no_grad and refuses a float64 default dtype
and bad arguments before writing; a failed run stops its loader workers; "~" in every path."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
import threading
import warnings

import pytest
import torch
from conftest import tiny
from PIL import Image

import lionfer
from lionfer.config import load_config
from lionfer.errors import InputError
from lionfer.evaluate import evaluate_run
from lionfer.inference.audit import relabel_rows
from lionfer.training import train
from lionfer.training.metrics_log import MetricsLog, WarningRecorder

SHORT = ("train.steps=2", "train.eval_every=2", "train.log_every=2", "train.checkpoint_every=2")


def short(*overrides):
    return load_config(None, tiny(*SHORT, *overrides))


def warning_messages(run) -> list[str]:
    """The messages of the "warning" events in run/metrics.jsonl."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["message"] for r in records if r["event"] == "warning"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A home folder holding a trained run, runs/x, and a face crop, face.png."""
    folder = tmp_path_factory.mktemp("home")
    train(short(), folder / "runs" / "x", progress=False)
    Image.new("RGB", (32, 32), (120, 90, 60)).save(folder / "face.png")
    return folder


# ---- 1 and 6: warnings ----


def test_warnings_are_recorded_from_the_training_thread_only_and_shown_by_the_callers_filters(
    tmp_path,
):
    run, shown = tmp_path / "run", []
    run.mkdir()
    log = MetricsLog(run / "metrics.jsonl")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filters.insert(0, ("default", None, DeprecationWarning, "__main__", 0))  # Python's
        warnings.filterwarnings("ignore", message="quiet")
        warnings.filterwarnings("error", message="loud")
        warnings.showwarning = lambda message, *rest, **kw: shown.append(str(message))
        with log.recording_warnings(lambda: 3):
            for _ in range(2):
                warnings.warn("twice here", UserWarning, stacklevel=1)
            warnings.warn("quiet", UserWarning, stacklevel=1)  # ignored: recorded, not shown
            with pytest.raises(UserWarning, match="loud"):
                warnings.warn("loud", UserWarning, stacklevel=1)
            other = threading.Thread(target=warnings.warn, args=("another thread's",))
            other.start()
            other.join()
            leaked = warnings.showwarning  # as another thread's catch_warnings may put it back
        recorded = warning_messages(run)
        leaked("after the run", UserWarning, __file__, 1)
        assert warning_messages(run) == recorded
        shutil.rmtree(run)  # the run folder deleted: a leaked recorder still only shows
        leaked("after the folder went", UserWarning, __file__, 2)
        assert warnings.showwarning is not leaked and not run.exists()
    assert recorded == ["twice here", "quiet", "loud"]
    assert shown == ["twice here", "another thread's", "after the run", "after the folder went"]


def test_a_run_records_its_warnings_under_the_callers_ignore_filter(tmp_path, monkeypatch):
    from lionfer.algorithms.supervised import Supervised

    step = Supervised.step

    def warns(self, model, batch, progress):
        if progress.step == 1:
            warnings.warn("the run's own warning", UserWarning, stacklevel=2)
        return step(self, model, batch, progress)

    monkeypatch.setattr(Supervised, "step", warns)
    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a notebook silencing library noise
        warnings.showwarning = lambda message, *rest, **kw: shown.append(str(message))
        train(short("algorithm.name=supervised"), tmp_path / "run", progress=False)
    assert warning_messages(tmp_path / "run") == ["the run's own warning"]
    assert shown == []  # what is shown still follows the caller's filters


def test_a_background_run_records_neither_other_threads_warnings_nor_any_after_it(
    tmp_path, monkeypatch
):
    from lionfer.algorithms.supervised import Supervised

    step, training, go_on = Supervised.step, threading.Event(), threading.Event()

    def warns_then_waits(self, model, batch, progress):
        if progress.step == 1:
            warnings.warn("the run's own warning", UserWarning, stacklevel=2)
            training.set()
            assert go_on.wait(60)
        return step(self, model, batch, progress)

    monkeypatch.setattr(Supervised, "step", warns_then_waits)
    run, shown = tmp_path / "run", []
    cfg = short("algorithm.name=supervised")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *rest, **kw: shown.append(str(message))
        thread = threading.Thread(target=train, args=(cfg, run), kwargs={"progress": False})
        thread.start()
        assert training.wait(60)
        warnings.warn("the notebook's own warning", UserWarning, stacklevel=1)
        with warnings.catch_warnings():  # entered during the run, left after it: puts it back
            go_on.set()
            thread.join()
        warnings.warn("a warning after the run", UserWarning, stacklevel=1)
        assert warning_messages(run) == ["the run's own warning"]
        shutil.rmtree(run)  # the user deletes a finished trial run
        warnings.warn("a warning after the run folder went", UserWarning, stacklevel=1)
    assert "the notebook's own warning" in shown and "a warning after the run" in shown
    assert not run.exists()


def test_a_leaked_finished_recorder_shows_by_the_filters_now_less_the_runs_own_always(tmp_path):
    log, shown = MetricsLog(tmp_path / "metrics.jsonl"), []
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # as Python's defaults
        warnings.showwarning = lambda message, *rest, **kw: shown.append(str(message))
        straddling = warnings.catch_warnings()  # another thread's, entered during the run
        with log.recording_warnings(lambda: 0):
            straddling.__enter__()
        straddling.__exit__(None, None, None)  # left after it: the recorder and "always" back
        assert isinstance(warnings.showwarning, WarningRecorder)
        warnings.simplefilter("always", DeprecationWarning)  # the user asks to see these now
        for _ in range(2):
            warnings.warn("deprecated", DeprecationWarning, stacklevel=1)
            warnings.warn("default: once here", UserWarning, stacklevel=1)  # not the run's always
        warnings.simplefilter("always")  # the user's own, equal to the run's: it counts
        for _ in range(2):
            warnings.warn("always now", UserWarning, stacklevel=1)
    assert shown == ["deprecated", "default: once here", "deprecated", "always now", "always now"]


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_a_forked_workers_copy_of_the_recorder_shows_but_records_nothing(tmp_path):
    log, pipe = MetricsLog(tmp_path / "metrics.jsonl"), multiprocessing.get_context("fork").Pipe()
    shown = []

    def worker():  # as a DataLoader worker, forked by the training thread during the run
        warnings.warn("a worker's warning", UserWarning, stacklevel=1)
        pipe[1].send(shown)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *rest, **kw: shown.append(str(message))
        with log.recording_warnings(lambda: 0):
            process = multiprocessing.get_context("fork").Process(target=worker)
            process.start()
            process.join(60)
            warnings.warn("the run's own warning", UserWarning, stacklevel=1)
    assert process.exitcode == 0 and pipe[0].recv() == ["a worker's warning"]
    assert warning_messages(tmp_path) == ["the run's own warning"]


# ---- 2: no draws from torch's global generator ----


def test_loading_and_evaluating_a_model_draw_nothing_from_torchs_generator(home):
    run = home / "runs" / "x"
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    lionfer.load(run, detector="haar")
    evaluate_run(run, device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_a_model_built_without_drawing_holds_every_tensor_of_its_checkpoint(home):
    from lionfer.training.checkpoint import checkpoint_model, load_checkpoint

    path = home / "runs" / "x" / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    model = checkpoint_model(state, path)
    loaded = model.state_dict()
    assert loaded.keys() == state["ema"].keys() and not model.training
    for key, value in state["ema"].items():  # BatchNorm's statistics and num_batches_tracked too
        assert torch.equal(loaded[key], value) and loaded[key].dtype == value.dtype
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def test_a_model_with_tensors_no_checkpoint_holds_is_built_as_in_training(home, monkeypatch):
    from lionfer.training import checkpoint

    build = checkpoint.build_model

    def with_a_table(cfg, num_classes):  # as timm's Swin: a buffer that no state dict holds
        model = build(cfg, num_classes)
        model.register_buffer("table", torch.arange(3.0), persistent=False)
        return model

    monkeypatch.setattr(checkpoint, "build_model", with_a_table)
    path = home / "runs" / "x" / "checkpoints" / "last.pt"
    state = checkpoint.load_checkpoint(path)
    model = checkpoint.checkpoint_model(state, path)
    assert torch.equal(model.table, torch.arange(3.0))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state["ema"].items())


def test_building_the_mtcnn_detector_draws_nothing_from_torchs_generator():
    from lionfer.data import faces
    from lionfer.data.mtcnn import load_state

    faces._mtcnn.cache_clear()
    try:
        torch.manual_seed(0)
        expected = torch.rand(3)
        torch.manual_seed(0)
        detector = faces._mtcnn()
        assert torch.equal(torch.rand(3), expected)
        weights = detector.onet.state_dict()
        assert all(torch.equal(weights[k], v) for k, v in load_state("onet").items())
    finally:
        faces._mtcnn.cache_clear()


# ---- 3: grad mode and default dtype ----


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_train_trains_under_the_callers_no_grad_or_inference_mode(tmp_path, mode):
    with mode():
        summary = train(short("algorithm.name=supervised"), tmp_path / "run", progress=False)
        assert not torch.is_grad_enabled()  # the caller's mode, as it was
    assert summary is not None and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_train_refuses_a_default_dtype_other_than_float32_before_writing(tmp_path):
    cfg = short()
    torch.set_default_dtype(torch.float64)
    try:
        with pytest.raises(InputError, match=r"torch.set_default_dtype\(torch.float32\)"):
            train(cfg, tmp_path / "run", progress=False)
    finally:
        torch.set_default_dtype(torch.float32)
    assert not (tmp_path / "run").exists()


# ---- 4: loader workers ----


def test_a_failed_run_stops_its_loader_workers_while_its_error_is_kept(tmp_path, monkeypatch):
    from lionfer.algorithms.supervised import Supervised

    def fails(self, model, batch, progress):
        raise RuntimeError("a step failed")

    monkeypatch.setattr(Supervised, "step", fails)
    cfg = short("algorithm.name=supervised", "data.num_workers=1")
    before, kept = set(multiprocessing.active_children()), []
    try:
        train(cfg, tmp_path / "run", progress=False)
    except RuntimeError as error:
        kept.append(error)  # as IPython keeps sys.last_value
    assert kept and "a step failed" in str(kept[0])
    assert set(multiprocessing.active_children()) <= before


# ---- 5: "~" ----


def test_a_path_beginning_with_a_tilde_is_in_the_home_folder(home, monkeypatch, capsys):
    from lionfer.cli import main

    monkeypatch.setenv("HOME", str(home))
    predictor = lionfer.load("~/runs/x", detector="haar")
    assert predictor.info.path == str(home / "runs" / "x" / "checkpoints" / "last.pt")
    table = predictor.predict("~/face.png", cropped=True)
    assert table.loc[0, "error"] is None and table.loc[0, "source"] == str(home / "face.png")
    assert evaluate_run("~/runs/x", device="cpu")["run"] == str(home / "runs" / "x")
    columns, rows = relabel_rows("~/runs/x")
    assert rows and "index" in columns
    assert main(["evaluate", "~/runs/x", "--device", "cpu"]) == 0  # quoted: no shell expands it


# ---- 7: train()'s arguments ----


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"out": None}, r"out must be a folder path \(a str or a Path\), got None"),
        ({"stop_after": "2"}, "stop_after must be None .*an int >= 0.*got '2'"),
        ({"stop_after": True}, "stop_after must be None .*got True"),
        ({"stop_after": -1}, "stop_after must be None .*got -1"),
        ({"overwrite": "no"}, "overwrite must be True or False, got 'no'"),
        ({"resume": 1}, "resume must be True or False, got 1"),
        ({"progress": None}, "progress must be True or False, got None"),
        ({"seed": "1"}, r"seed must be an int from 0 to 2\*\*63 - 1, got '1'.*seed=1\)"),
        ({"seed": -1}, r"seed must be an int from 0 to 2\*\*63 - 1, got -1"),
        ({"seed": 2**63}, r"seed must be an int from 0 to 2\*\*63 - 1, got 9223372036854775808"),
    ],
)
def test_train_refuses_arguments_of_the_wrong_kind_before_writing(tmp_path, arguments, says):
    out = tmp_path / "run"
    cfg = short()
    if "seed" in arguments:
        cfg = dataclasses.replace(cfg, seed=arguments.pop("seed"))
    with pytest.raises(InputError, match=says):
        train(cfg, **{"out": out, "progress": False, **arguments})
    assert not out.exists()
