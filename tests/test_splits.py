"""Labeled budgets against the protocol tables, seeded splits, split files and their checks."""

import dataclasses
import json
import os

import numpy as np
import pytest

from lionfer.data.base import FERData, ImageSet
from lionfer.data.split_record import check_run_split, ids_hash, split_digest, split_record
from lionfer.data.splits import (
    Split,
    labeled_budget,
    load_split,
    make_split,
    source_hash,
    stratified_holdout,
)
from lionfer.errors import InputError, LabelBudgetError
from lionfer.labels import CLASS_NAMES

RAF_TRAIN_COUNTS = (1290, 281, 717, 4772, 1982, 705, 2524)  # SU FE DI HA SA AN NE


def fake_data(counts, rule="rafdb", names=CLASS_NAMES, name="fake") -> FERData:
    """Label counts only; images are ids, never opened. Labels interleaved, not sorted."""
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = np.random.default_rng(123).permutation(labels)
    ids = [f"img_{i:05d}.jpg" for i in range(len(labels))]
    train = ImageSet(images=list(ids), labels=labels, ids=ids)
    test = ImageSet(images=ids[:3], labels=labels[:3], ids=ids[:3])
    return FERData(name, tuple(names), train, test, split_rule=rule)


@pytest.mark.parametrize(
    "budget, fear, other",
    [(100, 10, 15), (400, 40, 60), (1000, 100, 150), (2000, 200, 300), (4000, 250, 625)],
)
def test_rafdb_budgets_match_protocol_table(budget, fear, other):
    per_class = labeled_budget("rafdb", budget, RAF_TRAIN_COUNTS, CLASS_NAMES)
    assert per_class.tolist() == [other, fear, other, other, other, other, other]
    assert per_class.sum() == budget


def test_rafdb_budget_outside_table_lists_supported_budgets():
    with pytest.raises(ValueError, match=r"\[100, 400, 1000, 2000, 4000\].*balanced"):
        labeled_budget("rafdb", 5000, RAF_TRAIN_COUNTS, CLASS_NAMES)
    # the way to another budget is one a user can take (no setting selects a split rule)
    with pytest.raises(ValueError, match=r"another budget, list the images in a manifest \(data"):
        labeled_budget("rafdb", 140, RAF_TRAIN_COUNTS, CLASS_NAMES)


def test_rafdb_class_that_cannot_fill_budget_is_named_never_shrunk():
    counts = list(RAF_TRAIN_COUNTS)
    counts[5] = 600  # Anger below the 625 the 4000 budget needs
    with pytest.raises(ValueError, match="Anger has 600 images but needs 625"):
        labeled_budget("rafdb", 4000, counts, CLASS_NAMES)
    counts = list(RAF_TRAIN_COUNTS)
    counts[1] = 9  # Fear below 10 at budget 100: the released codes' silent failure
    with pytest.raises(ValueError, match="Fear has 9 images but needs 10"):
        labeled_budget("rafdb", 100, counts, CLASS_NAMES)


def test_balanced_budget_even_split_and_remainder_to_largest_classes():
    counts = [50, 40, 30, 30, 30, 30, 60]
    # 100 = 7 * 14 + 2: the two largest classes (60 NE, 50 SU) get one more
    assert labeled_budget("balanced", 100, counts, CLASS_NAMES).tolist() == [
        15,
        14,
        14,
        14,
        14,
        14,
        15,
    ]


def test_balanced_budget_redistributes_a_short_class():
    counts = [50, 4, 30, 30, 30, 30, 30]
    # share 70 // 7 = 10; Fear gives its 4, the other 66 split over 6 classes = 11 each
    assert labeled_budget("balanced", 70, counts, CLASS_NAMES).tolist() == [
        11,
        4,
        11,
        11,
        11,
        11,
        11,
    ]
    # 71: 67 over 6 = 11 rest 1, which goes to Surprise (50 images, the most)
    per_class = labeled_budget("balanced", 71, counts, CLASS_NAMES)
    assert per_class.tolist() == [12, 4, 11, 11, 11, 11, 11]


def test_balanced_budget_cascades_until_stable():
    counts = [100, 3, 12, 100, 100, 100, 100]
    # share 10: Fear gives 3; 67 / 6 = 11 → Disgust (12) still fits; 67 = 6*11 + 1 → Surprise +1
    assert labeled_budget("balanced", 70, counts, CLASS_NAMES).tolist() == [
        12,
        3,
        11,
        11,
        11,
        11,
        11,
    ]
    counts = [100, 3, 8, 100, 100, 100, 100]
    # Fear 3, then share 11 > Disgust's 8: Disgust gives 8, 59 over 5 = 11 rest 4
    per_class = labeled_budget("balanced", 70, counts, CLASS_NAMES)
    assert per_class.tolist() == [12, 3, 8, 12, 12, 12, 11]
    assert per_class.sum() == 70 and (per_class <= counts).all()


def test_balanced_budget_never_gives_a_class_more_than_it_has():
    # share 4: Surprise gives its 1, then 2 each, where Fear (5) can take only 1 more
    per_class = labeled_budget("balanced", 13, [1, 5, 7], CLASS_NAMES[:3])
    assert per_class.tolist() == [1, 5, 7]


def test_the_draw_of_a_seed_stays_the_same():
    """The labeled images a seed draws are part of every published result: the same data,
    budget and seed must give these images in every version (recorded from the draw)."""
    data = fake_data([6] * 7, rule="balanced")
    assert make_split(data, 7, seed=3).labeled.tolist() == [6, 18, 19, 21, 24, 37, 41]
    with_val = make_split(data, 7, seed=3, val_fraction=0.34)
    assert with_val.labeled.tolist() == [0, 3, 4, 8, 20, 28, 34]
    assert with_val.val.tolist() == [6, 9, 11, 16, 18, 19, 21, 24, 25, 33, 36, 37, 39, 41]


def test_budget_errors_and_all_labeled():
    with pytest.raises(ValueError, match="must be positive or -1"):
        labeled_budget("balanced", 0, RAF_TRAIN_COUNTS, CLASS_NAMES)
    eight = (*CLASS_NAMES, "Contempt")
    with pytest.raises(ValueError, match="needs the 7 canonical classes with Fear at id 1"):
        labeled_budget("rafdb", 100, (*RAF_TRAIN_COUNTS, 500), eight)
    with pytest.raises(ValueError, match="exceeds the 12271"):
        labeled_budget("balanced", 12272, RAF_TRAIN_COUNTS, CLASS_NAMES)
    with pytest.raises(ValueError, match="unknown split rule"):
        labeled_budget("fixed", 100, RAF_TRAIN_COUNTS, CLASS_NAMES)
    everything = labeled_budget("rafdb", -1, RAF_TRAIN_COUNTS, CLASS_NAMES)
    assert everything.tolist() == list(RAF_TRAIN_COUNTS)


def test_make_split_counts_disjoint_cover_and_sorted():
    data = fake_data(RAF_TRAIN_COUNTS)
    split = make_split(data, 100, seed=0)
    labels = data.train.labels
    assert np.bincount(labels[split.labeled], minlength=7).tolist() == [15, 10, 15, 15, 15, 15, 15]
    assert split.per_class["Fear"] == 10 and split.per_class["Neutral"] == 15
    both = np.concatenate([split.labeled, split.unlabeled])
    assert len(np.intersect1d(split.labeled, split.unlabeled)) == 0
    assert np.array_equal(np.sort(both), np.arange(len(labels)))
    assert (np.diff(split.labeled) > 0).all() and (np.diff(split.unlabeled) > 0).all()
    assert len(split.val) == 0 and split.rule == "rafdb"


def test_make_split_deterministic_per_seed():
    data = fake_data(RAF_TRAIN_COUNTS)
    first, again = make_split(data, 400, seed=3), make_split(data, 400, seed=3)
    other = make_split(data, 400, seed=4)
    assert np.array_equal(first.labeled, again.labeled)
    assert not np.array_equal(first.labeled, other.labeled)
    assert np.bincount(data.train.labels[other.labeled]).tolist() == [60, 40, 60, 60, 60, 60, 60]


def test_val_carve_out_is_stratified_and_disjoint():
    counts = [100, 50, 20, 200, 100, 40, 60]
    data = fake_data(counts, rule="balanced")
    split = make_split(data, 70, seed=1, val_fraction=0.1)
    labels = data.train.labels
    assert np.bincount(labels[split.val], minlength=7).tolist() == [10, 5, 2, 20, 10, 4, 6]
    parts = np.concatenate([split.labeled, split.unlabeled, split.val])
    assert np.array_equal(np.sort(parts), np.arange(len(labels)))
    assert split.per_class == {name: 10 for name in CLASS_NAMES}


def test_a_budget_the_validation_set_leaves_short_says_so():
    data = fake_data([10, 10], rule="balanced", names=("cat", "dog"))
    with pytest.raises(LabelBudgetError, match=r"the 16 .*val_fraction=0.2 set 4 aside"):
        make_split(data, 20, seed=0, val_fraction=0.2)
    with pytest.raises(LabelBudgetError, match="exceeds the 20 labeled training images; lower"):
        make_split(data, 21, seed=0)
    assert len(make_split(data, 16, seed=0, val_fraction=0.2).labeled) == 16


def test_unlabeled_training_entries_stay_unlabeled():
    data = fake_data([5] * 7, rule="balanced")
    data.train.labels[:4] = -1
    split = make_split(data, 7, seed=0)
    assert set(range(4)) <= set(split.unlabeled.tolist())
    assert len(split.labeled) == 7


def test_save_load_round_trip(tmp_path):
    data = fake_data(RAF_TRAIN_COUNTS)
    split = make_split(data, 1000, seed=2, val_fraction=0.05)
    path = tmp_path / "split.json"
    split.save(path)
    loaded = load_split(path, data)
    for part in ("labeled", "unlabeled", "val"):
        assert np.array_equal(getattr(loaded, part), getattr(split, part))
    assert (loaded.seed, loaded.rule, loaded.num_labels) == (2, "rafdb", 1000)
    assert loaded.per_class == split.per_class and loaded.source_hash == source_hash(data.train)
    assert loaded.labeled.dtype == np.int64 and loaded.val_fraction == 0.05
    assert Split.load(path).counts()["labeled"] == 1000
    counts = json.loads(path.read_text())["counts"]
    assert counts == {"labeled": 1000, "unlabeled": len(split.unlabeled), "val": len(split.val)}


def test_a_split_file_that_is_not_one_is_named(tmp_path):
    path = tmp_path / "split.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="split file .*split.json is not valid JSON"):
        Split.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="holds no JSON object; it was not written by lionfer"):
        Split.load(path)
    make_split(fake_data([10] * 7, rule="balanced"), 14, seed=0).save(path)
    payload = json.loads(path.read_text())
    path.write_text(json.dumps({**payload, "extra_unlabeled_ids": "u/a.jpg"}))
    with pytest.raises(InputError, match="extra_unlabeled_ids must be a list; it is corrupt"):
        Split.load(path)


def test_a_split_file_an_editor_saved_with_a_byte_order_mark_is_read(tmp_path):
    data = fake_data(RAF_TRAIN_COUNTS)
    split, path = make_split(data, 1000, seed=2), tmp_path / "split.json"
    split.save(path)
    path.write_text(path.read_text(encoding="utf-8"), encoding="utf-8-sig")  # as Notepad saves it
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert np.array_equal(load_split(path, data).labeled, split.labeled)


def test_load_split_rejects_another_label_list(tmp_path):
    data = fake_data(RAF_TRAIN_COUNTS)
    path = tmp_path / "split.json"
    make_split(data, 100, seed=0).save(path)
    relabeled = fake_data(RAF_TRAIN_COUNTS)
    relabeled.train.labels[0] = (relabeled.train.labels[0] + 1) % 7
    with pytest.raises(ValueError, match="another dataset or label list"):
        load_split(path, relabeled)
    with pytest.raises(ValueError, match="another dataset or label list"):
        load_split(path, fake_data([10] * 7))


def test_load_split_rejects_corrupt_indices(tmp_path):
    data = fake_data([10] * 7, rule="balanced")
    split = make_split(data, 14, seed=0)
    bad = Split(
        split.labeled,
        split.unlabeled[:-1],
        split.val,
        0,
        "balanced",
        14,
        split.per_class,
        split.source_hash,
    )
    bad.save(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="exactly once"):
        load_split(tmp_path / "bad.json", data)
    with pytest.raises(FileNotFoundError, match="split file not found"):
        load_split(tmp_path / "missing.json", data)


def test_source_hash_depends_on_ids_and_labels():
    data = fake_data([3] * 7)
    base = source_hash(data.train)
    assert len(base) == 16 and base == source_hash(fake_data([3] * 7).train)
    renamed = data.train.subset(np.arange(len(data.train)))
    renamed.ids[0] = "other.jpg"
    assert source_hash(renamed) != base


def test_source_hash_takes_a_name_that_is_not_utf8():
    """A file name Python holds with surrogate escapes (Latin-1 bytes) is hashed by its bytes."""
    data = fake_data([3] * 7)
    data.train.ids[0] = os.fsdecode(b"caf\xe9.jpg")
    latin1 = source_hash(data.train)
    data.train.ids[0] = "caf\u00e9.jpg"  # the same name in UTF-8: other bytes
    assert len(latin1) == 16 and latin1 != source_hash(data.train)


def test_stratified_holdout_is_seeded_and_per_class():
    labels = np.repeat(np.arange(3), [10, 20, 5])
    held = stratified_holdout(labels, 0.2, seed=0)
    assert np.bincount(labels[held]).tolist() == [2, 4, 1]
    assert np.array_equal(held, stratified_holdout(labels, 0.2, seed=0))
    assert not np.array_equal(held, stratified_holdout(labels, 0.2, seed=1))


def with_extra_unlabeled(data: FERData, names: list[str]) -> FERData:
    data.unlabeled = ImageSet(images=list(names), labels=np.full(len(names), -1), ids=names)
    return data


def test_split_file_records_and_checks_the_extra_unlabeled_images(tmp_path):
    names = [f"unlabeled/{k}.jpg" for k in range(301)]
    data = with_extra_unlabeled(fake_data([10] * 7, rule="balanced"), names)
    path = tmp_path / "split.json"
    make_split(data, 14, seed=0).save(path)
    assert load_split(path, data).extra_unlabeled_ids == names
    one_gone = with_extra_unlabeled(fake_data([10] * 7, rule="balanced"), names[:-1])
    with pytest.raises(
        InputError, match=r"301 then, 300 now; missing: unlabeled/300.jpg; new: none"
    ):
        load_split(path, one_gone)
    shuffled = with_extra_unlabeled(fake_data([10] * 7, rule="balanced"), names[::-1])
    with pytest.raises(InputError, match="the same images in another order"):
        load_split(path, shuffled)


def test_an_old_split_file_is_read_and_says_what_is_not_checked(tmp_path):
    data = with_extra_unlabeled(fake_data([10] * 7, rule="balanced"), ["u/a.jpg", "u/b.jpg"])
    path = tmp_path / "split.json"
    make_split(data, 14, seed=0).save(path)
    payload = json.loads(path.read_text())
    del payload["extra_unlabeled_ids"]  # written before lionfer recorded them
    path.write_text(json.dumps(payload))
    with pytest.warns(UserWarning, match="are not checked against it"):
        split = load_split(path, data)
    assert split.extra_unlabeled_ids == ["u/a.jpg", "u/b.jpg"]  # a run saving it records them
    assert any("predates the unlabeled-set check" in note for note in data.notes)


def test_a_split_file_records_its_test_set_and_says_when_it_changed(tmp_path):
    """The test set a split was made beside is recorded (hash and count): resuming on other
    test images is refused (the run's evaluations would mix two test sets), evaluating a
    finished run on them is said, and a split file given to a new run keeps its training split
    with a note. Another training list is refused in words that fit a resumed run."""
    data = fake_data([10] * 7, rule="balanced")
    path = tmp_path / "run" / "split.json"
    path.parent.mkdir()
    make_split(data, 14, seed=0).save(path)
    payload = json.loads(path.read_text())
    assert payload["num_test"] == 3 and payload["test_hash"] == source_hash(data.test)
    assert payload["val_fraction"] == 0.0
    assert load_split(path, data, "resume").test_hash == source_hash(data.test)
    more_tests = fake_data([10] * 7, rule="balanced")
    more_tests.test = more_tests.train.subset(np.arange(5))
    with pytest.raises(InputError, match=r"test images or their labels changed since the run in"):
        load_split(path, more_tests, "resume")
    with pytest.raises(InputError, match=r"\(3 then, 5 now\)"):
        load_split(path, more_tests, "resume")
    with pytest.warns(UserWarning, match="not those the run in .* was evaluated on"):
        load_split(path, more_tests, "finished")
    with pytest.warns(UserWarning, match="made beside other test images"):
        split = load_split(path, more_tests)
    assert np.array_equal(split.labeled, make_split(data, 14, seed=0).labeled)
    # the new run records the test set it is tested on, so that it can be resumed
    assert (split.test_hash, split.num_test) == (source_hash(more_tests.test), 5)
    split.save(tmp_path / "new_run.json")
    assert load_split(tmp_path / "new_run.json", more_tests, "resume").num_test == 5
    assert any("tested on the test set as it is now" in note for note in more_tests.notes)
    relabeled_test = fake_data([10] * 7, rule="balanced")
    relabeled_test.test = relabeled_test.test.subset(np.arange(3))  # not a view of train's
    relabeled_test.test.labels[0] = (relabeled_test.test.labels[0] + 1) % 7
    with pytest.raises(InputError, match="test images or their labels changed"):
        load_split(path, relabeled_test, "resume")
    grown = fake_data([11] * 7, rule="balanced")
    with pytest.raises(InputError, match=r"changed since the run in .* \(70 images then, 77 now"):
        load_split(path, grown, "resume")
    with pytest.raises(InputError, match="another dataset or label list"):
        load_split(path, grown)


def test_a_split_file_from_before_the_test_set_was_recorded_is_not_checked_for_it(tmp_path):
    data = fake_data([10] * 7, rule="balanced")
    path = tmp_path / "split.json"
    make_split(data, 14, seed=0).save(path)
    payload = json.loads(path.read_text())
    for key in ("test_hash", "num_test", "val_fraction"):
        del payload[key]
    path.write_text(json.dumps(payload))
    other = fake_data([10] * 7, rule="balanced")
    other.test = other.train.subset(np.arange(5))
    split = load_split(path, other, "resume")
    assert split.test_hash == "" and split.num_test is None and split.val_fraction is None
    assert not other.notes


def test_a_split_file_must_match_the_budget_and_validation_asked(tmp_path):
    """data.split_file with another data.num_labels or data.val_fraction than the file's is
    refused (the run was named by the budget asked and trained on the file's; validation asked
    was test-set selection)."""
    from types import SimpleNamespace

    from lionfer.data.splits import check_split_settings

    data = fake_data([10] * 7, rule="balanced")
    path = tmp_path / "split.json"
    split = make_split(data, 21, seed=0)
    split.save(path)

    def cfg(num_labels=21, val_fraction=0.0):
        return SimpleNamespace(num_labels=num_labels, val_fraction=val_fraction)

    check_split_settings(split, cfg(), path)
    check_split_settings(split, cfg(num_labels=-1), path)  # the algorithm's own check
    with pytest.raises(InputError, match=r"data.num_labels=35, but split file .* labels 21"):
        check_split_settings(split, cfg(num_labels=35), path)
    with pytest.raises(InputError, match=r"data.val_fraction=0.25, but split file .* holds none"):
        check_split_settings(split, cfg(val_fraction=0.25), path)
    with_val = make_split(data, 14, seed=0, val_fraction=0.2)
    with pytest.raises(InputError, match=r"holds 14 validation images \(made with .*=0.2\)"):
        check_split_settings(with_val, cfg(num_labels=14), path)
    check_split_settings(with_val, cfg(num_labels=14, val_fraction=0.2), path)
    old = Split.load(path)  # a split file from before val_fraction was recorded
    object.__setattr__(old, "val_fraction", None)
    check_split_settings(old, cfg(), path)
    with pytest.raises(InputError, match="holds none"):
        check_split_settings(old, cfg(val_fraction=0.1), path)


def test_a_run_checks_its_split_file_against_the_settings_and_the_test_set(tiny_cfg, tmp_path):
    """build_run_data with data.split_file: the budget asked must be the file's; other test
    images are noted for a new run and refused on resume."""
    import dataclasses

    from lionfer.data.pipeline import build_run_data

    cfg = tiny_cfg().data
    made = build_run_data(cfg, 0).split
    path = tmp_path / "run" / "split.json"
    path.parent.mkdir()
    made.save(path)
    given = dataclasses.replace(cfg, split_file=str(path))
    assert np.array_equal(build_run_data(given, 1).split.labeled, made.labeled)
    with pytest.raises(InputError, match=r"data.num_labels=35, but split file .* labels 28"):
        build_run_data(dataclasses.replace(given, num_labels=35), 0)
    with pytest.raises(InputError, match=r"data.val_fraction=0.2, but split file"):
        build_run_data(dataclasses.replace(given, val_fraction=0.2), 0)
    more_tests = dataclasses.replace(given, num_test=cfg.num_test + 7)  # the same training set
    with pytest.warns(UserWarning, match="made beside other test images"):
        assert len(build_run_data(more_tests, 0).test) == cfg.num_test + 7
    with pytest.raises(
        InputError, match=r"test images .* changed since the run in .*\(70 then, 77"
    ):
        build_run_data(more_tests, 0, reread="resume")


def test_the_digest_of_a_split_is_that_of_its_positions():
    data = fake_data([40, 20, 30, 50, 30, 20, 40])
    split = make_split(data, 70, seed=0, val_fraction=0.1, rule="balanced")
    same = make_split(data, 70, seed=0, val_fraction=0.1, rule="balanced")
    assert split_digest(split) == split_digest(same)
    assert split_digest(split) != split_digest(make_split(data, 70, 1, 0.1, "balanced"))
    moved = dataclasses.replace(split, unlabeled=split.unlabeled[::-1])  # the same images
    assert split_digest(moved) != split_digest(split)
    val_first = dataclasses.replace(split, labeled=split.val, val=split.labeled)
    assert split_digest(val_first) != split_digest(split)


def test_a_runs_split_is_checked_against_the_record_of_its_checkpoint(tmp_path):
    data = fake_data([40, 20, 30, 50, 30, 20, 40])
    split = make_split(data, 70, seed=0, val_fraction=0.1, rule="balanced")
    record = split_record(split)
    path = tmp_path / "run" / "split.json"
    check_run_split(split, record, path, "resume")  # its own
    other = make_split(data, 70, seed=1, val_fraction=0.1, rule="balanced")
    lost = len(np.setdiff1d(split.labeled, other.labeled))
    with pytest.raises(InputError) as info:
        check_run_split(other, record, path, "resume")
    message = str(info.value)
    assert message.startswith(f"{path} is not the split the run in {path.parent} trained on: ")
    assert f"its labeled images are not the ones the run trained on: {lost} of 70 differ" in message
    assert "it was drawn with seed=1, the run's with seed=0" in message
    assert "put back the run's own split.json" in message and "--out NEW" in message
    smaller = make_split(data, 35, seed=0, val_fraction=0.1, rule="balanced")
    with pytest.raises(InputError, match="it lists 35 labeled images, the run's split 70"):
        check_run_split(smaller, record, path, "finished")
    without_val = make_split(data, 70, seed=0, rule="balanced")
    with pytest.raises(InputError, match=r"it lists 0 validation images, the run's split 23"):
        check_run_split(without_val, record, path, "finished")
    relabeled = dataclasses.replace(split, source_hash="0" * 16)
    with pytest.raises(InputError, match="made for other training images or labels"):
        check_run_split(relabeled, record, path, "finished")


def test_without_a_record_a_drawn_split_is_checked_against_the_runs_settings(tmp_path):
    data = fake_data([40, 20, 30, 50, 30, 20, 40])
    split = make_split(data, 70, seed=1, rule="balanced")
    path = tmp_path / "split.json"
    settings = {"seed": 0, "data.num_labels": 70, "data.val_fraction": 0.0, "data.split_file": ""}
    with pytest.raises(InputError, match="it was drawn with seed=1, the run has seed=0"):
        check_run_split(split, None, path, "resume", settings)
    check_run_split(split, None, path, "resume", {**settings, "seed": 1})
    check_run_split(split, None, path, "resume", {**settings, "data.split_file": "made.json"})
    check_run_split(split, None, path, "resume")  # nothing to compare with
    every = make_split(data, -1, seed=1, rule="balanced")  # as an all-labels algorithm draws
    check_run_split(every, None, path, "resume", {**settings, "seed": 1})


def _run_split(extra=("u/a.jpg", "u/b.jpg")):
    data = with_extra_unlabeled(fake_data([40, 20, 30, 50, 30, 20, 40]), list(extra))
    return make_split(data, 70, seed=0, val_fraction=0.1, rule="balanced")


def _refusal(split, record, path, reread="finished") -> str:
    with pytest.raises(InputError) as info:
        check_run_split(split, record, path, reread)
    return str(info.value)


def _in_dtype(split: Split, dtype: str) -> Split:
    """The same split with its index arrays held in another dtype."""
    lists = {key: getattr(split, key).astype(dtype) for key in ("labeled", "unlabeled", "val")}
    return dataclasses.replace(split, **lists)


def test_the_digest_is_16_hex_chars_whatever_the_index_dtype():
    """split_digest is of the positions, not of how the arrays hold them: int32 or big-endian
    index arrays (as np.load may give) digest as the int64 ones."""
    split = _run_split()
    digest = split_digest(split)
    assert len(digest) == 16 and int(digest, 16) >= 0
    for dtype in ("<i4", ">i8"):
        assert split_digest(_in_dtype(split, dtype)) == digest


def test_a_split_in_other_index_dtypes_is_the_runs_and_its_record_fits_a_checkpoint(tmp_path):
    """A run's split whose index arrays are int32 or big-endian is the split it recorded; its
    record keeps int64 copies of the labeled and val lists, so a checkpoint can hold them as
    tensors and read them back."""
    from lionfer.training.checkpoint import saved_split, split_state

    split = _run_split()
    path = tmp_path / "run" / "split.json"
    for dtype in ("<i4", ">i8"):
        other = _in_dtype(split, dtype)
        check_run_split(other, split_record(split), path, "resume")
        check_run_split(split, split_record(other), path, "resume")
        record = split_record(other)
        assert record["labeled"].dtype == np.int64 and record["val"].dtype == np.int64
        assert np.array_equal(record["labeled"], split.labeled)
        assert np.array_equal(record["val"], split.val)
        read_back = saved_split({"split": split_state(other)})
        assert np.array_equal(read_back["labeled"], split.labeled)
        check_run_split(split, read_back, path, "resume")


def test_a_record_of_extra_unlabeled_ids_is_a_16_char_hash_and_none_without_them():
    assert ids_hash(None) is None
    hashed = ids_hash(["u/a.jpg", "u/b.jpg"])
    assert len(hashed) == 16 and int(hashed, 16) >= 0
    assert hashed == ids_hash(["u/a.jpg", "u/b.jpg"])
    assert hashed != ids_hash(["u/b.jpg", "u/a.jpg"]) and hashed != ids_hash(["u/a.jpg"])
    assert (
        split_record(dataclasses.replace(_run_split(), extra_unlabeled_ids=None))["extra_unlabeled"]
        is None
    )


def test_a_split_listing_its_unlabeled_images_in_another_order_is_refused(tmp_path):
    """The same labeled and val lists, but the unlabeled ones in another order: the unlabeled
    per-image state would land on other images."""
    split = _run_split()
    moved = dataclasses.replace(split, unlabeled=split.unlabeled[::-1].copy())
    message = _refusal(moved, split_record(split), tmp_path / "run" / "split.json")
    assert "its unlabeled images are not listed as the run's were" in message


def test_a_split_beside_other_extra_unlabeled_images_is_refused(tmp_path):
    """Another extra unlabeled set (recorded on both sides) is named; where either side does
    not record it (a split file from before it was recorded) it is not compared."""
    split = _run_split()
    path = tmp_path / "run" / "split.json"
    record = split_record(split)
    for extra in (["u/a.jpg"], ["u/b.jpg", "u/a.jpg"], []):
        other = dataclasses.replace(split, extra_unlabeled_ids=extra)
        message = _refusal(other, record, path)
        assert message.startswith(f"{path} is not the split the run in {path.parent} trained on: ")
        assert "it lists other extra unlabeled images" in message
    unrecorded = dataclasses.replace(split, extra_unlabeled_ids=None)
    check_run_split(unrecorded, record, path, "resume")  # the split file does not record them
    check_run_split(split, split_record(unrecorded), path, "resume")  # nor did the checkpoint
    check_run_split(unrecorded, split_record(unrecorded), path, "resume")


def test_the_same_positions_recorded_with_another_seed_or_budget_are_the_runs(tmp_path):
    """The check is of positions: a split.json whose index lists are the run's is not refused
    for the seed or budget it records; where the lists differ, each is named beside them."""
    split = _run_split()
    record = split_record(split)
    path = tmp_path / "run" / "split.json"
    check_run_split(dataclasses.replace(split, seed=5), record, path, "resume")
    check_run_split(dataclasses.replace(split, num_labels=35), record, path, "resume")
    check_run_split(dataclasses.replace(split, seed=5, num_labels=35), record, path, "resume")
    data = with_extra_unlabeled(fake_data([40, 20, 30, 50, 30, 20, 40]), ["u/a.jpg", "u/b.jpg"])
    smaller = make_split(data, 35, seed=0, val_fraction=0.1, rule="balanced")
    message = _refusal(smaller, record, path)
    assert "it was drawn with data.num_labels=35, the run's with data.num_labels=70" in message
    assert "seed=" not in message  # the seeds are the same
    reseeded = make_split(data, 70, seed=1, val_fraction=0.1, rule="balanced")
    message = _refusal(reseeded, record, path)
    assert "it was drawn with seed=1, the run's with seed=0" in message
    assert "data.num_labels=" not in message  # the budgets are the same


def test_a_refusal_lists_each_difference_and_the_fix_for_how_the_split_was_read(tmp_path):
    split = _run_split()
    record = split_record(split)
    path = tmp_path / "run" / "split.json"
    other = dataclasses.replace(split, labeled=split.labeled[::-1].copy(), seed=3)
    message = _refusal(other, record, path, "finished")
    assert (
        "trained on: its labeled images are the run's, but listed in another order; "
        "it was drawn with seed=3, the run's with seed=0. The run's per-image state"
    ) in message
    assert message.endswith(
        "so it would land on other images: put back the run's own split.json (the one it wrote "
        "when it began)"
    )
    assert "--out NEW" not in message
    message = _refusal(other, record, path, "resume")
    assert message.endswith(
        "put back the run's own split.json (the one it wrote when it began), or train as a new "
        f"run (lionfer train {path.parent / 'config.toml'} --out NEW)"
    )


def test_without_a_record_the_budget_and_validation_fraction_are_compared(tmp_path):
    """A checkpoint saved before it recorded its split: a split drawn with another
    data.num_labels or data.val_fraction than the run's settings is refused; a setting the run's
    config does not hold, or a split file that does not record it, is not compared."""
    data = fake_data([40, 20, 30, 50, 30, 20, 40])
    path = tmp_path / "run" / "split.json"
    settings = {"seed": 0, "data.num_labels": 70, "data.val_fraction": 0.1, "data.split_file": ""}
    split = make_split(data, 70, seed=0, val_fraction=0.1, rule="balanced")
    check_run_split(split, None, path, "resume", settings)
    check_run_split(split, None, path, "resume", {**settings, "data.val_fraction": 0.1 + 1e-12})
    smaller = make_split(data, 35, seed=0, val_fraction=0.1, rule="balanced")
    with pytest.raises(
        InputError, match="it was drawn with data.num_labels=35, the run has data.num_labels=70"
    ):
        check_run_split(smaller, None, path, "resume", settings)
    without_val = make_split(data, 70, seed=0, rule="balanced")
    with pytest.raises(
        InputError,
        match=r"it was drawn with data.val_fraction=0, the run has data.val_fraction=0.1",
    ):
        check_run_split(without_val, None, path, "resume", settings)
    unset = {k: v for k, v in settings.items() if k not in ("data.num_labels", "data.val_fraction")}
    check_run_split(smaller, None, path, "resume", unset)
    check_run_split(without_val, None, path, "resume", unset)
    old_file = dataclasses.replace(without_val, val_fraction=None)  # not recorded
    check_run_split(old_file, None, path, "resume", settings)


def test_the_digest_a_checkpoint_records_stays_the_same():
    """Checkpoints keep the digest of their run's split and of its extra unlabeled images: every
    later version must compute the same, or runs saved before could not be resumed (recorded
    from the digest)."""
    split = Split(np.array([3, 1, 4]), np.array([0, 2, 5, 6]), np.array([7]), 0, "balanced", 3)
    assert split_digest(split) == "750207d41b8e8f9b"
    assert ids_hash(["a.png", "b.png"]) == "1baca9d47fd86b4a"
