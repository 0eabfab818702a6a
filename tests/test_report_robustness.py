"""Reports over the run folders researchers end up with: damaged or hand-edited summaries and logs,
runs that failed or never started, runs of another class count or length beside each other, and
report folders holding files the report did not write. Every such run is read, or skipped and
listed with its reason; nothing a user made is overwritten."""

import json
import math

import pytest
from test_report import cells, fake_run, read_csv

from lionfer.errors import ConfigError
from lionfer.reporting import tables as T
from lionfer.reporting.report_command import make_report
from lionfer.reporting.run_finder import load_runs


def edit_summary(folder, **changes):
    summary = json.loads((folder / "summary.json").read_text())
    summary.update(changes)
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.mark.parametrize(
    ("write", "reason"),
    [
        (lambda p: (p / "summary.json").write_text("null"), "not a JSON object"),
        (lambda p: (p / "summary.json").write_text("[1, 2]"), "not a JSON object"),
        (lambda p: edit_summary(p, test_acc=float("nan")), "test_acc nan"),
        (lambda p: edit_summary(p, test_acc=61.0), "test_acc 61.0, not a fraction"),
        (lambda p: edit_summary(p, test_acc=True), "test_acc True, not a number"),
        (lambda p: edit_summary(p, seed="one"), "seed 'one', not an integer"),
        (lambda p: edit_summary(p, per_class_acc=[0.5, 0.5]), "per_class_acc is a list"),
        (lambda p: edit_summary(p, best=[0.5]), "best is a list"),
        (lambda p: edit_summary(p, relabel="none"), "relabel is a str"),
        (lambda p: edit_summary(p, relabel={"count": "4"}), "relabel.count '4', not a number"),
        (lambda p: edit_summary(p, steps="20"), "steps '20', not a number"),
        (lambda p: edit_summary(p, confusion_matrix=[[1, 2], [3]]), "confusion_matrix is not"),
        (lambda p: edit_summary(p, class_names="ab"), "class_names is a str"),
        (lambda p: (p / "config.toml").write_bytes(b"seed = '\xff'"), "config.toml is not UTF-8"),
    ],
)
def test_a_damaged_or_edited_run_is_skipped_with_its_reason(tmp_path, write, reason):
    root = tmp_path / "runs"
    fake_run(root, "good", acc=0.5)
    write(fake_run(root, "bad", seed=1, acc=0.6))
    result = make_report([root], tmp_path / "report")
    assert (result.runs, result.skipped) == (1, 1)
    assert reason in (tmp_path / "report" / "report.md").read_text()
    assert cells(read_csv(tmp_path / "report" / "table1.csv")) == {
        ("fixmatch", "synthetic@100"): (1, pytest.approx(50.0), None)
    }


def test_damaged_lines_of_metrics_jsonl_are_left_out_and_the_run_kept(tmp_path):
    root = tmp_path / "runs"
    run = fake_run(root, "a", acc=0.5, evals=[(10, {"test_acc": 0.4}), (20, {"test_acc": 0.5})])
    with (run / "metrics.jsonl").open("ab") as f:
        f.write(b'{"event": "eval", "step": "x", "test_acc": 0.9}\n\xff\xfe garbage\n[1]\n')
        f.write(b'{"event": "eval", "step": true, "test_acc": 0.9}\n{"event": "eval", "st')
    result = make_report([root], tmp_path / "report")
    assert (result.runs, result.skipped) == (1, 0)
    rows = read_csv(tmp_path / "report" / "learning_curves.csv")
    assert [(r["step"], float(r["mean"])) for r in rows] == [("10", 40.0), ("20", 50.0)]


def test_a_labels_account_that_cannot_be_read_is_noted_and_the_report_goes_on(tmp_path):
    root = tmp_path / "runs"
    relabel = {"precision": 0.5, "recall": 0.5, "given_accuracy": 0.8}  # no count
    run = fake_run(root, "a", algorithm="lion", recipe="paper", acc=0.5, relabel=relabel)
    edit_summary(run, class_names=None)  # the confusion matrix then names classes by number
    result = make_report([root], tmp_path / "report")
    assert result.runs == 1
    (account,) = result.labels
    assert account.lines[0].startswith("the account of its labels cannot be read")
    assert "'count'" in account.lines[0]
    rows = read_csv(tmp_path / "report" / "confusion.csv")
    assert [(r["true"], r["predicted"]) for r in rows[:2]] == [("0", "0"), ("0", "1")]


def write_events(folder, *events):
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text('seed = 0\n[algorithm]\nname = "fixmatch"\n')
    lines = [{"event": "start", "num_labeled": 28}, *events]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))


def test_runs_that_did_not_finish_are_counted_and_listed(tmp_path):
    sweep = tmp_path / "sweep"
    fake_run(sweep, "synthetic@100/fixmatch/s0", acc=0.5)
    error = {"event": "error", "step": 3, "error": "NonFiniteLoss: loss is nan at step 3"}
    write_events(sweep / "synthetic@100/fixmatch/s1", {"event": "train", "step": 2}, error)
    stop = {"event": "interrupted", "step": 6, "signal": "SIGTERM", "checkpoint": "x"}
    write_events(sweep / "synthetic@100/fixmatch/s2", stop)
    write_events(sweep / "synthetic@100/fixmatch/s3", {"event": "train", "step": 9})
    points = [
        {"label": "fixmatch", "column": "synthetic@100", "folder": f"synthetic@100/fixmatch/s{s}"}
        for s in range(5)
    ]
    (sweep / "sweep.json").write_text(json.dumps({"points": points}))
    result = make_report([sweep], tmp_path / "report")
    assert (result.runs, result.skipped, len(result.unfinished)) == (1, 0, 4)
    assert "4 not finished" in str(result)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "4 runs have not finished and are not in the tables" in md
    assert "failed at step 3: NonFiniteLoss: loss is nan at step 3" in md
    assert "stopped by SIGTERM at step 6" in md and "lionfer train --resume --out" in md
    assert "no summary.json; its last record is of step 9 (still running, or killed)" in md
    assert "listed in sweep.json, not started" in md
    recorded = json.loads((tmp_path / "report" / "report.json").read_text())["unfinished"]
    assert len(recorded) == 4
    # a report of one column of the sweep lists only the points below it
    part = make_report([sweep / "synthetic@100" / "fixmatch" / "s0"], tmp_path / "r2")
    assert part.unfinished == []


def test_runs_of_different_class_counts_are_not_pooled(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, "seven", acc=0.5)
    eight = fake_run(root, "eight", seed=1, acc=0.7, cm=((1, 0, 0), (0, 1, 0), (0, 0, 1)))
    edit_summary(eight, class_names=["a", "b", "c"])
    collection = load_runs([root])
    assert sorted(r.column for r in collection.runs) == [
        "synthetic (2 classes)@100",
        "synthetic (3 classes)@100",
    ]
    assert any("2 and 3 classes" in note for note in collection.notes)


def test_runs_of_different_lengths_are_not_pooled(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, "short", acc=0.5)
    edit_summary(fake_run(root, "long", seed=1, acc=0.7), steps=300)
    make_report([root], tmp_path / "report")
    assert cells(read_csv(tmp_path / "report" / "table1.csv")) == {
        ("fixmatch (steps=20)", "synthetic@100"): (1, pytest.approx(50.0), None),
        ("fixmatch (steps=300)", "synthetic@100"): (1, pytest.approx(70.0), None),
    }
    # two sweeps' points of one label, one of them longer
    for name, steps in (("a", 20), ("b", 300)):
        sweep = tmp_path / "sweeps" / name
        edit_summary(fake_run(sweep, "synthetic@100/fm/s0", acc=0.5), steps=steps)
        point = {"label": "FM", "column": "synthetic@100", "folder": "synthetic@100/fm/s0"}
        (sweep / "sweep.json").write_text(json.dumps({"points": [point]}))
    methods = {r.method for r in load_runs([tmp_path / "sweeps"]).runs}
    assert methods == {"FM (steps=20)", "FM (steps=300)"}


def test_a_sweeps_method_split_by_length_keeps_its_place_in_the_sweeps_order(tmp_path):
    sweep = tmp_path / "sweep"
    points = []
    for label, folder, steps in (("FM", "fm/s0", 20), ("FM", "fm/s1", 300), ("AA", "aa/s0", 20)):
        run = fake_run(sweep, f"synthetic@100/{folder}", seed=int(folder[-1]), acc=0.5)
        edit_summary(run, steps=steps)
        points.append(
            {"label": label, "column": "synthetic@100", "folder": f"synthetic@100/{folder}"}
        )
    (sweep / "sweep.json").write_text(json.dumps({"points": points}))
    assert load_runs([sweep]).methods == ["FM (steps=20)", "FM (steps=300)", "AA"]


def test_a_method_may_run_longer_in_another_column(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, "few", labels=100, acc=0.5)
    edit_summary(fake_run(root, "many", labels=400, acc=0.7), steps=300)
    collection = load_runs([root])
    assert {(r.method, r.column) for r in collection.runs} == {
        ("fixmatch", "synthetic@100"),
        ("fixmatch", "synthetic@400"),
    }
    assert not collection.notes


def test_runs_that_differ_in_a_setting_outside_the_algorithm_are_not_pooled(tmp_path):
    root = tmp_path / "runs"
    # two runs of seed 0, one of them from pretrained weights: two settings, not two seeds
    for folder, seed, weights, acc in (("r18", 0, "", 0.4), ("r18b", 0, "w.pth", 0.6)):
        settings = {"model.pretrained": weights, "train.lr": 0.01, "train.device": "cpu"}
        fake_run(root, folder, seed=seed, acc=acc, settings=settings)
    # another seed on another machine: how a run was carried out sets no run apart
    settings = {"model.pretrained": "", "train.lr": 0.01, "train.device": "cuda"}
    fake_run(root, "r19", seed=1, acc=0.5, settings=settings)
    # a method may rightly train on larger images, at another rate, on another dataset
    for seed in (0, 1):
        settings = {"data.image_size": 112, "model.pretrained": "", "train.lr": 0.1}
        fake_run(root, f"big{seed}", seed=seed, labels=400, acc=0.7, settings=settings)
    result = make_report([root], tmp_path / "report")
    assert result.skipped == 0
    assert cells(read_csv(tmp_path / "report" / "table1.csv")) == {
        ('fixmatch (model.pretrained="")', "synthetic@100"): (
            2,
            pytest.approx(45.0),
            pytest.approx(math.sqrt(50)),
        ),
        ("fixmatch (model.pretrained=w.pth)", "synthetic@100"): (1, pytest.approx(60.0), None),
        ("fixmatch", "synthetic@400"): (2, pytest.approx(70.0), pytest.approx(0.0)),
    }
    assert (
        "Note: fixmatch runs on synthetic@100 differ in model.pretrained: each setting is shown "
        "as a method of its own"
    ) in (tmp_path / "report" / "report.md").read_text()


def test_a_seed_repeated_with_the_same_settings_counts_once(tmp_path):
    root = tmp_path / "runs"
    first = fake_run(root, "a", seed=0, acc=0.4, settings={"train.device": "cpu"})
    again = fake_run(root, "a-again", seed=0, acc=0.6, settings={"train.device": "cuda"})
    fake_run(root, "b", seed=1, acc=0.8, settings={"train.device": "cpu"})
    result = make_report([root], tmp_path / "report")
    assert (result.runs, result.skipped) == (2, 1)
    assert cells(read_csv(tmp_path / "report" / "table1.csv")) == {
        ("fixmatch", "synthetic@100"): (2, pytest.approx(60.0), pytest.approx(math.sqrt(800)))
    }
    collection = load_runs([root])
    assert [(path, why) for path, why in collection.skipped] == [
        (
            again.resolve(),
            "repeats seed 0 of fixmatch on synthetic@100 with settings the report does not "
            f"tell apart from {first.resolve()}, which is counted in its place (a mean over seeds "
            "counts each seed once); train another seed=N for one more seed",
        )
    ]
    assert "repeats seed 0 of fixmatch" in (tmp_path / "report" / "report.md").read_text()


def test_runs_on_other_photos_are_told_apart_and_the_same_photos_moved_pool(tmp_path):
    """Two folders of one's own photos are two datasets, whatever the reader and the budget: a
    data.root is compared by its folder's name (a manifest's by its file's and folder's), so
    that the same data at another path on another machine still pools as seeds."""
    root = tmp_path / "runs"
    for folder, seed, data_root, acc in (
        ("d1", 0, "/home/ana/d1", 0.4),
        ("d1-moved", 1, "/mnt/cluster/d1/", 0.6),
        ("d2", 0, "/home/ana/d2", 0.8),
        ("m1", 0, "/a/project1/labels.csv", 0.3),
        ("m2", 0, "/a/project2/labels.csv", 0.5),
    ):
        fake_run(root, folder, seed=seed, acc=acc, settings={"data.root": data_root})
    collection = load_runs([root])
    assert not collection.skipped
    assert sorted((r.method, r.seed) for r in collection.runs) == [
        ("fixmatch (data.root=d1)", 0),
        ("fixmatch (data.root=d1)", 1),
        ("fixmatch (data.root=d2)", 0),
        ("fixmatch (data.root=project1/labels.csv)", 0),
        ("fixmatch (data.root=project2/labels.csv)", 0),
    ]


def test_runs_of_other_embedded_data_pool_as_seeds(tmp_path):
    # data.data_seed draws other faces: varied with the seed or beside it, it is a seed too
    root = tmp_path / "runs"
    for folder, seed, data_seed, acc in (("a", 0, 0, 0.4), ("b", 1, 1, 0.6), ("c", 0, 1, 0.8)):
        settings = {"data.data_seed": data_seed, "data.augment_on": "cpu" if seed else "device"}
        fake_run(root, folder, seed=seed, acc=acc, settings=settings)
    result = make_report([root], tmp_path / "report")
    assert (result.runs, result.skipped) == (3, 0)
    assert cells(read_csv(tmp_path / "report" / "table1.csv")) == {
        ("fixmatch", "synthetic@100"): (3, pytest.approx(60.0), pytest.approx(20.0))
    }


def test_a_sweeps_seed_repeated_by_another_sweep_is_not_counted_twice(tmp_path):
    for name, lr, acc in (("a", 0.01, 0.4), ("b", 0.1, 0.6), ("c", 0.1, 0.8)):
        sweep = tmp_path / "sweeps" / name
        fake_run(sweep, "synthetic@100/fm/s0", acc=acc, settings={"train.lr": lr})
        point = {"label": "FM", "column": "synthetic@100", "folder": "synthetic@100/fm/s0"}
        (sweep / "sweep.json").write_text(json.dumps({"points": [point]}))
    collection = load_runs([tmp_path / "sweeps"])
    assert sorted((r.method, r.summary["test_acc"]) for r in collection.runs) == [
        ("FM (train.lr=0.01)", 0.4),
        ("FM (train.lr=0.1)", 0.6),
    ]
    assert collection.methods == ["FM (train.lr=0.01)", "FM (train.lr=0.1)"]
    assert [path.parts[-4] for path, _ in collection.skipped] == ["c"]


def test_ablation_and_sensitivity_pool_no_seed_twice(tmp_path):
    root = tmp_path / "runs"
    params = {"use_disambiguation": True, "clear_threshold": 0.8}
    for folder, weights, acc in (("r18", "", 0.4), ("r18b", "w.pth", 0.6)):
        settings = {"model.pretrained": weights}
        fake_run(root, folder, algorithm="lion", acc=acc, params=params, settings=settings)
    fake_run(root, "r19", algorithm="lion", seed=1, acc=0.5, params=params,
             settings={"model.pretrained": ""})  # fmt: skip
    runs = load_runs([root]).runs
    _, rows = T.ablation(runs)
    assert [(row.note, row.cells["synthetic@100"].n) for row in rows] == [
        ("", 2),
        ("model.pretrained=w.pth", 1),
    ]
    (point,) = T.sensitivity(runs, "clear_threshold")["synthetic@100"]
    assert point[1].n == 2 and point[1].mean == pytest.approx(45.0)


def test_one_seed_shows_no_std(tmp_path):
    fake_run(tmp_path / "runs", "a", acc=0.5)
    make_report([tmp_path / "runs"], tmp_path / "report")
    assert "| 50.00 (n=1) |" in (tmp_path / "report" / "report.md").read_text()
    (row,) = read_csv(tmp_path / "report" / "table1.csv")
    assert row["std"] == "" and not math.isnan(float(row["mean"]))


def earlier_report(tmp_path):
    """A run and its report in tmp_path/report, as a user would have them before a new one."""
    fake_run(tmp_path / "runs", "a", acc=0.5)
    make_report([tmp_path / "runs"], tmp_path / "report")
    return tmp_path / "report"


def test_a_report_never_overwrites_a_file_it_did_not_write(tmp_path):
    out = earlier_report(tmp_path)
    (out / "table1_best_test.csv").write_text("my own table\n")
    with pytest.raises(ConfigError, match="table1_best_test.csv, which the earlier report"):
        make_report([tmp_path / "runs"], out, best_on_test=True)
    assert (out / "table1_best_test.csv").read_text() == "my own table\n"
    assert (out / "report.md").is_file()  # the earlier report is left as it was


def test_a_damaged_report_json_is_an_error_with_the_fix(tmp_path):
    out = earlier_report(tmp_path)
    (out / "report.json").write_text('{"files": ')
    with pytest.raises(ConfigError, match="report.json is damaged"):
        make_report([tmp_path / "runs"], out)
    (out / "report.json").write_text('{"files": "report.md"}')  # a string, not a list of names
    with pytest.raises(ConfigError, match="report.json is damaged"):
        make_report([tmp_path / "runs"], out)
    assert (out / "report.md").is_file()


def test_paths_with_spaces_and_non_ascii_letters(tmp_path):
    root = tmp_path / "mes résultats" / "runs τ"
    fake_run(root, "fixmatch s0", acc=0.5)
    result = make_report([root], tmp_path / "mes résultats" / "rapport été")
    assert result.runs == 1
    assert "runs τ/fixmatch s0" in (result.out / "runs.csv").read_text(encoding="utf-8")


def test_figures_whose_names_would_meet_are_kept_apart(tmp_path):
    from lionfer.reporting.document import Output

    out = Output(tmp_path)
    # 'lion evidence' (a sweep's label) and 'lion:evidence' both slug to lion-evidence
    first = out.image("gallery_lion-evidence.png", b"seed 0", "lion evidence")
    second = out.image("gallery_lion-evidence.png", b"seed 1", "lion:evidence")
    third = out.image("gallery_lion-evidence.png", b"seed 2", "lion_evidence")
    assert [first.name, second.name, third.name] == [
        "gallery_lion-evidence.png",
        "gallery_lion-evidence-2.png",
        "gallery_lion-evidence-3.png",
    ]
    assert out.data["figures/gallery_lion-evidence-2.png"] == b"seed 1"


def test_a_negative_gallery_is_refused_before_anything_is_read(tmp_path):
    with pytest.raises(ConfigError, match="--gallery is how many relabeled faces .* got -3"):
        make_report([tmp_path / "none"], tmp_path / "report", gallery=-3)
    assert not (tmp_path / "report").exists()
