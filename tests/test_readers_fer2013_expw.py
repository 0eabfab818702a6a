"""FER2013, FERPlus and ExpW readers on tiny hand-written copies: label maps class by class, the
Usage split, the official FERPlus majority rule, ExpW boxes and its seeded split, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lionfer.config_sections import DataConfig
from lionfer.data.datasets import expw, fer2013
from lionfer.data.pipeline import load_dataset
from lionfer.data.splits import stratified_holdout
from lionfer.errors import InputError

VOTE_HEADER = (
    "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
)
# FER2013 / ExpW id -> canonical id (0 SU, 1 FE, 2 DI, 3 HA, 4 SA, 5 AN, 6 NE).
FER_CANONICAL = {0: 5, 1: 2, 2: 1, 3: 3, 4: 4, 5: 0, 6: 6}


def cfg(dataset: str, root: Path, **overrides) -> DataConfig:
    return DataConfig(dataset=dataset, root=str(root), **overrides)


def pixels(value: int) -> str:
    return " ".join([str(value)] * 48 * 48)


def write_fer(path: Path, rows: list[tuple[int, int | str, str]]) -> Path:
    """rows: (emotion, pixel value or a raw pixel string, Usage)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["emotion,pixels,Usage"]
    lines += [f"{e},{pixels(p) if isinstance(p, int) else p},{u}" for e, p, u in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def fer_rows() -> list[tuple[int, int, str]]:
    """Training: emotions 0..6 (pixel value 10*e); PrivateTest: 0..6; PublicTest: 3 rows."""
    rows = [(e, 10 * e, "Training") for e in range(7)]
    rows += [(e, 100 + e, "PrivateTest") for e in range(7)]
    rows += [(e, 200, "PublicTest") for e in (0, 3, 5)]
    return rows


# --- FER2013 --------------------------------------------------------------------------------


def test_fer2013_maps_every_class_and_splits_by_usage(tmp_path):
    write_fer(tmp_path / "fer2013.csv", fer_rows())
    data = fer2013.load_fer2013(cfg("fer2013", tmp_path), seed=0)
    assert data.name == "fer2013" and data.split_rule == "balanced"
    assert data.train.labels.tolist() == [FER_CANONICAL[e] for e in range(7)]
    assert data.train.labels[0] == 5  # Angry -> Anger
    assert data.train.labels[5] == 0  # Surprise -> Surprise
    assert data.train.labels[2] == 1  # Fear -> Fear
    assert data.test.labels.tolist() == [FER_CANONICAL[e] for e in range(7)]
    assert data.train.images.shape == (7, 48, 48, 3) and data.train.images.dtype == np.uint8
    assert data.train.images[4].min() == data.train.images[4].max() == 40  # row 4's pixels
    assert data.test.images[0, 0, 0].tolist() == [100, 100, 100]
    assert data.train.ids[0] == "fer0000000.png" and data.test.ids[0] == "fer0000007.png"
    assert data.train.load(3).size == (48, 48)
    assert any("3 PublicTest rows (the validation set) are in neither" in n for n in data.notes)


def test_fer2013_label_file_overrides_the_csv(tmp_path):
    write_fer(tmp_path / "sub" / "icml.csv", fer_rows())
    data = fer2013.load_fer2013(cfg("fer2013", tmp_path, label_file="sub/icml.csv"), seed=0)
    assert len(data.train) == 7 and len(data.test) == 7


def test_fer2013_columns_in_any_order(tmp_path):
    text = "emotion, Usage, pixels\n" + "".join(f"{e},Training,{pixels(e)}\n" for e in range(7))
    (tmp_path / "fer2013.csv").write_text(text + f"5,PrivateTest,{pixels(1)}\n")
    data = fer2013.load_fer2013(cfg("fer2013", tmp_path), seed=0)
    assert len(data.train) == 7 and data.test.labels.tolist() == [0]


def test_fer2013_column_names_and_usage_values_in_any_case(tmp_path):
    write_fer(tmp_path / "plain" / "fer2013.csv", fer_rows())
    expected = fer2013.load_fer2013(cfg("fer2013", tmp_path / "plain"), seed=0)
    rows = [(e, p, usage.lower()) for e, p, usage in fer_rows()]
    path = write_fer(tmp_path / "lower" / "fer2013.csv", rows)
    path.write_text(path.read_text().replace("emotion,pixels,Usage", "Emotion,PIXELS,usage", 1))
    data = fer2013.load_fer2013(cfg("fer2013", path.parent), seed=0)
    assert data.train.labels.tolist() == expected.train.labels.tolist()
    assert data.test.labels.tolist() == expected.test.labels.tolist()
    assert any("3 PublicTest rows (the validation set)" in note for note in data.notes)
    # FERPlus's votes file too: its header and Usage in lower case, still row-aligned
    root = fer_with_votes(tmp_path / "plus")
    votes_path = root / "fer2013new.csv"
    header, rest = votes_path.read_text().split("\n", 1)
    votes_path.write_text(header.lower() + "\n" + rest.replace("Training", "TRAINING"))
    data = fer2013.load_fer2013(cfg("fer2013", root, truth="ferplus"), 0)
    assert data.test.ids == ["fer0000012.png", "fer0000014.png"]


def test_fer2013_wrong_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected the file .*fer2013.csv"):
        fer2013.load_fer2013(cfg("fer2013", tmp_path), seed=0)
    with pytest.raises(ValueError, match="data.root is empty"):
        fer2013.load_fer2013(cfg("fer2013", ""), seed=0)


def test_fer2013_bad_pixel_row_fails_or_is_skipped(tmp_path):
    rows = fer_rows()
    rows[2] = (2, " ".join(["1"] * 100), "Training")  # line 4: 100 values, not 2304
    write_fer(tmp_path / "fer2013.csv", rows)
    with pytest.raises(ValueError, match=r"fer2013.csv, line 4: pixels must be 2304 integers"):
        fer2013.load_fer2013(cfg("fer2013", tmp_path), seed=0)
    data = fer2013.load_fer2013(cfg("fer2013", tmp_path, skip_bad=True), seed=0)
    assert len(data.train) == 6 and "fer0000002.png" not in data.train.ids
    assert "fer2013.csv: skipped 1 rows with bad pixels (first: line 4)" in data.notes


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ((7, 1, "Training"), r"line 3: label id 7 is out of range"),
        (("x", 1, "Training"), r"line 3: emotion is 'x', expected an integer"),
        ((1, 1, "Validation"), r"line 3: Usage is 'Validation'.*; fix that line"),
        ((1, pixels(1).replace("1", "256", 1), "Training"), r"line 3: pixels must be"),
        ((1, pixels(1).replace("1", "a", 1), "Training"), r"line 3: pixels must be"),
    ],
)
def test_fer2013_bad_rows_name_the_line(tmp_path, row, message):
    write_fer(tmp_path / "fer2013.csv", [fer_rows()[0], row] + fer_rows()[1:])
    with pytest.raises(ValueError, match=message):
        fer2013.load_fer2013(cfg("fer2013", tmp_path), seed=0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("emotion,pixels,Usage\n", "holds no usable rows"),
        ("emotion,Usage\n1,Training\n", r"lacks the columns \['pixels'\]"),
        (
            f"emotion,pixels,Usage\n1,{pixels(1)}\n",
            r"line 2: 2 fields, expected 3; fix or delete that line",
        ),
    ],
)
def test_fer2013_malformed_files(tmp_path, text, message):
    (tmp_path / "fer2013.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        fer2013.load_fer2013(cfg("fer2013", tmp_path), seed=0)


def test_a_reader_s_error_names_its_dataset_once(tmp_path):
    write_fer(tmp_path / "fer2013.csv", [r for r in fer_rows() if r[2] != "PrivateTest"])
    with pytest.raises(InputError, match=r"^fer2013: no usable PrivateTest rows"):
        load_dataset(cfg("fer2013", tmp_path), seed=0, check=())


def test_fer2013_refuses_eight_classes_and_variants(tmp_path):
    write_fer(tmp_path / "fer2013.csv", fer_rows())
    with pytest.raises(ValueError, match="no Contempt class"):
        fer2013.load_fer2013(cfg("fer2013", tmp_path, num_classes=8), seed=0)
    with pytest.raises(ValueError, match="variant is not used"):
        fer2013.load_fer2013(cfg("fer2013", tmp_path, variant="csv"), seed=0)


# --- FERPlus majority rule ------------------------------------------------------------------


def votes(**counts: int) -> list[int]:
    return [counts.get(c, 0) for c in fer2013.VOTE_COLUMNS]


def test_ferplus_majority_hand_made_rows():
    rows = [
        votes(fear=10),  # unanimous -> fear (6)
        votes(happiness=6, neutral=4),  # 6 > 5 -> happiness (1)
        votes(happiness=5, neutral=3, sadness=2),  # exactly half -> none
        votes(happiness=4, neutral=4),  # tie -> none
        votes(happiness=5, neutral=1, sadness=1, anger=1, fear=1, disgust=1),  # outliers removed
        votes(unknown=8, neutral=2),  # unknown wins (8)
        votes(NF=10),  # not a face (9)
        votes(contempt=7, anger=3),  # contempt (7)
        votes(),  # no votes
        votes(neutral=1, happiness=1, surprise=1),  # every vote an outlier
    ]
    assert fer2013.ferplus_majority(np.array(rows)).tolist() == [6, 1, -1, -1, 1, 8, 9, 7, -1, -1]


def test_ferplus_majority_outlier_removal_decides():
    # Raw: 5 of 10 is exactly half (no majority); after zeroing the single votes, 5 of 5 wins.
    row = votes(surprise=5, neutral=1, happiness=1, sadness=1, anger=1, fear=1)
    assert fer2013.ferplus_majority(np.array([row])).tolist() == [2]
    with pytest.raises(ValueError, match=r"votes must be \(N, 10\)"):
        fer2013.ferplus_majority(np.zeros((2, 8)))


# --- FERPlus reader -------------------------------------------------------------------------


def ferplus_release(root: Path, vote_rows: list[tuple[str, str, list[int]]]) -> Path:
    """fer2013.csv with one row per vote row (same Usage), and fer2013new.csv."""
    write_fer(root / "fer2013.csv", [(0, i, usage) for i, (usage, _, _) in enumerate(vote_rows)])
    lines = [VOTE_HEADER] + [
        f"{usage},{name},{','.join(map(str, row))}" for usage, name, row in vote_rows
    ]
    (root / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    return root


def plus_rows() -> list[tuple[str, str, list[int]]]:
    """Training rows 0..7 won by each emotion column in turn, then one row per drop reason."""
    rows = [("Training", "", votes(**{column: 10})) for column in fer2013.VOTE_COLUMNS[:8]]
    rows += [
        ("Training", "", votes(happiness=10)),  # no image name: dropped by FERPlus
        ("Training", "", votes(unknown=9, neutral=1)),
        ("Training", "", votes(NF=10)),
        ("Training", "", votes(happiness=4, neutral=4, fear=2)),  # no majority
        ("PrivateTest", "", votes(fear=7, surprise=3)),
        ("PrivateTest", "", votes(contempt=10)),
        ("PublicTest", "", votes(anger=10)),
    ]
    return [
        (usage, "" if i == 8 else f"fer{i:07d}.png", row) for i, (usage, _, row) in enumerate(rows)
    ]


def test_ferplus_maps_each_column_and_counts_drops(tmp_path):
    data = fer2013.load_ferplus(cfg("ferplus", ferplus_release(tmp_path, plus_rows())), seed=0)
    # columns neutral, happiness, surprise, sadness, anger, disgust, fear (contempt dropped)
    assert data.train.labels.tolist() == [6, 3, 0, 4, 5, 2, 1]
    assert data.train.ids == [f"fer{i:07d}.png" for i in range(7)]
    assert data.train.images[6, 0, 0, 0] == 6  # pixels of the same row
    assert data.test.labels.tolist() == [1]  # fear
    for note in (
        "ferplus: kept 9 of 15 rows (official majority vote)",
        "ferplus: dropped 1 rows without an image name (dropped by FERPlus)",
        "ferplus: dropped 1 rows without a majority",
        "ferplus: dropped 1 rows whose majority is unknown",
        "ferplus: dropped 1 rows whose majority is NF (not a face)",
        "ferplus: dropped 2 Contempt rows (7-class mode)",
    ):
        assert note in data.notes
    assert any("1 PublicTest rows" in note for note in data.notes)


def test_ferplus_eight_classes_keep_contempt(tmp_path):
    root = ferplus_release(tmp_path, plus_rows())
    data = fer2013.load_ferplus(cfg("ferplus", root, num_classes=8), seed=0)
    assert data.class_names[7] == "Contempt"
    assert data.train.labels.tolist() == [6, 3, 0, 4, 5, 2, 1, 7]
    assert data.test.labels.tolist() == [1, 7]


def test_ferplus_label_file_overrides_the_votes(tmp_path):
    root = ferplus_release(tmp_path, plus_rows())
    (root / "fer2013new.csv").rename(root / "votes.csv")
    with pytest.raises(FileNotFoundError, match="fer2013new.csv"):
        fer2013.load_ferplus(cfg("ferplus", root), seed=0)
    data = fer2013.load_ferplus(cfg("ferplus", root, label_file="votes.csv"), seed=0)
    assert len(data.train) == 7


def test_ferplus_files_must_be_row_aligned(tmp_path):
    rows = plus_rows()
    ferplus_release(tmp_path / "short", rows)
    lines = (tmp_path / "short" / "fer2013new.csv").read_text().splitlines()
    (tmp_path / "short" / "fer2013new.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="has 14 rows but .*fer2013.csv has 15"):
        fer2013.load_ferplus(cfg("ferplus", tmp_path / "short"), seed=0)

    swapped = list(rows)
    swapped[1], swapped[2] = rows[2], rows[1]
    ferplus_release(tmp_path / "swapped", swapped)
    with pytest.raises(ValueError, match=r"line 3: image fer0000002.png is on data row 1"):
        fer2013.load_ferplus(cfg("ferplus", tmp_path / "swapped"), seed=0)

    duplicated = list(rows)
    duplicated[3] = rows[2]
    ferplus_release(tmp_path / "duplicated", duplicated)
    with pytest.raises(ValueError, match="not row-aligned"):
        fer2013.load_ferplus(cfg("ferplus", tmp_path / "duplicated"), seed=0)

    root = ferplus_release(tmp_path / "usage", rows)
    write_fer(root / "fer2013.csv", [(0, 1, "PublicTest")] + [(0, 1, u) for u, _, _ in rows[1:]])
    with pytest.raises(ValueError, match=r"line 2: Usage 'Training' but .* says 'PublicTest'"):
        fer2013.load_ferplus(cfg("ferplus", root), seed=0)


@pytest.mark.parametrize(
    ("vote", "message"), [("-1", "a vote count is negative"), ("two", "neutral is 'two'")]
)
def test_ferplus_bad_votes_name_the_line(tmp_path, vote, message):
    root = ferplus_release(tmp_path, plus_rows())
    lines = (root / "fer2013new.csv").read_text().splitlines()
    lines[2] = lines[2].replace("Training,fer0000001.png,0,", f"Training,fer0000001.png,{vote},")
    (root / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"fer2013new.csv, line 3: {message}"):
        fer2013.load_ferplus(cfg("ferplus", root), seed=0)


def test_ferplus_empty_votes_file(tmp_path):
    root = ferplus_release(tmp_path, plus_rows())
    (root / "fer2013new.csv").write_text(VOTE_HEADER + "\n")
    with pytest.raises(ValueError, match="holds no rows"):
        fer2013.load_ferplus(cfg("ferplus", root), seed=0)


# --- FER2013 labels with FERPlus truth (data.truth=ferplus) --------------------------------

# (Usage, FER2013 emotion, image name, votes, truth, error type) per data row; canonical ids:
# 0 SU, 1 FE, 2 DI, 3 HA, 4 SA, 5 AN, 6 NE; error types: 0 none, 1 slip, 2 ambiguity, -1 unknown.
TRUTH_ROWS = [
    ("Training", 3, "fer0000000.png", votes(happiness=10), 3, 0),  # Happy, agreed
    ("Training", 0, "fer0000001.png", votes(neutral=9, anger=1), 6, 1),  # Angry got 1 vote
    ("Training", 4, "fer0000002.png", votes(neutral=6, sadness=4), 6, 2),  # Sad got 4 votes
    ("Training", 6, "fer0000003.png", votes(surprise=10), 0, 1),  # Neutral got none
    ("Training", 5, "fer0000004.png", votes(fear=8, surprise=2), 1, 2),  # 2 votes: ambiguity
    ("Training", 1, "fer0000005.png", votes(anger=7, disgust=1, sadness=1, neutral=1), 5, 1),
    ("Training", 2, "fer0000006.png", votes(fear=5, surprise=5), -1, -1),  # a tie
    ("Training", 3, "fer0000007.png", votes(happiness=5, neutral=5), -1, -1),  # exactly half
    ("Training", 3, "fer0000008.png", votes(unknown=8, happiness=2), -1, -1),
    ("Training", 3, "fer0000009.png", votes(NF=10), -1, -1),
    ("Training", 0, "fer0000010.png", votes(contempt=6, anger=4), -1, -1),  # 7 classes
    ("Training", 3, "", votes(happiness=10), -1, -1),  # dropped by FERPlus: no image name
    ("PrivateTest", 3, "fer0000012.png", votes(sadness=10), 4, 1),
    ("PrivateTest", 3, "fer0000013.png", votes(sadness=5, happiness=5), -1, -1),
    ("PrivateTest", 6, "fer0000014.png", votes(neutral=10), 6, 0),
    ("PublicTest", 3, "fer0000015.png", votes(happiness=10), 3, 0),
]


def fer_with_votes(root: Path, rows=TRUTH_ROWS, votes_name: str = "fer2013new.csv") -> Path:
    """fer2013.csv (pixel value = row index) and FERPlus's fer2013new.csv beside it."""
    write_fer(root / "fer2013.csv", [(e, i, usage) for i, (usage, e, *_) in enumerate(rows)])
    lines = [VOTE_HEADER] + [
        f"{usage},{name},{','.join(map(str, row))}" for usage, _, name, row, _, _ in rows
    ]
    (root / votes_name).write_text("\n".join(lines) + "\n")
    return root


def test_fer2013_ferplus_truth_and_error_types(tmp_path):
    data = fer2013.load_fer2013(cfg("fer2013", fer_with_votes(tmp_path), truth="ferplus"), 0)
    train = [row for row in TRUTH_ROWS if row[0] == "Training"]
    assert data.train.labels.tolist() == [FER_CANONICAL[row[1]] for row in train]  # as given
    assert data.train.true_labels.tolist() == [row[4] for row in train]
    assert data.train.error_types.tolist() == [row[5] for row in train]
    assert data.train.error_types.dtype == np.int8
    assert data.train.ids[1] == "fer0000001.png" and data.train.images[1, 0, 0, 0] == 1
    # the test set is labelled by the truth; the PrivateTest row without a majority is left out
    assert data.test.ids == ["fer0000012.png", "fer0000014.png"]
    assert data.test.labels.tolist() == data.test.true_labels.tolist() == [4, 6]
    assert (
        "fer2013: FERPlus majority truth for 6 of 12 training images (the rest keep an unknown "
        "truth); 5 of their FER2013 labels differ from it (3 slips: 0-1 votes for the given "
        "label; 2 ambiguous: 2 or more)"
    ) in data.notes
    assert any("1 PrivateTest rows without one are left out" in note for note in data.notes)
    # error types follow the labels into subsets (the labeled / unlabeled split)
    part = data.train.subset(np.array([2, 6]))
    assert part.error_types.tolist() == [2, -1] and part.true_labels.tolist() == [6, -1]


def test_ferplus_truth_rule_by_hand():
    given = np.array([3, 3, 3, 6])  # canonical: Happiness x3, Neutral
    rows = np.array(
        [
            votes(neutral=8, happiness=2),  # truth NE; HA got 2 -> ambiguity
            votes(neutral=8, happiness=1, fear=1),  # truth NE; HA got 1 -> slip
            votes(happiness=6, neutral=4),  # agreed -> none
            votes(neutral=4, happiness=4, surprise=2),  # no majority -> unknown
        ]
    )
    names = np.array([f"fer{i:07d}.png" for i in range(4)])
    truth, error = fer2013.ferplus_truth(names, rows, given)
    assert truth.tolist() == [6, 6, 3, -1]
    assert error.tolist() == [2, 1, 0, -1]


def test_fer2013_without_truth_has_none(tmp_path):
    data = fer2013.load_fer2013(cfg("fer2013", fer_with_votes(tmp_path)), seed=0)
    assert data.train.true_labels is None and data.train.error_types is None
    assert len(data.test) == 3  # PrivateTest by FER2013's own labels


def test_fer2013_truth_needs_the_votes_file_beside_the_csv(tmp_path):
    root = fer_with_votes(tmp_path, votes_name="elsewhere.csv")
    with pytest.raises(FileNotFoundError) as error:
        fer2013.load_fer2013(cfg("fer2013", root, truth="ferplus"), seed=0)
    message = str(error.value)
    assert f"expected the file {root / 'fer2013new.csv'}" in message
    assert "github.com/microsoft/FERPlus" in message
    # beside the CSV that data.label_file names
    sub = fer_with_votes(tmp_path / "sub")
    data = fer2013.load_fer2013(
        cfg("fer2013", tmp_path, label_file=str(sub / "fer2013.csv"), truth="ferplus"), seed=0
    )
    assert data.train.true_labels is not None


def test_fer2013_truth_files_must_be_row_aligned(tmp_path):
    rows = list(TRUTH_ROWS)
    rows[1], rows[2] = TRUTH_ROWS[2], TRUTH_ROWS[1]
    root = fer_with_votes(tmp_path, rows)
    write_fer(root / "fer2013.csv", [(e, i, u) for i, (u, e, *_) in enumerate(TRUTH_ROWS)])
    with pytest.raises(ValueError, match="is not row-aligned"):
        fer2013.load_fer2013(cfg("fer2013", root, truth="ferplus"), seed=0)


def test_data_truth_is_checked():
    from lionfer.errors import ConfigError

    with pytest.raises(ConfigError, match=r'data.truth: must be "" \(none\) or ferplus'):
        DataConfig(dataset="fer2013", truth="majority")
    with pytest.raises(ConfigError, match="ferplus is the truth of data.dataset=fer2013"):
        DataConfig(dataset="rafdb", truth="ferplus")


def test_fer2013_truth_through_a_run(tmp_path):
    """The split keeps truth and error types with the labeled images; a short LION run writes
    its summary with images of unknown truth among them."""
    from lionfer.config import load_config
    from lionfer.data.pipeline import build_run_data
    from lionfer.training.run import train

    rng = np.random.default_rng(0)
    rows = []
    for i in range(70):  # 8 training images per class, then 2 test images per class
        e = i % 7
        column = fer2013.VOTE_COLUMNS[labels_fer_to_plus(e)]
        other = "surprise" if column != "surprise" else "neutral"
        kind = (i // 7) % 3  # agreed, no majority, a slip
        row = [votes(**{column: 10}), votes(neutral=5, happiness=5), votes(**{other: 9, column: 1})]
        usage = "Training" if i < 56 else "PrivateTest"
        rows.append((usage, e, f"fer{i:07d}.png", row[kind], 0, 0))
    root = fer_with_votes(tmp_path / "data", rows)
    pix = " ".join(str(v) for v in rng.integers(0, 256, 48 * 48))
    lines = (root / "fer2013.csv").read_text().splitlines()
    lines = [lines[0]] + [f"{line.split(',')[0]},{pix},{line.split(',')[-1]}" for line in lines[1:]]
    (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
    overrides = [
        "data.dataset=fer2013",
        f"data.root={root}",
        "data.truth=ferplus",
        "data.num_labels=28",
        "data.image_size=24",
        "data.num_workers=0",
        "model.name=cnn_small",
        'model.pretrained=""',
        "model.feature_scale=1.0",
        "train.steps=2",
        "train.batch_size=4",
        "train.eval_every=2",
        "train.checkpoint_every=2",
        "train.log_every=1",
        "algorithm.name=lion",
    ]
    run_cfg = load_config(None, overrides)
    rd = build_run_data(run_cfg.data, 0)
    assert len(rd.labeled) == 28 and rd.labeled.error_types is not None
    assert (rd.labeled.true_labels == -1).any() and (rd.labeled.true_labels >= 0).any()
    assert len(rd.unlabeled.true_labels) == len(rd.unlabeled) == 28
    summary = train(run_cfg, tmp_path / "run", progress=False)
    assert summary["algorithm"] == "lion" and summary["steps"] == 2
    truth, given = rd.labeled.true_labels, rd.labeled.labels
    known = truth >= 0  # images without a majority stay out of the label-quality figures
    assert summary["relabel"]["wrong_given"] == int((given[known] != truth[known]).sum())
    assert summary["relabel"]["given_accuracy"] == pytest.approx(
        (given[known] == truth[known]).mean()
    )


def labels_fer_to_plus(emotion: int) -> int:
    """The FERPlus vote column of a FER2013 emotion id."""
    from lionfer import labels

    return int(labels.from_canonical([labels.FER2013[emotion]], labels.FERPLUS)[0])


# --- ExpW -----------------------------------------------------------------------------------


def expw_release(root: Path, lines: list[str], images: set[str] | None = None) -> Path:
    (root / "label").mkdir(parents=True, exist_ok=True)
    (root / "label" / "label.lst").write_text("\n".join(lines) + "\n")
    listed = {line.split()[0] for line in lines if line.strip()} - {"image_name"}
    names = images if images is not None else listed
    for name in names:
        path = root / "image" / "origin" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (300, 200), (10, 20, 30)).save(path)
    (root / "image" / "origin").mkdir(parents=True, exist_ok=True)
    return root


def expw_lines(per_class: int = 10) -> list[str]:
    """per_class faces of each expression, two faces per photo."""
    lines = []
    for e in range(7):
        for k in range(per_class):
            photo, face = f"e{e}_{k // 2}.jpg", k % 2
            lines.append(f"{photo} {face} {10 + face} {20} {60} {70 + face} 33.5 {e}")
    return lines


def test_expw_boxes_and_labels(tmp_path):
    root = expw_release(tmp_path, ["angry_actor_104.jpg 0 28 113 226 141 22.9362 0"] + expw_lines())
    data = expw.load(cfg("expw", root), seed=0)
    assert data.name == "expw" and data.split_rule == "balanced"
    both = {**dict(zip(data.train.ids, data.train.boxes.tolist(), strict=True)),
            **dict(zip(data.test.ids, data.test.boxes.tolist(), strict=True))}  # fmt: skip
    # top 28, left 113, right 226, bottom 141 -> x 113, y 28, w 113, h 113
    assert both["angry_actor_104.jpg#0"] == [113, 28, 113, 113]
    assert both["e3_0.jpg#1"] == [20, 11, 40, 60]
    labels = {**dict(zip(data.train.ids, data.train.labels.tolist(), strict=True)),
              **dict(zip(data.test.ids, data.test.labels.tolist(), strict=True))}  # fmt: skip
    assert labels["angry_actor_104.jpg#0"] == 5  # angry -> Anger
    for e in range(7):
        assert labels[f"e{e}_0.jpg#0"] == FER_CANONICAL[e]
    assert labels["e5_1.jpg#1"] == 0  # surprise -> Surprise
    _, _, w, h = data.train.boxes[0].tolist()
    assert data.train.load(0).size == (w, h)
    assert data.train.images[0].startswith(str(tmp_path / "image" / "origin"))


def test_expw_split_is_stratified_seeded_and_disjoint(tmp_path):
    root = expw_release(tmp_path, expw_lines())
    data = expw.load(cfg("expw", root), seed=0)
    assert len(data.train) == 56 and len(data.test) == 14
    assert np.bincount(data.test.labels, minlength=7).tolist() == [2] * 7
    assert not set(data.train.ids) & set(data.test.ids)
    again = expw.load(cfg("expw", root), seed=123)  # the run seed does not move the split
    assert again.test.ids == data.test.ids
    other = expw.load(cfg("expw", root, data_seed=1), seed=0)
    assert other.test.ids != data.test.ids
    assert any("no official split" in n and "56 train, 14 test" in n for n in data.notes)


def test_stratified_holdout_counts():
    classes = np.array([0] * 10 + [1] * 5 + [2] * 1)
    test = stratified_holdout(classes, 0.2, seed=3)
    assert np.bincount(classes[test], minlength=3).tolist() == [2, 1, 0]
    assert np.array_equal(test, stratified_holdout(classes, 0.2, seed=3))


def test_expw_degenerate_boxes_and_duplicates_are_counted(tmp_path):
    lines = expw_lines() + [
        "flat.jpg 0 50 40 10 90 9.0 3",  # right < left
        "flat.jpg 1 50 10 60 50 9.0 3",  # bottom == top
        expw_lines()[0],  # the same face again
    ]
    data = expw.load(cfg("expw", expw_release(tmp_path, lines)), seed=0)
    assert len(data.train) + len(data.test) == 70
    assert "expw: skipped 2 faces with an empty box" in data.notes
    assert "dropped 1 duplicate entries in expw label list (each kept once)" in data.notes


def test_expw_header_and_label_file(tmp_path):
    header = "image_name face_id_in_image face_box_top face_box_left face_box_right "
    header += "face_box_bottom face_box_cofidence expression_label"
    root = expw_release(tmp_path, [header] + expw_lines())
    (root / "label" / "label.lst").rename(root / "label" / "mine.lst")
    with pytest.raises(FileNotFoundError, match=r"label/label.lst"):
        expw.load(cfg("expw", root), seed=0)
    data = expw.load(cfg("expw", root, label_file="label/mine.lst"), seed=0)
    assert len(data.train) + len(data.test) == 70


def test_expw_missing_images(tmp_path):
    lines = expw_lines()
    names = {line.split()[0] for line in lines} - {"e2_0.jpg"}  # two faces lose their photo
    root = expw_release(tmp_path, lines, images=names)
    with pytest.raises(FileNotFoundError, match="2 of 70 listed images are missing.*e2_0.jpg"):
        expw.load(cfg("expw", root), seed=0)
    data = expw.load(cfg("expw", root, skip_bad=True), seed=0)
    assert len(data.train) + len(data.test) == 68
    assert any("skipped 2 missing files" in note for note in data.notes)
    empty = expw_release(tmp_path / "empty", lines, images=set())
    with pytest.raises(FileNotFoundError, match="data.root is probably wrong"):
        expw.load(cfg("expw", empty), seed=0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("x.jpg 0 1 2 3 4 5.0 7", r"label.lst, line 71: label id 7 is out of range"),
        ("x.jpg 0 1 2 3 4 5.0", r"line 71: 7 fields, expected 8 .*; fix or delete that line"),
        ("x.jpg 0 1 two 3 4 5.0 1", r"line 71: left is 'two', expected an integer"),
        ("x.jpg 0 1 2 3 4 high 1", r"line 71: confidence is 'high', expected a number"),
    ],
)
def test_expw_bad_lines_name_file_and_line(tmp_path, line, message):
    root = expw_release(tmp_path, expw_lines() + [line])
    with pytest.raises(ValueError, match=message):
        expw.load(cfg("expw", root), seed=0)


def test_expw_wrong_root_and_empty_list(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected the file .*label/label.lst"):
        expw.load(cfg("expw", tmp_path), seed=0)
    root = expw_release(tmp_path, [""], images=set())
    with pytest.raises(ValueError, match="lists no faces"):
        expw.load(cfg("expw", root), seed=0)
    with pytest.raises(ValueError, match="no Contempt class"):
        expw.load(cfg("expw", root, num_classes=8), seed=0)


# --- downloads as they arrive ----------------------------------------------------------------


def test_fer2013_download_left_packed_or_one_folder_down_says_what_to_do(tmp_path):
    import gzip

    source = write_fer(tmp_path / "src" / "fer2013.csv", fer_rows())
    packed = tmp_path / "packed"
    packed.mkdir()
    (packed / "fer2013.tar.gz").write_bytes(gzip.compress(source.read_bytes()))
    with pytest.raises(FileNotFoundError, match=r"Found fer2013.tar.gz in .*: unpack it"):
        fer2013.load_fer2013(cfg("fer2013", packed), seed=0)
    unpacked = tmp_path / "unpacked"
    write_fer(unpacked / "fer2013" / "fer2013.csv", fer_rows())  # the tarball's own folder
    with pytest.raises(FileNotFoundError, match=rf"set data.root={unpacked / 'fer2013'}$"):
        fer2013.load_fer2013(cfg("fer2013", unpacked), seed=0)
    kaggle = tmp_path / "kaggle"
    kaggle.mkdir()
    icml = source.read_text().replace("emotion,pixels,Usage", "emotion, pixels, Usage")
    (kaggle / "icml_face_data.csv").write_text(icml)
    with pytest.raises(FileNotFoundError, match="set data.label_file=icml_face_data.csv"):
        fer2013.load_fer2013(cfg("fer2013", kaggle), seed=0)
    data = fer2013.load_fer2013(cfg("fer2013", kaggle, label_file="icml_face_data.csv"), seed=0)
    assert data.train.labels.tolist() == [FER_CANONICAL[e] for e in range(7)]
    # gzip bytes under the CSV's own name (a browser that kept the encoding)
    (tmp_path / "named" / "fer2013.csv").parent.mkdir()
    (tmp_path / "named" / "fer2013.csv").write_bytes(gzip.compress(source.read_bytes()))
    with pytest.raises(ValueError, match=r"fer2013.csv is a gzip archive, not CSV text: unpack"):
        fer2013.load_fer2013(cfg("fer2013", tmp_path / "named"), seed=0)


def test_fer2013_csv_not_utf8_or_not_comma_separated(tmp_path):
    path = write_fer(tmp_path / "fer2013.csv", fer_rows())
    path.write_bytes(("\ufeff" + path.read_text()).encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"fer2013.csv, line 1: byte 0xff is not UTF-8 text"):
        fer2013.load_fer2013(cfg("fer2013", tmp_path), seed=0)
    path.write_text(write_fer(path, fer_rows()).read_text().replace(",", "\t"))
    with pytest.raises(ValueError, match=r"holds no comma; the file must be comma-separated"):
        fer2013.load_fer2013(cfg("fer2013", tmp_path), seed=0)


def test_fer2013_kaggle_train_csv_says_which_file_to_use(tmp_path):
    rows = [(e, p) for e, p, usage in fer_rows() if usage == "Training"]
    (tmp_path / "train.csv").write_text(
        "emotion,pixels\n" + "".join(f"{e},{pixels(p)}\n" for e, p in rows)
    )
    with pytest.raises(ValueError, match=r"lacks the columns \['Usage'\].*use fer2013.csv, or"):
        fer2013.load_fer2013(cfg("fer2013", tmp_path, label_file="train.csv"), seed=0)


def test_fer2013_truth_votes_in_a_folder_beside_say_move_them(tmp_path):
    root = fer_with_votes(tmp_path)
    (root / "FERPlus").mkdir()
    (root / "fer2013new.csv").rename(root / "FERPlus" / "fer2013new.csv")
    with pytest.raises(FileNotFoundError, match=rf"FERPlus/fer2013new.csv: move it into {root}$"):
        fer2013.load_fer2013(cfg("fer2013", root, truth="ferplus"), seed=0)


def test_expw_box_outside_the_photo_is_skipped_and_counted(tmp_path):
    lines = expw_lines() + [
        "left.jpg 0 10 -90 -20 60 9.0 3",  # left -90, right -20: ends left of the photo
        "above.jpg 0 -50 10 60 -5 9.0 3",  # top -50, bottom -5: ends above it
        "corner.jpg 0 -10 -10 30 30 9.0 3",  # partly inside: kept, cropped to the photo
    ]
    data = expw.load(cfg("expw", expw_release(tmp_path, lines)), seed=0)
    ids = data.train.ids + data.test.ids
    assert "left.jpg#0" not in ids and "above.jpg#0" not in ids and "corner.jpg#0" in ids
    assert (
        "expw: skipped 2 faces whose box lies outside the photo (ending left of or above it)"
        in data.notes
    )
    for part in (data.train, data.test):
        for i in range(len(part)):
            part.load(i)  # every kept box crops


def test_expw_photos_elsewhere_say_where(tmp_path):
    lines = expw_lines()
    packed = expw_release(tmp_path / "packed", lines, images=set())
    (packed / "image" / "origin").rmdir()
    (packed / "image" / "origin.7z.001").write_bytes(b"7z\xbc\xaf")
    with pytest.raises(FileNotFoundError, match=r"Found origin.7z.001: unpack the archive"):
        expw.load(cfg("expw", packed), seed=0)
    nested = expw_release(tmp_path / "nested", lines)
    origin = nested / "image" / "origin"
    origin.rename(nested / "image" / "photos")
    origin.mkdir()
    (nested / "image" / "photos").rename(origin / "origin")
    with pytest.raises(FileNotFoundError, match=rf"move the photos of {origin / 'origin'} into"):
        expw.load(cfg("expw", nested), seed=0)
    with pytest.raises(FileNotFoundError, match=rf"set data.root={nested}$"):
        expw.load(cfg("expw", nested / "label"), seed=0)


def test_expw_list_not_utf8_names_the_line(tmp_path):
    root = expw_release(tmp_path, expw_lines())
    path = root / "label" / "label.lst"
    path.write_bytes(path.read_bytes() + "caf\xe9.jpg 0 1 2 3 4 5.0 1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"label.lst, line 71: byte 0xe9 is not UTF-8 text"):
        expw.load(cfg("expw", root), seed=0)
