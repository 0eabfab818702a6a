"""The one place runs are named: columns, methods, folders and slugs."""

from lionfer import run_names as N


def test_a_column_names_the_dataset_and_the_label_budget():
    assert N.column("rafdb", 100) == "rafdb@100"
    assert N.column("synthetic", -1) == "synthetic@all"
    assert N.column("sfew", "all") == "sfew@all"
    assert N.split_column("fer2013@ferplus@1000") == ("fer2013@ferplus", "1000")


def test_a_method_is_its_algorithm_and_recipe():
    assert N.method_name({"algorithm": "lion", "recipe": "evidence"}) == "lion:evidence"
    assert N.method_name({"algorithm": "fixmatch"}) == "fixmatch"
    assert N.method_name({}) == "?"


def test_a_run_folder_and_a_slug():
    assert N.run_folder("synthetic", 140, "lion", 2) == "synthetic@140/lion/s2"
    assert N.run_folder("synthetic", -1, "fullysupervised", 0) == "synthetic@all/fullysupervised/s0"
    assert N.slug("LION tau=0.60") == "lion-tau-0.60"
    assert N.slug("+++") == ""
