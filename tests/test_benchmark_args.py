"""The benchmark scripts' figures and arguments: the wait-policy ratio pairs the runs of one
round; relabel_agreement reads finished runs of the evidence recipe only; bad arguments are usage
errors (exit 2) that name the argument, not tracebacks."""

import shutil

import pytest
from conftest import load_benchmark
from predict_helpers import trained_run


def usage_error(capsys, script, argv) -> str:
    """parse the arguments as the script's main would; the usage error's message."""
    parser = load_benchmark(script).parser()
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_the_wait_policy_ratio_is_the_median_of_each_rounds_ratio():
    predict_speed = load_benchmark("predict_speed")
    # rounds: (10, 11), (2, 20), (6, 7): ratios 1.1, 10, 7/6; sorting each side apart gives 2.0
    assert predict_speed.median_ratio([10, 2, 6], [11, 20, 7]) == pytest.approx(7 / 6)
    assert predict_speed.median_ratio([4, 2], [2, 4]) == pytest.approx((0.5 + 2) / 2)


def test_relabel_agreement_refuses_an_unfinished_run_and_skips_other_algorithms(
    tmp_path_factory, tmp_path, capsys, monkeypatch
):
    bench = load_benchmark("relabel_agreement")
    run = trained_run(tmp_path_factory)
    stopped = tmp_path / "stopped"
    shutil.copytree(run, stopped)
    (stopped / "summary.json").unlink()
    with pytest.raises(SystemExit, match=r"stopped.* \(no summary.json\): not a finished run"):
        bench.run_classes(stopped)

    load = bench.load_checkpoint  # a run of another algorithm: no evidence in its state
    other = tmp_path / "other"
    shutil.copytree(run, other)

    def without_evidence(path, *args):
        state = load(path, *args)
        if other in path.parents:
            state["algorithm"] = {}
        return state

    monkeypatch.setattr(bench, "load_checkpoint", without_evidence)
    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["relabel_agreement.py", str(other), str(run), "--bins", "0.5"])
    bench.main()
    out = capsys.readouterr().out
    assert f"skipped: {other} is not a run of the evidence recipe" in out
    assert "1 runs (1 other runs skipped)" in out
    monkeypatch.setattr("sys.argv", ["relabel_agreement.py", str(other)])
    with pytest.raises(SystemExit, match="no run of the evidence recipe"):
        bench.main()


def test_relabel_agreement_takes_the_runs_first_and_the_bins_as_one_value(capsys):
    args = (
        load_benchmark("relabel_agreement")
        .parser()
        .parse_args(["runs/a", "runs/b", "--bins", "0.9,0.7,0.8"])
    )
    assert [str(run) for run in args.runs] == ["runs/a", "runs/b"] and args.bins == [0.7, 0.8, 0.9]
    assert "strictly between 0 and 1" in usage_error(
        capsys, "relabel_agreement", ["runs/a", "--bins", "1.5"]
    )
    assert "separated by commas" in usage_error(capsys, "relabel_agreement", ["r", "--bins", "a"])


@pytest.mark.parametrize(
    "script, argv, message",
    [
        ("early_evidence", ["--every", "0"], "argument --every: must be at least 1, got 0"),
        ("early_evidence", ["--folds", "1"], "argument --folds: must be at least 2, got 1"),
        ("early_evidence", ["--steps", "-5"], "argument --steps: must be at least 1, got -5"),
        ("predict_speed", ["--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        ("predict_speed", ["--images", "x"], "argument --images: not an integer: 'x'"),
        ("predict_speed", ["--load", "-1"], "argument --load: must be at least 0, got -1"),
        ("pipeline_speed", ["--n", "50"], "argument --n: must be at least 100, got 50"),
        ("pipeline_speed", ["--seconds", "0"], "--seconds: must be a number above 0, got 0"),
        ("pipeline_speed", ["--seconds", "nan"], "--seconds: must be a number above 0, got nan"),
        ("throughput", ["--scale-steps", "1"], "argument --scale-steps: must be at least 2, got 1"),
    ],
)
def test_a_benchmark_refuses_a_count_it_cannot_measure_by_naming_the_option(
    capsys, script, argv, message
):
    assert message in usage_error(capsys, script, argv)


def test_the_benchmarks_defaults_pass_their_own_checks():
    for script in ("early_evidence", "predict_speed", "pipeline_speed", "throughput"):
        load_benchmark(script).parser().parse_args([])
