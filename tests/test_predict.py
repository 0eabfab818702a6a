"""lionfer.load and the Predictor: model files, faces, batches, rows, sources and videos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageOps, features
from predict_helpers import (
    IMAGE_SIZE,
    P_COLUMNS,
    blank,
    faces,
    make_checkpoint,
    scene,
    write_clip,
    write_mp4,
)

import lionfer
from lionfer.data import transforms
from lionfer.data.faces import Face
from lionfer.inference import predictor as P
from lionfer.inference.model_file import torch_model
from lionfer.inference.predictor import InputError, columns, load
from lionfer.inference.sources import ORIENTATION_TAG, Source, collect_sources
from lionfer.labels import CLASS_NAMES

REPO = Path(__file__).resolve().parents[1]


def two_faces(image: Image.Image) -> list[Face]:
    """A detector of our own: two faces (the smaller listed first) in every image that is not
    one flat colour."""
    if np.asarray(image).std() < 1:
        return []
    return [
        Face((150.0, 20.0, 40.0, 40.0), 0.95, None, "stub"),
        Face((10.0, 10.0, 80.0, 90.0), 0.99, None, "stub"),
    ]


@pytest.fixture(scope="module")
def stubbed(checkpoint):
    return load(checkpoint, detector=two_faces, batch_size=4)


def test_columns_are_stable_and_named_after_the_classes():
    assert columns(CLASS_NAMES) == [
        "source", "frame", "time_s", "face", "x", "y", "w", "h", "score", "label",
        "p_surprise", "p_fear", "p_disgust", "p_happiness", "p_sadness", "p_anger", "p_neutral",
        "error",
    ]  # fmt: skip
    assert P.probability_column(" Very Happy ") == "p_very_happy"


def test_import_lionfer_does_not_import_torch_and_load_is_lazy():
    code = "import sys, lionfer; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(REPO), "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert lionfer.load is P.load
    with pytest.raises(AttributeError, match="no attribute 'lod'"):
        lionfer.lod  # noqa: B018


def test_load_reads_the_model_description_from_the_checkpoint(predictor, checkpoint):
    info = predictor.info
    assert info.class_names == CLASS_NAMES and info.image_size == IMAGE_SIZE
    assert info.model_name == "cnn_small" and info.mean == (0.5,) * 3 and info.std == (0.5,) * 3
    assert info.path == str(checkpoint) and len(info.fingerprint) == 16


def test_a_run_folder_uses_last_or_best(tmp_path, checkpoint):
    run = tmp_path / "run"
    make_checkpoint(run / "checkpoints" / "last.pt", seed=1)
    assert load(run).info.path.endswith("last.pt")
    with pytest.raises(InputError, match=r"no checkpoints/best.pt \(only last.pt\)"):
        load(run, checkpoint="best")
    with pytest.raises(InputError, match="model not found"):
        load(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a checkpoint at all", "is not a lionfer checkpoint"),
        ({"model_name": "cnn_small"}, "another lionfer version.*missing ema, class_names"),
        ({"w": torch.zeros(2)}, "bare model weights"),
        ({"ema": {}, "class_names": ["a"], "model_name": "vit_huge", "image_size": 8}, "vit_huge"),
        ({"ema": {"x": torch.zeros(1)}, "class_names": list(CLASS_NAMES),
          "model_name": "cnn_small", "image_size": 8}, "do not fit"),
    ],
)  # fmt: skip
def test_bad_model_files_get_one_clear_message(tmp_path, content, message):
    path = tmp_path / "model.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(InputError, match=message):
        load(path)


def test_probabilities_are_the_models_softmax_on_the_eval_transform(predictor, checkpoint):
    images = [Image.fromarray(f) for f in faces((0, 3, 4, 5, 6))]
    probs = predictor.probabilities(images)  # batch_size 4: two model calls
    model, _ = torch_model(checkpoint)
    tf = transforms.evaluate(IMAGE_SIZE, (0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        expected = model(torch.stack([tf(i) for i in images])).logits.softmax(1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def test_every_face_is_reported_largest_first(stubbed):
    table = stubbed.predict(scene(faces()))
    assert list(table.columns) == columns(CLASS_NAMES)
    assert table["face"].tolist() == [0, 1] and table["source"].tolist() == ["memory:0"] * 2
    assert table[["x", "y", "w", "h"]].values.tolist() == [[10, 10, 80, 90], [150, 20, 40, 40]]
    assert table["score"].tolist() == [0.99, 0.95]
    assert table["error"].isna().all()  # pandas' missing value, not "", on good rows
    best = table[P_COLUMNS].to_numpy().argmax(axis=1)
    assert table["label"].tolist() == [CLASS_NAMES[i] for i in best]


def test_the_haar_detector_finds_both_rendered_faces(predictor):
    table = predictor.predict(np.asarray(scene(faces())))
    assert len(table) == 2
    assert sorted(table["x"].round(-1).tolist()) == [30, 190]  # faces pasted at x = 20 and 180


def test_batches_do_not_change_the_result(checkpoint):
    images = [scene(faces()), blank(), scene(faces((1, 2)))]
    one = load(checkpoint, detector=two_faces, batch_size=1).predict(images)
    many = load(checkpoint, detector=two_faces, batch_size=32).predict(images)
    np.testing.assert_allclose(one[P_COLUMNS].to_numpy(), many[P_COLUMNS].to_numpy(), atol=1e-6)
    assert one["source"].tolist() == ["memory:0"] * 2 + ["memory:1"] + ["memory:2"] * 2


def test_paths_folders_and_bad_files_give_rows_with_errors(tmp_path, stubbed):
    (tmp_path / "sub").mkdir()
    scene(faces()).save(tmp_path / "sub" / "group.png")
    blank().save(tmp_path / "empty_room.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (tmp_path / "notes.txt").write_text("not an image")
    table = stubbed.predict(str(tmp_path))
    by_source = table.groupby("source")["error"].apply(list).to_dict()
    assert table[table["source"].str.endswith("group.png")]["error"].isna().tolist() == [True] * 2
    assert by_source[str(tmp_path / "empty_room.jpg")] == ["no face found"]
    assert by_source[str(tmp_path / "broken.jpg")][0].startswith("unreadable: cannot read image")
    skipped = table[table["error"].notna()]
    assert skipped["label"].isna().all() and skipped[P_COLUMNS].isna().all().all()
    assert skipped["face"].isna().all()


def test_cropped_inputs_are_one_face_each_without_detection(checkpoint):
    predictor = load(checkpoint, detector=lambda image: pytest.fail("cropped: no detection"))
    crops = faces((0, 1, 2))
    table = predictor.predict(crops, cropped=True)  # an (N, H, W, 3) stack is N images
    assert table["source"].tolist() == ["memory:0", "memory:1", "memory:2"]
    assert table[["x", "y", "w", "h"]].values.tolist() == [[0, 0, 96, 96]] * 3
    assert table["score"].isna().all()
    expected = predictor.probabilities([Image.fromarray(c) for c in crops])
    np.testing.assert_allclose(table[P_COLUMNS].to_numpy(), expected, atol=1e-6)


def test_an_empty_image_in_memory_is_an_unreadable_row(checkpoint):
    predictor = load(checkpoint, detector="haar")
    empty = np.zeros((0, 0, 3), np.uint8)
    for cropped in (False, True):
        table = predictor.predict([Image.new("RGB", (0, 4)), empty, faces((0,))[0]], cropped)
        assert table["error"][:2].tolist() == [
            "unreadable: the image is empty (0×4 pixels)",
            "unreadable: the image is empty (0×0 pixels)",
        ]
        assert table["label"][:2].isna().all() and table["error"][2:].isna().all()


def test_probabilities_take_crops_as_arrays_too(checkpoint):
    predictor = load(checkpoint)
    crops = faces((0, 1, 2))  # uint8 (N, H, W, 3)
    expected = predictor.probabilities([Image.fromarray(c) for c in crops])
    np.testing.assert_allclose(predictor.probabilities(crops), expected, atol=1e-6)
    np.testing.assert_allclose(predictor.probabilities(list(crops)), expected, atol=1e-6)
    np.testing.assert_allclose(predictor.probabilities(crops[1]), expected[1:2], atol=1e-6)
    with pytest.raises(InputError, match="item 0 is a str, not a face crop .*; for files, use"):
        predictor.probabilities(["face.png"])
    with pytest.raises(InputError, match="arrays must be uint8"):
        predictor.probabilities(crops.astype(np.float32))


def test_collect_sources_expands_folders_and_globs(tmp_path):
    for name in ("b.png", "a.jpg", "deep/c.png", ".hidden/d.png", "clip.avi", "x.txt", "e.jfif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    sources, ignored, _ = collect_sources([tmp_path, str(tmp_path / "*.png"), tmp_path / "a.jpg"])
    names = [Path(s.name).relative_to(tmp_path).as_posix() for s in sources]
    assert names == ["a.jpg", "b.png", "clip.avi", "deep/c.png", "e.jfif"]  # sorted, once each
    assert [s.kind for s in sources] == ["image", "image", "video", "image", "image"]
    assert ignored == {".txt": 1}  # x.txt; hidden folders are not searched
    with pytest.raises(InputError, match="holds no images or videos, no files at all; looked"):
        collect_sources([_empty_folder(tmp_path)])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_bytes(b"")
    with pytest.raises(
        InputError, match=r"holds no images or videos, only 1 other file \(\.txt 1\)"
    ):
        collect_sources([tmp_path / "notes"])
    with pytest.raises(InputError, match="no images or videos match"):
        collect_sources([str(tmp_path / "*.gif")])
    with pytest.raises(InputError, match=r"match '.*\*.txt': it matches only 1 other file \("):
        collect_sources([str(tmp_path / "*" / "*.txt")])
    (tmp_path / "notes" / "app.ts").write_text("let x = 1;\n")
    with pytest.raises(InputError, match=r"\(\.ts 1, \.txt 1\) \(a \.ts file is read only where"):
        collect_sources([tmp_path / "notes"])
    (tmp_path / "kept" / ".cache").mkdir(parents=True)
    for name in (".a.png", ".cache/b.png"):
        (tmp_path / "kept" / name).write_bytes(b"")
    with pytest.raises(InputError, match=r"only hidden files \(2\), which are skipped; looked"):
        collect_sources([tmp_path / "kept"])
    with pytest.raises(InputError, match="input not found"):
        collect_sources([tmp_path / "missing.jpg"])
    with pytest.raises(InputError, match="uint8"):
        collect_sources([np.zeros((8, 8, 3), dtype=np.float32)])


def test_one_file_named_by_several_paths_is_one_source_and_a_link_its_own(tmp_path, monkeypatch):
    (tmp_path / "photos" / "deep").mkdir(parents=True)
    for name in ("a.png", "deep/b.png"):
        (tmp_path / "photos" / name).write_bytes(b"")
    (tmp_path / "photos" / "link.png").symlink_to(tmp_path / "photos" / "a.png")
    monkeypatch.chdir(tmp_path)
    inputs = ["photos/a.png", tmp_path / "photos" / "a.png", "photos/deep/../a.png", "photos"]
    names = [s.name for s in collect_sources(inputs)[0]]
    assert names == ["photos/a.png", "photos/deep/b.png", "photos/link.png"]


def test_a_glob_matching_a_folder_skips_hidden_files_as_the_folder_does(tmp_path):
    for name in ("shots/a.jpg", "shots/._a.jpg", "shots/.thumbs/b.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")  # ._a.jpg: macOS's resource fork, not a JPEG
    by_glob = [s.name for s in collect_sources([str(tmp_path / "sho*")])[0]]
    by_folder = [s.name for s in collect_sources([tmp_path / "shots"])[0]]
    assert by_glob == by_folder == [str(tmp_path / "shots" / "a.jpg")]


def test_a_pil_image_with_an_exif_orientation_is_read_upright_as_its_path(tmp_path, checkpoint):
    seen = []
    predictor = load(checkpoint, detector=lambda image: seen.append(image.size) or [])
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # shown turned 90° clockwise: stored 40×80, shown 80×40
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (40, 80), (200, 100, 50)).save(path, exif=exif)
    with Image.open(path) as opened:
        predictor.predict([str(path), opened, ImageOps.exif_transpose(opened)])
    assert seen == [(80, 40)] * 3  # an image already turned upright is not turned again


def _empty_folder(root: Path) -> Path:
    folder = root / "empty"
    folder.mkdir()
    return folder


def test_video_frames_are_streamed_with_stride_and_time(tmp_path, stubbed):
    frames = [scene(faces()) if i % 3 else blank((320, 160)) for i in range(7)]
    clip = write_clip(tmp_path / "clip.avi", frames, fps=10.0)
    table = stubbed.predict(str(clip), frame_stride=2)
    assert table["frame"].drop_duplicates().tolist() == [0, 2, 4, 6]
    np.testing.assert_allclose(table["time_s"].drop_duplicates(), [0.0, 0.2, 0.4, 0.6])
    assert table.groupby("frame").size().tolist() == [1, 2, 2, 1]  # frames 0 and 6 are blank
    assert table[table["frame"] == 0]["error"].tolist() == ["no face found"]
    for stride in (0, 2.5, "2", True):  # 2.5 read every frame whose index divides by it
        with pytest.raises(InputError, match="frame stride .* whole number of at least 1, got"):
            stubbed.predict(str(clip), frame_stride=stride)
    assert stubbed.predict(str(clip), frame_stride=np.int64(3))["frame"].max() == 6
    with pytest.raises(InputError, match="cropped must be True or False, got 'no'"):
        stubbed.predict(str(clip), cropped="no")


def test_empty_and_unreadable_videos_are_skipped_rows(tmp_path, predictor):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.avi").write_bytes(b"RIFF not really a video")
    table = predictor.predict([str(tmp_path / "empty.mp4"), str(tmp_path / "junk.avi")])
    assert table["error"].str.split(":").str[0].tolist() == ["empty video", "unreadable"]
    assert table["label"].isna().all()


def test_a_missing_detector_stops_with_a_message(checkpoint):
    def unavailable(image):
        raise P.DetectorUnavailable("MTCNN needs facenet-pytorch")

    with pytest.raises(InputError, match="needs facenet-pytorch"):
        load(checkpoint, detector=unavailable).predict(scene(faces()))
    with pytest.raises(InputError, match="unknown face detector 'dlib'"):
        load(checkpoint, detector="dlib")


def test_a_crashing_detector_is_one_error_row_and_the_job_goes_on(checkpoint):
    def flaky(image):
        if image.width > 200:
            raise RuntimeError("out of cheese")
        return two_faces(image)

    narrow = scene(faces(), size=(200, 160))  # both of two_faces' boxes lie in it
    table = load(checkpoint, detector=flaky).predict([scene(faces()), narrow])
    assert table["error"].iloc[0] == "error: RuntimeError: out of cheese"
    assert len(table) == 3 and table["error"].iloc[1:].isna().all()


def test_the_stream_holds_at_most_a_batch_of_frames(stubbed, monkeypatch):
    """An endless video: the first rows come out after batch_size frames were decoded."""
    decoded = []

    def endless(path, stride, start=0):
        for index in range(10**9):
            decoded.append(index)
            yield index, index / 25, scene(faces((3,)), at=((10, 10),))

    monkeypatch.setattr(P, "clip_frames", endless)
    sources = [Source("live.mp4", "video", path=Path("live.mp4"))]
    first = next(iter(stubbed.stream(sources)))
    assert first.index == 0 and first.probs.shape == (2, len(CLASS_NAMES))
    assert len(decoded) == 2  # 2 faces per frame fill the batch of 4 after 2 frames


@pytest.mark.parametrize("detector", ["auto", "mtcnn", "haar"])
def test_images_too_small_for_a_face_have_no_face_not_a_crash(checkpoint, detector):
    predictor = load(checkpoint, detector=detector)
    tiny = [Image.new("RGB", size, (120, 100, 90)) for size in ((8, 8), (19, 19), (640, 12))]
    table = predictor.predict(tiny)
    assert table["error"].tolist() == ["no face found"] * 3


def _model_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / {"random": "model.pt", "jpeg": "photo.jpg", "text": "notes.txt"}[kind]
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif kind == "jpeg":
        Image.fromarray(faces((3,))[0]).save(path)
    else:
        path.write_text("these are my notes\nnot a model\n")
    return path


@pytest.mark.parametrize(
    ("kind", "says"),
    [("random", "not a PyTorch file"), ("jpeg", "JPEG image"), ("text", "text file")],
)
def test_a_file_that_is_no_model_gets_one_line_with_the_fix(tmp_path, kind, says):
    with pytest.raises(InputError) as caught:
        load(_model_file(tmp_path, kind))
    message = str(caught.value)
    assert says in message and "pass a run folder" in message
    assert "\n" not in message and "weights_only" not in message
    assert "torch.load failed" not in message and "PyTorch 2.6" not in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_predict_on_a_missing_gpu_says_what_to_pass_instead(checkpoint):
    with pytest.raises(InputError) as caught:
        load(checkpoint, device="cuda")
    message = str(caught.value)
    assert "--device cuda" in message and "--device cpu" in message
    assert "train.device" not in message and "lionfer train" not in message


def test_a_device_that_is_not_one_is_refused(checkpoint):
    with pytest.raises(InputError, match="'gpu' is not a device; use cpu, cuda"):
        load(checkpoint, device="gpu")


def _truncated(path: Path, fraction: float) -> Path:
    cut = path.with_name(f"cut_{path.name}")
    data = path.read_bytes()
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_a_truncated_video_ends_with_a_row_saying_where_decoding_stopped(tmp_path, stubbed, suffix):
    noise = np.random.default_rng(0)
    clip = [
        Image.fromarray(noise.integers(0, 256, (120, 160, 3), dtype=np.uint8)) for _ in range(30)
    ]
    write = write_clip if suffix == ".avi" else write_mp4  # mp4: its index before the frames
    whole = write(tmp_path / f"clip{suffix}", clip, fps=10.0)
    table = stubbed.predict(str(whole))
    assert table["error"].isna().all() and table["frame"].max() == 29  # the intact file: no error
    table = stubbed.predict(str(_truncated(whole, 0.5)))
    last = table.iloc[-1]
    read = table[table["error"].isna()]["frame"].drop_duplicates().tolist()
    assert 0 < len(read) < 30 and read == list(range(len(read)))
    assert last["error"].startswith(f"damaged video: decoding stopped at frame {len(read)} (")
    assert "of the 3.00 s its header declares (truncated file)" in last["error"]
    assert last["frame"] == len(read) and last["time_s"] == pytest.approx(len(read) / 10)
    assert pd.isna(last["label"])


def _animation(path: Path, images: list[Image.Image], **save) -> Path:
    images[0].save(path, save_all=True, append_images=images[1:], **save)
    return path


AVIF = pytest.param(
    ".avif", marks=pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF")
)


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png", AVIF])
def test_an_animated_image_is_read_frame_by_frame_as_a_clip(tmp_path, checkpoint, suffix):
    predictor = load(checkpoint, detector=lambda image: pytest.fail("cropped: no detection"))
    shown = [Image.fromarray(face) for face in faces((0, 1, 2, 3, 4))]
    clip = _animation(tmp_path / f"clip{suffix}", shown, duration=[100, 50, 100, 100, 100])
    (source,) = collect_sources([clip])[0]
    assert source.kind == "video"
    table = predictor.predict(str(clip), cropped=True, frame_stride=2)
    assert table["frame"].tolist() == [0, 2, 4]
    np.testing.assert_allclose(table["time_s"], [0.0, 0.15, 0.35])  # the durations before each
    with Image.open(clip) as decoded:  # each row is its own frame, as the file decodes it
        frames = []
        for index in (0, 2, 4):
            decoded.seek(index)
            frames.append(decoded.convert("RGB"))
    expected = predictor.probabilities(frames)
    np.testing.assert_allclose(table[P_COLUMNS].to_numpy(), expected, atol=1e-6)
    assert len(set(table["label"])) > 1 or len({tuple(r) for r in expected.round(4)}) == 3


def test_an_image_of_one_frame_stays_an_image_and_pages_have_no_time(tmp_path, checkpoint):
    predictor = load(checkpoint, detector=lambda image: pytest.fail("cropped: no detection"))
    shown = [Image.fromarray(face) for face in faces((0, 1, 2))]
    still = _animation(tmp_path / "still.gif", shown[:1], duration=100)
    pages = _animation(tmp_path / "pages.tif", shown)  # a multi-page TIFF states no duration
    sources, *_ = collect_sources([still, pages])
    assert [s.kind for s in sources] == ["image", "video"]
    table = predictor.predict([str(still), str(pages)], cropped=True)
    assert table["frame"].tolist() == [0, 0, 1, 2]
    assert table["time_s"].isna().all()


def test_a_truncated_animation_ends_with_a_row_saying_where_decoding_stopped(tmp_path, stubbed):
    noise = np.random.default_rng(0)
    # 160 px wide: two_faces' box at x = 150 reaches into it
    shown = [
        Image.fromarray(noise.integers(0, 256, (60, 160, 3), dtype=np.uint8)) for _ in range(6)
    ]
    whole = _animation(tmp_path / "clip.gif", shown, duration=100)
    data = whole.read_bytes()
    for fraction in (0.5, 0.99):  # cut inside a frame's data, or where the count cannot pass it
        cut = tmp_path / f"cut{fraction}.gif"
        cut.write_bytes(data[: int(len(data) * fraction)])
        table = stubbed.predict(str(cut))
        read = table[table["error"].isna()]["frame"].drop_duplicates().tolist()
        last = table.iloc[-1]
        assert 0 < len(read) < 6 and read == list(range(len(read)))
        assert last["error"].startswith(f"damaged video: decoding stopped at frame {len(read)} (")
        assert last["time_s"] == pytest.approx(len(read) / 10) and pd.isna(last["label"])


def test_a_photo_stored_sideways_is_predicted_upright_but_video_frames_are_not_turned(
    predictor, tmp_path
):
    from skimage import data as skdata

    upright = Image.fromarray(skdata.astronaut()).resize((256, 256))
    stored = upright.rotate(90, expand=True)  # a photo saved on its side, without EXIF
    (face,) = predictor.faces(upright)
    (turned,) = predictor.faces(stored)
    torch.testing.assert_close(turned.tensor, face.tensor, atol=0.01, rtol=0)  # one crop
    x, y, w, h = face.box
    np.testing.assert_allclose(turned.box, (y, 256 - x - w, h, w))  # in the stored pixels
    stored.save(tmp_path / "sideways.png")
    table = predictor.predict(tmp_path / "sideways.png")
    assert table["error"].isna().all() and len(table) == 1
    # a video is not searched turned: its frames are many, and their orientation is the file's
    clip = write_clip(tmp_path / "clip.avi", [stored] * 2, fps=10.0)
    assert predictor.predict(clip)["error"].tolist() == ["no face found"] * 2
    assert predictor.faces(stored, turn=False) == []


def test_embeddings_from_a_classifier_of_your_own_need_its_features(checkpoint):
    predictor = load(checkpoint)

    def probabilities_only(x):
        return np.full((len(x), len(CLASS_NAMES)), 1 / len(CLASS_NAMES))

    with pytest.raises(InputError, match="feature_dim attribute and classify"):
        P.Predictor(probabilities_only, predictor.info, embeddings=True)
    plain = P.Predictor(probabilities_only, predictor.info)  # without embeddings it serves
    assert plain.probabilities(faces((3,))[0]).shape == (1, len(CLASS_NAMES))


def test_a_model_names_only_the_classes_it_was_trained_on(tmp_path):
    # a folder run on happy/, sad/ and neutral/ has seven outputs and learnt three
    trained = ("Happiness", "Sadness", "Neutral")
    full = load(make_checkpoint(tmp_path / "all.pt"))
    three = load(make_checkpoint(tmp_path / "three.pt", trained_classes=list(trained)))
    assert three.trained_classes == trained and full.trained_classes == tuple(CLASS_NAMES)
    crops = faces((3, 0, 4, 1, 5))
    everyone, only = full.probabilities(crops), three.probabilities(crops)
    learnt = [CLASS_NAMES.index(name) for name in trained]
    assert set(everyone.argmax(axis=1)) - set(learnt)  # random weights: untrained ones win too
    assert (np.delete(only, learnt, axis=1) == 0).all()
    softmax_of_learnt = everyone[:, learnt] / everyone[:, learnt].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(only[:, learnt], softmax_of_learnt, rtol=1e-6)
    table = three.predict(crops, cropped=True)
    assert set(table["label"]) <= set(trained)
    np.testing.assert_allclose(table[[f"p_{n.lower()}" for n in trained]], softmax_of_learnt)
