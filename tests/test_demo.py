"""make demo's entry point on a tiny schedule: five runs and the comparison table."""

from conftest import TINY

from lionfer.demo import RUNS, main


def test_demo_trains_baselines_and_every_lion_recipe_and_prints_the_table(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "train.steps=4", "train.eval_every=4"]) == 0
    out = capsys.readouterr().out
    for name in ("supervised", "fixmatch", "lion:paper", "lion:released", "lion:robust"):
        assert name in out
    assert "test acc %" in out and "label acc now %" in out and "relabeled" in out
    assert "±" not in out  # one seed: means only
    (root,) = (tmp_path / "runs").iterdir()
    assert {p.name for p in root.iterdir()} == {folder for folder, _ in RUNS}
    assert all((root / folder / "summary.json").is_file() for folder, _ in RUNS)
