"""`lionfer audit` (labels the model disputes) and `lionfer relabel` (a run's corrected labels)."""

from __future__ import annotations

import base64
import csv
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny
from PIL import Image
from predict_helpers import IMAGE_SIZE, make_checkpoint, trained_run
from test_corner_cases import make_folder

from lionfer.algorithms.lion_report import relabel_table
from lionfer.cli import main
from lionfer.config import load_config
from lionfer.inference.audit import (
    audit_score,
    audit_to_files,
    rank_order,
    relabel_rows,
    write_relabel_table,
)
from lionfer.inference.model_file import ModelInfo
from lionfer.inference.predictor import InputError, Predictor, load
from lionfer.labels import CLASS_NAMES
from lionfer.training import train
from lionfer.training.finished_run import finished_run_data

# red value of a flat image -> (given class folder, the stub model's probabilities)
HAPPY, SAD, ANGER = 3, 4, 5


def probs_with(**at: float) -> np.ndarray:
    """7 probabilities: the named class ids (c3=0.7) get their value, the rest share the rest."""
    p = np.zeros(len(CLASS_NAMES))
    for key, value in at.items():
        p[int(key[1:])] = value
    rest = [i for i in range(len(p)) if f"c{i}" not in at]
    p[rest] = (1 - p.sum()) / len(rest)
    return p


STUB = {
    10: probs_with(c3=0.7),  # train/happy/a.png: agrees, p(given) 0.7
    20: probs_with(c3=0.2, c4=0.6),  # train/happy/b&w.png: says Sadness, score 0.4
    30: probs_with(c4=0.1, c5=0.8),  # train/sad/c.png: says Anger, score 0.7
    40: probs_with(c5=0.5),  # test/anger/d.png: agrees, p(given) 0.5
}


def stub_predictor() -> Predictor:
    def classify(x: torch.Tensor) -> np.ndarray:
        red = (x[:, 0].mean(dim=(1, 2)) * 255).round().long().tolist()
        return np.stack([STUB[r] for r in red])

    info = ModelInfo("stub", CLASS_NAMES, 8, (0.0,) * 3, (1.0,) * 3, "stub.pt", "0" * 16)
    return Predictor(classify, info, batch_size=2)


@pytest.fixture
def labeled_folder(tmp_path) -> Path:
    root = tmp_path / "faces"
    files = {
        "train/happy/a.png": 10,
        "train/happy/b&w.png": 20,
        "train/sad/c.png": 30,
        "test/anger/d.png": 40,
    }
    for name, red in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (red, 0, 0)).save(root / name)
    (root / "train/sad/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_audit_score_and_ranking_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    given = np.array([0, 0, 2, 1])
    np.testing.assert_allclose(audit_score(probs, given), [0.0, 0.3, 0.0, 0.3])
    p_given = probs[np.arange(4), given]  # 0.7, 0.2, 0.8, 0.3
    assert rank_order(audit_score(probs, given), p_given).tolist() == [1, 3, 0, 2]


def test_audit_ranks_disputed_labels_first_and_lists_unreadable_images(labeled_folder, tmp_path):
    cfg = load_config(None, ["data.dataset=folder", f"data.root={labeled_folder}"])
    out = tmp_path / "suspects.csv"
    report = audit_to_files(stub_predictor(), cfg.data, 0, out, top=2, progress=False)
    rows = read_rows(out)
    assert [r["id"] for r in rows] == [
        "train/sad/c.png",
        "train/happy/b&w.png",
        "test/anger/d.png",
        "train/happy/a.png",
        "train/sad/broken.png",
    ]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", ""]
    first = rows[0]
    assert (first["given_name"], first["model_name"], first["split"]) == (
        "Sadness",
        "Anger",
        "train",
    )
    assert float(first["p_given"]) == pytest.approx(0.1) and float(first["score"]) == pytest.approx(
        0.7
    )
    assert float(first["p_anger"]) == pytest.approx(0.8)
    assert rows[-1]["error"].startswith("unreadable:") and rows[-1]["score"] == ""
    assert report.counts == {"audited": 4, "disputed": 2, "unreadable": 1, "untrained": 0}
    assert report.html == tmp_path / "suspects.html"


def test_the_html_page_embeds_the_top_suspects_faces(labeled_folder, tmp_path):
    cfg = load_config(None, ["data.dataset=folder", f"data.root={labeled_folder}"])
    report = audit_to_files(stub_predictor(), cfg.data, 0, tmp_path / "s.csv", top=2,
                            progress=False)  # fmt: skip
    page = report.html.read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2
    face = Image.open(io.BytesIO(base64.b64decode(images[0])))
    assert face.size == (96, 96) and face.getpixel((5, 5)) == (30, 0, 0)  # c.png, scaled up
    assert "b&amp;w.png" in page and "b&w.png" not in page
    assert "<td>Sadness</td><td>Anger</td>" in page


def test_audit_refuses_other_classes_and_existing_files(labeled_folder, tmp_path):
    cfg = load_config(None, ["data.dataset=folder", f"data.root={labeled_folder}"])
    out = tmp_path / "s.csv"
    out.write_text("mine")
    with pytest.raises(InputError, match="already exists; .* or choose another --out$"):
        audit_to_files(stub_predictor(), cfg.data, 0, out, progress=False)
    assert out.read_text() == "mine"
    page = tmp_path / "page.html"
    page.write_text("mine too")
    with pytest.raises(InputError, match="page.html already exists; .* choose another --html$"):
        audit_to_files(stub_predictor(), cfg.data, 0, tmp_path / "t.csv", page, progress=False)
    assert page.read_text() == "mine too"
    digits = load_config(None, ["data.dataset=digits"])
    with pytest.raises(InputError, match="classes .* differ"):
        audit_to_files(stub_predictor(), digits.data, 0, tmp_path / "d.csv", progress=False)


def test_cli_audit_on_a_checkpoint_and_a_config_style_dataset(capsys, tmp_path):
    model = make_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "suspects.csv"
    dataset = ["data.num_train=14", "data.num_test=7", f"data.image_size={IMAGE_SIZE}"]
    code = main(["audit", str(model), *dataset, "--out", str(out), "--top", "3", "--no-progress"])
    assert code == 0
    assert "audited 21 labeled images" in capsys.readouterr().out
    rows = read_rows(out)
    assert len(rows) == 21 and [r["rank"] for r in rows[:3]] == ["1", "2", "3"]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {r["split"] for r in rows} == {"train", "test"}
    assert len(re.findall("<img ", (tmp_path / "suspects.html").read_text())) == 3
    code = main(["audit", str(model), *dataset, "--split", "test", "--out", str(out)])
    assert code == 2 and "already exists" in capsys.readouterr().err


def test_cli_audit_refuses_a_key_its_dataset_would_not_read(capsys, tmp_path, labeled_folder):
    model = make_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "suspects.csv"
    folder = ["data.dataset=folder", f"data.root={labeled_folder}"]
    code = main(["audit", str(model), *folder, "data.annotator=crowd10", "--out", str(out)])
    assert code == 2 and "does not read data.annotator" in capsys.readouterr().err
    code = main(["audit", str(model), *folder, "data.noise_rate=0.2", "--out", str(out)])
    assert code == 2 and "changes no label with data.noise=none" in capsys.readouterr().err
    assert not out.exists()


def test_cli_audit_of_a_run_alone_reads_the_data_it_trained_on(capsys, tmp_path_factory):
    run = trained_run(tmp_path_factory)  # 70 + 14 embedded faces, not the default 2,100 + 700
    out = tmp_path_factory.mktemp("audit")
    code = main(["audit", str(run), "--out", str(out / "a.csv"), "--no-progress"])
    assert code == 0 and "audited 84 labeled images" in capsys.readouterr().out
    config = run / "config.toml"
    code = main(["audit", str(run), str(config), "--out", str(out / "b.csv"), "--no-progress"])
    assert code == 0 and "audited 84 labeled images" in capsys.readouterr().out


# ---- relabel ----


def test_relabel_exports_a_runs_labeled_set(tmp_path_factory, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run(tmp_path_factory), run)
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    algorithm = state["algorithm"]
    given = int(algorithm["label"][1])
    algorithm["label"][1] = (given + 1) % 7
    algorithm["relabel_step"][1] = 5
    algorithm["relabel_weights"] = torch.zeros(len(algorithm["label"]), 7)
    algorithm["relabel_weights"][1, (given + 1) % 7] = 0.9
    algorithm["demoted"] = torch.zeros(len(algorithm["label"]), dtype=torch.bool)
    algorithm["demoted"][[2, 3]] = True
    algorithm["evidence"] = torch.full((len(algorithm["label"]), 7), 1 / 7)
    # the evidence names the new class n for two images kept on their labels whose fold head
    # trains on another image of their label (the others' evidence cannot name it), and for no
    # other kept image: n's agreement is the share of those two given n
    new = (given + 1) % 7
    labels, folds = algorithm["label"].tolist(), algorithm["fold"].tolist()
    trains = [i not in (2, 3) for i in range(len(labels))]  # the demoted ones are set aside
    judged = [
        i
        for i in range(4, len(labels))
        if any(
            trains[j] and labels[j] == labels[i] and folds[j] != folds[i]
            for j in range(len(labels))
        )
    ][:2]
    assert len(judged) == 2
    algorithm["evidence"][:, (new + 1) % 7] = 0.2
    algorithm["evidence"][judged, new] = 0.5
    algorithm["evidence_visits"] = torch.ones(len(algorithm["label"]), dtype=torch.long)
    torch.save(state, path)

    columns, rows = relabel_rows(run)
    assert columns[:13] == [
        "index", "id", "given_label", "current_label", "step", "true_label", "given_name",
        "current_name", "weight", "changed", "ambiguous", "demoted", "new_class_agreement",
    ]  # fmt: skip
    assert columns[13:] == [f"w_{n.lower()}" for n in CLASS_NAMES]
    named_new = [rows[i]["given_label"] == new for i in judged]
    assert rows[1]["new_class_agreement"] == pytest.approx(sum(named_new) / 2)
    assert all(r["new_class_agreement"] is None for r in rows if not r["changed"])
    assert [r["demoted"] for r in rows[:5]] == [False, False, True, True, False]
    assert (
        rows[2]["w_fear"] == pytest.approx(float(algorithm["evidence"][2, 1]))
        and rows[2]["current_label"] == rows[2]["given_label"]
    )  # a demoted image keeps its label; its evidence is why
    assert len(rows) == 14 and sum(r["changed"] for r in rows) == 1
    row = rows[1]
    assert (row["given_label"], row["current_label"], row["step"]) == (given, (given + 1) % 7, 5)
    assert (
        row["weight"] == pytest.approx(0.9) and row["current_name"] == CLASS_NAMES[(given + 1) % 7]
    )
    assert row["true_label"] is not None  # synthetic data knows the truth

    out = tmp_path / "labels.csv"
    assert main(["relabel", str(run), "--out", str(out)]) == 0
    wrong = sum(r["given_label"] != r["true_label"] for r in rows[2:4])
    assert "1 relabeled (" in (said := capsys.readouterr().out) and "14 labeled images" in said
    assert f", 2 demoted to unlabeled ({wrong} of them wrongly labeled) ->" in said
    written = read_rows(out)
    assert written[1]["changed"] == "true" and written[0]["changed"] == "false"
    assert main(["relabel", str(run), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    own = (run / "relabels.csv").read_bytes()  # the run's own table, even with --overwrite
    assert main(["relabel", str(run), "--out", str(run / "relabels.csv"), "--overwrite"]) == 2
    assert "is a file of the run" in capsys.readouterr().err
    assert (run / "relabels.csv").read_bytes() == own
    model = path.read_bytes()  # a checkpoint, one folder down, and a link to it
    (tmp_path / "link.csv").symlink_to(path)
    for target in (path, tmp_path / "link.csv"):
        assert main(["relabel", str(run), "--out", str(target), "--overwrite"]) == 2
        assert f"is a file of the run in {run} (checkpoints)" in capsys.readouterr().err
    assert path.read_bytes() == model
    assert main(["relabel", str(path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "needs a run folder" in capsys.readouterr().err


def test_the_runs_relabels_csv_and_relabel_agree_on_every_row(tmp_path_factory, tmp_path):
    # relabels.csv lists the relabeled and demoted images; `lionfer relabel` every image: where
    # both have a row, the same step, weight and w_<class> (a demoted image: its evidence now)
    run = tmp_path / "run"
    shutil.copytree(trained_run(tmp_path_factory), run)
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    algorithm = state["algorithm"]
    m = len(algorithm["label"])
    given = int(algorithm["label"][1])
    algorithm["label"][1] = (given + 1) % 7  # relabeled at step 5, then demoted
    algorithm["relabel_step"][1] = 5
    algorithm["relabel_weights"] = torch.zeros(m, 7)
    algorithm["relabel_weights"][1, (given + 1) % 7] = 0.9
    algorithm["demoted"] = torch.zeros(m, dtype=torch.bool)
    algorithm["demoted"][[1, 2, 3]] = True
    algorithm["evidence"] = torch.softmax(torch.arange(m * 7.0).reshape(m, 7) % 5, dim=1)
    torch.save(state, path)

    _, every = relabel_rows(run)
    labeled = finished_run_data(run, load_config(run / "config.toml"), state).labeled
    header, rows = relabel_table(algorithm, labeled, list(state["class_names"]))
    assert [row[0] for row in rows] == [1, 2, 3]
    for row in rows:
        cells = dict(zip(header, row, strict=True))
        assert cells.pop("status") == "demoted"
        full = every[cells["index"]]
        assert {k: cell_of(v) for k, v in cells.items()} == {k: cell_of(full[k]) for k in cells}
    demoted = dict(zip(header, rows[1], strict=True))
    assert demoted["step"] == "" and demoted["weight"] == ""
    assert demoted["w_fear"] == f"{float(algorithm['evidence'][2, 1]):.4f}"
    # relabeled, then demoted: counted as demoted, never as changed, as summary.json counts it
    assert every[1]["demoted"] and not every[1]["changed"]
    report = write_relabel_table(run, tmp_path / "labels.csv")
    assert report.changed == 0 and report.demoted == 3


def cell_of(value) -> str:
    """A value as relabels.csv writes it: None empty, a float to 4 places."""
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def test_the_audit_names_a_photo_labeled_twice_with_different_labels(labeled_folder, tmp_path):
    # the same photo in happy/ and sad/: whatever the model says, one of its labels is wrong
    shutil.copy(labeled_folder / "train/happy/a.png", labeled_folder / "train/sad/a_again.png")
    cfg = load_config(None, ["data.dataset=folder", f"data.root={labeled_folder}"])
    report = audit_to_files(stub_predictor(), cfg.data, 0, tmp_path / "s.csv", progress=False)
    lines = report.summary().splitlines()
    assert lines[0].startswith(
        "note: 1 training image is a copy of another training image (the same file by another "
        "path, or byte-identical; 1 image appears more than once): 1 of these carries different "
        "labels, e.g. train/happy/a.png (Happiness) and train/sad/a_again.png (Sadness)"
    )
    assert lines[1].startswith("audited 5 labeled images")


# ---- classes the model never had a training label of ----

TRAINED = ["Happiness", "Sadness", "Neutral"]


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory) -> Path:
    """A folder run (7 FER outputs) on happy, sad and neutral faces only, stopped at step 2 of 4."""
    root = make_folder(tmp_path_factory.mktemp("three") / "faces",
                       {"happy": 8, "sad": 8, "neutral": 8})  # fmt: skip
    items = ["data.dataset=folder", f"data.root={root}", "algorithm.name=supervised"]
    items += ["data.num_labels=-1", "train.steps=4", "train.eval_every=2"]
    out = root.parent / "run"
    with pytest.warns(UserWarning, match="4 of 7 classes get no labeled image"):
        assert train(load_config(None, tiny(*items)), out, stop_after=2, progress=False) is None
    return out


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """Faces labeled with two trained classes (happy, sad) and two untrained ones (angry, fear)."""
    return make_folder(tmp_path / "mixed", {"happy": 3, "sad": 3, "angry": 2, "fear": 2})


def without_trained_classes(run: Path, copy: Path) -> Path:
    """The run as a lionfer without trained_classes would have saved it."""
    shutil.copytree(run, copy)
    path = copy / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state.pop("trained_classes", None)
    torch.save(state, path)
    return copy


def test_a_checkpoint_records_the_classes_it_had_training_labels_of(three_class_run):
    state = torch.load(three_class_run / "checkpoints" / "last.pt", weights_only=True)
    assert state["class_names"] == list(CLASS_NAMES) and state["trained_classes"] == TRAINED
    info = load(three_class_run).info
    assert info.trained_classes == tuple(TRAINED)
    assert info.untrained_classes == ("Surprise", "Fear", "Disgust", "Anger")


def test_the_audit_leaves_labels_of_untrained_classes_unjudged(
    three_class_run, mixed_folder, tmp_path, capsys
):
    out = tmp_path / "suspects.csv"
    folder = ["data.dataset=folder", f"data.root={mixed_folder}"]
    code = main(["audit", str(three_class_run), *folder, "--out", str(out), "--no-progress"])
    said = capsys.readouterr().out
    assert code == 0
    assert (
        "note: the model never saw a training label of Fear, Anger: it cannot name these " in said
    )
    assert "the 4 images labeled with them are not judged" in said
    assert "audited 6 labeled images" in said
    assert "; 4 images of classes the model had no training label of not judged" in said
    rows = read_rows(out)
    unjudged = [r for r in rows if r["given_name"] in ("Anger", "Fear")]
    assert len(rows) == 10 and rows[-4:] == unjudged
    assert all(r["rank"] == r["model_name"] == r["score"] == "" for r in unjudged)
    assert all(r["error"].startswith("untrained class: the model never saw") for r in unjudged)
    assert [r["rank"] for r in rows[:6]] == ["1", "2", "3", "4", "5", "6"]
    assert "never saw a training label of Fear, Anger" in (tmp_path / "suspects.html").read_text()


def test_an_audit_of_untrained_classes_only_is_refused(three_class_run, tmp_path, capsys):
    root = make_folder(tmp_path / "other", {"angry": 3, "fear": 3})
    folder = ["data.dataset=folder", f"data.root={root}"]
    code = main(["audit", str(three_class_run), *folder, "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "the model never saw a training label of Fear, Anger" in err, err
    assert "the classes it was trained on (Happiness, Sadness, Neutral)" in err, err
    assert not (tmp_path / "s.csv").exists()


def test_a_checkpoint_without_trained_classes_judges_every_class(
    three_class_run, mixed_folder, tmp_path
):
    old = without_trained_classes(three_class_run, tmp_path / "old")
    predictor = load(old)
    assert predictor.info.trained_classes == CLASS_NAMES and not predictor.info.untrained_classes
    cfg = load_config(None, ["data.dataset=folder", f"data.root={mixed_folder}"])
    report = audit_to_files(predictor, cfg.data, 0, tmp_path / "s.csv", progress=False)
    assert report.counts == {"audited": 10, "disputed": report.counts["disputed"],
                             "unreadable": 0, "untrained": 0}  # fmt: skip
    assert "not judged" not in report.summary()
    assert all(r["rank"] for r in read_rows(tmp_path / "s.csv"))


def test_a_run_saved_without_trained_classes_resumes_and_records_them(three_class_run, tmp_path):
    old = without_trained_classes(three_class_run, tmp_path / "old")
    with pytest.warns(UserWarning, match="4 of 7 classes get no labeled image"):
        summary = train(None, old, resume=True, progress=False)
    assert summary["steps"] == 4
    state = torch.load(old / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4 and state["trained_classes"] == TRAINED


def test_an_onnx_export_carries_the_trained_classes(three_class_run, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    from lionfer.inference.export import export

    out = tmp_path / "model.onnx"
    export(three_class_run, out)
    assert load(out).info.trained_classes == tuple(TRAINED)
    graph = onnx.load(str(out))  # an export made before trained_classes was stored
    kept = [(p.key, p.value) for p in graph.metadata_props if p.key != "trained_classes"]
    del graph.metadata_props[:]
    for key, value in kept:
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(out))
    assert load(out).info.trained_classes == CLASS_NAMES
