"""make demo's entry point on a tiny schedule: three runs and the comparison table."""

from conftest import TINY

from lionfer.demo import main


def test_demo_trains_three_algorithms_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "train.steps=4", "train.eval_every=4"]) == 0
    out = capsys.readouterr().out
    for name in ("supervised", "fixmatch", "lion"):
        assert name in out
    assert "test acc %" in out and "LION relabeled" in out
    (root,) = (tmp_path / "runs").iterdir()
    assert {p.name for p in root.iterdir()} == {"supervised", "fixmatch", "lion"}
    assert all((root / name / "summary.json").is_file() for name in ("fixmatch", "lion"))
