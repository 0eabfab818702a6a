"""benchmarks/evidence_ceiling.py: the rule read from the exact posterior, and the runs' wrong
relabels sorted by what that posterior names, against hand-computed cases and a real tiny run."""

import shutil

import numpy as np
import pytest
from conftest import load_benchmark
from predict_helpers import trained_run

from lionfer.data.annotators import class_posterior
from lionfer.data.datasets.synthetic import FACE_MODEL, load, training_faces


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("evidence_ceiling")


def rows(posterior, given, truth, slip, now=None, margin=1.0):
    return {
        "posterior": np.array(posterior),
        "given": np.array(given),
        "now": np.array(given if now is None else now),
        "truth": np.array(truth),
        "slip": np.array(slip, dtype=bool),
        "against_ratio": 0.5,
        "margin": margin,
    }


# thresholds over the given labels: t0 = (0.9 + 0.1) / 2 = 0.5, t1 = (0.8 + 0.2) / 2 = 0.5,
# t2 = (0.8 + 0.05) / 2 = 0.425
POSTERIOR = [
    [0.9, 0.05, 0.05],  # given 0, right: kept
    [0.1, 0.8, 0.1],  # given 0, truly 1 (a slip): against 0 (0.1 < 0.25), for 1: fixed
    [0.1, 0.8, 0.1],  # given 1, right: kept
    [0.7, 0.2, 0.1],  # given 1, right: against 1 (0.2 < 0.25), for 0: broken
    [0.1, 0.1, 0.8],  # given 2, right: kept
    [0.5, 0.45, 0.05],  # given 2, truly 0 (ambiguous): for 0 by 0.5 >= t0, 0.5 >= 0.45 only
]
GIVEN, TRUTH, SLIP = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], [0, 1, 0, 0, 0, 0]


def test_the_ceiling_reads_the_rule_from_the_posterior_by_hand(bench):
    assert bench.ceiling(rows(POSTERIOR, GIVEN, TRUTH, SLIP)) == {
        "relabels": 3, "right": 2, "broken": 1, "slips_fixed": 1, "slips": 1, "correct": 4,
    }  # fmt: skip
    # with a margin of 2 the last face's evidence is split between 0 and 1: a demotion
    assert bench.ceiling(rows(POSTERIOR, GIVEN, TRUTH, SLIP, margin=2.0)) == {
        "relabels": 2, "right": 1, "broken": 1, "slips_fixed": 1, "slips": 1, "correct": 4,
    }  # fmt: skip


def test_wrong_relabels_are_sorted_by_the_class_the_posterior_names(bench):
    posterior = [
        [0.7, 0.1, 0.1, 0.1],  # given 1, truly 0, relabeled 0: right
        [0.7, 0.1, 0.1, 0.1],  # given 1, right, relabeled 0 (the posterior names 0): new
        [0.1, 0.1, 0.7, 0.1],  # given 0, truly 2, relabeled 3: the posterior names the truth
        [0.1, 0.7, 0.1, 0.1],  # given 0, truly 2, relabeled 3: the posterior names another
        [0.1, 0.1, 0.1, 0.7],  # given 3, right, kept
        [0.1, 0.7, 0.1, 0.1],  # given 1, truly 2 (a slip), relabeled 2: right, slip fixed
    ]
    given, truth, now = [1, 1, 0, 0, 3, 1], [0, 1, 2, 2, 3, 2], [0, 0, 3, 3, 3, 2]
    slip = [0, 0, 0, 1, 0, 1]
    assert bench.sort_wrong(rows(posterior, given, truth, slip, now=now)) == {
        "relabels": 5, "right": 2, "broken": 1, "slips_fixed": 1, "slips": 2, "correct": 2,
        "new": 1, "true": 1, "other": 1,
    }  # fmt: skip


def test_the_training_faces_are_the_ones_load_serves(tiny_cfg):
    cfg = tiny_cfg().data
    faces = training_faces(cfg)
    train = load(cfg).train
    assert np.array_equal(faces.images, train.images)
    assert np.array_equal(faces.given_labels, train.labels)
    posterior = class_posterior(faces.geometry, cfg.ambiguity, FACE_MODEL)
    assert np.allclose(posterior.sum(axis=1), 1.0)
    assert (posterior.argmax(axis=1) == faces.true_labels).mean() > 0.5


def test_a_real_run_is_read_and_printed(bench, tmp_path_factory, tmp_path, capsys, monkeypatch):
    run = trained_run(tmp_path_factory)
    capsys.readouterr()  # what training printed
    read = bench.run_rows(run)
    assert read["posterior"].shape == (14, 7) and np.allclose(read["posterior"].sum(axis=1), 1)
    assert len(read["given"]) == len(read["now"]) == len(read["truth"]) == 14
    monkeypatch.setattr("sys.argv", ["evidence_ceiling.py", str(run), str(run)])
    bench.main()
    said = capsys.readouterr().out.splitlines()
    assert said[0] == "2 runs"
    assert said[1].startswith("the rule on the exact posterior: ")
    assert said[2].startswith("the runs' relabels: ") and "correct labels broken" in said[2]
    assert said[3].startswith("of the runs' ")

    with pytest.raises(SystemExit, match="not a run folder"):
        bench.run_rows(tmp_path / "missing")
    digits = tmp_path / "digits"
    shutil.copytree(run, digits)
    config = digits / "config.toml"
    config.write_text(config.read_text().replace('dataset = "synthetic"', 'dataset = "digits"'))
    with pytest.raises(SystemExit, match="only for the embedded faces"):
        bench.run_rows(digits)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "checkpoints" / "last.pt").unlink()
    monkeypatch.setattr("sys.argv", ["evidence_ceiling.py", str(unfinished)])
    with pytest.raises(SystemExit, match="not a finished lionfer run"):
        bench.main()
    stopped = tmp_path / "stopped"  # a run interrupted: its checkpoint, no summary.json
    shutil.copytree(run, stopped)
    (stopped / "summary.json").unlink()
    with pytest.raises(SystemExit, match=r"stopped.* \(no summary.json\): not a finished run"):
        bench.run_rows(stopped)
