"""Collapse flags of reports: fabricated run folders (summary.json, config.toml, metrics.jsonl
written by hand) with known confusion matrices and training logs, flagged or not exactly at the
rules' boundaries, with the schedule term named from the run's own numbers; the flags reach
report.md, the CSV files, report.json and the command's warnings."""

import csv
import json
from pathlib import Path

import pytest

from lionfer.cli import main
from lionfer.reporting import collapse as K
from lionfer.reporting.report_command import make_report
from lionfer.reporting.run_finder import load_runs
from lionfer.reporting.runs import Run

NAMES = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
C = len(NAMES)
CHANCE = 1.5 / C  # 0.2143


def predicted(counts) -> list[list[int]]:
    """A 7 × 7 confusion matrix whose column sums are `counts` (100 true images per class,
    spread over the rows in order)."""
    cm = [[0] * C for _ in range(C)]
    row = 0
    for column, count in enumerate(counts):
        for _ in range(count):
            while sum(cm[row]) == 100:
                row += 1
            cm[row][column] += 1
    return cm


HEALTHY = predicted([100] * C)
COLLAPSED = predicted([0, 400, 0, 0, 0, 265, 35])  # 95% on Fear and Anger


def write_run(
    root,
    folder,
    *,
    algorithm="mixmatch",
    seed=0,
    cm=HEALTHY,
    logs=(),
    params=None,
    steps=100,
    relabel=None,
    evidence_check=None,
):
    """A finished run folder: summary.json, config.toml and metrics.jsonl with `logs` as its
    "train" events ({"step": s, key: value, ...})."""
    path = root / folder
    path.mkdir(parents=True)
    summary = {
        "algorithm": algorithm,
        "dataset": "synthetic",
        "num_labels": 140,
        "seed": seed,
        "steps": steps,
        "class_names": NAMES,
        "test_acc": 0.5,
        "mean_class_acc": 0.5,
        "confusion_matrix": cm,
        **({"relabel": relabel} if relabel else {}),
        **({"label_quality": {"evidence_check": evidence_check}} if evidence_check else {}),
    }
    (path / "summary.json").write_text(json.dumps(summary))
    algo = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (params or {}).items())
    (path / "config.toml").write_text(
        f'seed = {seed}\n[data]\ndataset = "synthetic"\nnum_labels = 140\n'
        f'[algorithm]\nname = "{algorithm}"\n{algo}'
    )
    events = [{"event": "start"}] + [{"event": "train", **e} for e in logs]
    events.append({"event": "eval", "step": steps, "test_acc": 0.5})
    (path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def ramp_logs(pseudo=(0.5,) * 10, loss_unsup=0.02, loss_sup=1.0):
    """MixMatch's logs every 10 of 100 steps: λ_U ramping 10, 20, ..., 100."""
    return [
        {
            "step": 10 * (i + 1),
            "loss_sup": loss_sup,
            "loss_unsup": loss_unsup,
            "weight_unsup": 10.0 * (i + 1),
            "pseudo_label_acc": acc,
        }
        for i, acc in enumerate(pseudo)
    ]


def one_run(tmp_path, **kwargs):
    write_run(tmp_path / "runs", "r", **kwargs)
    (run,) = load_runs([tmp_path / "runs"]).runs
    return run


def read_csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_collapsed_run_is_flagged_naming_its_ramped_weight(tmp_path):
    run = one_run(tmp_path, cm=COLLAPSED, logs=ramp_logs(), params={"lambda_u": 100.0})
    (flag,) = K.run_flags(run)
    assert flag.rule == K.COLLAPSED
    assert flag.evidence.startswith("95% of 700 test predictions on 2 of 7 classes")
    assert "Fear 57%, Anger 38%; these classes hold 29% of the true labels" in flag.evidence
    # the term from the logs: λ_U ramped to 100; over steps 60..100, Σ 0.02·w / Σ 1.0 =
    # 0.02 · (60 + 70 + 80 + 90 + 100) / 5 = 1.60
    assert flag.term.startswith("λ_U ramped to 100 (weight_unsup; algorithm.lambda_u = 100)")
    assert "loss_unsup × weight was 1.60× loss_sup over the last half" in flag.term


def test_a_healthy_run_is_not_flagged(tmp_path):
    run = one_run(tmp_path, logs=ramp_logs(pseudo=(0.6,) * 10))
    assert K.run_flags(run) == []
    out = tmp_path / "report"
    result = make_report([tmp_path / "runs"], out)
    assert result.warnings == [] and "warning" not in str(result)
    md = (out / "report.md").read_text()
    assert (
        "No run flagged." in md
        and "Rule (a) judged 1 of 1 runs, rule (b) 1, rule (c) 0, rule (d) 0, rule (e) 1." in md
    )
    assert read_csv(out / "runs.csv")[0]["flags"] == ""
    assert read_csv(out / "table1.csv")[0]["flags"] == ""
    assert json.loads((out / "report.json").read_text())["flags"] == []


@pytest.mark.parametrize(
    ("counts", "flagged"),
    [
        ([0, 400, 0, 0, 0, 230, 70], True),  # 630 of 700: exactly 90% on two classes
        ([0, 400, 0, 0, 0, 223, 77], False),  # 623 of 700: 89%
        ([0, 700, 0, 0, 0, 0, 0], True),  # everything on one class
        ([35, 222, 0, 0, 0, 222, 221], False),  # 95% on three classes, 63% on two
    ],
)
def test_collapse_is_judged_on_the_two_most_predicted_classes(tmp_path, counts, flagged):
    assert sum(counts) == 700
    run = one_run(tmp_path, cm=predicted(counts))
    assert (K.collapsed(run) is not None) is flagged


def test_two_classes_are_never_called_collapsed(tmp_path):
    run = one_run(tmp_path, cm=[[50, 0], [50, 0]])
    assert K.collapsed(run) is None and K.judged([run])[K.COLLAPSED] == 0


def test_pseudo_labels_under_chance_over_the_last_half_are_flagged(tmp_path):
    # high in the first half (warm-up does not count), under 1.5/C at every later log
    pseudo = (0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.12, 0.2)
    run = one_run(tmp_path, logs=ramp_logs(pseudo=pseudo), params={"lambda_u": 100.0})
    (flag,) = K.run_flags(run)
    assert flag.rule == K.CHANCE
    assert flag.evidence == (
        "pseudo-label accuracy under 1.5/C = 21% at all 5 logs after step 50 of 100 (highest 20%)"
    )
    assert "λ_U ramped to 100" in flag.term


@pytest.mark.parametrize(
    "pseudo",
    [
        (0.1,) * 9 + (0.25,),  # recovers at the last log
        (0.1,) * 5 + (0.2, 0.2, CHANCE, 0.2, 0.2),  # exactly 1.5/C once: not under it
        (0.1,) * 5 + (0.5,) * 5,  # under chance only during the first half
    ],
)
def test_pseudo_labels_that_reach_chance_are_not_flagged(tmp_path, pseudo):
    run = one_run(tmp_path, logs=ramp_logs(pseudo=pseudo))
    assert K.chance_pseudo_labels(run) is None and K.run_flags(run) == []


def test_runs_without_pseudo_label_accuracy_are_not_judged_by_it(tmp_path):
    logs = [{"step": s, "loss_sup": 1.0, "loss_unsup": 0.5, "mask_rate": 0.0} for s in (50, 100)]
    run = one_run(tmp_path, algorithm="fixmatch", logs=logs)
    assert K.chance_pseudo_labels(run) is None and K.judged([run])[K.CHANCE] == 0


def test_a_resumed_run_counts_the_last_line_of_a_step(tmp_path):
    logs = ramp_logs(pseudo=(0.1,) * 10)
    logs.insert(8, {**logs[8], "pseudo_label_acc": 0.9})  # step 90 logged before a crash ...
    run = one_run(tmp_path, logs=logs)  # ... and again after the resume, at 0.1
    assert K.chance_pseudo_labels(run) is not None


def test_threshold_and_rates_terms_are_read_from_the_logs(tmp_path):
    logs = [
        {
            "step": s,
            "loss_sup": 2.0,
            "loss_unsup": 1.5,
            "mask_rate": 1.0,
            "threshold_global": 0.15,
            "pseudo_label_acc": 0.14,
        }
        for s in (25, 50, 75, 100)
    ]
    run = one_run(tmp_path, algorithm="freematch", cm=COLLAPSED, logs=logs)
    assert K.run_flags(run)[0].term == (
        "threshold at 0.15 (threshold_global) ≈ 1/C with mask 1.00 while pseudo-labels 14% "
        "right; loss_unsup was 0.75× loss_sup over the last half"
    )
    fixed = [{**e, "threshold_global": None} for e in logs]
    run = one_run(tmp_path / "b", algorithm="fixmatch", logs=fixed, params={"threshold": 0.1})
    assert K.schedule_term(run).startswith(
        "threshold at 0.10 (algorithm.threshold) ≤ 1/C, passing every pseudo-label with mask 1.00"
    )
    lion = [
        {"step": s, "clear_rate": 0.3, "ambiguous_rate": 0.7, "mask_rate": 0.9, "loss_sup": 1.0}
        for s in (50, 100)
    ]
    lion = [{**e, "loss_reliable": 2.0} for e in lion]
    params = {"reliable_threshold": 0.95, "lambda_reliable": 0.5}
    run = one_run(tmp_path / "c", algorithm="lion", logs=lion, params=params)
    assert K.schedule_term(run) == (
        "rates clear 0.30, ambiguous 0.70, reliable 0.90 (γ = 0.95); loss_reliable × 0.5 "
        "(lambda_reliable) was 1.00× loss_sup over the last half"
    )


def test_a_ramp_that_starts_late_says_when(tmp_path):
    logs = [
        {"step": s, "weight_unsup": w, "loss_sup": 1.0, "loss_unsup": 0.1, "mask_rate": 1.0}
        for s, w in ((10, 0.0), (20, 0.3), (60, 3.0), (100, 3.0))
    ]
    run = one_run(tmp_path, algorithm="pseudolabel", logs=logs, params={"lambda_u": 3.0})
    assert K.schedule_term(run).startswith(
        "α_f ramped to 3 (weight_unsup; algorithm.lambda_u = 3) from 10% of the run; "
        "loss_unsup × weight was 0.30× loss_sup"
    )


def test_unknown_methods_get_the_generic_account(tmp_path):
    logs = [{"step": 100, "loss_sup": 1.0, "loss_unsup": 2.0}]
    run = one_run(tmp_path, algorithm="remixmatch", cm=COLLAPSED, logs=logs)
    assert K.run_flags(run)[0].term == (
        "no schedule term known; loss_unsup was 2.00× loss_sup over the last half"
    )
    run = one_run(tmp_path / "b", algorithm="remixmatch", cm=COLLAPSED)
    assert K.run_flags(run)[0].term == "no schedule term of remixmatch in its logs"


def test_the_method_row_counts_flagged_seeds_everywhere_the_report_writes(tmp_path, capsys):
    root = tmp_path / "runs"
    for seed, cm in enumerate((COLLAPSED, COLLAPSED, HEALTHY)):
        write_run(root, f"mm-s{seed}", seed=seed, cm=cm, logs=ramp_logs())
    write_run(root, "fm-s0", algorithm="fixmatch", cm=HEALTHY)
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    warnings = [line for line in printed if line.startswith("warning:")]
    assert warnings == [
        f"warning: mixmatch on synthetic@140: collapsed in 2/3 seeds; see Flags in "
        f"{out / 'report.md'}"
    ]
    md = (out / "report.md").read_text()
    assert "| mixmatch | 50.00 ± 0.00 (n=3) | 50.00 ± 0.00 (n=3) | collapsed in 2/3 seeds |" in md
    assert "| fixmatch | 50.00 (n=1) | 50.00 (n=1) |  |" in md
    flagged = [line for line in md.splitlines() if "**collapsed**: 95% of 700" in line]
    assert [line.split(" | ")[2] for line in flagged] == ["0", "1"]  # seeds 0 and 1
    assert all("λ_U ramped to 100 (weight_unsup)" in line for line in flagged)
    assert "<strong>collapsed</strong>: 95% of 700" in (out / "report.html").read_text()
    assert md.count(" | 50.00 | **collapsed** |") == 2  # the Runs table marks seeds 0 and 1
    table1 = {r["method"]: r["flags"] for r in read_csv(out / "table1.csv")}
    assert table1 == {"mixmatch": "collapsed in 2/3 seeds", "fixmatch": ""}
    runs = {(r["method"], r["seed"]): r["flags"] for r in read_csv(out / "runs.csv")}
    assert runs["mixmatch", "0"].startswith("collapsed: 95% of 700 test predictions")
    assert "| schedule term: λ_U ramped to 100" in runs["mixmatch", "0"]
    assert runs["mixmatch", "2"] == runs["fixmatch", "0"] == ""
    records = json.loads((out / "report.json").read_text())["flags"]
    assert [(r["method"], r["seed"], [f["rule"] for f in r["flags"]]) for r in records] == [
        ("mixmatch", 0, ["collapsed"]),
        ("mixmatch", 1, ["collapsed"]),
    ]
    assert records[0]["term"].startswith("λ_U ramped to 100")
    assert records[0]["folder"] == str(root / "mm-s0") and records[0]["column"] == "synthetic@140"
    assert records[0]["flags"][0]["evidence"].startswith("95% of 700 test predictions")


def test_every_semi_supervised_method_names_its_schedule_terms():
    """A method added without an entry would get only the generic reason in a flag."""
    import lionfer.algorithms  # noqa: F401  (registers the algorithms)
    from lionfer.registry import ALGORITHMS
    from lionfer.reporting.collapse import SCHEDULE_TERMS

    unlabeled = set(ALGORITHMS.names()) - {"supervised", "fullysupervised"}
    assert unlabeled <= set(SCHEDULE_TERMS)


def relabel_figures(given, current, count=20, precision=0.15, broken=15, right=3):
    return {
        "count": count,
        "precision": precision,
        "count_known": count,  # the truth of every relabel known
        "count_right": right,
        "given_accuracy": given,
        "current_accuracy": current,
        "broken": broken,
    }


def test_relabels_that_leave_the_labels_worse_are_flagged(tmp_path):
    worse = write_run(tmp_path, "worse", algorithm="lion", relabel=relabel_figures(0.762, 0.681))
    flags = K.run_flags(load_runs([worse]).runs[0])
    assert [f.rule for f in flags] == [K.WORSE]
    assert flags[0].evidence == (
        "labels 76% right as given → 68% at the end: 20 relabels, 3 of them right (15%), "
        "15 correct labels broken"
    )


@pytest.mark.parametrize(
    "given, current", [(0.762, 0.762), (0.762, 0.80), (0.7619047619047619, 0.761904761904762)]
)
def test_labels_as_accurate_as_given_or_better_are_not_flagged(tmp_path, given, current):
    run = write_run(tmp_path, "same", algorithm="lion", relabel=relabel_figures(given, current))
    assert K.run_flags(load_runs([run]).runs[0]) == []


def test_rule_c_judges_only_runs_with_relabel_figures_against_truth(tmp_path):
    unknown = {"count": 3, "precision": None, "given_accuracy": None, "current_accuracy": 0.5}
    runs = [
        write_run(tmp_path, "a", algorithm="lion", relabel=relabel_figures(0.8, 0.7)),
        write_run(tmp_path, "b", algorithm="lion", seed=1, relabel=unknown),
        write_run(tmp_path, "c", algorithm="fixmatch"),
    ]
    collection = load_runs(runs).runs
    assert K.judged(collection)[K.WORSE] == 1
    assert [bool(K.run_flags(r)) for r in collection] == [True, False, False]


def test_one_relabel_reads_in_the_singular(tmp_path):
    run = write_run(
        tmp_path, "one", algorithm="lion", relabel=relabel_figures(0.75, 0.74, 1, 0.0, 1, 0)
    )
    evidence = K.run_flags(load_runs([run]).runs[0])[0].evidence
    assert evidence.endswith(": 1 relabel, 0 of them right (0%), 1 correct label broken")


def evidence_check(labeled, test, z):
    return {"labeled_agreement": labeled, "test_agreement": test, "z": z, "memorised": z > 3}


def test_memorised_evidence_is_flagged_without_true_labels(tmp_path):
    runs = [
        write_run(
            tmp_path, "a", algorithm="lion", evidence_check=evidence_check(0.936, 0.644, 10.6)
        ),
        write_run(
            tmp_path,
            "b",
            algorithm="lion",
            seed=1,
            evidence_check=evidence_check(0.753, 0.771, -0.8),
        ),
        write_run(
            tmp_path, "c", algorithm="lion", seed=2, evidence_check=evidence_check(0.9, 0.8, 3.0)
        ),
        write_run(tmp_path, "d", algorithm="fixmatch"),
    ]
    collection = load_runs(runs).runs
    flags = K.run_flags(collection[0])
    assert [f.rule for f in flags] == [K.MEMORISED]
    assert flags[0].evidence == (
        "out of fold, the heads name the given label of 94% of labeled images and the label of "
        "64% of test images (z = 10.6): its relabels are not evidence"
    )
    assert [K.run_flags(r) for r in collection[1:]] == [[], [], []]  # z = 3 is not above 3
    assert K.judged(collection)[K.MEMORISED] == 3


def moved(cm_moves) -> list[list[int]]:
    """100 test images a class, all recalled, except the moves {(true, predicted): count}."""
    cm = [[100 if i == j else 0 for j in range(C)] for i in range(C)]
    for (true, to), count in cm_moves.items():
        cm[true][true] -= count
        cm[true][to] += count
    return cm


def test_a_class_recalled_under_a_uniform_guess_is_flagged_lost(tmp_path):
    # Neutral (6): 87 to Sadness (4), 8 to Anger (5), 5 to Happiness (3): recalled on none;
    # Fear (1): 86 of 100 to Surprise, recalled on 14% < 1/7 = 14.3%
    cm = moved({(6, 4): 87, (6, 5): 8, (6, 3): 5, (1, 0): 86})
    run = load_runs([write_run(tmp_path, "lost", algorithm="lion", cm=cm)]).runs[0]
    flags = K.run_flags(run)
    assert [f.rule for f in flags] == [K.LOST]
    assert flags[0].evidence == (
        "Fear recalled on 14% of its 100 test images (a uniform guess: 14%; 86% predicted "
        "Surprise); Neutral recalled on 0% of its 100 test images (a uniform guess: 14%; 87% "
        "predicted Sadness)"
    )


def test_a_run_on_two_of_the_seven_classes_is_not_judged_collapsed(tmp_path):
    # a folder of happy/ and sad/ faces: every prediction right, all on the two classes
    cm = [[0] * C for _ in range(C)]
    cm[3][3], cm[4][4] = 10, 10
    run = load_runs([write_run(tmp_path, "two", algorithm="lion", cm=cm)]).runs[0]
    assert K.run_flags(run) == []
    cm[0][0] = 1  # a third class with a test image: judged, 95% on two classes
    run = load_runs([write_run(tmp_path, "three", algorithm="lion", cm=cm)]).runs[0]
    assert [f.rule for f in K.run_flags(run)] == [K.COLLAPSED]


def test_a_class_recalled_as_often_as_a_uniform_guess_is_not_lost(tmp_path):
    # 7 classes of 7 test images each: recalling 1 of 7 is exactly 1/C
    cm = [[7 if i == j else 0 for j in range(C)] for i in range(C)]
    cm[6] = [1, 1, 1, 1, 1, 1, 1]
    cm[5] = [0, 0, 0, 0, 0, 7, 0]
    cm[2] = [0, 0, 0, 0, 0, 0, 0]  # no test image of Disgust: not judged
    run = load_runs([write_run(tmp_path, "even", algorithm="lion", cm=cm)]).runs[0]
    assert K.run_flags(run) == []
    cm[6] = [2, 1, 1, 1, 2, 0, 0]
    run = load_runs([write_run(tmp_path, "none", algorithm="lion", cm=cm)]).runs[0]
    assert [f.rule for f in K.run_flags(run)] == [K.LOST]


def test_rule_e_judges_more_than_two_classes_and_names_classes_without_names(tmp_path):
    two = write_run(tmp_path, "two", algorithm="lion", cm=[[0, 10], [0, 10]])  # class 0 at 0%
    run = load_runs([two]).runs[0]
    assert K.run_flags(run) == [] and K.judged([run])[K.LOST] == 0
    # Surprise (0) recalled on none of its 6 images, which went one to each other class: the
    # first of them, Fear, is named; no class names in the summary: the classes' numbers
    cm = moved({})
    cm[0] = [0, 1, 1, 1, 1, 1, 1]
    path = write_run(tmp_path, "numbers", algorithm="lion", cm=cm)
    summary = json.loads((path / "summary.json").read_text())
    del summary["class_names"]
    (path / "summary.json").write_text(json.dumps(summary))
    evidence = K.run_flags(load_runs([path]).runs[0])[0].evidence
    assert (
        evidence == "0 recalled on 0% of its 6 test images (a uniform guess: 14%; 17% predicted 1)"
    )


def test_an_evidence_check_without_z_is_not_judged(tmp_path):
    check = {"labeled_agreement": None, "test_agreement": None, "z": None, "memorised": False}
    run = load_runs([write_run(tmp_path, "a", algorithm="lion", evidence_check=check)]).runs[0]
    assert K.judged([run])[K.MEMORISED] == 0 and K.run_flags(run) == []


def test_a_collapsed_run_is_not_also_flagged_lost(tmp_path):
    run = load_runs([write_run(tmp_path, "c", cm=COLLAPSED)]).runs[0]
    assert [f.rule for f in K.run_flags(run)] == [K.COLLAPSED]
    assert K.judged([run])[K.LOST] == 1


def test_a_run_prints_the_test_matrix_flags_when_it_ends(tmp_path):
    from lionfer.reporting.run_summary import format_summary

    cm = moved({(6, 4): 81, (6, 5): 15})  # Neutral: 4 of 100 recalled, 81 went to Sadness
    path = write_run(tmp_path, "lost", algorithm="lion", cm=cm)
    summary = json.loads((path / "summary.json").read_text())
    summary.update(test_acc=0.75, test_acc_raw=0.73, mean_class_acc=0.75, dataset="synthetic",
                   num_labels=1400, steps=600)  # fmt: skip
    lines = format_summary(summary, path).splitlines()
    assert lines[-1] == (
        "warning: class lost: Neutral recalled on 4% of its 100 test images (a uniform guess: "
        "14%; 81% predicted Sadness)"
    )
    assert K.summary_flags(summary) == [lines[-1].removeprefix("warning: ")]
    assert not any(line.startswith("hint") for line in lines)  # a run without ELR
    # a LION run with ELR is told how to see whether ELR took the class
    (path / "config.toml").write_text(
        '[algorithm]\nname = "lion"\ndisambiguation = "evidence"\nlambda_elr = 3.0\n'
    )
    lines = format_summary(summary, path).splitlines()
    assert lines[-1].startswith("hint: ELR (algorithm.lambda_elr=3) can hold a whole class")
    assert "algorithm.lambda_elr=0" in lines[-1]
    (path / "config.toml").write_text(
        '[algorithm]\nname = "lion"\ndisambiguation = "evidence"\nlambda_elr = 0.0\n'
    )
    assert format_summary(summary, path).splitlines()[-1].startswith("warning: class lost")
    # the prototype rules have no ELR, whatever lambda_elr says
    (path / "config.toml").write_text(
        '[algorithm]\ndisambiguation = "prototypes"\nlambda_elr = 3.0\n'
    )
    assert format_summary(summary, path).splitlines()[-1].startswith("warning: class lost")
    summary["confusion_matrix"] = COLLAPSED  # said once, as collapsed
    assert [f.split(":")[0] for f in K.summary_flags(summary)] == [K.COLLAPSED]
    (path / "config.toml").write_text(
        '[algorithm]\nname = "lion"\ndisambiguation = "evidence"\nlambda_elr = 3.0\n'
    )
    assert not format_summary(summary, path).splitlines()[-1].startswith("hint")  # collapsed
    summary["confusion_matrix"] = moved({})
    assert K.summary_flags(summary) == []
    assert not any(
        line.startswith(("warning", "hint")) for line in format_summary(summary, path).split("\n")
    )


def test_class_count_and_length_fall_back_to_the_confusion_matrix_and_the_logs(tmp_path):
    run = one_run(tmp_path, logs=ramp_logs(), steps=200)  # logged up to step 100
    assert K.num_classes(run) == 7 and K.steps(run) == 200
    del run.summary["confusion_matrix"]
    assert K.num_classes(run) == 7  # from class_names
    run.summary["confusion_matrix"] = HEALTHY
    del run.summary["class_names"], run.summary["steps"]
    assert K.num_classes(run) == 7 and K.steps(run) == 100  # the matrix; the last logged step
    del run.summary["confusion_matrix"]
    run.trains.clear()
    assert K.num_classes(run) is None and K.steps(run) is None


def test_ratios_and_thresholds_near_chance_read_as_written():
    assert (K._times(9.5), K._times(10.0), K._times(12.3)) == ("9.50×", "10×", "12×")
    passing, near = " ≤ 1/C, passing every pseudo-label", " ≈ 1/C"
    assert K._near_chance(1 / 7, 7) == K._near_chance(1 / 7 + K.EPS, 7) == passing
    assert K._near_chance(0.2, 7) == near  # under 1.5 / 7 = 0.214
    assert K._near_chance(K.CHANCE_FACTOR / 7, 7) == K._near_chance(0.9, 7) == ""
    assert K._near_chance(0.1, None) == ""


@pytest.mark.parametrize(
    "weights, since",
    [([0.0, 0.3, 0.0, 3.0, 3.0], " from 10% of the run"), ([0.0] * 5, " from 100% of the run")],
)
def test_a_ramp_is_idle_only_before_its_first_nonzero_weight(tmp_path, weights, since):
    logs = [
        {"step": s, "weight_unsup": w, "loss_sup": 1.0, "loss_unsup": 0.1}
        for s, w in zip((10, 20, 30, 60, 100), weights, strict=True)
    ]
    run = one_run(tmp_path, algorithm="pseudolabel", logs=logs)
    peak = max(weights)
    assert K.schedule_term(run).startswith(f"α_f ramped to {peak:g} (weight_unsup){since}")


def test_collapse_names_only_the_classes_predicted_at_all(tmp_path):
    run = one_run(tmp_path, cm=predicted([0, 700, 0, 0, 0, 0, 0]))
    assert K.collapsed(run) == (
        "100% of 700 test predictions on 1 of 7 classes "
        "(Fear 100%; these classes hold 14% of the true labels)"
    )
    # one prediction makes a class predicted: 8 + 1 of 10 is 90%
    run = one_run(tmp_path / "b", cm=[[8, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert K.collapsed(run) == (
        "90% of 10 test predictions on 2 of 3 classes "
        "(0 80%, 1 10%; these classes hold 90% of the true labels)"
    )


def test_collapse_on_classes_without_test_images_says_so(tmp_path):
    # a 7-class head on a folder of happy/, sad/ and angry/: every prediction on Fear and
    # Disgust, which have no test images; they are not 2 of the data's 3 classes
    cm = [[0] * C for _ in range(C)]
    cm[3][1], cm[4][1], cm[5][1], cm[3][2], cm[4][2], cm[5][2] = 4, 4, 4, 2, 2, 2
    run = one_run(tmp_path, cm=cm)
    assert K.collapsed(run) == (
        "100% of 18 test predictions on 2 classes (Fear 67%, Disgust 33%), neither of which has "
        "test images (the test set's 3 classes are Happiness, Sadness, Anger)"
    )
    cm[3] = [0, 0, 0, 6, 0, 0, 0]  # Happiness predicted right: one of the two is tested
    cm[4], cm[5] = [0, 6, 0, 0, 0, 0, 0], [0, 6, 0, 0, 0, 0, 0]
    run = one_run(tmp_path / "b", cm=cm)
    assert K.collapsed(run) == (
        "100% of 18 test predictions on 2 classes (Fear 67%, Happiness 33%), of which Fear has "
        "no test images (the test set's 3 classes are Happiness, Sadness, Anger; these classes "
        "hold 33% of the true labels)"
    )


def test_a_tie_for_the_second_class_names_the_first_of_them(tmp_path):
    # Sadness, Anger and Neutral tie at 10 predictions: the text names Sadness, the same on
    # every machine
    run = one_run(tmp_path, cm=predicted([0, 670, 0, 0, 10, 10, 10]))
    assert K.collapsed(run).startswith(
        "97% of 700 test predictions on 2 of 7 classes (Fear 96%, Sadness 1%;"
    )


def test_an_empty_confusion_matrix_flags_nothing():
    assert K.summary_flags({"confusion_matrix": [[0, 0, 0], [0, 0, 0], [0, 0, 0]]}) == []


def test_a_weighted_loss_reads_only_the_logs_that_hold_it_and_loss_sup(tmp_path):
    logs = [
        {"step": 60, "loss_sup": 1.0, "loss_unsup": 0.5, "mask_rate": 0.5},
        {"step": 70, "loss_sup": 1.0, "mask_rate": 0.5},  # no loss_unsup
        {"step": 80, "loss_unsup": 3.0, "mask_rate": 0.5},  # no loss_sup
        {"step": 90, "loss_sup": 1.0, "loss_unsup": 0.5, "mask_rate": 0.5},
    ]
    params = {"threshold": 0.95, "lambda_u": 2.0}
    run = one_run(tmp_path, algorithm="fixmatch", logs=logs, params=params)
    # steps 60 and 90: Σ 2 · 0.5 / Σ 1.0 = 1
    assert K.schedule_term(run) == (
        "threshold at 0.95 (algorithm.threshold) with mask 0.50; loss_unsup × 2 (lambda_u) was "
        "1.00× loss_sup over the last half"
    )


def test_lion_rates_without_supervised_loss_give_no_ratio(tmp_path):
    # no clear image: L_S is 0 at every log, so the reliable loss has nothing to compare with
    logs = [
        {
            "step": s,
            "clear_rate": 0.0,
            "ambiguous_rate": 1.0,
            "mask_rate": 0.5,
            "loss_sup": 0.0,
            "loss_reliable": 1.0,
            "pseudo_label_acc": 0.8,
        }
        for s in (60, 100)
    ]
    params = {"reliable_threshold": 0.95, "lambda_reliable": 1.0}
    run = one_run(tmp_path, algorithm="lion", logs=logs, params=params)
    assert K.schedule_term(run) == (
        "rates clear 0.00, ambiguous 1.00, reliable 0.50 (γ = 0.95) while pseudo-labels 80% "
        "right over the last half"
    )


@pytest.mark.parametrize(
    ("algorithm", "log", "params", "term"),
    [
        ("fixmatch", {}, {"threshold": 0.95}, "threshold at 0.95 (algorithm.threshold)"),
        ("freematch", {"mask_rate": 0.4}, {}, "with mask 0.40"),
        ("fixmatch", {}, {}, None),
    ],
)
def test_a_threshold_term_shows_the_threshold_or_the_mask_whichever_is_known(
    tmp_path, algorithm, log, params, term
):
    logs = [{"step": 100, "loss_sup": 1.0, **log}]
    run = one_run(tmp_path, algorithm=algorithm, logs=logs, params=params)
    generic = f"no schedule term of {algorithm} in its logs"
    assert K.schedule_term(run) == (f"{term} over the last half" if term else generic)


@pytest.mark.parametrize(
    ("algorithm", "term"),
    [
        ("supervised", "no schedule term of supervised in its logs"),
        ("", "no schedule term of this method in its logs"),  # a summary without its algorithm
    ],
)
def test_a_method_without_schedule_terms_gets_the_generic_account(tmp_path, algorithm, term):
    run = one_run(tmp_path, algorithm=algorithm, cm=COLLAPSED)
    assert K.run_flags(run)[0].term == term


def test_a_method_with_two_schedule_terms_names_both_in_order(tmp_path):
    logs = [{"step": 60, "weight_unsup": 3.0, "loss_sup": 1.0, "loss_unsup": 0.1, "mask_rate": 0.5}]
    params = {"lambda_u": 3.0, "threshold": 0.95}
    run = one_run(tmp_path, algorithm="pseudolabel", logs=logs, params=params)
    assert K.schedule_term(run) == (
        "α_f ramped to 3 (weight_unsup; algorithm.lambda_u = 3); loss_unsup × weight was 0.30× "
        "loss_sup over the last half; threshold at 0.95 (algorithm.threshold) with mask 0.50 "
        "over the last half"
    )


def test_group_flags_count_every_seed_and_list_every_rule():
    runs = [Run(Path(name), "fixmatch", "rafdb@100", seed, {}) for seed, name in enumerate("ab")]
    flagged = [K.Flag(K.COLLAPSED, "", ""), K.Flag(K.CHANCE, "", "")]
    # run b is not in flags: a seed without flags
    assert K.group_flags(runs, {Path("a"): flagged}) == {
        ("fixmatch", "rafdb@100"): "collapsed in 1/2 seeds, pseudo-labels at chance in 1/2 seeds"
    }


def test_a_methods_flags_name_their_columns_in_budget_order_where_there_are_several():
    groups = {
        ("m", "rafdb@1000"): "class lost in 1/3 seeds",
        ("m", "rafdb@250"): "collapsed in 3/3 seeds",
    }
    columns = ["rafdb@250", "rafdb@1000"]
    assert K.method_text(groups, "m", columns) == (
        "rafdb@250: collapsed in 3/3 seeds; rafdb@1000: class lost in 1/3 seeds"
    )
    assert K.method_text(groups, "m", ["rafdb@250"]) == "collapsed in 3/3 seeds"
    assert K.warnings(["m"], groups, Path("report.md")) == [
        "warning: m on rafdb@250: collapsed in 3/3 seeds; on rafdb@1000: class lost in 1/3 "
        "seeds; see Flags in report.md"
    ]
