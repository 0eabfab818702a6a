"""Writes that fail (a full disk, a file-size limit, a read-only file system, an --out that cannot
be a file): one line naming the file and what to do, no partial or temporary file left, and a
folder lionfer made is still its own afterwards."""

from __future__ import annotations

import argparse
import builtins
import csv
import errno
import io
import os
import resource
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny
from PIL import Image
from predict_helpers import faces

from lionfer.atomic import write_csv_atomic, write_text_atomic
from lionfer.cli import main
from lionfer.data.base import FERData, ImageSet
from lionfer.data.prepare import prepare
from lionfer.errors import RunExistsError
from lionfer.inference.predictor import columns
from lionfer.labels import CLASS_NAMES
from lionfer.training.metrics_log import MetricsLog
from lionfer.training.runfolder import (
    METRICS,
    check_resumable,
    check_run_dir,
    create_run_dir,
)

ROOT = Path(__file__).resolve().parent.parent
NO_SPACE = os.strerror(errno.ENOSPC)


class Disk:
    """The space left on a simulated disk, shared by the files on it."""

    def __init__(self, room: int):
        self.room = room

    def free(self) -> None:
        self.room = 1 << 60


class Filling:
    """An open file on `disk`: a write past its room writes what fits, then fails (ENOSPC) as
    write() does, naming no file."""

    def __init__(self, handle, disk: Disk):
        self._handle, self._disk = handle, disk

    def write(self, data):
        if len(data) > self._disk.room:
            if self._disk.room:
                self._handle.write(data[: self._disk.room])
                self._handle.flush()
            self._disk.room = 0
            raise OSError(errno.ENOSPC, NO_SPACE)
        self._disk.room -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


@pytest.fixture
def full_disk(monkeypatch):
    """full_disk(pattern, room=0): the files whose name matches `pattern` (fnmatch) are on a disk
    with `room` bytes free, for Python's open() and pathlib alike; returns the Disk (.free())."""
    real_open = builtins.open

    def install(pattern: str, room: int = 0) -> Disk:
        disk = Disk(room)

        def opening(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            named = isinstance(file, (str, bytes, os.PathLike))
            if named and any(c in mode for c in "wax+"):
                if fnmatch(Path(os.fsdecode(file)).name, pattern):
                    return Filling(handle, disk)
            return handle

        monkeypatch.setattr(builtins, "open", opening)
        monkeypatch.setattr(io, "open", opening)
        return disk

    return install


def cli(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def files_in(folder: Path) -> list[str]:
    """Every file below folder, hidden ones too, relative and sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    """Two face crops, JPEG, for predict --cropped."""
    root = tmp_path_factory.mktemp("crops")
    for name, face in zip(("a.jpg", "b.jpg"), faces((3, 0)), strict=True):
        Image.fromarray(face).save(root / name)
    return root


# ---- export ----


def test_a_torchscript_export_onto_a_full_disk_fails_in_one_line_and_leaves_no_file(
    checkpoint, tmp_path
):
    """A file-size limit makes every write past it fail (EFBIG), as a full disk does: the export
    is reported, not a process aborted from inside torch's own file writer."""
    out = tmp_path / "exports" / "m.pt"
    out.parent.mkdir()
    limit = 64 * 1024  # the export is about 1 MB

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "lionfer", "export", str(checkpoint), "--out", str(out)],
        preexec_fn=limited,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    err = done.stderr
    assert err.startswith(f"error: could not write {out}: File too large;"), err
    assert "ulimit -f" in err and err.count("\n") == 1, err
    assert files_in(out.parent) == []


def test_an_onnx_export_is_one_self_contained_file(checkpoint, tmp_path):
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from lionfer.inference.export import export

    out = tmp_path / "m.onnx"
    export(checkpoint, out)
    assert files_in(tmp_path) == ["m.onnx"]  # no weights beside it (.m.onnx.part.data)
    model = onnx.load(str(out), load_external_data=False)
    assert model.graph.initializer
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    moved = tmp_path / "elsewhere" / "m.onnx"
    moved.parent.mkdir()
    out.rename(moved)  # alone in another folder, it still loads and runs
    session = onnxruntime.InferenceSession(str(moved), providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probabilities"], {"input": np.zeros((1, 3, 24, 24), np.float32)})
    assert probs.shape == (1, len(CLASS_NAMES))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_export_onto_a_full_disk_names_out_and_leaves_nothing(
    checkpoint, tmp_path, capsys, full_disk, fmt
):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    out = tmp_path / "exports" / ("m.onnx" if fmt == "onnx" else "m.pt")
    out.parent.mkdir()
    full_disk(f"*{out.name}*", room=1000)
    code, err = cli(capsys, "export", checkpoint, "--out", out)
    assert code == 1 and err == (
        f"error: could not write {out}: {NO_SPACE}; free space on that disk, then run the same "
        "command again (or with another --out)\n"
    ), err
    assert files_in(out.parent) == []


def test_an_export_onto_a_read_only_file_system_names_out(checkpoint, tmp_path, capsys,
                                                          monkeypatch):  # fmt: skip
    out = tmp_path / "ro" / "m.pt"
    out.parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != out.parent
                        and real_access(p, mode, **kw))  # fmt: skip
    code, err = cli(capsys, "export", checkpoint, "--out", out)
    assert code == 2 and f"--out {out}: {out.parent} cannot be written" in err, err
    assert "read-only" in err and ".part" not in err and ".tmp" not in err, err
    monkeypatch.undo()
    real_open = builtins.open

    def read_only(file, mode="r", *args, **kwargs):  # as open() fails there: naming its file
        if "w" in mode and Path(os.fsdecode(file)).parent == out.parent:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    code, err = cli(capsys, "export", checkpoint, "--out", out)
    assert code == 1 and err.startswith(f"error: could not write {out}: Read-only file system;")
    assert "choose an --out you can write to" in err and ".tmp" not in err, err
    assert files_in(out.parent) == []


# ---- --out that cannot be a file ----


def test_an_out_inside_a_file_is_refused_before_anything_is_done(checkpoint, crops, tmp_path,
                                                                 capsys):  # fmt: skip
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for command in (
        ["predict", checkpoint, crops, "--cropped", "--out", afile / "p.csv"],
        ["predict", tmp_path / "gone.pt", crops, "--out", afile / "p.csv"],  # before the model
        ["export", checkpoint, "--out", afile / "m.onnx"],
        ["export", checkpoint, "--out", afile / "sub" / "m.pt"],
        ["audit", checkpoint, "--out", afile / "s.csv"],
    ):
        code, err = cli(capsys, *command)
        out = command[-1]
        assert code == 2 and err == (
            f"error: --out {out} lies inside {afile}, which is a file, not a folder; choose "
            "another --out\n"
        ), err
    assert afile.read_text() == "mine" and files_in(tmp_path) == ["afile"]


def test_a_predict_out_too_long_for_its_progress_file_says_so(checkpoint, crops, tmp_path,
                                                               capsys):  # fmt: skip
    out = tmp_path / ("p" * 250 + ".csv")  # a legal name; OUT.progress is 9 bytes longer
    code, err = cli(capsys, "predict", checkpoint, crops, "--cropped", "--out", out)
    assert code == 2, err
    assert ".progress added (263 bytes)" in err and "at most 255 bytes" in err, err
    assert "choose a shorter --out name (at most 246 bytes)" in err, err
    assert files_in(tmp_path) == []


# ---- predict ----


@pytest.mark.parametrize("where", ["header", "rows"])
def test_predict_on_a_full_disk_names_its_file_and_the_same_command_goes_on(
    checkpoint, crops, tmp_path, capsys, full_disk, where
):
    """The disk fills while the header is written (both files go again: half a header would be
    refused) or while the first input's rows are (the next run cuts them off)."""
    out = tmp_path / "p.csv"
    command = ["predict", checkpoint, crops, "--cropped", "--out", out, "--no-progress"]
    header = len(",".join(columns(CLASS_NAMES)) + "\n")
    disk = full_disk("p.csv", room=5 if where == "header" else header + 10)
    code, err = cli(capsys, *command)
    assert code == 1 and err == (
        f"error: could not write {out}: {NO_SPACE}; free space on that disk, then run the same "
        "command again: the rows of the inputs finished so far are kept, and it goes on from "
        "there\n"
    ), err
    if where == "header":
        assert files_in(tmp_path) == []
    disk.free()
    code, err = cli(capsys, *command)
    assert code == 0, err
    with out.open(newline="") as f:
        assert [Path(r["source"]).name for r in csv.DictReader(f)] == ["a.jpg", "b.jpg"]


def test_an_annotated_image_on_a_full_disk_leaves_no_file_and_is_not_taken_for_a_format(
    checkpoint, crops, tmp_path, capsys, monkeypatch
):
    """A failed save of a.jpg is the disk's error, raised as such: not retried as a.jpg.png, and
    neither name is left half-written; the same command then writes each copy once."""
    folder = tmp_path / "annotated"
    real_save = Image.Image.save

    def filling(self, fp, format=None, **params):  # a full disk while a.jpg's copy is written
        if Path(fp).name.startswith("a.jpg"):
            Path(fp).write_bytes(b"\xff\xd8\xff half a JPEG")
            raise OSError(errno.ENOSPC, NO_SPACE)
        return real_save(self, fp, format, **params)

    monkeypatch.setattr(Image.Image, "save", filling)
    out = tmp_path / "p.csv"
    command = ["predict", checkpoint, crops, "--cropped", "--out", out, "--annotate", folder,
               "--no-progress"]  # fmt: skip
    code, err = cli(capsys, *command)
    assert code == 1 and err.startswith(f"error: could not write {folder / 'a.jpg'}: {NO_SPACE};")
    assert files_in(folder) == []
    monkeypatch.undo()
    code, err = cli(capsys, *command)
    assert code == 0, err
    assert files_in(folder) == ["a.jpg", "b.jpg"]


def test_a_format_pil_cannot_write_falls_back_to_png(tmp_path):
    from lionfer.inference.annotate_folder import save_annotated

    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 128))  # JPEG holds no alpha
    assert save_annotated(rgba, tmp_path / "x.jpg") == tmp_path / "x.jpg.png"
    assert save_annotated(rgba, tmp_path / "y.unknown") == tmp_path / "y.unknown.png"
    assert save_annotated(rgba.convert("RGB"), tmp_path / "z.jpg") == tmp_path / "z.jpg"
    assert files_in(tmp_path) == ["x.jpg.png", "y.unknown.png", "z.jpg"]
    with Image.open(tmp_path / "x.jpg.png") as image:
        assert image.format == "PNG" and image.mode == "RGBA"


# ---- prepare ----


def arrays_only() -> FERData:
    """Two in-memory faces: prepare only resizes them (no detector)."""
    arrays = np.random.default_rng(0).integers(0, 256, (2, 32, 32), dtype=np.uint8)
    train = ImageSet(images=arrays, labels=[3, 4])
    return FERData("arrays", CLASS_NAMES, train=train, test=None, unlabeled=None)


def test_a_failed_manifest_write_leaves_no_temporary_file(tmp_path, full_disk):
    out = tmp_path / "cache"
    disk = full_disk("*manifest.csv*", room=20)
    with pytest.raises(OSError) as info:
        prepare(arrays_only(), out, size=16, progress=False)
    assert not [name for name in files_in(out) if name.endswith(".part")]
    assert not (out / "manifest.csv").exists()
    assert info.value.filename == str(out / "manifest.csv") and info.value.errno == errno.ENOSPC
    disk.free()
    (out / ".manifest.csv.99999.part").write_bytes(b"half")  # a run killed while writing it
    report = prepare(arrays_only(), out, size=16, progress=False)
    assert report.counts["skipped_existing"] == 2 and report.rows == 2
    assert not [name for name in files_in(out) if name.endswith(".part")]


# ---- audit ----


@pytest.fixture
def labeled(tmp_path) -> Path:
    root = tmp_path / "faces"
    for name, face in zip(("train/happy/a.png", "test/sad/b.png"), faces((3, 4)), strict=True):
        (root / name).parent.mkdir(parents=True)
        Image.fromarray(face).save(root / name)
    return root


@pytest.mark.parametrize("failing", ["s.csv", "s.html"])
def test_an_audit_that_fails_writing_leaves_neither_file(checkpoint, labeled, tmp_path, capsys,
                                                         full_disk, failing):  # fmt: skip
    """The CSV or the HTML page fails: nothing half-written, no temporary file, and the same
    command runs again without --overwrite."""
    out = tmp_path / "audit" / "s.csv"
    command = ["audit", checkpoint, "data.dataset=folder", f"data.root={labeled}",
               "data.image_size=24", "--out", out, "--no-progress"]  # fmt: skip
    disk = full_disk(f"*{failing}*", room=100)
    code, err = cli(capsys, *command)
    assert files_in(out.parent) == []
    failed = out.with_name(failing)
    assert code == 1 and err.startswith(f"error: could not write {failed}: {NO_SPACE};"), err
    disk.free()
    code, err = cli(capsys, *command)
    assert code == 0, err
    assert files_in(out.parent) == ["s.csv", "s.html"]


# ---- training ----


SMALL_RUN = ("algorithm.name=supervised", "train.steps=2", "train.eval_every=2",
             "train.checkpoint_every=2", "data.num_train=70", "data.num_test=14",
             "data.num_labels=14")  # fmt: skip


def test_a_new_run_failing_at_its_first_write_leaves_nothing_and_runs_again(
    tmp_path, capsys, full_disk
):
    run = tmp_path / "run"
    command = ["train", *tiny(*SMALL_RUN), "--out", run, "--no-progress"]
    disk = full_disk(METRICS)
    code, err = cli(capsys, *command)
    last = err.strip().splitlines()[-1]
    assert code == 1 and last == (
        f"error: could not write {run / METRICS}: {NO_SPACE}; free space on that disk, then run "
        "the same command again"
    ), err
    assert files_in(run) == []  # no empty metrics.jsonl that would make the folder foreign
    disk.free()
    code, err = cli(capsys, *command)
    assert code == 0, err


@pytest.mark.parametrize("name", ["meta.json", "relabels.csv", "confusion.csv"])
def test_a_runs_files_are_written_whole_or_not_at_all(tmp_path, tiny_cfg, full_disk, name):
    from lionfer.training import train

    run = tmp_path / "run"
    full_disk(f"{name}*", room=10)
    with pytest.raises(OSError) as info:
        train(tiny_cfg(*SMALL_RUN), run, progress=False)
    assert info.value.filename == str(run / name) and info.value.errno == errno.ENOSPC
    assert name not in files_in(run) and f"{name}.tmp" not in files_in(run)


def test_a_failed_first_metrics_line_removes_the_file_it_created(tmp_path, full_disk):
    path = tmp_path / METRICS
    full_disk(METRICS, room=5)
    with pytest.raises(OSError) as info:
        MetricsLog(path).append({"event": "start", "num_labeled": 1})
    assert not path.exists()
    assert info.value.filename == str(path) and info.value.errno == errno.ENOSPC


def test_a_failed_later_metrics_line_keeps_the_file(tmp_path, full_disk):
    path = tmp_path / METRICS
    MetricsLog(path).append({"event": "start", "num_labeled": 1})
    full_disk(METRICS)
    with pytest.raises(OSError, match="No space"):
        MetricsLog(path).append({"event": "train", "step": 1})
    assert MetricsLog(path).records() == [{"event": "start", "num_labeled": 1}]


def test_a_folder_holding_only_an_empty_metrics_file_is_lionfers(tmp_path, monkeypatch):
    """What a run that failed at its first write leaves (a disk filled meanwhile): the same
    command and --overwrite both start the run there, deleting only that file."""
    run = tmp_path / "run"
    run.mkdir()
    (run / METRICS).write_bytes(b"")
    for overwrite in (False, True):
        check_run_dir(run, resume=False, overwrite=overwrite)
    with pytest.raises(FileNotFoundError, match="stopped at its first write.*without --resume"):
        check_resumable(run)
    monkeypatch.chdir(run)  # even the current folder: only the file goes, not the folder
    create_run_dir(run, overwrite=False)
    assert run.is_dir() and files_in(run) == []
    (run / METRICS).write_bytes(b"")
    (run / "notes.txt").write_text("mine")  # with anything else, the folder is not lionfer's
    with pytest.raises(RunExistsError, match="not a lionfer run"):
        check_run_dir(run, resume=False, overwrite=True)


# ---- the messages ----


def test_a_write_error_without_a_file_name_is_named():
    from lionfer.atomic import naming

    path = Path("/somewhere/m.onnx")
    with pytest.raises(OSError) as info, naming(path):
        raise OSError("147456 requested and 34976 written")  # numpy's tofile on a full disk
    assert info.value.filename == str(path) and "34976 written" in info.value.strerror
    with pytest.raises(OSError) as info, naming(path):
        raise OSError(errno.ENOSPC, NO_SPACE)
    assert info.value.filename == str(path) and info.value.errno == errno.ENOSPC
    with pytest.raises(FileNotFoundError) as info, naming(path):  # names its own file: kept
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/other")
    assert info.value.filename == "/other"


def test_write_text_atomic_names_the_target_not_its_temporary_file(tmp_path, full_disk):
    full_disk("*.toml*")
    with pytest.raises(OSError) as info:
        write_text_atomic(tmp_path / "config.toml", "x = 1\n" * 100)
    assert info.value.filename == str(tmp_path / "config.toml")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.ENOSPC, "disk, then run the same command again: the rows"),
        (errno.EDQUOT, "disk, then run the same command again: the rows"),
        (errno.EFBIG, "(ulimit -f) takes no larger file: raise it, then run the same"),
        (errno.EROFS, "choose an --out you can write to, then run the command again with that"),
    ],
)
def test_each_write_failure_says_what_to_do(code, says):
    from lionfer.cli import os_error_message

    args = argparse.Namespace(command="predict")
    error = OSError(code, os.strerror(code), "/data/p.csv")
    message = os_error_message(error, args)
    assert message.startswith(f"could not write /data/p.csv: {os.strerror(code)}; ")
    assert says in message, message
    other = OSError(errno.EIO, os.strerror(errno.EIO), "/data/a.jpg")
    assert os_error_message(other, args) == f"/data/a.jpg: {os.strerror(errno.EIO)}"
    nameless = os_error_message(OSError(code, os.strerror(code)), args)  # a library's write
    assert nameless.startswith(f"could not write: {os.strerror(code)}; ") and says in nameless


def test_a_failed_write_of_a_run_with_a_checkpoint_says_to_resume(tmp_path):
    from lionfer.cli import os_error_message

    run = tmp_path / "my run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    args = argparse.Namespace(command="train", out=str(run), resume=True, dry_run=False, items=[])
    message = os_error_message(OSError(errno.ENOSPC, NO_SPACE, str(run / METRICS)), args)
    assert message.endswith(f"then continue the run with: lionfer train --resume --out '{run}'")


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_a_csv_field_holding_a_line_break_of_either_kind_stays_one_field(tmp_path, line_end):
    """What lionfer's CSV files (audit, prepare's manifest, relabels) write of a file name with
    a carriage return or a line feed in it reads back as the rows written, with either line end."""
    rows = [["path", "label"], ["cr\rname.png", 1], ["lf\nname.png", 2], ["both\r\n.png", 3]]
    out = tmp_path / "t.csv"
    write_csv_atomic(out, rows, lineterminator=line_end)
    with open(out, newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == [[str(v) for v in row] for row in rows]
    assert out.read_bytes().endswith(b"3" + line_end.encode())
