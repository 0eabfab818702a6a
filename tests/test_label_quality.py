"""Label-quality figures of a run that changes labels: in metrics.jsonl, summary.json and
relabels.csv."""

import csv
import json

import numpy as np

from lionfer.report import comparison_table, label_quality_lines
from lionfer.trainer import train


def test_lion_run_records_label_quality_over_time_and_at_the_end(tiny_cfg, tmp_path):
    cfg = tiny_cfg(
        "algorithm.name=lion",
        "algorithm.recipe=paper",
        "algorithm.clear_threshold=0.3",
        "algorithm.disambiguation_start=0.2",
    )
    summary = train(cfg, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    evals = [r for r in records if r["event"] == "eval"]
    assert evals and all("labels" in r for r in evals)
    for figures in (evals[-1]["labels"], summary):
        relabel, quality = figures["relabel"], figures["label_quality"]
        assert 0 <= relabel["given_accuracy"] <= 1 and 0 <= relabel["current_accuracy"] <= 1
        gain = relabel["current_accuracy"] - relabel["given_accuracy"]
        assert np.isclose(relabel["accuracy_gain"], gain)
        assert 0 <= quality["ambiguous_fraction"] <= 1 and quality["start_step"] >= 0
    assert summary["recipe"] == "paper"
    with (tmp_path / "run" / "relabels.csv").open() as f:
        header = next(csv.reader(f))
    assert header[-7:] == [f"w_{name.lower()}" for name in summary["class_names"]]
    assert "label acc now %" in comparison_table([summary])
    assert label_quality_lines(summary)[0].startswith(f"relabeled {summary['relabel']['count']}")


def test_algorithms_that_keep_their_labels_record_no_label_figures(tiny_cfg, tmp_path):
    summary = train(tiny_cfg("algorithm.name=fixmatch"), tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert not any("labels" in r for r in records)
    assert "relabel" not in summary and label_quality_lines(summary) == []


def test_evaluate_reports_the_label_figures_of_a_lion_run(tiny_cfg, tmp_path, capsys):
    from lionfer.cli import main
    from lionfer.evaluate import evaluate_run

    cfg = tiny_cfg(
        "algorithm.name=lion",
        "algorithm.recipe=paper",
        "algorithm.clear_threshold=0.3",
        "algorithm.disambiguation_start=0.2",
    )
    summary = train(cfg, tmp_path / "run", progress=False)
    result = evaluate_run(tmp_path / "run", device="cpu")
    assert result["relabel"] == summary["relabel"]
    assert (
        result["label_quality"]["ambiguous_fraction"]
        == (summary["label_quality"]["ambiguous_fraction"])
    )
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    assert f"relabeled {summary['relabel']['count']} of 28" in capsys.readouterr().out
    fixmatch = train(tiny_cfg("algorithm.name=fixmatch"), tmp_path / "fm", progress=False)
    assert "relabel" not in evaluate_run(tmp_path / "fm", device="cpu") and fixmatch
