"""Label-quality figures of a run that changes labels: in metrics.jsonl, summary.json and
relabels.csv."""

import csv
import json

import numpy as np
import pytest

from lionfer.reporting.run_summary import label_quality_lines
from lionfer.training.run import train


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
    assert label_quality_lines(summary)[0].startswith(first_line(summary["relabel"]["count"]))


def first_line(count: int) -> str:
    """How the label lines of these 28-label runs of the paper recipe (which demotes none)
    begin: the relabels, or that none was made."""
    return f"relabeled {count} of 28" if count else "no label changed, of 28 labeled images"


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
    assert first_line(summary["relabel"]["count"]) in capsys.readouterr().out
    fixmatch = train(tiny_cfg("algorithm.name=fixmatch"), tmp_path / "fm", progress=False)
    assert "relabel" not in evaluate_run(tmp_path / "fm", device="cpu") and fixmatch


def test_the_evidence_check_reaches_the_summary_and_evaluate_recomputes_it(tiny_cfg, tmp_path):
    from lionfer.evaluate import evaluate_run

    summary = train(tiny_cfg("algorithm.name=lion"), tmp_path / "run", progress=False)
    check = summary["label_quality"]["evidence_check"]
    assert set(check) == {"labeled_agreement", "test_agreement", "z", "memorised"}
    # the same figures from the checkpoint: the heads' weights are loaded with the state
    assert evaluate_run(tmp_path / "run", device="cpu")["label_quality"]["evidence_check"] == check
    line = label_quality_lines(summary)[-1]
    assert line.startswith("evidence check: out of fold, the heads name the given label of ")
    assert f"(z = {check['z']:.1f})" in line
    by_class = summary["evidence_by_class"]
    assert list(by_class) == summary["class_names"]
    named = sum(row["named"] for row in by_class.values())
    assert 0 < named <= summary["num_labels"]
    assert sum(row["relabeled_to"] for row in by_class.values()) == summary["relabel"]["count"]
    assert evaluate_run(tmp_path / "run", device="cpu")["evidence_by_class"] == by_class


@pytest.mark.parametrize("memorised", [True, False])
def test_the_evidence_check_line_says_what_it_found(memorised):
    from lionfer.reporting.run_summary import evidence_check_line

    check = {
        "labeled_agreement": 0.936,
        "test_agreement": 0.644,
        "z": 10.64,
        "memorised": memorised,
    }
    line = evidence_check_line(check)
    assert line.startswith(
        "evidence check: out of fold, the heads name the given label of 93.6% of labeled images "
        "and the label of 64.4% of test images (z = 10.6): "
    )
    assert ("check this run's relabels by hand" in line) is memorised
    assert ("no sign that the evidence has learnt the labels" in line) is not memorised
    line = evidence_check_line(check, changed=False)
    assert ("(this run changed no label)" in line) is memorised
    assert "check this run's relabels by hand" not in line


def test_the_evidence_check_line_asks_for_a_check_by_hand_only_after_changes():
    check = {"labeled_agreement": 0.99, "test_agreement": 0.57, "z": 9.5, "memorised": True}
    summary = {
        "num_labels": 10,
        "relabel": {"count": 0},
        "label_quality": {"evidence_check": check},
    }
    assert label_quality_lines(summary)[-1].endswith("(this run changed no label)")
    demoted = {**summary, "relabel": {"count": 0, "demoted": {"count": 1}}}
    assert label_quality_lines(demoted)[-1].endswith("check this run's relabels by hand")
    relabeled = {**summary, "relabel": {"count": 2, "demoted": {"count": 0}}}
    assert label_quality_lines(relabeled)[-1].endswith("check this run's relabels by hand")


def test_the_audit_reaches_the_summary_and_a_checkpoint_saved_without_it_still_loads(
    tiny_cfg, tmp_path
):
    import torch

    from lionfer.evaluate import evaluate_run
    from lionfer.reporting.run_summary import noise_check_line

    cfg = tiny_cfg("algorithm.name=lion", "algorithm.audit_z=2.5")
    summary = train(cfg, tmp_path / "run", progress=False)
    audit = summary["label_quality"]["evidence_audit"]
    assert set(audit) == {
        "images",
        "read_step",
        "z",
        "threshold",
        "passed",
        "judged_agreement",
        "audit_agreement",
        "reads",
    }
    assert audit["images"] >= 1 and audit["threshold"] == 2.5
    # the last read concluded; any before it were inconclusive
    assert audit["reads"][-1] == {"step": audit["read_step"], "z": audit["z"]}
    assert all(1.645 < read["z"] <= 3 for read in audit["reads"][:-1])
    assert 0 <= audit["judged_agreement"] <= 1 and 0 <= audit["audit_agreement"] <= 1
    lines = label_quality_lines(summary)
    assert lines[-3].startswith(f"evidence audit: {audit['images']} ")
    # the default's noise check, read from the audit's read on: in the summary and its line
    check = summary["label_quality"]["noise_check"]
    assert check["reads"] >= 1 and 0 <= check["held"] <= check["reads"]
    assert check["noise_min"] == 0.035 and check["read_step"] >= audit["read_step"]
    assert check["threshold"] == 1.645 and check["holds"] is (check["z"] > 1.645)
    assert check["held"] >= int(check["holds"]) and 0 <= check["rate"] < 1
    assert lines[-2] == noise_check_line(check)
    evaluated = evaluate_run(tmp_path / "run", device="cpu")["label_quality"]["evidence_audit"]
    assert evaluated == audit  # lionfer evaluate reads the same audit, its threshold too
    # a run saved before the audit kept its rates: the rest of the audit, without them
    last = sorted((tmp_path / "run" / "checkpoints").glob("*.pt"))[-1]
    saved = torch.load(last, weights_only=False)
    state = saved["algorithm"]
    del state["audit_agreement"]
    torch.save(saved, last)
    older = evaluate_run(tmp_path / "run", device="cpu")["label_quality"]
    assert older["evidence_audit"] == {
        k: v for k, v in audit.items() if not k.endswith("_agreement")
    }
    assert older["noise_check"] == check  # lionfer evaluate reads the same check
    # a check read once is reported; one never read (the audit stopped decisions first) is not
    for reads in (1, 0):
        state["noise_reads"] = torch.tensor([reads, 0])
        torch.save(saved, last)
        figures = evaluate_run(tmp_path / "run", device="cpu")["label_quality"]
        assert figures.get("noise_check", {"reads": 0})["reads"] == reads
        assert ("noise_check" in figures) is (reads == 1)
    # a run saved before the noise check: it loads as a run without one, and says nothing of it
    del state["noise_reads"], state["noise_read"]
    torch.save(saved, last)
    assert "noise_check" not in evaluate_run(tmp_path / "run", device="cpu")["label_quality"]
    # a run saved before the audit existed: its state lacks the audit's keys
    for name in ("audit", "audit_step", "audit_z", "audit_passed"):
        del state[name]
    torch.save(saved, last)
    figures = evaluate_run(tmp_path / "run", device="cpu")
    assert "evidence_audit" not in figures["label_quality"]
    assert figures["label_quality"]["evidence_check"] is not None


@pytest.mark.parametrize(
    "audit, says",
    [
        (
            {"images": 14, "read_step": 60, "z": 4.83, "threshold": 3.0, "passed": False},
            "until the audit was read, at step 60: the evidence named the others' given labels "
            "far more often than theirs (z = 4.8, above 3); the features had learnt the labels, "
            "so no label was changed",
        ),
        (
            {"images": 14, "read_step": 60, "z": -0.44, "threshold": 3.0, "passed": True},
            "until the first decision, at step 60: the evidence named the others' given labels "
            "not far more often than theirs (z = -0.4, at most 3), so decisions went on",
        ),
        (  # the rates its z compares, where the summary keeps them
            {
                "images": 14,
                "read_step": 60,
                "z": 4.83,
                "threshold": 3.0,
                "passed": False,
                "judged_agreement": 0.962,
                "audit_agreement": 0.714,
            },
            "until the audit was read, at step 60: the evidence named the others' given labels "
            "far more often than theirs (96% against 71%, z = 4.8, above 3); the features had "
            "learnt the labels, so no label was changed",
        ),
        (
            {
                "images": 14,
                "read_step": 60,
                "z": 0.5,
                "threshold": 3.0,
                "passed": True,
                "judged_agreement": 0.8,
                "audit_agreement": 0.7857,
            },
            "until the first decision, at step 60: the evidence named the others' given labels "
            "not far more often than theirs (80% against 79%, z = 0.5, at most 3), so decisions "
            "went on",
        ),
        (  # a threshold set high lets a large z pass, and the line says so
            {"images": 14, "read_step": 60, "z": 4.5, "threshold": 1000.0, "passed": True},
            "until the first decision, at step 60: the evidence named the others' given labels "
            "not far more often than theirs (z = 4.5, at most 1000), so decisions went on",
        ),
        (  # the summary of a run made before the threshold was kept
            {"images": 14, "read_step": 60, "z": 4.83, "passed": False},
            "until the audit was read, at step 60: the evidence named the others' given labels "
            "far more often than theirs (z = 4.8); the features had learnt the labels, so no "
            "label was changed",
        ),
        (
            {"images": 14, "read_step": 60, "z": None, "passed": True},
            "until the first decision, at step 60, none of them seen by then: decisions went on",
        ),
        (
            {"images": 14, "read_step": None, "z": None, "passed": True},
            "to the end: the run made no decision",
        ),
        (  # read twice: the first read was inconclusive
            {
                "images": 14,
                "read_step": 120,
                "z": 3.42,
                "threshold": 3.0,
                "passed": False,
                "reads": [{"step": 60, "z": 2.34}, {"step": 120, "z": 3.42}],
            },
            "until the audit was read, at step 120, after 1 inconclusive read (z = 2.3 at step "
            "60): the evidence named the others' given labels far more often than theirs (z = "
            "3.4, above 3); the features had learnt the labels, so no label was changed",
        ),
        (  # read three times, and let decisions go on at the last
            {
                "images": 14,
                "read_step": 180,
                "z": 1.2,
                "threshold": 3.0,
                "passed": True,
                "reads": [{"step": 60, "z": 2.0}, {"step": 120, "z": 1.8}, {"step": 180, "z": 1.2}],
            },
            "until the first decision, at step 180, after 2 inconclusive reads (z = 2.0 at step "
            "60, 1.8 at step 120): the evidence named the others' given labels not far more "
            "often than theirs (z = 1.2, at most 3), so decisions went on",
        ),
        (  # the run ended before a read concluded
            {
                "images": 14,
                "read_step": None,
                "z": None,
                "passed": True,
                "reads": [{"step": 60, "z": 2.0}],
            },
            "to the end: the run made no decision; it ended after 1 inconclusive read (z = 2.0 at "
            "step 60)",
        ),
    ],
)
def test_the_audit_line_says_what_it_found_and_when(audit, says):
    from lionfer.reporting.run_summary import evidence_audit_line

    assert evidence_audit_line(audit) == (
        "evidence audit: 14 labeled images held out of training on their labels " + says
    )


def test_the_audit_line_says_when_no_class_could_give_it_an_image():
    from lionfer.reporting.run_summary import evidence_audit_line

    audit = {"images": 0, "read_step": None, "z": None, "threshold": 3.0, "passed": False}
    assert evidence_audit_line(audit) == (
        "evidence audit: fewer than two labeled images could be held out (a class gives one "
        "from three labeled images on: one held out, two to judge), too few to tell whether the "
        "features have learnt the labels, so it could not be made and no label was changed; "
        "raise data.num_labels"
    )


NOISE_CHECK = {
    "reads": 54,
    "held": 0,
    "noise_min": 0.035,
    "threshold": 1.645,
    "read_step": 594,
    "z": 0.0,
    "rate": 0.043,
    "temperature": 0.4,
    "holds": False,
}


@pytest.mark.parametrize(
    "check, says",
    [
        (
            {},
            "at none of its 54 reads did the given labels look nearly right (under 3.5% of them "
            "ruled out by the evidence, z above 1.645), so it held no decision back (last read "
            "at step 594: 4.3% ruled out, z = 0.0)",
        ),
        (
            {"held": 38, "z": 3.14, "rate": 0.002, "holds": True},
            "at 38 of its 54 reads the given labels looked nearly right (under 3.5% of them ruled "
            "out by the evidence, z above 1.645), and no decision was made until the next read "
            "(last read at step 594: 0.2% ruled out, z = 3.1); it held decisions back at the end",
        ),
        (
            {"held": 3, "z": 1.2, "rate": 0.012},
            "at 3 of its 54 reads the given labels looked nearly right (under 3.5% of them ruled "
            "out by the evidence, z above 1.645), and no decision was made until the next read "
            "(last read at step 594: 1.2% ruled out, z = 1.2)",
        ),
    ],
)
def test_the_noise_check_line_says_how_often_it_held_decisions_back(check, says):
    from lionfer.reporting.run_summary import noise_check_line

    assert noise_check_line({**NOISE_CHECK, **check}) == "noise check: " + says


# A fabricated labeled set with known truth, error types and a demoted image per seed:
#                 0  1  2  3  4  5  6  7
GIVEN = np.array([0, 1, 2, 0, 1, 2, 0, 1])
TRUE = np.array([0, 1, 1, 1, 0, 2, 2, 1])
TYPES = np.array([0, 0, 1, 2, 2, 0, 1, 0])  # wrong: 2, 6 slips; 3, 4 ambiguity
CURRENT = (
    np.array([0, 1, 1, 1, 1, 2, 0, 0]),  # seed 0: fixes slip 2 and ambiguous 3, breaks 7
    np.array([0, 1, 1, 0, 1, 2, 2, 1]),  # seed 1: fixes slips 2 and 6
)
DEMOTED = (
    np.array([0, 0, 0, 0, 1, 0, 0, 0], bool),  # seed 0 sets aside 4 (wrongly labeled)
    np.array([0, 0, 0, 0, 0, 1, 0, 0], bool),  # seed 1 sets aside 5 (rightly labeled)
)


def fabricated_summaries():
    from lionfer.metrics import relabel_metrics

    return [
        {
            "algorithm": "lion",
            "recipe": "new",
            "dataset": "synthetic",
            "seed": seed,
            "num_labels": 8,
            "test_acc": 0.5,
            "mean_class_acc": 0.5,
            "relabel": relabel_metrics(GIVEN, CURRENT[seed], TRUE, TYPES, DEMOTED[seed]),
        }
        for seed in (0, 1)
    ]


def test_error_type_figures_of_a_fabricated_case_by_hand():
    first, second = (s["relabel"] for s in fabricated_summaries())
    assert first["by_error_type"] == {
        "slip": {"wrong_given": 2, "fixed": 1, "changed": 1},
        "ambiguity": {"wrong_given": 2, "fixed": 1, "changed": 1},  # 4 is demoted: unchanged
    }
    assert first["broken"] == 1 and first["demoted"] == {"count": 1, "wrong_given": 1}
    assert first["count"] == 3 and first["current_accuracy"] == 5 / 8  # 0, 1, 2, 3, 5
    assert second["by_error_type"]["slip"] == {"wrong_given": 2, "fixed": 2, "changed": 2}
    assert second["by_error_type"]["ambiguity"] == {"wrong_given": 2, "fixed": 0, "changed": 0}
    assert second["broken"] == 0 and second["demoted"] == {"count": 1, "wrong_given": 0}
    assert label_quality_lines({**fabricated_summaries()[0], "num_labels": 8})[1] == (
        "wrong labels fixed: slips 1 of 2, ambiguous 1 of 2; correct labels broken: 1; "
        "demoted to unlabeled: 1 (wrongly labeled)"
    )


def test_error_type_figures_reach_the_report_tables(tmp_path):
    from lionfer.reporting import tables as T
    from lionfer.reporting.report_command import make_report
    from lionfer.reporting.run_finder import load_runs

    root = tmp_path / "runs"
    for summary in fabricated_summaries():
        path = root / f"seed{summary['seed']}"
        path.mkdir(parents=True)
        summary = {**summary, "class_names": ["A", "B", "C"], "steps": 1}
        summary["confusion_matrix"] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
        (path / "summary.json").write_text(json.dumps(summary))
        (path / "config.toml").write_text(
            f'seed = {summary["seed"]}\n[data]\ndataset = "synthetic"\nnum_labels = 8\n'
            '[algorithm]\nname = "lion"\n'
        )
        (path / "metrics.jsonl").write_text('{"event": "start"}\n')
    result = make_report([root], tmp_path / "report")
    with (tmp_path / "report" / "relabel.csv").open() as f:
        figures = {r["figure"]: r for r in csv.DictReader(f)}
    assert float(figures["relabel.by_error_type.slip.fixed_share"]["mean"]) == 75.0  # 50, 100
    assert float(figures["relabel.by_error_type.ambiguity.fixed_share"]["mean"]) == 25.0
    assert float(figures["relabel.broken"]["mean"]) == 0.5
    assert float(figures["relabel.demoted.count"]["mean"]) == 1.0
    assert float(figures["relabel.demoted.wrong_share"]["mean"]) == 50.0  # 100, 0
    md = (tmp_path / "report" / "report.md").read_text()
    (section,) = [s for s in result.sections if s.title == "Relabeling"]
    (table,) = [b for b in section.blocks if hasattr(b, "header")]
    for title in ("slips fixed %", "ambiguity fixed %", "broken", "demoted", "demoted wrong %"):
        assert title in table.header
    # slips 50 and 100 %, ambiguity 50 and 0 %, demoted wrongly labeled 100 and 0 %
    (row,) = table.rows
    assert "75.00 ± 35.36 (n=2)" in row and "25.00 ± 35.36 (n=2)" in row
    assert "50.00 ± 70.71 (n=2)" in row
    # each run's own account, as lionfer train printed it, in the report and its result
    assert [a.seed for a in result.labels] == [0, 1]
    assert result.labels[0].lines[1] == label_quality_lines(fabricated_summaries()[0])[1]
    assert "Labels of each run" in md and "slips 1 of 2" in md
    runs = load_runs([root]).runs
    for run in runs:  # without the new figures their columns are left out
        for key in ("by_error_type", "broken", "demoted"):
            run.summary["relabel"].pop(key)
    header, _ = T.relabel_table(runs)
    assert header[-1] == "gain (points)"


def test_relabels_csv_lists_demoted_images_with_their_status(tmp_path):
    import torch

    from lionfer.data.base import ImageSet
    from lionfer.training.summary import write_relabels

    class Fake:
        def state_dict(self):
            return {
                "label": torch.tensor([0, 2, 2, 0]),
                "demoted": torch.tensor([False, False, False, True]),
            }

    labeled = ImageSet(np.zeros((4, 2, 2, 3), np.uint8), [0, 1, 2, 0], true_labels=[0, 2, 2, 1])
    write_relabels(tmp_path / "relabels.csv", Fake(), labeled, ["A", "B", "C"])
    with (tmp_path / "relabels.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["index"], r["status"]) for r in rows] == [("1", "relabeled"), ("3", "demoted")]
    assert rows[1]["given_label"] == rows[1]["current_label"] == "0"


def test_the_relabel_line_lists_the_new_classes_least_trusted_first():
    from lionfer.reporting.run_summary import relabel_class_line

    by_class = {
        "Fear": {"named": 50, "agreement": 0.84, "relabeled_to": 11},
        "Happiness": {"named": 60, "agreement": 0.9, "relabeled_to": 0},
        "Sadness": {"named": 40, "agreement": 0.62, "relabeled_to": 6},
        "Neutral": {"named": 0, "agreement": None, "relabeled_to": 1},
    }
    line = relabel_class_line(by_class)
    assert line.endswith(
        "Neutral 1, agreement -; Sadness 6, agreement 62.0%; Fear 11, agreement 84.0%"
    )
    assert "Happiness" not in line
    known = {"Fear": {**by_class["Fear"], "relabeled_to_known": 11, "relabeled_to_right": 9}}
    assert relabel_class_line(known).endswith("Fear 11 (9 of 11 right), agreement 84.0%")
    nothing = {"Fear": {**by_class["Fear"], "relabeled_to": 0}}
    assert relabel_class_line(nothing) == ""
    summary = {"num_labels": 8, "relabel": {"count": 18}, "evidence_by_class": by_class}
    assert label_quality_lines(summary)[-1] == line


def test_a_similarity_that_could_not_be_measured_prints_as_a_dash():
    quality = {"ambiguous_fraction": 0.1, "prototype_acc": 0.5, "similarity_own": 0.81}
    summary = {"num_labels": 10, "relabel": {"count": 0}, "label_quality": quality}
    assert (
        "similarity own/other class 0.81/-"
        in label_quality_lines({**summary, "label_quality": {**quality, "similarity_other": None}})[
            -1
        ]
    )
