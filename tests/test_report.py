"""Reports: fabricated run folders with known numbers must come out exactly (mean, sample std
with ddof=1, seed counts) in the CSV files and report.md; the pure table functions against
hand-computed values; the relabel gallery from a real tiny run."""

import csv
import json
import math

import numpy as np
import pytest

from lionfer.cli import main
from lionfer.reporting import tables as T
from lionfer.reporting.report_command import make_report
from lionfer.reporting.run_finder import load_runs
from lionfer.reporting.runs import Run
from lionfer.training.run import train

NAMES = ["Happiness", "Sadness"]


def fake_run(
    root,
    folder,
    *,
    algorithm="fixmatch",
    seed=0,
    labels=100,
    acc=0.5,
    mca=None,
    recipe=None,
    params=None,
    best=None,
    evals=(),
    cm=((3, 1), (0, 4)),
    relabel=None,
    config_labels=None,
    settings=None,
):
    """A finished run folder written by hand: summary.json, config.toml, metrics.jsonl;
    `settings` ({"train.lr": 0.01, ...}) go into config.toml's [data], [model] and [train]."""
    path = root / folder
    path.mkdir(parents=True)
    summary = {
        "algorithm": algorithm,
        "dataset": "synthetic",
        "num_labels": labels,
        "seed": seed,
        "steps": 20,
        "class_names": NAMES,
        "test_acc": acc,
        "mean_class_acc": acc if mca is None else mca,
        "per_class_acc": {"Happiness": acc, "Sadness": None},
        "confusion_matrix": [list(row) for row in cm],
        "best": best or {"acc": acc, "step": 20, "selected_on": "test_acc", "test_acc": acc},
    }
    if recipe:
        summary["recipe"] = recipe
    if relabel is not None:
        summary["relabel"] = relabel
    (path / "summary.json").write_text(json.dumps(summary))
    algo = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (params or {}).items())
    budget = labels if config_labels is None else config_labels
    sections = {"data": f'dataset = "synthetic"\nnum_labels = {budget}\n', "model": "", "train": ""}
    for key, value in (settings or {}).items():
        section, name = key.split(".")
        sections[section] += f"{name} = {json.dumps(value)}\n"
    (path / "config.toml").write_text(
        f"seed = {seed}\n"
        + "".join(f"[{name}]\n{text}" for name, text in sections.items() if text)
        + f'[algorithm]\nname = "{algorithm}"\n{algo}'
    )
    events = [{"event": "start"}] + [{"event": "eval", "step": s, **e} for s, e in evals]
    (path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def read_csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def cells(rows):
    """{(method, column): (seeds, mean, std)} from a tidy CSV."""
    return {
        (r["method"], r["column"]): (
            int(r["seeds"]),
            float(r["mean"]),
            float(r["std"]) if r["std"] else None,
        )
        for r in rows
    }


@pytest.fixture
def table1_runs(tmp_path):
    """fixmatch @100: 60, 70, 80 → 70 ± 10; fixmatch @400: 50, 50, 80 → 60 ± 17.3205;
    lion:paper @100: 65, 75 → 70 ± 7.0711 (best on validation: 66, 70 → 68 ± 2.8284);
    lion:paper @400: 90 alone (no std); full supervision: @all."""
    root = tmp_path / "runs"
    for seed, (a, b) in enumerate([(0.6, 0.5), (0.7, 0.5), (0.8, 0.8)]):
        evals = [(10, {"test_acc": a - 0.1}), (20, {"test_acc": a})]
        fake_run(root, f"fm100-s{seed}", seed=seed, acc=a, evals=evals, mca=a - 0.05)
        fake_run(root, f"fm400-s{seed}", seed=seed, labels=400, acc=b)
    for seed, (acc, val_pick) in enumerate([(0.65, 0.66), (0.75, 0.70)]):
        best = {"acc": 0.9, "step": 10, "selected_on": "val_acc", "test_acc": val_pick}
        evals = [(10, {"test_acc": val_pick}), (20, {"test_acc": acc})]
        fake_run(
            root,
            f"lion100-s{seed}",
            algorithm="lion",
            recipe="paper",
            seed=seed,
            acc=acc,
            best=best,
            evals=evals,
        )
    fake_run(root, "lion400-s0", algorithm="lion", recipe="paper", labels=400, acc=0.9)
    fake_run(root, "full-s0", algorithm="fullysupervised", labels=2100, acc=0.95, config_labels=-1)
    return root


def test_table1_reproduces_the_fabricated_numbers(table1_runs, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["report", str(table1_runs), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    final = cells(read_csv(out / "table1.csv"))
    assert final["fixmatch", "synthetic@100"] == (3, pytest.approx(70.0), pytest.approx(10.0))
    assert final["fixmatch", "synthetic@400"][:2] == (3, pytest.approx(60.0))
    assert final["fixmatch", "synthetic@400"][2] == pytest.approx(math.sqrt(300.0))
    assert final["lion:paper", "synthetic@100"][2] == pytest.approx(math.sqrt(50.0))
    assert final["lion:paper", "synthetic@400"] == (1, pytest.approx(90.0), None)
    assert final["fullysupervised", "synthetic@all"] == (1, pytest.approx(95.0), None)
    assert len(final) == 5
    val = cells(read_csv(out / "table1_best_val.csv"))
    assert val == {
        ("lion:paper", "synthetic@100"): (2, pytest.approx(68.0), pytest.approx(math.sqrt(8.0)))
    }
    mca = cells(read_csv(out / "mean_class_acc.csv"))
    assert mca["fixmatch", "synthetic@100"][1] == pytest.approx(65.0)
    assert not (out / "table1_best_test.csv").exists()  # only when asked
    md = (out / "report.md").read_text()
    # Table 1: test accuracy and mean class accuracy side by side, each with its seeds' spread
    columns = [f"synthetic@{n}" for n in (100, 400, "all")]
    header = " | ".join(f"{c} test acc % | {c} mean class acc %" for c in columns)
    assert f"| method | {header} |" in md
    fixmatch = "70.00 ± 10.00 (n=3) | 65.00 ± 10.00 (n=3) | 60.00 ± 17.32 (n=3) | 60.00 ± 17.32"
    assert f"| fixmatch | {fixmatch} (n=3) | – | – |" in md
    assert "| lion:paper | 70.00 ± 7.07 (n=2) | 70.00 ± 7.07 (n=2) | 90.00 (n=1) |" in md
    assert "| fullysupervised | – | – | – | – | 95.00 (n=1) | 95.00 (n=1) |" in md
    assert "| flags |" not in md and "No run flagged." in md  # two classes: never collapsed
    html = (out / "report.html").read_text()
    assert "70.00 ± 10.00 (n=3)" in html and "data:image/png;base64," in html
    assert 'src="figures/' not in html  # self-contained
    curves = [r for r in read_csv(out / "learning_curves.csv") if r["method"] == "fixmatch"]
    assert [(r["step"], float(r["mean"])) for r in curves] == [
        ("10", pytest.approx(60.0)),
        ("20", pytest.approx(70.0)),
    ]


def test_best_on_test_only_when_asked_and_labelled(table1_runs, tmp_path):
    out = tmp_path / "report"
    make_report([table1_runs], out, best_on_test=True)
    best = cells(read_csv(out / "table1_best_test.csv"))
    # lion:paper @100 peaked at 66 then 75: the best evaluations are 66 and 75 → 70.5
    assert best["lion:paper", "synthetic@100"] == (
        2,
        pytest.approx(70.5),
        pytest.approx(math.sqrt(40.5)),
    )
    assert best["lion:paper", "synthetic@400"][1] == pytest.approx(90.0)  # from summary.best
    md = (out / "report.md").read_text()
    assert "## Best on test (optimistic)" in md and "selected on the test set" in md
    html = (out / "report.html").read_text()
    assert "<strong>Optimistic: selected on the test set.</strong>" in html


def test_sweep_labels_name_methods_and_a_second_report_replaces_the_first(tmp_path):
    sweep = tmp_path / "sweep"
    for seed, acc in ((0, 0.4), (1, 0.6)):
        folder = f"synthetic@100/lion-w-o-ld/s{seed}"
        # a sweep's label names its points whatever their settings (a sweep may vary one)
        params = {"relabel_margin": 1.0 + seed}
        fake_run(sweep, folder, algorithm="lion", seed=seed, acc=acc, params=params)
    points = [
        {
            "label": "LION w/o LD",
            "column": "synthetic@100",
            "folder": f"synthetic@100/lion-w-o-ld/s{s}",
        }
        for s in (0, 1)
    ]
    (sweep / "sweep.json").write_text(json.dumps({"points": points}))
    out = sweep / "report"
    make_report([sweep / "synthetic@100"], out)  # sweep.json is found above the path
    assert cells(read_csv(out / "table1.csv")) == {
        ("LION w/o LD", "synthetic@100"): (2, pytest.approx(50.0), pytest.approx(math.sqrt(200)))
    }
    (out / "figures" / "learning_curves.png").unlink(missing_ok=True)
    make_report([sweep], out)  # replaces its own files
    assert json.loads((out / "report.json").read_text())["runs"]


def test_runs_of_one_algorithm_with_different_settings_are_not_pooled(tmp_path):
    root = tmp_path / "runs"
    for seed, (margin, acc) in enumerate(((1.0, 0.4), (1.0, 0.6), (2.0, 0.7))):
        params = {"recipe": "evidence", "relabel_margin": margin, "folds": 5}
        fake_run(root, f"r{seed}", algorithm="lion", recipe="evidence", seed=seed % 2, acc=acc,
                 params=params)  # fmt: skip
    # a run from a lionfer that did not record relabel_margin: compared on folds alone, pooled
    fake_run(root, "old", algorithm="fixmatch", seed=0, acc=0.5, params={"folds": 5})
    fake_run(root, "new", algorithm="fixmatch", seed=1, acc=0.5, params={"folds": 5, "x": 1})
    collection = load_runs([root])
    assert sorted({r.method for r in collection.runs}) == [
        "fixmatch",
        "lion:evidence (relabel_margin=1.0)",
        "lion:evidence (relabel_margin=2.0)",
    ]
    assert collection.notes == [
        "lion:evidence runs differ in algorithm.relabel_margin: each setting is shown as a "
        "method of its own"
    ]
    out = tmp_path / "report"
    make_report([root], out)
    assert cells(read_csv(out / "table1.csv")) == {
        ("lion:evidence (relabel_margin=1.0)", "synthetic@100"): (
            2,
            pytest.approx(50.0),
            pytest.approx(math.sqrt(200)),
        ),
        ("lion:evidence (relabel_margin=2.0)", "synthetic@100"): (1, pytest.approx(70.0), None),
        ("fixmatch", "synthetic@100"): (2, pytest.approx(50.0), pytest.approx(0.0)),
    }


def test_report_refuses_foreign_folders_and_missing_runs(tmp_path, capsys):
    fake_run(tmp_path / "runs", "a", acc=0.5)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["report", str(tmp_path / "runs"), "--out", str(mine)]) == 2
    assert "not a lionfer report" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"
    assert main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "no finished run under" in capsys.readouterr().err


def test_unreadable_runs_are_skipped_and_counted(tmp_path):
    fake_run(tmp_path / "runs", "good", acc=0.5)
    bad = fake_run(tmp_path / "runs", "bad", acc=0.5)
    (bad / "summary.json").write_text("{not json")
    collection = load_runs([tmp_path / "runs"])
    assert len(collection.runs) == 1 and collection.skipped[0][0] == bad.resolve()
    result = make_report([tmp_path / "runs"], tmp_path / "report")
    assert result.skipped == 1
    assert "summary.json is not valid JSON" in (tmp_path / "report" / "report.md").read_text()


def test_ablation_rows_follow_the_switches_in_the_papers_order(tmp_path):
    root = tmp_path / "runs"
    rows = [  # (LD, NL, NC), accuracies
        ((True, True, True), (0.68, 0.66)),
        ((False, False, False), (0.58, 0.60)),
        ((True, False, False), (0.61, 0.61)),
        ((True, False, True), (0.62,)),
        ((True, True, False), (0.65,)),
    ]
    for k, (switches, accs) in enumerate(rows):
        params = dict(zip(T.SWITCHES, switches, strict=True))
        for seed, acc in enumerate(accs):
            fake_run(root, f"r{k}-s{seed}", algorithm="lion", seed=seed, acc=acc, params=params)
    fake_run(root, "tau", algorithm="lion", acc=0.3, params={"clear_threshold": 0.6})
    out = tmp_path / "report"
    make_report([root], out)
    table = read_csv(out / "ablation.csv")
    order = [(r["LD"], r["L_NL"], r["L_NC"], r["other"]) for r in table]
    assert order == [
        ("False", "False", "False", ""),
        ("True", "False", "False", ""),
        ("True", "True", "False", ""),
        ("True", "False", "True", ""),
        ("True", "True", "True", ""),
        ("True", "True", "True", "clear_threshold=0.6"),
    ]
    assert float(table[0]["mean"]) == pytest.approx(59.0)
    assert float(table[0]["std"]) == pytest.approx(math.sqrt(2.0))
    assert table[3]["seeds"] == "1" and table[3]["std"] == ""
    md = (out / "report.md").read_text()
    assert "| ✓ | ✓ |  |  | 65.00 (n=1) |" in md


def test_sensitivity_pools_runs_whose_other_hyperparameters_are_held_fixed(tmp_path):
    root = tmp_path / "runs"
    for tau, accs in ((0.6, (0.50, 0.54)), (0.8, (0.70, 0.72)), (0.9, (0.6,))):
        for seed, acc in enumerate(accs):
            params = {"clear_threshold": tau, "reliable_threshold": 0.83}
            fake_run(root, f"t{tau}-{seed}", algorithm="lion", seed=seed, acc=acc, params=params)
    fake_run(
        root,
        "g",
        algorithm="lion",
        acc=0.1,
        params={"clear_threshold": 0.8, "reliable_threshold": 0.77},
    )
    runs = load_runs([root]).runs
    series = T.sensitivity(runs, "clear_threshold")["synthetic@100"]
    assert [(x, c.n) for x, c in series] == [(0.6, 2), (0.8, 2), (0.9, 1)]
    assert series[0][1].mean == pytest.approx(52.0)
    assert series[0][1].std == pytest.approx(math.sqrt(8.0))
    gamma = T.sensitivity(runs, "reliable_threshold")["synthetic@100"]
    assert [(x, c.n) for x, c in gamma] == [(0.77, 1), (0.83, 2)]  # τ held at 0.8
    out = tmp_path / "report"
    make_report([root], out)
    assert (out / "figures" / "sensitivity_clear_threshold.png").is_file()
    rows = read_csv(out / "sensitivity_clear_threshold.csv")
    assert [(r["clear_threshold"], r["seeds"]) for r in rows] == [
        ("0.6", "2"),
        ("0.8", "2"),
        ("0.9", "1"),
    ]


def test_confusion_per_class_and_relabel_figures(tmp_path):
    root = tmp_path / "runs"
    relabels = [
        {
            "count": 4,
            "precision": 0.5,
            "recall": 0.25,
            "given_accuracy": 0.8,
            "current_accuracy": 0.85,
            "accuracy_gain": 0.05,
        },
        {
            "count": 2,
            "precision": None,
            "recall": 0.75,
            "given_accuracy": 0.8,
            "current_accuracy": 0.9,
            "accuracy_gain": 0.1,
        },
    ]
    fake_run(root, "a", algorithm="lion", acc=0.7, cm=((3, 1), (0, 4)), relabel=relabels[0])
    fake_run(root, "b", algorithm="lion", seed=1, acc=0.3, cm=((1, 1), (2, 2)), relabel=relabels[1])
    runs = load_runs([root]).runs
    names, matrix, seeds = T.mean_confusion(runs)["lion", "synthetic@100"]
    # mean counts [[2, 1], [1, 3]] → rows [2/3, 1/3] and [1/4, 3/4]
    np.testing.assert_allclose(matrix, [[2 / 3, 1 / 3], [0.25, 0.75]])
    assert names == NAMES and seeds == 2
    per_class = T.per_class(runs)["lion", "synthetic@100"]
    assert per_class["Happiness"] == T.Cell(50.0, pytest.approx(math.sqrt(800)), 2)
    assert "Sadness" not in per_class  # no value in any seed
    header, rows = T.relabel_table(runs)
    row = dict(zip(header, rows[0], strict=True))
    assert row["seeds"] == 2 and row["relabeled"] == T.Cell(3.0, pytest.approx(math.sqrt(2)), 2)
    assert row["precision %"] == T.Cell(50.0, None, 1)  # one seed had no relabel to judge
    assert row["recall %"].mean == pytest.approx(50.0)
    assert row["gain (points)"].mean == pytest.approx(7.5)
    out = tmp_path / "report"
    make_report([root], out)
    figures = {(r["method"], r["figure"]): r for r in read_csv(out / "relabel.csv")}
    assert float(figures["lion", "relabel.current_accuracy"]["mean"]) == pytest.approx(87.5)
    confusion = read_csv(out / "confusion.csv")
    assert [float(r["fraction"]) for r in confusion] == pytest.approx([2 / 3, 1 / 3, 0.25, 0.75])
    # runs.csv carries each run's own relabel counts, for figures pooled over seeds
    per_run = {r["seed"]: r for r in read_csv(out / "runs.csv")}
    assert per_run["0"]["relabel.count"] == "4" and per_run["1"]["relabel.count"] == "2"
    assert per_run["0"]["relabel.precision"] == "0.5" and per_run["1"]["relabel.precision"] == ""


def test_flat_numbers_names_every_number_of_a_nested_dict():
    relabel = {"count": 3, "by_error_type": {"slip": {"fixed": 1}}, "precision": None, "ok": True}
    assert T.flat_numbers(relabel, "relabel") == {
        "relabel.count": 3,
        "relabel.by_error_type.slip.fixed": 1,
    }
    assert T.flat_numbers([1, 2], "x") == {} and T.flat_numbers(0.5, "x") == {"x": 0.5}


def test_runs_csv_has_no_relabel_columns_without_a_relabeling_run(tmp_path):
    fake_run(tmp_path / "runs", "a", acc=0.6)
    make_report([tmp_path / "runs"], tmp_path / "report")
    (row,) = read_csv(tmp_path / "report" / "runs.csv")
    assert not [k for k in row if k.startswith("relabel.")]


def test_cell_and_column_order():
    assert T.Cell.of([0.6, 0.7, 0.8]) == T.Cell(pytest.approx(0.7), pytest.approx(0.1), 3)
    assert T.Cell.of([5.0]).text() == "5.00 (n=1)"
    assert T.Cell(70.0, 7.0710678, 2).text() == "70.00 ± 7.07 (n=2)"
    with pytest.raises(ValueError, match="at least one value"):
        T.Cell.of([])
    columns = ["rafdb@all", "rafdb@4000", "affectnet@2000", "rafdb@100", "rafdb@400"]
    assert sorted(columns, key=T.column_key) == [
        "affectnet@2000",
        "rafdb@100",
        "rafdb@400",
        "rafdb@4000",
        "rafdb@all",
    ]
    run = Run(
        path=None,
        method="m",
        column="c",
        seed=0,
        summary={"test_acc": 0.5},
        evals=[{"event": "eval", "step": 1, "test_acc": 0.4}],
    )
    assert T.best_on_test(run) == 0.4 and T.best_on_val(run) is None


def test_relabel_gallery_shows_the_faces_of_a_real_run(tiny_cfg, tmp_path):
    run = tmp_path / "runs" / "lion"
    train(tiny_cfg("train.steps=2", "train.eval_every=2"), run, progress=False)
    names = json.loads((run / "summary.json").read_text())["class_names"]
    header = [
        "index",
        "id",
        "given_label",
        "current_label",
        "step",
        "true_label",
        "given_name",
        "current_name",
        "weight",
        *(f"w_{n.lower()}" for n in names),
    ]
    rows = [
        [3, "", 0, 1, 7, 1, names[0], names[1], 0.81, *([0.1] * 7)],
        [5, "", 2, 4, 2, "", names[2], names[4], 0.9, *([""] * 7)],
        [6, "not-this-image", 2, 4, 9, "", names[2], names[4], 0.9, *([""] * 7)],
    ]
    with (run / "relabels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    out = tmp_path / "report"
    make_report([tmp_path / "runs"], out, gallery=5)
    shown = read_csv(out / "gallery.csv")
    assert [(r["index"], r["step"], r["given"], r["current"], r["true"]) for r in shown] == [
        ("5", "2", names[2], names[4], ""),
        ("3", "7", names[0], names[1], names[1]),
        ("6", "9", names[2], names[4], ""),
    ]
    # a candidate weight per class, by the class's full name, as relabels.csv has them
    assert shown[0][f"w_{names[4].lower()}"] == "0.9" and shown[0][f"w_{names[0].lower()}"] == ""
    assert [float(shown[1][f"w_{n.lower()}"]) for n in names] == [0.1] * 7
    assert (out / "figures" / "gallery_lion-evidence.png").stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "no longer matches relabels.csv at index 6" in md  # the labeled set was rebuilt
    assert "could not be loaded" not in md


def _relabels_csv(path, rows):
    """relabels.csv of a run: (given, current, true or "", status) per row."""
    with (path / "relabels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "given_label", "current_label", "true_label", "status"])
        for index, (given, current, true, status) in enumerate(rows):
            writer.writerow([index, given, current, true, status])


def test_wrong_relabels_are_pooled_by_class_over_runs(tmp_path):
    root = tmp_path / "runs"
    # run a: 0→1 right twice, 0→1 with truth 0 (a broken label), 1→0 with truth 0 (right)
    a = fake_run(root, "a", algorithm="lion", relabel={"count": 4})
    _relabels_csv(
        a,
        [
            (0, 1, 1, "relabeled"),
            (0, 1, 1, "relabeled"),
            (0, 1, 0, "relabeled"),
            (1, 0, 0, "relabeled"),
            (1, 1, 0, "demoted"),
        ],
    )
    # run b: 0→1 with truth 0 again, and one without a known truth
    b = fake_run(root, "b", algorithm="lion", seed=1, relabel={"count": 2})
    _relabels_csv(b, [(0, 1, 0, "relabeled"), (1, 0, "", "relabeled")])
    out = tmp_path / "report"
    make_report([root], out)
    pairs = [
        (r["given"], r["new"], r["true"], r["relabels"], r["runs"])
        for r in read_csv(out / "relabel_pairs.csv")
    ]
    assert pairs == [
        ("Happiness", "Sadness", "Happiness", "2", "2"),
        ("Happiness", "Sadness", "Sadness", "2", "1"),
        ("Sadness", "Happiness", "", "1", "1"),
        ("Sadness", "Happiness", "Happiness", "1", "1"),
    ]  # most frequent first; the demoted image is no relabel
    md = (out / "report.md").read_text()
    # 5 relabels with a known truth, 2 wrong, both broken correct labels
    assert "| lion | synthetic@100 | 5 | 2 | 2 | Happiness → Sadness 2 |" in md


def test_the_command_line_counts_its_runs_in_words():
    from pathlib import Path

    from lionfer.reporting.report_command import ReportResult

    one = ReportResult(Path("rep"), runs=1, skipped=0, files=["a.csv", "report.md"])
    assert str(one).startswith("report of 1 run: rep/report.md, rep/report.html and 1 CSV file")
    two = ReportResult(Path("rep"), runs=2, skipped=1, files=[])
    assert str(two).startswith("report of 2 runs, 1 skipped (see report.md): rep/report.md")


def test_sensitivity_to_tau_moved_in_eq_1_and_eq_6_together(tmp_path):
    # fig4-rafdb's τ points set clear_threshold, resolve_threshold and relabel_threshold alike;
    # its γ points leave them at 0.8
    root = tmp_path / "runs"
    for tau in (0.6, 0.7, 0.8):
        for seed in (0, 1):
            params = {"clear_threshold": tau, "resolve_threshold": tau, "relabel_threshold": tau}
            params["reliable_threshold"] = 0.95
            fake_run(root, f"t{tau}-{seed}", algorithm="lion", seed=seed, acc=tau - 0.1 * seed,
                     params=params)  # fmt: skip
    for gamma in (0.9, 0.99):
        params = {"clear_threshold": 0.8, "resolve_threshold": 0.8, "relabel_threshold": 0.8}
        fake_run(root, f"g{gamma}", algorithm="lion", acc=gamma - 0.5,
                 params={**params, "reliable_threshold": gamma})  # fmt: skip
    runs = load_runs([root]).runs
    assert T.moved_with(runs, "clear_threshold") == ["relabel_threshold", "resolve_threshold"]
    tau = T.sensitivity(runs, "clear_threshold")["synthetic@100"]
    assert [(x, c.n) for x, c in tau] == [(0.6, 2), (0.7, 2), (0.8, 2)]
    assert tau[1][1].mean == pytest.approx(65.0)
    assert T.moved_with(runs, "reliable_threshold") == []  # τ takes many values at γ 0.95
    gamma = T.sensitivity(runs, "reliable_threshold")["synthetic@100"]
    assert [(x, c.n) for x, c in gamma] == [(0.9, 1), (0.95, 2), (0.99, 1)]  # τ held at 0.8


def recipe_params(recipe, **changed):
    """[algorithm] of a LION run of a recipe as config.toml records it: the recipe and the
    hyperparameters it sets (a few of the dozen that `paper` and `evidence` set apart)."""
    sets = {
        "paper": {"reliable_threshold": 0.83, "reliable_loss_norm": "reliable", "folds": 0},
        "evidence": {"reliable_threshold": 0.95, "reliable_loss_norm": "batch", "folds": 5},
    }
    return {"recipe": recipe, "clear_threshold": 0.8, **sets[recipe], **changed}


def test_sensitivity_keeps_to_one_recipe(tmp_path):
    # the quick start's runs: the default recipe (γ 0.95) on two seeds, FixMatch, and one run of
    # algorithm.recipe=paper (γ 0.83): no γ was swept, so there is no curve
    root = tmp_path / "runs"
    for seed in (0, 1):
        fake_run(root, f"ev{seed}", algorithm="lion", seed=seed, acc=0.5 + 0.1 * seed,
                 recipe="evidence", params=recipe_params("evidence"))  # fmt: skip
    fake_run(root, "fm", acc=0.4)
    fake_run(root, "paper", algorithm="lion", acc=0.3, recipe="paper",
             params=recipe_params("paper"))  # fmt: skip
    runs = load_runs([root]).runs
    assert T.moved_with(runs, "reliable_threshold") == []
    for key in ("reliable_threshold", "clear_threshold"):
        assert all(len(points) == 1 for points in T.sensitivity(runs, key).values())
    out = tmp_path / "report"
    make_report([root], out)
    assert not list(out.glob("sensitivity_*.csv"))
    assert not list((out / "figures").glob("sensitivity_*.png"))
    assert "Sensitivity to" not in (out / "report.md").read_text()
    # a γ sweep of the paper recipe beside them: its curve, with the evidence runs left out
    for gamma in (0.77, 0.89):
        fake_run(root, f"g{gamma}", algorithm="lion", acc=gamma - 0.5, recipe="paper",
                 params=recipe_params("paper", reliable_threshold=gamma))  # fmt: skip
    runs = load_runs([root]).runs
    curves = T.sensitivity_curves(runs, "reliable_threshold")
    recipe, gamma = curves["synthetic@100"]
    assert recipe == "lion:paper"
    assert [(x, c.n) for x, c in gamma] == [(0.77, 1), (0.83, 1), (0.89, 1)]
    assert gamma[1][1].mean == pytest.approx(30.0)
    make_report([root], out)
    rows = read_csv(out / "sensitivity_reliable_threshold.csv")
    assert [r["reliable_threshold"] for r in rows] == ["0.77", "0.83", "0.89"]
    assert "within one recipe (`lion:paper`)" in (out / "report.md").read_text()


def test_a_run_without_a_component_is_no_point_of_a_sensitivity_curve(tmp_path):
    # τ 0.6 and 0.7 with every component, beside runs without label disambiguation at τ 0.8,
    # where τ does nothing: an ablation, no third point of the curve
    root = tmp_path / "runs"
    for tau, switch in ((0.6, True), (0.7, True), (0.8, False)):
        for seed in (0, 1):
            params = recipe_params("paper", clear_threshold=tau, use_disambiguation=switch)
            fake_run(root, f"t{tau}-{seed}", algorithm="lion", seed=seed, recipe="paper",
                     acc=tau - 0.1 * seed, params=params)  # fmt: skip
    runs = load_runs([root]).runs
    assert T.moved_with(runs, "clear_threshold") == []
    tau = T.sensitivity(runs, "clear_threshold")["synthetic@100"]
    assert [(x, c.n) for x, c in tau] == [(0.6, 2), (0.7, 2)]
    # a sweep's setting that stays at one value over two of τ's is no part of the τ sweep
    for tau, margin in ((0.6, 1.0), (0.7, 1.0), (0.8, 2.0)):
        params = recipe_params("paper", clear_threshold=tau, relabel_margin=margin)
        fake_run(root, f"m{tau}", algorithm="lion", seed=5, recipe="paper", acc=0.5,
                 params=params)  # fmt: skip
    assert "relabel_margin" not in T.moved_with(load_runs([root]).runs, "clear_threshold")


def test_the_packaged_fig4_sweep_draws_seven_points_of_each_curve():
    from pathlib import Path

    from lionfer.experiments.sweep_file import expand, load_sweep

    sweep = load_sweep("fig4-rafdb")
    runs = []
    for point, cfg in expand(sweep, ["data.root=/data/placeholder"]):
        config = cfg.to_dict()
        summary = {"algorithm": "lion", "recipe": cfg.algorithm.recipe, "seed": point.seed,
                   "test_acc": 0.5 + 0.01 * point.seed, "steps": cfg.train.steps}  # fmt: skip
        runs.append(Run(Path(point.label) / str(point.seed), point.label, "rafdb@100",
                        point.seed, summary, config))  # fmt: skip
    assert T.moved_with(runs, "clear_threshold") == ["relabel_threshold", "resolve_threshold"]
    tau = T.sensitivity(runs, "clear_threshold")["rafdb@100"]
    assert [(x, c.n) for x, c in tau] == [(t, 3) for t in (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)]
    gamma = T.sensitivity(runs, "reliable_threshold")["rafdb@100"]
    assert [x for x, _ in gamma] == [0.77, 0.79, 0.81, 0.83, 0.85, 0.87, 0.89]


def test_class_names_are_whole_in_the_gallery_and_its_weights_one_column_each(tmp_path):
    names = ["cat_big", "cat_small", "dog, a=b"]
    run = fake_run(tmp_path / "runs", "lion", algorithm="lion", acc=0.5, relabel={"count": 2})
    summary = json.loads((run / "summary.json").read_text())
    summary["class_names"] = names
    (run / "summary.json").write_text(json.dumps(summary))
    header = ["index", "given_label", "current_label", "step", *(f"w_{n}" for n in names)]
    with (run / "relabels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([header, [3, 1, 0, 7, 0.78, 0.2, 0.02], [4, 0, 2, 8, 0, 0.3, 0.7]])
    out = tmp_path / "report"
    make_report([tmp_path / "runs"], out)
    rows = read_csv(out / "gallery.csv")
    assert [(r["given"], r["current"]) for r in rows] == [
        ("cat_small", "cat_big"),
        ("cat_big", "dog, a=b"),
    ]
    assert [[r[f"w_{n}"] for n in names] for r in rows] == [
        ["0.78", "0.2", "0.02"],
        ["0.0", "0.3", "0.7"],
    ]
    md = (out / "report.md").read_text()
    assert "| cat_big: 0.78 · cat_small: 0.20 · dog, a=b: 0.02 |" in md
