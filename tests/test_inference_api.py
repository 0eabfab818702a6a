"""The Python API's handling of what an application passes it: lionfer.load's arguments, the
inputs of predict, probabilities and embeddings (empty paths, empty or damaged images, objects
that are no image), a detector of your own that breaks its contract, and the table's types."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from predict_helpers import P_COLUMNS, blank, faces, make_checkpoint, scene

from lionfer.data.faces import Face
from lionfer.inference.predictor import InputError, load

# ---- lionfer.load ----


def test_checkpoint_best_beside_a_checkpoint_file_is_refused_not_ignored(tmp_path):
    run = tmp_path / "run"
    last = make_checkpoint(run / "checkpoints" / "last.pt", seed=1)
    best = make_checkpoint(run / "checkpoints" / "best.pt", seed=2)
    with pytest.raises(InputError, match=f"MODEL {last} is a file.*; pass {best}$"):
        load(last, checkpoint="best")  # it predicted with last.pt
    assert load(best, checkpoint="best").info.path == str(best)  # what it asks for: served
    assert load(run, checkpoint="best").info.path == str(best)
    alone = make_checkpoint(tmp_path / "model.pt")
    with pytest.raises(InputError, match="pass the run folder with it, or the checkpoint file"):
        load(alone, checkpoint="best")


def test_a_model_of_nan_weights_is_refused_and_a_failed_run_not_sent_to_its_error_pt(tmp_path):
    run = tmp_path / "run"
    (run / "config.toml").parent.mkdir()
    (run / "config.toml").write_text("")
    error = make_checkpoint(run / "checkpoints" / "error.pt")
    state = torch.load(error, weights_only=False)
    next(iter(state["ema"].values())).fill_(float("nan"))
    torch.save(state, error)
    with pytest.raises(InputError, match="error.pt, the state it failed in, is for inspection"):
        load(run)  # it named error.pt as the file to pass
    with pytest.raises(InputError, match=r"1 of the model's weight tensors hold NaN.*last.pt"):
        load(error)  # it predicted NaN probabilities labeled as the first class


def test_a_row_of_non_finite_probabilities_has_no_label(predictor):
    class Broken:
        def __getattr__(self, name):
            return getattr(inner, name)

        def __call__(self, batch, features=False):
            return np.full((len(batch), len(predictor.class_names)), np.nan)

    inner = predictor.classify
    predictor.classify = Broken()
    try:
        table = predictor.predict([faces()[0]], cropped=True)
    finally:
        predictor.classify = inner
    assert table["label"].isna().all() and (table["error"] == "the model's probabilities are "
                                               "not finite").all()  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"embeddings": "no"}, "embeddings must be True or False, got 'no'"),
        ({"embeddings": 1}, "embeddings must be True or False, got 1"),
        ({"device": None}, "device must be a name such as 'cpu'.*'auto', got None"),
        ({"model": None}, r"MODEL must be a path \(a run folder.*got None"),
        ({"model": ""}, "MODEL '' is an empty path; give a run folder"),
    ],
)
def test_load_refuses_arguments_of_the_wrong_kind_with_what_to_pass(checkpoint, arguments, says):
    with pytest.raises(InputError, match=says):
        load(**{"model": checkpoint, **arguments})


def test_load_takes_device_auto_as_training_does(checkpoint):
    import torch

    predictor = load(checkpoint, device="auto")  # CUDA where visible, else the CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert predictor.classify.device.type == expected
    assert load(checkpoint, device=torch.device("cpu")).classify.device.type == "cpu"


# ---- inputs ----


def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch, predictor):
    scene(faces()).save(tmp_path / "private.png")
    monkeypatch.chdir(tmp_path)  # Path("") is "." : it predicted on everything below it
    for given in ("", "   ", ["private.png", ""]):
        with pytest.raises(InputError, match=r"input '( *)' is an empty path; give a file"):
            predictor.predict(given)
    assert predictor.predict(".")["source"].unique().tolist() == ["private.png"]  # said: read


def test_probabilities_and_embeddings_refuse_an_empty_image_naming_it(predictor):
    crop = faces((3,))[0]
    for empty, size in [
        (Image.new("RGB", (0, 0)), "0×0"),
        (np.zeros((0, 50, 3), np.uint8), "50×0"),
        (np.zeros((2, 0, 9, 3), np.uint8), "9×0"),  # a stack of empty images
    ]:
        for method in (predictor.probabilities, predictor.embeddings):
            with pytest.raises(InputError, match=rf"item 1 is an empty image \({size} pixels\)"):
                method([crop, empty])
    assert predictor.probabilities(np.zeros((0, 24, 24, 3), np.uint8)).shape == (0, 7)  # no crop


def _truncated_upload(image: Image.Image, fmt: str) -> bytes:
    data = io.BytesIO()
    image.save(data, fmt)
    return data.getvalue()[: len(data.getvalue()) // 2]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_damaged_image_opened_in_memory_is_an_unreadable_row_as_its_file(
    tmp_path, predictor, fmt
):
    photo = scene(faces())
    upload = _truncated_upload(photo, fmt)
    path = tmp_path / f"upload.{fmt.lower()}"
    path.write_bytes(upload)
    # Image.open decodes lazily: the damage showed in the EXIF check (a raw OSError ending the
    # whole call) or in detection (an "error: OSError" row, the kind that means a crash)
    table = predictor.predict([Image.open(io.BytesIO(upload)), photo, str(path)])
    errors = table["error"].tolist()
    assert errors[0].startswith("unreadable: the image cannot be decoded: its data is truncated")
    assert errors[1:3] == [None, None]  # the good photo's two faces are kept
    assert errors[3].startswith(f"unreadable: cannot read image {path}: the file is truncated")
    assert table["source"].tolist()[:2] == ["memory:0", "memory:1"]
    for method in (predictor.probabilities, predictor.embeddings):
        with pytest.raises(InputError, match="item 1: the image cannot be decoded: its data is"):
            method([faces((3,))[0], Image.open(io.BytesIO(upload))])


def test_an_image_closed_before_use_is_an_unreadable_row_that_says_so(tmp_path, predictor):
    scene(faces()).save(tmp_path / "photo.png")
    with Image.open(tmp_path / "photo.png") as opened:
        pass
    (error,) = predictor.predict(opened)["error"]
    assert error.startswith("unreadable: the image cannot be decoded: it was closed before use")
    assert "image.copy()" in error


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("face.png", " is a str, not a face crop .*; for files, use predict"),
        (Path("face.png"), " is a PosixPath, not a face crop .*; for files, use predict"),
        (None, r" is None, not a face crop \(a PIL image or a uint8 array\)$"),
        (b"\x89PNG\r\n", r" is a bytes object .*PIL.Image.open\(io.BytesIO\(data\)\)"),
        (
            np.zeros((2, 30, 30), np.uint8),
            r": an image array .* a stack of images must be \(N, H, W, 3\); for grayscale",
        ),
        (np.zeros((30, 30), np.float32), ": arrays must be uint8"),
    ],
)
def test_probabilities_and_embeddings_refuse_what_is_no_face_crop_by_name(predictor, item, says):
    for name in ("probabilities", "embeddings"):
        method = getattr(predictor, name)
        with pytest.raises(InputError, match=f"^{name}: item 0{says}"):
            method(item)
        with pytest.raises(InputError, match=f"^{name}: item 1{says}"):
            method([faces((3,))[0], item])


def test_predict_and_probabilities_take_any_iterable_of_images_alike(predictor):
    crops = [Image.fromarray(c) for c in faces((0, 3, 4))]
    expected = predictor.probabilities(crops)
    np.testing.assert_allclose(predictor.probabilities(c for c in crops), expected)
    table = predictor.predict((c for c in crops), cropped=True)  # it refused a generator
    np.testing.assert_allclose(table[P_COLUMNS].to_numpy(), expected)
    assert predictor.predict(pd.Series(crops), cropped=True)["source"].tolist() == [
        "memory:0", "memory:1", "memory:2",
    ]  # fmt: skip
    for item, says in ((None, "None"), (b"\xff\xd8", "a bytes object"), (3, "a int")):
        with pytest.raises(InputError, match=f"cannot predict on {says}"):
            predictor.predict(item)


def test_the_tables_column_types_do_not_depend_on_its_rows(checkpoint, tmp_path):
    predictor = load(checkpoint, detector="haar", embeddings=True)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    tables = {
        "faces": predictor.predict(scene(faces())),
        "no face": predictor.predict(blank()),
        "unreadable": predictor.predict(str(tmp_path / "broken.jpg")),
        "empty": predictor.predict([]),
        "mixed": predictor.predict([blank(), scene(faces())]),
    }
    types = {name: table.dtypes.astype(str).to_dict() for name, table in tables.items()}
    expected = {c: "float64" for c in predictor.columns}
    expected.update(frame="Int64", face="Int64", source="object", label="object", error="object")
    assert all(t == expected for t in types.values()), types
    assert tables["mixed"]["error"].tolist() == ["no face found", None, None]  # None, not NaN
    assert pd.concat(tables.values())["p_happiness"].dtype == "float64"


# ---- a detector of your own ----


def _one_box(box):
    def mine(image):
        return [Face(box, 0.9, None, "mine")]

    return mine


@pytest.mark.parametrize(
    ("box", "says"),
    [
        ((1000, 1000, 60, 70), r"\(1000, 1000, 60, 70\), which has no area inside the image"),
        ((-80, 20, 50, 50), r"\(-80, 20, 50, 50\), which has no area inside the image"),
        ((40, 30, 0, 0), r"\(40, 30, 0, 0\), which has no area, for a 320×160 image"),
        ((40, 30, -10, -10), r"\(40, 30, -10, -10\), which has no area, for a 320×160 image"),
        ((float("nan"), 30, 10, 10), r"\(nan, 30, 10, 10\), which is not finite"),
    ],
)
def test_a_box_holding_nothing_of_the_image_is_an_error_row_naming_the_detector(
    checkpoint, box, says
):
    predictor = load(checkpoint, detector=_one_box(box))
    table = predictor.predict([scene(faces()), Image.fromarray(faces((3,))[0])])
    error = table["error"].iloc[0]
    assert error.startswith("error: the face detector mine returned the box (x, y, w, h) = (")
    assert pd.Series([error]).str.contains(says).all(), error
    assert pd.isna(table["label"].iloc[0]) and table[P_COLUMNS].iloc[0].isna().all()
    assert len(table) == 2  # the other image's row is its own


def test_a_box_partly_outside_the_image_is_kept_as_the_detector_gave_it(checkpoint):
    # as MTCNN's boxes of a face cut by the edge are: reported as found, the crop padded black
    predictor = load(checkpoint, detector=_one_box((-10.0, -20.0, 60.0, 70.0)))
    table = predictor.predict(scene(faces()))
    assert table["error"].isna().all()
    assert table[["x", "y", "w", "h"]].values.tolist() == [[-10, -20, 60, 70]]


@pytest.mark.parametrize(
    ("returned", "says"),
    [
        (None, "returned None"),
        ([(10, 10, 50, 50)], "returned a list holding a tuple"),
        (Face((10, 10, 50, 50), 0.9, None, "mine"), "returned a Face;"),
        (
            [Face("10 10 50 50", 0.9, None, "mine")],
            "returned a Face whose box is '10 10 50 50', not 4 numbers",
        ),
        (
            [Face((10, 10, 50), 0.9, None, "mine")],
            r"returned a Face whose box is \(10, 10, 50\), not 4 numbers",
        ),
        ([Face((10, 10, 50, 50), "high", None, "mine")], "returned a Face whose score is 'high'"),
    ],
)
def test_a_detector_breaking_its_contract_stops_the_call_once(checkpoint, returned, says):
    calls = []

    def mine(image):
        calls.append(image.size)
        return returned

    predictor = load(checkpoint, detector=mine)
    with pytest.raises(InputError, match=f"the face detector mine {says}") as caught:
        predictor.predict([scene(faces()), blank(), blank()])
    assert "must return a list of lionfer.data.faces.Face(box, score" in str(caught.value)
    assert len(calls) == 1  # not an error row for each image
