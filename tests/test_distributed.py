"""Several processes (gloo on the CPU) equal one process with the same global batch: the same
complementary label bank, labels, candidates and prototypes, losses and weights within float
tolerance; and a run moves between process counts through its checkpoint (1 → 2 → 1)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import TINY

from lionfer.config import DEFAULT_CONFIG, load_config
from lionfer.training.checkpoint import load_checkpoint
from lionfer.training.run import train

REPO = Path(__file__).resolve().parent.parent

# LION made busy in 6 steps of a random network: labels are relabeled, samples stay ambiguous
# with candidate sets, the bank grows and prototypes exist. No dropout: its masks are random
# draws that differ with the number of processes.
BUSY = [
    *TINY,
    "train.steps=6",
    "train.checkpoint_every=2",
    "model.dropout=0",
    "algorithm.recipe=paper",
    "algorithm.disambiguation_start=0.0",
    "algorithm.clear_threshold=0.16",
    "algorithm.reliable_threshold=0.18",
    "algorithm.complementary_threshold=0.13",
    "algorithm.candidate_threshold=0.14",
    "algorithm.ema_momentum=0.5",
    "algorithm.relabel_threshold=0.4",
    "algorithm.resolve_threshold=0.4",
    'data.annotator="legacy"',  # the labels these thresholds were chosen on
]
EXACT = ("label", "relabel_step", "ambiguous", "candidates", "bank", "visits", "prototype_ready")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    with pytest.warns(UserWarning, match="began label disambiguation"):
        train(load_config(DEFAULT_CONFIG, BUSY), out, progress=False)
    return out


def assert_same_run(a: Path, b: Path) -> None:
    one, two = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (a, b))
    assert one["step"] == two["step"]
    state = one["algorithm"]
    assert state["bank"].any() and (state["relabel_step"] >= 0).any() and state["ambiguous"].any()
    for key in EXACT:
        assert torch.equal(one["algorithm"][key], two["algorithm"][key]), key
    for key, value in one["algorithm"].items():
        assert torch.allclose(value.float(), two["algorithm"][key].float(), atol=1e-5), key
    for part in ("model", "ema"):
        for key, value in one[part].items():
            assert torch.allclose(value.float(), two[part][key].float(), atol=1e-4), key
    losses = [
        [(r["step"], r["loss"], r["loss_nl"]) for r in records(run) if r["event"] == "train"]
        for run in (a, b)
    ]
    assert [s for s, *_ in losses[0]] == [s for s, *_ in losses[1]] == [3, 6]
    for (_, *x), (_, *y) in zip(*losses, strict=True):
        assert x == pytest.approx(y, rel=1e-5, abs=1e-6)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_under_torchrun_equal_one(one_process, tmp_path):
    out = tmp_path / "two"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "lionfer",
        "train",
        *BUSY,
        "--out",
        str(out),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run: ") == 1 and done.stdout.count("step 6/6  test_acc") == 1
    assert_same_run(one_process, out)
    events = [r["event"] for r in records(out)]
    assert events.count("start") == 1 and events.count("eval") == 1  # the main process alone
    assert json.loads((out / "meta.json").read_text())["processes"] == 2
    assert (
        json.loads((out / "summary.json").read_text())["relabel"]
        == json.loads((one_process / "summary.json").read_text())["relabel"]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_torchrun_starts(rank: int, world: int, port: int) -> None:
    """This process made one of `world`, as torchrun would start it, on one thread."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)


def resume_as_process(rank: int, world: int, port: int, out: str) -> None:
    """One of `world` processes continuing the run for 2 steps."""
    as_torchrun_starts(rank, world, port)
    train(None, out, resume=True, stop_after=2, progress=False)


def run_recording_the_models_at_leave(rank: int, world: int, port: int, out: str) -> None:
    """One of `world` processes training 2 steps; when it destroys the process group it writes
    how many DistributedDataParallel models are still alive then."""
    import gc

    import torch.distributed as dist

    destroy = dist.destroy_process_group

    def recorded(*args, **kwargs):
        ddp = torch.nn.parallel.DistributedDataParallel
        alive = sum(isinstance(o, ddp) for o in gc.get_objects())
        Path(out, f"alive-{rank}").write_text(str(alive))
        return destroy(*args, **kwargs)

    dist.destroy_process_group = recorded
    as_torchrun_starts(rank, world, port)
    cfg = load_config(DEFAULT_CONFIG, [*TINY, "train.steps=2"])
    train(cfg, Path(out) / "run", progress=False)


def test_no_model_holds_the_process_group_when_a_process_leaves_it(tmp_path):
    # gloo work that outlives the group aborts the process at its exit (SIGABRT)
    mp.spawn(run_recording_the_models_at_leave, args=(2, free_port(), str(tmp_path)), nprocs=2)
    assert [(tmp_path / f"alive-{rank}").read_text() for rank in (0, 1)] == ["0", "0"]


def test_a_run_moves_from_one_to_two_processes_and_back(one_process, tmp_path):
    out = tmp_path / "moved"
    cfg = load_config(DEFAULT_CONFIG, BUSY)
    assert train(cfg, out, progress=False, stop_after=2) is None  # steps 1-2: one process
    mp.spawn(resume_as_process, args=(2, free_port(), str(out)), nprocs=2)  # 3-4: two
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4
    with pytest.warns(UserWarning, match="began label disambiguation"):
        train(None, out, resume=True, progress=False)  # 5-6: one again
    assert_same_run(one_process, out)
    resumes = [r for r in records(out) if r["event"] == "resume"]
    assert [r["step"] for r in resumes] == [2, 4]
    assert [(r["processes"], r["device"]) for r in resumes] == [(2, "cpu"), (1, "cpu")]
    assert json.loads((out / "meta.json").read_text())["processes"] == 1  # how it began


def test_cpu_batchnorm_takes_over_the_same_tensors_and_evaluates_alone():
    from lionfer.config_sections import ModelConfig
    from lionfer.distributed import Comm, GlobalBatchNorm, sync_batchnorm
    from lionfer.models import build_model

    class TwoProcesses(Comm):
        world_size = 2

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="cnn_small"), 7).eval()
    x = torch.randn(3, 3, 32, 32)
    before, tensors = model(x).logits, {k: v.data_ptr() for k, v in model.state_dict().items()}
    model = sync_batchnorm(model, TwoProcesses(), torch.device("cpu"))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 4 and all(isinstance(m, GlobalBatchNorm) for m in norms)
    assert {k: v.data_ptr() for k, v in model.state_dict().items()} == tensors  # same storage
    assert torch.equal(model(x).logits, before)  # evaluation needs no other process


def test_a_state_digest_tells_equal_tensors_from_others():
    from lionfer.distributed import digest

    bank = torch.rand(50, 7) < 0.3
    swapped = bank.clone()
    swapped[[3, 4]] = bank[[4, 3]]
    assert torch.equal(digest(bank), digest(bank.clone()))
    assert not torch.equal(digest(bank), digest(swapped)) or torch.equal(bank, swapped)
    assert not torch.equal(digest(torch.arange(5.0)), digest(torch.arange(5.0).flip(0)))


def as_processes(world: int, args: list[str], timeout: float = 120, cwds=None) -> list:
    """`python -m lionfer ARGS` as the `world` processes of a run, started as torchrun starts
    them but without its agent, which would stop the others when one exits (as a node of a
    multi-node run sees it), each in its folder of cwds (a node of its own): (exit code,
    stderr) of each, in rank order."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "lionfer", *args],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            cwd=None if cwds is None else cwds[rank],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]
    try:
        return [(p.wait(timeout=timeout), p.stderr.read()) for p in started]
    finally:
        for p in started:
            p.kill()
            p.wait()


def fake_run(folder: Path) -> None:
    """A folder that is recognisably a run (its start event), without training one."""
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text('{"event": "start", "num_labeled": 28}\n')


@pytest.mark.parametrize("case", ["locked", "exists", "damaged"])
def test_every_process_exits_with_the_error_the_main_process_alone_met(tmp_path, case):
    out = tmp_path / "run"
    train_args = ["train", *TINY, "--out", str(out), "--no-progress"]
    if case == "locked":  # another process writes the run: the main process alone takes it
        import fcntl

        fake_run(out)
        held = os.open(out, os.O_RDONLY)
        fcntl.flock(held, fcntl.LOCK_EX)
        args, message = [*train_args, "--overwrite"], "is being written by another lionfer"
    elif case == "exists":
        fake_run(out)
        args, message = train_args, "already holds a run"
    else:
        fake_run(out)
        (out / "checkpoints").mkdir()
        (out / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
        for name in ("config.toml", "split.json"):
            (out / name).write_text("")
        args, message = ["train", "--resume", "--out", str(out), "--no-progress"], "last.pt"
    done = as_processes(2, args)
    assert [code for code, _ in done] == [2, 2], done
    assert message in done[0][1] and done[0][1].count("error: ") == 1, done[0][1]
    assert "error" not in done[1][1] and "Traceback" not in done[1][1], done[1][1]


@pytest.mark.parametrize("missing", ["data", "weights"])
def test_a_file_missing_on_one_node_stops_every_process(tmp_path, missing):
    # Each process reads its data and weights itself, from paths relative to its node's folder:
    # where one node lacks them, the others must not wait for it at the model's collectives.
    from PIL import Image

    from lionfer.models import build_model

    nodes = [tmp_path / "node0", tmp_path / "node1"]
    for node in nodes:
        for name in ("cat", "dog"):
            (node / "photos" / name).mkdir(parents=True)
            for k in range(6):
                Image.new("RGB", (24, 24), (40 * k, 90, 200 if name == "dog" else 0)).save(
                    node / "photos" / name / f"{k}.png"
                )
        torch.save(
            build_model(load_config(DEFAULT_CONFIG, TINY).model, 2).state_dict(),
            node / "weights.pt",
        )
    gone = {"data": nodes[1] / "photos", "weights": nodes[1] / "weights.pt"}[missing]
    if gone.is_dir():
        import shutil

        shutil.rmtree(gone)
    else:
        gone.unlink()
    args = [
        "train",
        *(t for t in TINY if not t.startswith(("data.num_", "model.pretrained"))),
        "data.dataset=folder",
        "data.root=photos",
        "data.num_labels=8",
        "model.pretrained=weights.pt",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    ]
    done = as_processes(2, args, timeout=90, cwds=nodes)
    assert [code for code, _ in done] == [2, 2], done
    assert "process 1 of 2 stopped the run" in done[0][1], done[0][1]
    assert {"data": "photos", "weights": "weights.pt"}[missing] in done[1][1], done[1][1]
    assert "Traceback" not in done[0][1] + done[1][1]


def torchrun(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m lionfer ARGS` on one thread per process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*command, "-m", "lionfer", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_adacm_with_per_process_batchnorm_statistics_trains_under_torchrun(tmp_path):
    # Each process's EMA keeps its own BatchNorm statistics; Ada-CM's thresholds, taken from the
    # EMA's predictions, must still be the same in every process (the main process's).
    out = tmp_path / "run"
    settings = [
        *TINY,
        "algorithm.name=adacm",
        "algorithm.epoch_steps=3",
        "algorithm.threshold=0.05",
        "train.sync_batchnorm=false",
    ]
    done = torchrun(["train", *settings, "--out", str(out), "--no-progress"])
    assert done.returncode == 0, done.stderr[-3000:]
    thresholds = load_checkpoint(out / "checkpoints" / "last.pt")["algorithm"]["thresholds"]
    assert (thresholds > 0.05).any()  # they moved: a divergence would have shown


def test_cpu_batchnorm_takes_over_timms_batchnorm_with_its_activation():
    from lionfer.config_sections import ModelConfig
    from lionfer.distributed import Comm, GlobalBatchNorm, sync_batchnorm, unsynced_batchnorms

    pytest.importorskip("timm")
    from lionfer.models import build_model

    class TwoProcesses(Comm):
        world_size = 2

    torch.manual_seed(0)
    cfg = ModelConfig(name="timm:mobilenetv3_small_050", pretrained="", dropout=0.0)
    model = build_model(cfg, 7).eval()
    assert unsynced_batchnorms(model)  # timm's BatchNormAct2d
    x = torch.randn(2, 3, 32, 32)
    before, tensors = model(x).logits, {k: v.data_ptr() for k, v in model.state_dict().items()}
    model = sync_batchnorm(model, TwoProcesses(), torch.device("cpu"))
    assert unsynced_batchnorms(model) == []
    assert any(
        type(m) is not GlobalBatchNorm for m in model.modules() if isinstance(m, GlobalBatchNorm)
    )
    assert {k: v.data_ptr() for k, v in model.state_dict().items()} == tensors
    assert torch.equal(model(x).logits, before)  # the activations kept, in their place
    odd = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.BatchNorm1d(3))
    assert unsynced_batchnorms(sync_batchnorm(odd, TwoProcesses(), torch.device("cpu"))) == [
        "torch.nn.modules.batchnorm.BatchNorm1d"
    ]


@pytest.mark.parametrize("rank", ["0", "1"])
def test_the_stop_note_is_written_by_the_main_process_alone(monkeypatch, capfd, rank):
    import signal

    from lionfer.stop_signals import StopSignals

    monkeypatch.setenv("RANK", rank)
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
    assert stop.signum == signal.SIGTERM  # every process stops
    written = capfd.readouterr().err
    assert ("SIGTERM: stopping after this step" in written) == (rank == "0"), written


def test_a_batch_the_processes_cannot_share_names_the_process_counts_that_can():
    from fakes import CopiesOnTwoProcesses

    from lionfer.distributed import check_divisible
    from lionfer.errors import ConfigError

    check_divisible(
        {"train.batch_size": 4, "batch_size x unlabeled_ratio": 28}, CopiesOnTwoProcesses()
    )
    with pytest.raises(ConfigError) as refused:
        check_divisible(
            {"train.batch_size": 5, "batch_size x unlabeled_ratio": 35}, CopiesOnTwoProcesses()
        )
    assert str(refused.value) == (
        "train.batch_size=5 is the global batch, which 2 processes share equally: make it a "
        "multiple of 2, or start 1 or 5 processes (a resumed run keeps its batch sizes)"
    )
