"""SIGTERM and Ctrl-C stop a run at a step boundary with a checkpoint; resuming then equals an
uninterrupted run. Failures in the loop leave an error event and a checkpoint."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY

from lionfer.config import load_config
from lionfer.errors import CheckpointWriteError, Interrupted
from lionfer.training.checkpoint import load_checkpoint
from lionfer.training.run import train

ROOT = Path(__file__).resolve().parent.parent
LION = ["algorithm.name=lion", "algorithm.evidence_start=0.25", "train.steps=4"]
SHORT = ["train.eval_every=4", "train.checkpoint_every=4", "train.log_every=2"]
SMALL = ["data.num_train=70", "data.num_test=14", "data.num_labels=14"]


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_state(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a), load_checkpoint(b)
    assert first["step"] == second["step"]
    for part in ("model", "ema", "algorithm"):
        assert first[part].keys() == second[part].keys()
        for key, value in first[part].items():
            assert torch.equal(value, second[part][key]), f"{part}.{key}"


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.is_file() and path.read_text().strip()):
        if process.poll() is not None:
            pytest.fail(f"training ended before it could be signalled: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear")
        time.sleep(0.02)


def test_sigterm_mid_run_then_resume_equals_uninterrupted(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    command = [sys.executable, "-m", "lionfer", "train", *TINY, *SMALL, *LION, *SHORT]
    process = subprocess.Popen(
        [*command, "--out", str(run), "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The start event is written once the signal handlers are in place: from then on SIGTERM
    # stops the run after the step under way.
    wait_for(run / "metrics.jsonl", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr
    assert f"resume with: lionfer train --resume --out {run}" in stderr
    stopped = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert 1 <= stopped < 4
    assert events(run)[-1] == {
        "event": "interrupted",
        "step": stopped,
        "signal": "SIGTERM",
        "checkpoint": "checkpoints/last.pt",
    }
    assert not (run / "summary.json").exists()

    resumed = train(None, run, resume=True, progress=False)
    full = train(load_config(run / "config.toml"), tmp_path / "full", progress=False)
    assert_same_state(
        run / "checkpoints" / "last.pt", tmp_path / "full" / "checkpoints" / "last.pt"
    )
    assert resumed["test_acc"] == full["test_acc"] and resumed["relabel"] == full["relabel"]
    steps = [r["step"] for r in events(run) if r["event"] == "train"]
    assert steps == [r["step"] for r in events(tmp_path / "full") if r["event"] == "train"]


SUPERVISED = ["algorithm.name=supervised", "train.steps=4", "train.eval_every=2", *SMALL]
CHECKPOINT_EVERY_2 = ["train.checkpoint_every=2", "train.log_every=2"]


def test_ctrl_c_finishes_the_step_saves_and_says_how_to_resume(tiny_cfg, tmp_path, monkeypatch):
    from lionfer.training.trainer import Trainer

    original = Trainer.train_step

    def ctrl_c_during_step_1(self, lb, ulb):
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # handled between bytecodes, inside this step
        original(self, lb, ulb)

    monkeypatch.setattr(Trainer, "train_step", ctrl_c_during_step_1)
    cfg = tiny_cfg(*SUPERVISED)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs in the background
    with pytest.raises(Interrupted) as info:
        train(cfg, tmp_path / "run", progress=False)
    assert info.value.exit_code == 130 and info.value.step == 2
    assert "resume with: lionfer train --resume --out" in str(info.value)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2
    assert events(tmp_path / "run")[-1]["event"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) == before  # handlers restored


def test_a_failure_between_steps_writes_an_error_event_and_last_pt(tiny_cfg, tmp_path, monkeypatch):
    from lionfer.data.base import ImageSet
    from lionfer.data.images import ImageError

    calls = {"n": 0}
    original = ImageSet.load

    def disk_fails_after_a_while(self, i):
        calls["n"] += 1
        if calls["n"] > 12:  # 4 labeled images a step: the data for step 3 cannot be read
            raise ImageError("cannot read image x.jpg: the file is truncated")
        return original(self, i)

    monkeypatch.setattr(ImageSet, "load", disk_fails_after_a_while)
    with pytest.raises(ImageError, match="truncated"):
        train(tiny_cfg(*SUPERVISED, "train.eval_every=50"), tmp_path / "run", progress=False)
    last = events(tmp_path / "run")[-1]
    assert last["event"] == "error" and last["step"] == 3 and "truncated" in last["error"]
    assert last["checkpoint"] == "checkpoints/last.pt"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 3


def test_a_failure_inside_a_step_keeps_last_pt_and_saves_error_pt(tiny_cfg, tmp_path, monkeypatch):
    from lionfer.algorithms.supervised import Supervised

    original = Supervised.step

    def fails_at_step_3(self, model, batch, progress):
        if progress.step == 3:
            raise RuntimeError("out of memory")
        return original(self, model, batch, progress)

    monkeypatch.setattr(Supervised, "step", fails_at_step_3)
    cfg = tiny_cfg(*SUPERVISED, *CHECKPOINT_EVERY_2)
    with pytest.raises(RuntimeError, match="out of memory"):
        train(cfg, tmp_path / "run", progress=False)
    last = events(tmp_path / "run")[-1]
    assert last["event"] == "error" and last["checkpoint"] == "checkpoints/error.pt"
    assert last["error"] == "RuntimeError: out of memory"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2


def test_a_full_disk_says_so_and_keeps_the_last_good_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    real_save, calls = torch.save, {"n": 0}

    def disk_full_after_two_saves(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:  # last.pt of step 2 is written (best.pt its copy), then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_after_two_saves)
    run = tmp_path / "run"
    with pytest.raises(CheckpointWriteError) as info:
        train(tiny_cfg(*SUPERVISED, *CHECKPOINT_EVERY_2), run, progress=False)
    message = str(info.value)
    assert "could not write checkpoint" in message and "No space left on device" in message
    assert f"the last good checkpoint is {run / 'checkpoints' / 'last.pt'} (step 2)" in message
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    last, best = (run / "checkpoints" / name for name in ("last.pt", "best.pt"))
    assert last.read_bytes() == best.read_bytes()  # one state, written once
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert events(run)[-1]["event"] == "error" and "checkpoint_error" in events(run)[-1]


def test_a_full_disk_at_last_pt_names_a_newer_best_pt_to_go_on_from(
    tiny_cfg, tmp_path, monkeypatch
):
    """Evaluated every 2 steps and checkpointed every 4: best.pt of step 2 is the newest state on
    disk when last.pt of step 4 cannot be written, and the message says how to resume from it."""
    real_save, order = torch.save, []

    def last_pt_fails(obj, f, *args, **kwargs):
        name = Path(getattr(getattr(f, "handle", f), "name", "")).name
        order.append(name)
        if "last.pt" in name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", last_pt_fails)
    run = tmp_path / "run"
    cfg = tiny_cfg(*SUPERVISED, "train.eval_every=2", "train.checkpoint_every=4")
    with pytest.raises(CheckpointWriteError) as info:
        train(cfg, run, progress=False)
    best = run / "checkpoints" / "best.pt"
    assert f"{best} holds step 2, the newest state saved: copy it over" in str(info.value)
    assert order[0] == "best.pt.tmp" and set(order[1:]) == {"last.pt.tmp"}
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(best)["step"] == 2


def test_a_loader_failure_after_sigterm_still_stops_as_interrupted(tiny_cfg, tmp_path, monkeypatch):
    from lionfer.data.base import ImageSet

    calls = {"n": 0}
    original = ImageSet.load

    def workers_killed_by_the_same_signal(self, i):
        calls["n"] += 1
        if calls["n"] == 6:  # while step 2's batch is read: SIGTERM reaches everyone
            os.kill(os.getpid(), signal.SIGTERM)
            raise RuntimeError("DataLoader worker (pid 123) is killed by signal: Terminated")
        return original(self, i)

    monkeypatch.setattr(ImageSet, "load", workers_killed_by_the_same_signal)
    with pytest.raises(Interrupted) as info:
        train(tiny_cfg(*SUPERVISED, "train.eval_every=50"), tmp_path / "run", progress=False)
    assert info.value.exit_code == 143 and info.value.step == 1
    last = events(tmp_path / "run")[-1]
    assert last["event"] == "interrupted" and "killed by signal" in last["error"]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 1


def test_stop_signals_set_a_flag_and_a_second_ctrl_c_stops_at_once():
    from lionfer.stop_signals import StopSignals

    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)  # schedulers may repeat it: still only a flag
        assert stop.signum == signal.SIGTERM
    with StopSignals() as stop, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_stop_signal_with_stderr_closed_still_only_sets_the_flag(monkeypatch):
    """The note on stderr is written from the handler, at any point of a step: a closed stderr
    (a job detached from its terminal) must not turn the stop into an error there."""
    from types import SimpleNamespace

    from lionfer import stop_signals

    def closed(fd, data):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr(stop_signals, "os", SimpleNamespace(write=closed, environ={}))
    stop = stop_signals.StopSignals()
    stop._handle(signal.SIGTERM, None)
    assert stop.signum == signal.SIGTERM
