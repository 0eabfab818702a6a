"""The report's folder: each file written whole, never through a link and nothing outside
--out; the earlier report kept until the new one is in place; only the names a report writes
ever deleted; a write that fails names its file; --out below a file and a file given as a run
are bad input (exit 2)."""

import json
import os
import resource
import subprocess
import sys

import pytest
from test_report import fake_run

from lionfer.cli import main
from lionfer.errors import ConfigError
from lionfer.reporting.report_command import make_report
from lionfer.reporting.report_folder import report_file


def earlier_report(tmp_path):
    """A run and its report in tmp_path/report, as a user would have them before a new one."""
    fake_run(tmp_path / "runs", "a", acc=0.5, evals=[(10, {"test_acc": 0.5})])
    make_report([tmp_path / "runs"], tmp_path / "report")
    return tmp_path / "report"


def test_a_link_out_of_the_report_folder_is_refused_and_nothing_is_written(tmp_path):
    out = earlier_report(tmp_path)
    precious = tmp_path / "precious.md"
    precious.write_text("mine\n")
    (out / "report.md").unlink()
    (out / "report.md").symlink_to(precious)
    before = (out / "table1.csv").read_bytes()
    fake_run(tmp_path / "runs", "b", seed=1, acc=0.7)  # the new report differs from the old
    with pytest.raises(ConfigError, match=r"holds report.md, a link to .*precious.md, outside"):
        make_report([tmp_path / "runs"], out)
    assert precious.read_text() == "mine\n" and (out / "report.md").is_symlink()
    assert (out / "table1.csv").read_bytes() == before


def test_a_link_in_place_of_figures_is_refused(tmp_path):
    out = earlier_report(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (out / "figures").rename(elsewhere)
    (out / "figures").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="figures, a link to"):
        make_report([tmp_path / "runs"], out)


def test_a_link_inside_the_report_folder_is_replaced_by_the_file(tmp_path):
    out = earlier_report(tmp_path)
    (out / "report.md").unlink()
    (out / "report.md").symlink_to(out / "runs.csv")
    make_report([tmp_path / "runs"], out)
    assert not (out / "report.md").is_symlink()
    assert (out / "report.md").read_text().startswith("# lionfer report")
    assert (out / "runs.csv").read_text().startswith("folder,method,column")


def test_only_names_a_report_writes_are_ever_deleted(tmp_path):
    out = earlier_report(tmp_path)
    record = json.loads((out / "report.json").read_text())
    (out / "mynotes.txt").write_text("keep")
    (tmp_path / "outside.csv").write_text("keep")
    record["files"] += ["mynotes.txt", "../outside.csv", "table1_best_test.csv"]
    (out / "report.json").write_text(json.dumps(record))
    (out / "table1_best_test.csv").write_text("an earlier report's, listed")
    make_report([tmp_path / "runs"], out)
    assert (out / "mynotes.txt").read_text() == "keep"
    assert (tmp_path / "outside.csv").read_text() == "keep"
    assert not (out / "table1_best_test.csv").exists()  # a report's name: stale, deleted
    assert "mynotes.txt" not in json.loads((out / "report.json").read_text())["files"]


def test_every_file_a_report_writes_has_a_report_name(tmp_path):
    out = earlier_report(tmp_path)
    listed = json.loads((out / "report.json").read_text())["files"]
    assert "figures/learning_curves.png" in listed and all(map(report_file, listed))
    assert not report_file("mynotes.txt") and not report_file("figures/../x.png")


def limited_report(tmp_path, limit: int, *args):
    """`lionfer report` in a process that may write no file over `limit` bytes (ulimit -f)."""

    def limit_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    command = [sys.executable, "-m", "lionfer", "report", *map(str, args)]
    return subprocess.run(command, preexec_fn=limit_files, capture_output=True, text=True)


def test_a_failed_write_names_its_file_and_leaves_the_earlier_report(tmp_path):
    out = earlier_report(tmp_path)
    before = {name: (out / name).read_bytes() for name in ("report.md", "report.html")}
    done = limited_report(tmp_path, 4096, tmp_path / "runs", "--out", out)  # a figure is more
    assert done.returncode == 1, done.stderr
    assert f"could not write {out / 'figures'}/" in done.stderr and "File too large" in done.stderr
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not list(out.rglob("*.tmp"))
    # once the limit is gone, the same command makes the report (the new files are its own)
    assert main(["report", str(tmp_path / "runs"), "--out", str(out)]) == 0


def test_an_out_below_a_file_is_bad_input(tmp_path, capsys):
    out = earlier_report(tmp_path)
    code = main(["report", str(tmp_path / "runs"), "--out", str(out / "report.md" / "x")])
    assert code == 2
    assert "report.md, which is a file, not a folder" in capsys.readouterr().err


def test_a_file_given_as_a_run_names_its_run_folder(tmp_path, capsys):
    run = fake_run(tmp_path / "runs", "a", acc=0.5)
    code = main(["report", str(run / "summary.json"), "--out", str(tmp_path / "report")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"summary.json is a file; give the run folder that holds it: {run}" in err
    assert "no finished run" not in err


def test_a_run_folder_named_in_latin_1_is_shown_with_its_byte_as_xnn(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    fake_run(runs, os.fsdecode(b"tr\xe9"), acc=0.5, evals=[(10, {"test_acc": 0.5})])
    make_report([runs], tmp_path / "report")
    for name in ("report.md", "report.html", "runs.csv"):
        text = (tmp_path / "report" / name).read_bytes().decode("utf-8")  # UTF-8 throughout
        assert "runs/tr\\xe9" in text, name
