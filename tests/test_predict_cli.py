"""`lionfer predict` and `audit` on a shared CPU: OpenMP's wait policy and torch's thread count;
FFmpeg's log kept off predict's terminal."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from predict_helpers import make_checkpoint

from lionfer import cli_model
from lionfer.inference.predictor import InputError

REPO = Path(__file__).resolve().parents[1]


def _child(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


MAIN = (
    "import os, sys\n"
    "from lionfer.cli import main\n"
    "assert 'torch' not in sys.modules\n"
    "main([{args}])\n"
    "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
)


def test_predict_sets_a_passive_openmp_wait_policy_before_torch_loads(tmp_path):
    args = f"'predict', '{tmp_path / 'none.pt'}', 'x.jpg', '--out', '{tmp_path / 'p.csv'}'"
    assert _child(MAIN.format(args=args)) == "PASSIVE True"  # torch came after the policy
    assert _child(MAIN.format(args=args), OMP_WAIT_POLICY="ACTIVE") == "ACTIVE True"  # the user's


# An .mp4 with no index (moov box): FFmpeg logs "moov atom not found" on opening it.
NO_INDEX = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00\x00\x00\x08free" * 8


def test_predict_keeps_ffmpegs_log_off_the_terminal(tmp_path):
    video = tmp_path / "cut.mp4"
    video.write_bytes(NO_INDEX)
    clean = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=300)
    opened = run([sys.executable, "-c", f"import cv2; cv2.VideoCapture({str(video)!r})"], env=clean)
    if "moov atom" not in opened.stderr:
        pytest.skip("this OpenCV's FFmpeg logs nothing on a video without its index")
    model = make_checkpoint(tmp_path / "model.pt")
    command = [sys.executable, "-m", "lionfer", "predict", str(model), str(video), "--out"]
    env = {**clean, "PYTHONPATH": str(REPO)}
    done = run([*command, str(tmp_path / "p.csv"), "--no-progress"], env=env)
    assert done.returncode == 0, done.stderr
    assert "moov atom" not in done.stderr + done.stdout
    assert "unreadable 1" in done.stdout  # the file's row says what is wrong with it
    asked = run([*command, str(tmp_path / "q.csv")], env={**env, "OPENCV_FFMPEG_LOGLEVEL": "16"})
    assert "moov atom" in asked.stdout + asked.stderr  # the user's log level is kept


def test_training_keeps_openmps_default_wait_policy():
    assert _child(MAIN.format(args="'list', 'models'")).splitlines()[-1] == "None False"


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_inference_threads(monkeypatch, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cli_model.inference_threads(None) == 1 == torch.get_num_threads()
    assert cli_model.inference_threads(2) == 2 == torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= cli_model.inference_threads(None) <= cli_model.usable_cpus()
    with pytest.raises(InputError, match="--threads must be at least 1"):
        cli_model.inference_threads(0)


def test_usable_cpus_follows_a_container_quota(monkeypatch):
    real = Path.read_text

    def quota(path, *args, **kwargs):
        if str(path) == "/sys/fs/cgroup/cpu.max":
            return "150000 100000\n"  # docker --cpus 1.5
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", quota)
    assert cli_model.usable_cpus() == min(2, len(os.sched_getaffinity(0)))
