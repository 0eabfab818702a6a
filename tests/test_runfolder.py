"""The run folder: only a lionfer run is ever replaced; the current folder, its parents and the
home folder never are; metrics.jsonl gets resume events and no step twice."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import TINY

from lionfer.cli import main
from lionfer.errors import InputError, MissingInputError, RunExistsError
from lionfer.training.checkpoint import REQUIRED_KEYS
from lionfer.training.metrics_log import MetricsLog
from lionfer.training.run import train
from lionfer.training.runfolder import (
    check_run_dir,
    create_run_dir,
    foreign_entries,
    is_run_folder,
)

TINY_ARGS = [*TINY, "--no-progress"]
START = {"event": "start", "num_labeled": 28, "num_unlabeled": 182, "weights": "random init"}


def fake_run(folder: Path) -> Path:
    """A folder with lionfer's own opening record, as every run writes first."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text(json.dumps(START) + "\n")
    (folder / "config.toml").write_text("seed = 0\n")
    return folder


def user_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"\xff\xd8 not really")
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "album").mkdir()
    return folder


def test_a_users_folder_survives_overwrite(tiny_cfg, tmp_path, capsys):
    folder = user_folder(tmp_path / "mine")
    with pytest.raises(RunExistsError, match=r"holds 3 entries that are not a lionfer run: "):
        train(tiny_cfg(), folder, overwrite=True, progress=False)
    code = main(["train", "train.steps=2", "--out", str(folder), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and "a.jpg, album/, notes.txt" in err and "already holds a run" not in err
    assert sorted(p.name for p in folder.iterdir()) == ["a.jpg", "album", "notes.txt"]
    assert (folder / "notes.txt").read_text() == "my notes\n"


def test_without_overwrite_a_non_run_folder_is_described_not_called_a_run(tmp_path):
    folder = user_folder(tmp_path / "mine")
    with pytest.raises(RunExistsError) as info:
        check_run_dir(folder, resume=False, overwrite=False)
    assert "not a lionfer run" in str(info.value) and "--overwrite" not in str(info.value)
    run = fake_run(tmp_path / "run")
    with pytest.raises(RunExistsError, match="before its first checkpoint .*pass --overwrite"):
        check_run_dir(run, resume=False, overwrite=False)  # no last.pt: --resume cannot help
    with pytest.raises(FileNotFoundError, match="stopped before its first checkpoint.*--overwrite"):
        check_run_dir(run, resume=True, overwrite=False)
    (run / "checkpoints").mkdir()
    torch.save({key: 0 for key in REQUIRED_KEYS}, run / "checkpoints" / "last.pt")
    with pytest.raises(RunExistsError, match="already holds a run; pass --resume"):
        check_run_dir(run, resume=False, overwrite=False)
    check_run_dir(tmp_path / "new", resume=False, overwrite=False)  # new and empty are fine
    (tmp_path / "empty").mkdir()
    check_run_dir(tmp_path / "empty", resume=False, overwrite=False)


def test_overwrite_never_deletes_the_current_folder_its_parents_or_home(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "run")
    (run / "sub").mkdir()
    for cwd, out in ((run, Path(".")), (run / "sub", Path("..")), (run / "sub", run)):
        monkeypatch.chdir(cwd)
        with pytest.raises(RunExistsError, match="--overwrite will not delete"):
            check_run_dir(out, resume=False, overwrite=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(run))
    with pytest.raises(RunExistsError, match="home folder"):
        check_run_dir(run, resume=False, overwrite=True)
    assert (run / "metrics.jsonl").is_file()


def test_overwrite_replaces_a_run_folder(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / "checkpoints").mkdir()
    check_run_dir(run, resume=False, overwrite=True)
    create_run_dir(run, overwrite=True)
    assert run.is_dir() and not any(run.iterdir())


def test_a_run_is_recognised_by_its_own_files(tmp_path):
    assert is_run_folder(fake_run(tmp_path / "a"))
    other = tmp_path / "b"
    other.mkdir()
    (other / "config.toml").write_text("seed = 0\n")
    (other / "metrics.jsonl").write_text('{"event": "start"}\n')  # not lionfer's start record
    assert not is_run_folder(other)
    checkpoint = tmp_path / "c" / "checkpoints" / "last.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({key: 0 for key in REQUIRED_KEYS}, checkpoint)
    assert is_run_folder(tmp_path / "c")
    torch.save({"weight": torch.zeros(2)}, checkpoint)  # a plain state dict is not a run
    assert not is_run_folder(tmp_path / "c")


def test_a_file_as_out_exits_2(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me\n")
    assert main(["train", "--out", str(target), "--overwrite"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me\n"


def test_rewind_keeps_history_and_drops_replayed_steps(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for record in (
        START,
        {"event": "train", "step": 2},
        {"event": "eval", "step": 2},
        {"event": "train", "step": 4},
        {"event": "warning", "step": 3, "message": "x"},
        {"event": "error", "step": 4, "error": "RuntimeError: boom"},
    ):
        log.append(record)
    with log.path.open("a") as handle:
        handle.write('{"event": "train", "st')  # a write cut short by SIGKILL
    assert log.rewind(2) == 3
    assert [(r["event"], r.get("step")) for r in log.records()] == [
        ("start", None),
        ("train", 2),
        ("eval", 2),
        ("error", 4),
    ]


def test_resume_logs_an_event_and_no_step_twice(tiny_cfg, tmp_path):
    small = ("data.num_train=70", "data.num_test=14", "data.num_labels=14")
    cfg = tiny_cfg("algorithm.name=supervised", "train.steps=4", "train.log_every=1", *small)
    run = tmp_path / "run"
    assert train(cfg, run, progress=False, stop_after=2) is None
    with (run / "metrics.jsonl").open("a") as handle:  # steps 3 and 4 logged, then SIGKILL
        handle.write('{"event": "train", "step": 3}\n{"event": "train", "step": 4}\n{"ev')
    train(None, run, resume=True, progress=False)
    records = MetricsLog(run / "metrics.jsonl").records()
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2, 3, 4]
    resume = [r for r in records if r["event"] == "resume"]
    assert len(resume) == 1 and resume[0]["notes"] == records[0]["notes"]
    assert resume[0]["step"] == 2 and resume[0]["dropped"] == 3
    assert resume[0]["checkpoint"] == "checkpoints/last.pt"


def test_meta_git_is_lionfers_own_commit_only(tmp_path):
    """meta.json's `git` is the commit of lionfer's own checkout, never that of a repository
    that merely holds the environment lionfer is installed in."""
    import subprocess

    from lionfer.training.runfolder import source_revision

    user_repo = tmp_path / "project"
    package = user_repo / ".venv" / "lib" / "site-packages" / "lionfer"
    package.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(user_repo)], check=True)
    assert source_revision(package) is None  # a wheel inside someone else's repository
    (user_repo / "lionfer").mkdir()
    (user_repo / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    assert source_revision(user_repo / "lionfer") is None  # another project's checkout

    checkout = tmp_path / "lionfer-src"
    (checkout / "lionfer").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text('[project]\nname = "lionfer"\n')
    assert source_revision(checkout / "lionfer") is None  # not a git checkout
    git = ["git", "-C", str(checkout), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert source_revision(checkout / "lionfer") == head


def test_a_run_that_fails_writing_its_files_is_not_marked_finished(tiny_cfg, tmp_path, monkeypatch):
    from lionfer.training import summary

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(summary, "write_confusion", full_disk)
    small = ("data.num_train=70", "data.num_test=14", "data.num_labels=14")
    cfg = tiny_cfg("algorithm.name=supervised", "train.steps=2", *small)
    with pytest.raises(OSError, match="No space left"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "summary.json").exists()  # a sweep resumes it, not skips it
    monkeypatch.undo()
    train(None, tmp_path / "run", resume=True, progress=False)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2


def test_overwrite_keeps_a_run_folder_that_holds_files_the_run_did_not_write(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    (run / "checkpoints").mkdir()
    (run / "summary.json.tmp").write_text("{")  # a write cut short: the run's own
    (run / "predictions.csv").write_text("mine\n")
    (run / "exports").mkdir()
    code = main(["train", "train.steps=2", "--out", str(run), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and "also holds 2 that the run did not write: exports/, predictions.csv" in err
    assert (run / "predictions.csv").read_text() == "mine\n" and (run / "metrics.jsonl").is_file()
    (run / "predictions.csv").unlink()
    (run / "exports").rmdir()
    check_run_dir(run, resume=False, overwrite=True)
    create_run_dir(run, overwrite=True)
    assert not any(run.iterdir())


SMALL = ("data.num_train=70", "data.num_test=14", "data.num_labels=14", "train.steps=4")


def test_overwrite_keeps_files_of_yours_inside_checkpoints_and_tensorboard(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    checkpoints, board = run / "checkpoints", run / "tensorboard"
    checkpoints.mkdir()
    board.mkdir()
    for name in ("last.pt", "best.pt", "error.pt", "last.pt.tmp", "best.pt.tmp"):  # the run's
        torch.save({key: 0 for key in REQUIRED_KEYS}, checkpoints / name)
    (board / "events.out.tfevents.1700000000.host.123.0").write_bytes(b"\x00")
    (checkpoints / "my_step2_backup.pt").write_text("precious\n")
    (checkpoints / "notes.txt").write_text("mine\n")
    (checkpoints / "exports").mkdir()
    (checkpoints / "exports" / "model.onnx").write_text("x\n")
    (board / "my_other_run_events").write_text("mine\n")
    code = main(["train", *TINY_ARGS, "--out", str(run), "--overwrite"])
    err = capsys.readouterr().err
    shown = "checkpoints/exports/, checkpoints/my_step2_backup.pt, checkpoints/notes.txt, "
    shown += "tensorboard/my_other_run_events"
    assert code == 2 and f"also holds 4 that the run did not write: {shown}" in err, err
    with pytest.raises(RunExistsError, match="tensorboard/my_other_run_events"):
        create_run_dir(run, overwrite=True)
    assert (checkpoints / "my_step2_backup.pt").read_text() == "precious\n"
    assert (checkpoints / "exports" / "model.onnx").read_text() == "x\n"
    assert (board / "my_other_run_events").read_text() == "mine\n"
    assert (checkpoints / "last.pt").is_file() and (run / "metrics.jsonl").is_file()
    for name in ("my_step2_backup.pt", "notes.txt", "exports/model.onnx"):
        (checkpoints / name).unlink()
    (checkpoints / "exports").rmdir()
    (board / "my_other_run_events").unlink()
    (checkpoints / "best.pt").unlink()
    (checkpoints / "best.pt").mkdir()  # a folder of a checkpoint's name is not the run's
    (run / "checkpoints.tmp").mkdir()  # nor one of a .tmp name of the run's folders
    assert foreign_entries(run) == ["checkpoints.tmp/", "checkpoints/best.pt/"]
    (checkpoints / "best.pt").rmdir()
    (run / "checkpoints.tmp").rmdir()
    assert foreign_entries(run) == []
    check_run_dir(run, resume=False, overwrite=True)
    create_run_dir(run, overwrite=True)
    assert not any(run.iterdir())


def test_a_run_without_last_pt_but_with_best_pt_says_to_copy_it_over(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg("algorithm.name=supervised", *SMALL, "train.eval_every=1")
    assert train(cfg, run, progress=False, stop_after=2) is None
    last, best = run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"
    step = torch.load(best, weights_only=True)["step"]
    last.unlink()  # killed before its first last.pt was whole: the write left a 0-byte .tmp
    last.with_name("last.pt.tmp").write_bytes(b"")
    with pytest.raises(MissingInputError) as info:
        check_run_dir(run, resume=True, overwrite=False)
    said = str(info.value)
    assert f"{best} holds step {step}" in said and f"copy it over {last}" in said, said
    assert "nothing to resume" not in said and "--overwrite" in said
    with pytest.raises(RunExistsError, match=f"holds step {step} .*copy it over .*--resume"):
        check_run_dir(run, resume=False, overwrite=False)
    last.write_bytes(best.read_bytes())  # as told: the run continues from best.pt's step
    assert train(None, run, resume=True, progress=False)["steps"] == 4
    resumed = [r for r in MetricsLog(run / "metrics.jsonl").records() if r["event"] == "resume"]
    assert [r["step"] for r in resumed] == [step]


def test_a_best_pt_that_cannot_be_read_is_not_offered_for_resuming(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.pt").write_bytes(b"")
    with pytest.raises(MissingInputError, match="stopped before its first checkpoint") as info:
        check_run_dir(run, resume=True, overwrite=False)
    assert "best.pt" not in str(info.value)
    with pytest.raises(RunExistsError, match=r"\(nothing to resume\); pass --overwrite"):
        check_run_dir(run, resume=False, overwrite=False)


def test_an_out_that_cannot_be_written_is_refused_before_the_data_are_read(
    tiny_cfg, tmp_path, capsys, monkeypatch
):
    (tmp_path / "notes.txt").write_text("keep me\n")
    code = main(["train", *TINY_ARGS, "--out", str(tmp_path / "notes.txt" / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "lies inside" in err and "notes.txt, which is a file" in err
    assert (tmp_path / "notes.txt").read_text() == "keep me\n"
    # a name longer than the file system takes: refused (exit 2) before any folder is made
    code = main(["train", *TINY_ARGS, "--out", str(tmp_path / "new" / ("x" * 300))])
    err = capsys.readouterr().err
    assert code == 2 and "has 300 bytes, more than the" in err, err
    assert not (tmp_path / "new").exists()

    from lionfer.training import run, runfolder

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(runfolder.os, "access", lambda path, mode: Path(path) != locked)
    monkeypatch.setattr(run, "build_run_data", None)  # reading the data would fail the test
    for out in (locked, locked / "run"):  # the folder itself, or the one it would be made in
        with pytest.raises(InputError, match=f"{locked} cannot be written .*choose an --out"):
            train(tiny_cfg(*SMALL), out, progress=False)
    assert not any(locked.iterdir())


def test_resume_says_which_file_of_the_run_is_missing(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg("algorithm.name=supervised", *SMALL)
    assert train(cfg, run, progress=False, stop_after=2) is None
    for name in ("config.toml", "split.json"):
        (run / name).rename(run / f"{name}.bak")
        with pytest.raises(MissingInputError, match=f"cannot resume .*{name} .* is missing"):
            train(None, run, resume=True, progress=False)
        (run / f"{name}.bak").rename(run / name)
    (run / "metrics.jsonl").unlink()  # the history is gone; the checkpoint is not
    assert train(None, run, resume=True, progress=False)["steps"] == 4
    assert MetricsLog(run / "metrics.jsonl").records()[0]["event"] == "resume"


@pytest.mark.skipif(os.name != "posix", reason="folder locks are POSIX flock")
def test_a_run_another_process_writes_is_neither_resumed_nor_replaced(
    tiny_cfg, tmp_path, monkeypatch
):
    import fcntl

    def data_read(*args, **kwargs):
        raise AssertionError("the data were read")

    run = tmp_path / "run"
    cfg = tiny_cfg("algorithm.name=supervised", *SMALL)
    assert train(cfg, run, progress=False, stop_after=2) is None
    before = {p.name: p.stat().st_mtime_ns for p in run.rglob("*")}
    held = os.open(run, os.O_RDONLY)  # as a process still training there holds it
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with pytest.raises(RunExistsError, match="being written by another lionfer process"):
            train(None, run, resume=True, progress=False)
        with monkeypatch.context() as patch:  # refused before the data are read
            patch.setattr("lionfer.training.run.build_run_data", data_read)
            with pytest.raises(RunExistsError, match="being written by another lionfer process"):
                train(cfg, run, overwrite=True, progress=False)
        assert {p.name: p.stat().st_mtime_ns for p in run.rglob("*")} == before
    finally:
        os.close(held)
    assert train(None, run, resume=True, progress=False)["steps"] == 4


@pytest.mark.skipif(os.name != "posix", reason="folder locks are POSIX flock")
def test_a_run_training_before_its_first_checkpoint_is_called_locked_not_stopped(
    tiny_cfg, tmp_path, capsys
):
    import fcntl

    run = fake_run(tmp_path / "run")  # begun, no last.pt yet: as a run in its first steps
    before = {p.name: p.stat().st_mtime_ns for p in run.rglob("*")}
    held = os.open(run, os.O_RDONLY)  # as the process training there holds it
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        code = main(["train", "--resume", "--out", str(run)])
        err = capsys.readouterr().err
        assert code == 2 and "being written by another lionfer process" in err
        assert "nothing to resume" not in err and "--overwrite" not in err  # not for a live run
        with pytest.raises(RunExistsError, match="being written by another lionfer process"):
            train(tiny_cfg("algorithm.name=supervised"), run, progress=False)  # launched twice
        assert {p.name: p.stat().st_mtime_ns for p in run.rglob("*")} == before
    finally:
        os.close(held)
    with pytest.raises(FileNotFoundError, match="stopped before its first checkpoint"):
        train(None, run, resume=True, progress=False)  # once it is gone, the verdict stands


def test_a_forked_child_does_not_keep_a_released_run_lock(tmp_path):
    from lionfer.run_lock import RunLock

    lock = RunLock()
    lock.acquire(tmp_path)
    read, write = os.pipe()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a DataLoader worker that outlives the run that forked it
        os.close(write)
        os.write(ready_write, b"1")  # running: past the fork's hooks
        os.read(read, 1)
        os._exit(0)
    try:
        os.read(ready_read, 1)
        lock.release()
        other = RunLock()
        other.acquire(tmp_path)  # refused while the child held a copy of the lock
        other.release()
    finally:
        os.close(write)
        os.waitpid(pid, 0)
        for fd in (read, ready_read, ready_write):
            os.close(fd)


def test_a_run_saved_before_checkpoints_kept_their_config_resumes(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg("algorithm.name=supervised", *SMALL)
    assert train(cfg, run, progress=False, stop_after=2) is None
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=False)
    for key in ("config", "last_eval", "trained_classes"):  # what older versions did not save
        state.pop(key)
    torch.save(state, last)
    assert train(None, run, resume=True, progress=False)["steps"] == 4


def test_an_out_with_a_tilde_is_the_home_folder_s(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg("algorithm.name=supervised", *SMALL)
    assert train(cfg, "~/runs/x", progress=False, stop_after=1) is None
    assert (tmp_path / "runs" / "x" / "config.toml").is_file()
    assert not (tmp_path / "~").exists()


def test_a_folder_a_run_has_just_begun_writing_is_locked_not_stopped(tmp_path):
    # two runs launched into one --out at once: the first made the folder, locked it and wrote
    # its first files; the second, past its checks, must not call that run stopped
    import fcntl

    from lionfer.run_lock import RunLock

    run = fake_run(tmp_path / "run")
    held = os.open(run, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with pytest.raises(RunExistsError, match="being written by another lionfer process"):
            create_run_dir(run, overwrite=False, lock=RunLock())
    finally:
        os.close(held)
    assert (run / "config.toml").is_file()


def test_metrics_jsonl_is_standard_json_with_non_finite_numbers_spelled_out(tmp_path):
    import math

    import numpy as np

    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append(
        {
            "event": "error",
            "step": 3,
            "loss": float("nan"),
            "grad": torch.tensor(float("inf")),
            "low": np.float64(-math.inf),
            "rates": [0.5, float("nan")],
            "labels": {"kept": np.int64(4), "ok": True, "note": None},
        }
    )
    line = (tmp_path / "metrics.jsonl").read_text()
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in {line}")) == {
        "event": "error",
        "step": 3,
        "loss": "NaN",
        "grad": "Infinity",
        "low": "-Infinity",
        "rates": [0.5, "NaN"],
        "labels": {"kept": 4, "ok": True, "note": None},
    }
    assert log.rewind(2) == 0 and log.records()[0]["grad"] == "Infinity"
