"""Face detection, alignment and `prepare`: real detectors on skimage's astronaut photo, a tiny
FERData of good, faceless, corrupt, too-small, in-memory and boxed images, resume and multi-face."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data as skdata

from lionfer.data import faces
from lionfer.data import mtcnn as faces_mtcnn
from lionfer.data.base import FERData, ImageSet
from lionfer.data.faces import ARCFACE_TEMPLATE_112, Face, align, crop_square, detect, pick_faces
from lionfer.data.prepare import PrepareInterrupted, prepare
from lionfer.data.prepare_cache import crop_stems, image_sources
from lionfer.errors import InputError
from lionfer.labels import CLASS_NAMES

HAPPY, SURPRISE, FEAR = 3, 0, 1


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())  # 512×512, one frontal face near (225, 120)


@pytest.fixture(scope="module")
def mtcnn_faces(astronaut) -> list[Face]:
    return detect(astronaut, "mtcnn")


def two_faces(astronaut: Image.Image) -> Image.Image:
    """The astronaut at 320 px and, to its right, at 160 px: two faces of different size."""
    canvas = Image.new("RGB", (480, 320), (128, 128, 128))
    canvas.paste(astronaut.resize((320, 320)), (0, 0))
    canvas.paste(astronaut.resize((160, 160)), (320, 80))
    return canvas


def crop(images: ImageSet, i: int, face: str = "") -> str:
    """The file name of image i's crop (face: "_f0", ... under multi_face "all")."""
    return f"{crop_stems(images, 'source')[i]}{face}.png"


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# detection


def test_mtcnn_finds_the_astronaut_with_plausible_landmarks(mtcnn_faces):
    assert len(mtcnn_faces) == 1
    face = mtcnn_faces[0]
    x, y, w, h = face.box
    assert face.detector == "mtcnn" and face.score > 0.99
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 180 and 60 < w < 140
    points = face.landmarks
    assert points.shape == (5, 2) and points.dtype == np.float64
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert np.all((points >= [x, y]) & (points <= [x + w, y + h]))


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(
        0, min(ay + ah, by + bh) - max(ay, by)
    )
    return inter / (aw * ah + bw * bh - inter)


def test_haar_finds_the_same_face(astronaut, mtcnn_faces):
    found = detect(astronaut, "haar")
    assert len(found) == 1
    assert found[0].detector == "haar" and found[0].landmarks is None
    assert iou(found[0].box, mtcnn_faces[0].box) > 0.5


def test_auto_uses_mtcnn_and_haar_only_when_mtcnn_cannot_run(astronaut, monkeypatch):
    assert [f.detector for f in detect(astronaut, "auto")] == ["mtcnn"]
    blind = types.SimpleNamespace(detect=lambda image: faces_mtcnn._empty())
    monkeypatch.setattr(faces, "_mtcnn_or_none", lambda: blind)
    assert detect(astronaut, "auto") == []  # MTCNN ran and saw no face: Haar is not asked
    monkeypatch.setattr(faces, "_mtcnn_or_none", lambda: None)  # MTCNN's weights are missing
    assert [f.detector for f in detect(astronaut, "auto")] == ["haar"]
    with pytest.raises(ValueError, match="unknown face detector 'dlib'"):
        detect(astronaut, "dlib")


def test_large_images_are_shrunk_for_detection_and_boxes_scaled_back(astronaut):
    (face,) = detect(astronaut, "haar")
    (large,) = detect(astronaut.resize((2048, 2048)), "haar")  # detected at 1024 px
    # Haar's scale steps are 10% apart; without scaling back the box would be 2× off.
    np.testing.assert_allclose(large.box, np.array(face.box) * 4, atol=0.1 * 4 * face.box[2])


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_photo_stored_sideways_is_searched_turned_and_cropped_upright(astronaut, degrees):
    small = astronaut.resize((256, 256))
    (upright,) = detect(small, "haar")
    stored = small.rotate(degrees, expand=True)  # counter-clockwise, as a sideways photo lies
    assert detect(stored, "haar") == []  # Haar finds no face on its side or upside down
    (face,) = detect(stored, "haar", turn=True)
    assert face.turned == (360 - degrees) % 360  # turned back by the rest of a full turn
    # the box is in the stored photo's pixels: the upright box turned as the photo was
    x, y, w, h = upright.box
    expected = {
        90: (y, 256 - x - w, h, w),
        180: (256 - x - w, 256 - y - h, w, h),
        270: (256 - y - h, x, h, w),
    }[degrees]
    np.testing.assert_allclose(face.box, expected, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(align(stored, face, 64)), align(small, upright, 64))
    (found,) = detect(small, "haar", turn=True)  # an upright photo is searched as it is
    assert found.turned == 0 and found.box == upright.box


@pytest.mark.parametrize("degrees", [90, 270])
def test_mtcnn_landmarks_of_a_turned_photo_align_the_face_upright(astronaut, degrees):
    small = astronaut.resize((256, 256))
    (upright,) = detect(small, "mtcnn")
    stored = small.rotate(degrees, expand=True)
    as_stored = detect(stored, "mtcnn")  # none, or (clockwise) the face on its side, unsure
    assert max((f.score for f in as_stored), default=0) < faces.TURNED_MIN_SCORE["mtcnn"]
    (face,) = detect(stored, "mtcnn", turn=True)
    assert face.turned == 360 - degrees and face.score >= faces.TURNED_MIN_SCORE["mtcnn"]
    # landmarks back in the stored photo's pixels: the eyes lie on a vertical line there
    left_eye, right_eye = face.landmarks[:2]
    assert abs(left_eye[0] - right_eye[0]) < 5 < abs(left_eye[1] - right_eye[1])
    crop = np.asarray(align(stored, face, 64), dtype=float)
    reference = np.asarray(align(small, upright, 64), dtype=float)
    assert np.abs(crop - reference).mean() < 25 < np.abs(crop[::-1] - reference).mean()


def test_a_face_read_again_turned_replaces_only_itself(astronaut):
    # a group photo: one face upright but blurred (unsure), one lying on its side, which MTCNN
    # finds as stored at 0.92; read turned it is sure, and the upright face stays as it is
    from PIL import ImageFilter

    face = astronaut.crop((120, 0, 270, 200))
    canvas = Image.new("RGB", (520, 260), (128, 128, 128))
    canvas.paste(face.filter(ImageFilter.GaussianBlur(6)), (20, 30))
    canvas.paste(face.transpose(Image.Transpose.ROTATE_270), (260, 40))
    stored = sorted(detect(canvas, "mtcnn"), key=lambda f: f.box[0])
    assert len(stored) == 2 and all(f.score < faces.TURNED_MIN_SCORE["mtcnn"] for f in stored)
    upright, sideways = sorted(detect(canvas, "mtcnn", turn=True), key=lambda f: f.box[0])
    assert upright.turned == 0 and upright.box == stored[0].box
    assert sideways.turned == 90 and sideways.score >= faces.TURNED_MIN_SCORE["mtcnn"]
    assert faces.iou(sideways.box, stored[1].box) >= faces.SAME_FACE_IOU


def test_a_sure_face_found_only_turned_is_added_beside_the_faces_found_as_stored(astronaut):
    # a portrait saved upside down as a JPEG: as stored MTCNN finds only a false face in the
    # spacesuit (0.91); read upside down the real face is sure, and it is kept with the stored one
    portrait = Image.new("RGB", (256, 400), "white")
    portrait.paste(astronaut.resize((256, 256)), (0, 0))
    saved = io.BytesIO()
    portrait.transpose(Image.Transpose.ROTATE_180).save(saved, "JPEG")
    stored = Image.open(saved).convert("RGB")
    [false] = detect(stored, "mtcnn")
    assert false.score < faces.TURNED_MIN_SCORE["mtcnn"]
    real = next(f for f in detect(stored, "mtcnn", turn=True) if f.box != false.box)
    assert real.turned == 180 and real.score >= faces.TURNED_MIN_SCORE["mtcnn"]
    assert faces.iou(real.box, false.box) == 0 and real.box[1] > 256 > false.box[1]
    assert pick_faces([false, real], "largest") == [real]


def test_faces_found_only_turned_are_added_once_and_only_when_sure():
    sure = faces.TURNED_MIN_SCORE["mtcnn"]

    def face(x, score, turned=0):
        return Face((x, 0.0, 10.0, 10.0), score, None, "mtcnn", turned)

    stored = [face(0, 0.9)]
    turned = {
        90: [face(50, sure + 0.001, 90), face(100, sure - 0.01, 90)],
        180: [face(51, sure + 0.005, 180)],  # the face at 50 again, surer
        270: [face(200, sure, 270), face(1, sure + 0.009, 270)],  # and one over the stored face
    }
    read = faces._surer_when_turned(stored, turned)
    assert [(f.box[0], f.turned) for f in read] == [(1, 270), (51, 180), (200, 270)]
    assert faces._surer_when_turned(stored, {90: [face(100, sure - 0.01, 90)]}) == stored


@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
def test_turning_finds_no_false_faces_in_objects_and_textures(detector):
    # pictures where turned searches found false faces before turned faces had to score more
    for name in ("coffee", "gravel", "cell", "clock"):
        picture = Image.fromarray(getattr(skdata, name)()).convert("RGB")
        picture.thumbnail((512, 512))
        assert detect(picture, detector) == []
        assert detect(picture, detector, turn=True) == [], name


def test_noise_has_no_face():
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert detect(Image.fromarray(noise), "auto") == []


def test_mtcnn_is_built_offline_from_packaged_weights(astronaut, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("MTCNN tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    faces._mtcnn.cache_clear()
    assert len(detect(astronaut, "mtcnn")) == 1


def test_detectors_are_not_built_at_import():
    code = "import sys, lionfer.data.prepare; assert 'lionfer.data.mtcnn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# choosing and aligning faces


def test_pick_faces_keeps_largest_then_higher_score():
    small = Face((0, 0, 10, 10), 0.99, None, "mtcnn")
    big_low = Face((50, 0, 20, 20), 0.91, None, "mtcnn")
    big_high = Face((90, 0, 20, 20), 0.95, None, "mtcnn")
    assert pick_faces([small, big_low, big_high]) == [big_high]
    assert pick_faces([small, big_low, big_high], "all") == [big_high, big_low, small]
    assert pick_faces([]) == []
    with pytest.raises(ValueError, match="multi_face"):
        pick_faces([small], "first")


def test_align_maps_landmarks_onto_the_template():
    # Five white dots at the template rotated by 30°, scaled 1.5× and shifted: align must undo it.
    angle = np.deg2rad(30)
    rotation = 1.5 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (ARCFACE_TEMPLATE_112 - 56) @ rotation.T + [150, 140]
    image = Image.new("RGB", (300, 300))
    draw = ImageDraw.Draw(image)
    for px, py in points:
        draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=(255, 255, 255))
    face = Face((90, 80, 120, 120), 1.0, points, "mtcnn")
    for size in (112, 64, 224):  # downscaling (via a PIL shrink first) and upscaling
        out = np.asarray(align(image, face, size))[..., 0]
        assert out.shape == (size, size)
        for tx, ty in np.rint(ARCFACE_TEMPLATE_112 * size / 112).astype(int):
            assert out[ty, tx] > 100, f"no dot at template point ({tx}, {ty}) for size {size}"
        assert (out > 100).mean() < 0.05  # and nothing else is bright


def test_align_real_face_and_without_landmarks(astronaut, mtcnn_faces):
    aligned = align(astronaut, mtcnn_faces[0], 112)
    assert aligned.mode == "RGB" and aligned.size == (112, 112)
    no_points = Face(mtcnn_faces[0].box, 1.0, None, "haar")
    assert align(astronaut, no_points, 48).size == (48, 48)


def test_crop_square_clamps_inside_and_pads_outside():
    white = Image.new("RGB", (100, 60), (255, 255, 255))
    # Near the corner, the 48-px square fits: shifted inside, no padding.
    corner = np.asarray(crop_square(white, (80, 40, 40, 40), 24, margin=1.2))
    assert corner.shape == (24, 24, 3) and corner.min() == 255
    # A square larger than the image height stays centred and is padded black above and below.
    tall = np.asarray(crop_square(white, (20, 0, 60, 60), 40, margin=1.5))  # side 90 > 60
    assert tall[0, 20].max() == 0 and tall[-1, 20].max() == 0 and tall[20, 20].min() == 255


# prepare

SMALL_BOX = (88, 33, 47, 47)  # the face in the astronaut at 256 px (Haar's box, halved)


@pytest.fixture
def tiny_data(tmp_path, astronaut) -> FERData:
    """train: a face photo, noise, a corrupt file, a too-small image; test: a boxed photo;
    unlabeled: two in-memory 48×48 grayscale faces."""
    raw = tmp_path / "raw"
    raw.mkdir()
    astronaut.resize((256, 256)).save(raw / "astronaut.jpg", quality=92)  # small: fast MTCNN
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(raw / "noise.png")
    (raw / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 4)
    Image.new("RGB", (10, 10)).save(raw / "tiny.png")
    train = ImageSet(
        images=[str(raw / n) for n in ("astronaut.jpg", "noise.png", "corrupt.jpg", "tiny.png")],
        labels=[HAPPY, SURPRISE, FEAR, FEAR],
    )
    boxed = ImageSet(images=[str(raw / "astronaut.jpg")], labels=[HAPPY], boxes=[SMALL_BOX])
    arrays = np.random.default_rng(1).integers(0, 256, (2, 48, 48), dtype=np.uint8)
    unlabeled = ImageSet(images=arrays, labels=[-1, -1], true_labels=[SURPRISE, FEAR])
    return FERData("tiny", CLASS_NAMES, train=train, test=boxed, unlabeled=unlabeled)


@pytest.fixture
def fake_detector(monkeypatch):
    """Replace the detectors inside prepare (for tests about files, not faces): the 256-px
    astronaut has one face, anything else none."""

    def fake_detect(image, detector, turn=False):
        return [Face(SMALL_BOX, 1.0, None, "fake")] if image.size == (256, 256) else []

    monkeypatch.setattr("lionfer.data.prepare.detect", fake_detect)


def test_prepare_writes_crops_manifest_failures_and_counts(tiny_data, tmp_path):
    out = tmp_path / "out"
    report = prepare(tiny_data, out, size=64, progress=False)  # the real detectors
    expected = {"done": 4, "skipped_existing": 0, "no_face": 1, "unreadable": 1, "too_small": 1}
    assert {k: report.counts[k] for k in expected} == expected
    assert report.counts["errors"] == 0 and report.counts["multi_face"] == 0

    rows = read_csv(out / "manifest.csv")
    assert list(rows[0]) == ["path", "label", "split", "true_label", "source"]
    train, test, unlabeled = tiny_data.train, tiny_data.test, tiny_data.unlabeled
    assert [(r["path"], r["label"], r["split"], r["true_label"]) for r in rows] == [
        (f"faces/train/{crop(train, 0)}", "3", "train", ""),
        (f"faces/test/{crop(test, 0)}", "3", "test", ""),
        (f"faces/unlabeled/{crop(unlabeled, 0)}", "", "unlabeled", "0"),
        (f"faces/unlabeled/{crop(unlabeled, 1)}", "", "unlabeled", "1"),
    ]
    assert rows[0]["source"].endswith("astronaut.jpg") and rows[2]["source"] == "0"
    assert crop(train, 0).startswith("astronaut-")  # the name of its photo, and a hash
    for row in rows:
        with Image.open(out / row["path"]) as image:
            assert image.mode == "RGB" and image.size == (64, 64)
    assert sorted(p.name for p in (out / "faces" / "train").iterdir()) == [crop(train, 0)]

    failures = {r["source"].rsplit("/", 1)[-1]: r for r in read_csv(out / "failures.csv")}
    assert sorted(failures) == ["corrupt.jpg", "noise.png", "tiny.png"]
    assert failures["noise.png"]["reason"] == "no face found"
    assert failures["corrupt.jpg"]["reason"].startswith("unreadable: cannot read image")
    assert "too small (10×10); minimum is 16 px" in failures["tiny.png"]["reason"]
    assert all(r["split"] == "train" for r in failures.values())

    summary = json.loads((out / "prepare.json").read_text())
    assert summary["dataset"] == "tiny" and summary["size"] == 64 and summary["complete"]
    assert summary["class_names"] == list(CLASS_NAMES)
    assert summary["counts"]["done"] == 4 and summary["counts"]["no_face"] == 1


def test_prepare_crops_boxes_and_resizes_arrays(tiny_data, tmp_path, astronaut):
    out = tmp_path / "out"
    prepare(tiny_data, out, size=64, splits=("test", "unlabeled"), progress=False)
    boxed = np.asarray(Image.open(out / "faces/test" / crop(tiny_data.test, 0)), dtype=float)
    source = astronaut.resize((256, 256))
    expected = np.asarray(crop_square(source, SMALL_BOX, 64, 1.1), dtype=float)
    assert np.abs(boxed - expected).mean() < 4  # the same crop, up to JPEG loss
    array = tiny_data.unlabeled.images[0]
    resized = np.asarray(Image.fromarray(array).resize((64, 64), Image.Resampling.BICUBIC))
    cropped = np.asarray(Image.open(out / "faces/unlabeled" / crop(tiny_data.unlabeled, 0)))
    np.testing.assert_array_equal(cropped[..., 1], resized)
    assert not (out / "faces" / "train").exists()


def test_prepare_resumes_and_skips_finished_images(tiny_data, tmp_path, fake_detector):
    out = tmp_path / "out"
    prepare(tiny_data, out, size=64, progress=False)
    manifest = (out / "manifest.csv").read_bytes()
    failures = (out / "failures.csv").read_bytes()
    again = prepare(tiny_data, out, size=64, progress=False)
    assert again.counts["skipped_existing"] == 4 and again.counts["done"] == 0
    assert again.counts["no_face"] == 1 and again.counts["unreadable"] == 1
    assert (out / "manifest.csv").read_bytes() == manifest
    assert (out / "failures.csv").read_bytes() == failures  # failures are retried, not forgotten

    # An interrupted run leaves a temp file and may have lost a crop; a damaged crop is redone.
    (out / "faces/unlabeled" / crop(tiny_data.unlabeled, 1)).unlink()
    (out / "faces/unlabeled" / f".{crop(tiny_data.unlabeled, 1)}.123.part").write_bytes(b"half")
    (out / "faces/test" / crop(tiny_data.test, 0)).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    third = prepare(tiny_data, out, size=64, progress=False)
    assert third.counts["done"] == 2 and third.counts["skipped_existing"] == 2
    assert not list(out.rglob("*.part"))
    assert (out / "manifest.csv").read_bytes() == manifest


def test_manifest_keeps_splits_prepared_earlier(tiny_data, tmp_path, fake_detector):
    out = tmp_path / "out"
    prepare(tiny_data, out, size=64, splits=("unlabeled",), progress=False)
    report = prepare(tiny_data, out, size=64, splits=("train",), progress=False)
    assert report.rows == 3 and report.counts["done"] == 1
    assert [r["split"] for r in read_csv(out / "manifest.csv")] == [
        "train",
        "unlabeled",
        "unlabeled",
    ]


def test_prepare_refuses_to_mix_settings(tiny_data, tmp_path):
    out = tmp_path / "out"
    prepare(tiny_data, out, size=64, splits=("unlabeled",), progress=False)
    with pytest.raises(ValueError, match="size=64 \\(now 32\\).*new output folder"):
        prepare(tiny_data, out, size=32, splits=("unlabeled",), progress=False)
    with pytest.raises(ValueError, match="multi_face"):
        prepare(tiny_data, tmp_path / "other", multi_face="every", progress=False)
    assert not (tmp_path / "other").exists()  # arguments are checked before anything is written
    with pytest.raises(ValueError, match="splits"):
        prepare(tiny_data, tmp_path / "other", splits=("val",), progress=False)


def test_prepare_user_errors_are_input_errors(tiny_data, tmp_path):
    # exit code 2 with the message, not a traceback: lionfer prepare --size 4, or mixed settings
    out = tmp_path / "out"
    with pytest.raises(InputError, match="size must lie in"):
        prepare(tiny_data, out, size=4, progress=False)
    prepare(tiny_data, out, size=64, splits=("unlabeled",), progress=False)
    with pytest.raises(InputError, match="size=64 \\(now 32\\)"):
        prepare(tiny_data, out, size=32, splits=("unlabeled",), progress=False)


def test_prepare_refuses_a_folder_that_is_not_its_cache(tiny_data, tmp_path):
    # `lionfer prepare data.root=mine --out mine` must not replace the user's manifest.csv
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.csv").write_text("path,label\na.jpg,happy\n")
    with pytest.raises(InputError, match="1 entries that are not a lionfer prepare cache"):
        prepare(tiny_data, mine, size=64, splits=("unlabeled",), progress=False)
    assert (mine / "manifest.csv").read_text() == "path,label\na.jpg,happy\n"
    assert sorted(p.name for p in mine.iterdir()) == ["manifest.csv"]
    with pytest.raises(InputError, match="is a file"):
        prepare(tiny_data, mine / "manifest.csv", size=64, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare(tiny_data, empty, size=64, splits=("unlabeled",), progress=False).rows == 2


def test_a_second_prepare_into_a_folder_being_written_is_refused(
    tiny_data, tmp_path, fake_detector
):
    import fcntl
    import os

    out = tmp_path / "out"
    prepare(tiny_data, out, size=64, splits=("unlabeled",), progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    held = os.open(out, os.O_RDONLY)  # as a prepare still cropping there holds it
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with pytest.raises(InputError, match="another lionfer process \\(a prepare writing"):
            prepare(tiny_data, out, size=64, progress=False)
    finally:
        os.close(held)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert prepare(tiny_data, out, size=64, progress=False).counts["done"] == 2  # freed


def test_a_refused_prepare_leaves_no_folder(tiny_data, tmp_path, monkeypatch):
    def broken(data):
        raise InputError("the images cannot be listed")

    monkeypatch.setattr("lionfer.data.prepare.image_sources", broken)
    with pytest.raises(InputError, match="cannot be listed"):
        prepare(tiny_data, tmp_path / "new" / "out", size=64, progress=False)
    assert not (tmp_path / "new").exists()


def tinted_photos(folder, astronaut, names) -> list[str]:
    """256-px astronauts (fake_detector's one face), each tinted its own colour."""
    folder.mkdir()
    paths = []
    for k, name in enumerate(names):
        tint = Image.new("RGB", (256, 256), ((60 * k) % 256, 40 * k, 255 - 50 * k))
        Image.blend(astronaut.resize((256, 256)), tint, 0.5).save(folder / name)
        paths.append(str(folder / name))
    return paths


def train_only(paths: list[str], labels: list[int]) -> FERData:
    train = ImageSet(images=paths, labels=labels)
    return FERData("tiny", CLASS_NAMES, train=train, test=train.subset(np.array([], int)))


def test_a_cache_takes_images_added_removed_and_moved(tmp_path, astronaut, fake_detector):
    # crops are named after their image: a photo added in front, one removed and the order
    # changed leave every other crop with its own image and label
    a, b, c = tinted_photos(tmp_path / "raw", astronaut, ["a.jpg", "b.jpg", "c.jpg"])
    out = tmp_path / "out"
    prepare(train_only([a, b, c], [HAPPY, SURPRISE, FEAR]), out, size=32, progress=False)
    crops = {r["source"]: (out / r["path"]).read_bytes() for r in read_csv(out / "manifest.csv")}
    (d,) = tinted_photos(tmp_path / "new", astronaut, ["d.jpg"])
    again = prepare(train_only([d, c, a], [SURPRISE, FEAR, HAPPY]), out, size=32, progress=False)
    assert again.counts["done"] == 1 and again.counts["skipped_existing"] == 2
    rows = read_csv(out / "manifest.csv")
    assert [(r["source"], r["label"]) for r in rows] == [
        (d, str(SURPRISE)),
        (c, str(FEAR)),
        (a, str(HAPPY)),
    ]
    assert all((out / r["path"]).read_bytes() == crops[r["source"]] for r in rows[1:])
    assert json.loads((out / "prepare.json").read_text())["naming"] == "source"
    # b's crop stays on disk, out of the manifest
    assert len(list((out / "faces" / "train").iterdir())) == 4


def test_a_crop_is_reused_only_for_the_same_image(tmp_path, astronaut, fake_detector):
    # the same file names under another data.root, a photo replaced under its name and other
    # pixels at the same position are other images: their crops are made anew
    first = tinted_photos(tmp_path / "A", astronaut, ["x.jpg", "y.jpg"])
    mirrored = astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    other = tinted_photos(tmp_path / "B", mirrored, ["y.jpg", "x.jpg"])  # other photos
    out = tmp_path / "out"
    prepare(train_only(first, [HAPPY, FEAR]), out, size=32, progress=False)
    made = {r["source"]: (out / r["path"]).read_bytes() for r in read_csv(out / "manifest.csv")}
    again = prepare(train_only(other[::-1], [HAPPY, FEAR]), out, size=32, progress=False)
    assert again.counts["done"] == 2 and again.counts["skipped_existing"] == 0
    rows = read_csv(out / "manifest.csv")
    assert all((out / r["path"]).read_bytes() not in made.values() for r in rows)
    x = Path(first[0])
    Image.open(other[1]).save(x)  # replaced under its name, as a photo edited or swapped
    os.utime(x, ns=(x.stat().st_atime_ns, x.stat().st_mtime_ns + 10**9))
    third = prepare(train_only(first, [HAPPY, FEAR]), out, size=32, progress=False)
    assert third.counts["done"] == 1 and third.counts["skipped_existing"] == 1
    arrays = np.random.default_rng(2).integers(0, 256, (2, 48, 48), dtype=np.uint8)
    unlabeled = ImageSet(images=arrays, labels=[-1, -1])
    data = FERData("tiny", CLASS_NAMES, train=train_only(first, [HAPPY, FEAR]).train,
                   test=ImageSet(images=[], labels=[]), unlabeled=unlabeled)  # fmt: skip
    assert prepare(data, out, size=32, progress=False).counts["done"] == 2
    unlabeled.images[0] = 255 - unlabeled.images[0]  # other pixels at the same position
    assert prepare(data, out, size=32, progress=False).counts["done"] == 1


def test_a_cache_named_by_position_refuses_other_images(tiny_data, tmp_path, fake_detector):
    # caches made before crops were named after their image number them by position: an image
    # added in front would shift every label by one
    out = tmp_path / "out"
    prepare(tiny_data, out, size=64, splits=("train",), progress=False)
    made = json.loads((out / "prepare.json").read_text())
    del made["naming"]  # as an older lionfer wrote it, with its crops named 000000.png, ...
    (out / "prepare.json").write_text(json.dumps(made))
    (out / "faces/train" / crop(tiny_data.train, 0)).rename(out / "faces/train/000000.png")
    train = tiny_data.train
    grown = ImageSet(images=train.images[:1] + train.images, labels=[FEAR, *train.labels])
    changed = FERData("tiny", CLASS_NAMES, train=grown, test=tiny_data.test)
    with pytest.raises(InputError, match=r"train images changed since .* \(4 images.*, 5 images"):
        prepare(changed, out, size=64, splits=("test",), progress=False)
    again = prepare(tiny_data, out, size=64, progress=False)  # the same images resume
    assert again.counts["skipped_existing"] == 1
    rows = read_csv(out / "manifest.csv")
    assert [r["path"] for r in rows][:1] == ["faces/train/000000.png"]
    assert json.loads((out / "prepare.json").read_text())["naming"] == "position"
    made["naming"] = "by colour"  # a cache of a newer lionfer
    (out / "prepare.json").write_text(json.dumps(made))
    with pytest.raises(InputError, match="names its crops by 'by colour'"):
        prepare(tiny_data, out, size=64, progress=False)


def test_missing_detector_stops_prepare_instead_of_failing_each_image(
    tiny_data, tmp_path, monkeypatch
):
    def unavailable():
        raise faces.DetectorUnavailable("MTCNN weights file mtcnn_pnet.pt is missing")

    monkeypatch.setattr(faces, "_mtcnn", unavailable)
    # exit code 2 with the message, as `lionfer predict` does, not a traceback
    with pytest.raises(InputError, match="mtcnn_pnet.pt is missing") as stopped:
        prepare(tiny_data, tmp_path / "out", size=64, detector="mtcnn", progress=False)
    assert isinstance(stopped.value.__cause__, faces.DetectorUnavailable)
    with pytest.warns(RuntimeWarning, match="falling back to the Haar cascade"):
        report = prepare(tiny_data, tmp_path / "auto", size=64, detector="auto", progress=False)
    assert report.counts["done"] == 4  # Haar found the astronaut


def test_manifest_is_readable_by_the_manifest_dataset(tiny_data, tmp_path, fake_detector):
    import lionfer.data.datasets  # noqa: F401  (registers "manifest")
    from lionfer.config_sections import DataConfig
    from lionfer.registry import DATASETS

    out = tmp_path / "out"
    prepare(tiny_data, out, size=64, progress=False)
    loaded = DATASETS.get("manifest")(DataConfig(dataset="manifest", root=str(out)), seed=0)
    assert loaded.class_names == CLASS_NAMES
    assert loaded.train.labels.tolist() == [HAPPY] and loaded.test.labels.tolist() == [HAPPY]
    assert len(loaded.unlabeled) == 2
    assert loaded.unlabeled.true_labels.tolist() == [SURPRISE, FEAR]
    assert loaded.train.load(0).size == (64, 64)
    # the test rows carry their labels as true_label; the train rows' truth stays unknown (the
    # label-quality figures would otherwise call every given label right)
    assert loaded.train.true_labels is None


@pytest.fixture(scope="module")
def two_face_file(tmp_path_factory, astronaut):
    """The two-face image on disk and its faces, largest first."""
    image = two_faces(astronaut)
    path = tmp_path_factory.mktemp("two") / "two.png"
    image.save(path)
    return path, pick_faces(detect(image, "auto"), "all")


def test_two_faces_are_found_largest_first(two_face_file):
    _, found = two_face_file
    assert len(found) == 2
    big, small = found
    assert big.box[0] < 320 <= small.box[0] and big.area > 3 * small.area


@pytest.mark.parametrize("rule,faces", [("largest", [""]), ("all", ["_f0", "_f1"])])
def test_prepare_multiple_faces(tmp_path, two_face_file, rule, faces):
    path, found = two_face_file
    single = ImageSet(images=[str(path)], labels=[HAPPY])
    names = [crop(single, 0, face) for face in faces]
    dataset = FERData("two", CLASS_NAMES, train=single, test=single.subset(np.array([], int)))
    out = tmp_path / rule
    report = prepare(dataset, out, size=64, multi_face=rule, progress=False)
    assert report.counts["multi_face"] == 1 and report.counts["done"] == 1
    assert sorted(p.name for p in (out / "faces/train").iterdir()) == names
    rows = read_csv(out / "manifest.csv")
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == names
    image = Image.open(path).convert("RGB")
    for name, face in zip(names, found, strict=False):  # crop k is face k, largest first
        made = np.asarray(Image.open(out / "faces/train" / name), dtype=float)
        assert np.abs(made - np.asarray(align(image, face, 64), dtype=float)).mean() < 1


# a user's own photo folders


def test_prepare_crops_a_sideways_photo_upright_and_lists_it(tmp_path, astronaut):
    photos = photo_folder(tmp_path / "photos", astronaut)
    astronaut.resize((256, 256)).rotate(90, expand=True).save(photos / "sad" / "0.jpg")
    out = tmp_path / "out"
    report = prepare(folder_data(photos), out, size=64, detector="haar", progress=False)
    assert report.counts["done"] == 6 and report.counts["no_face"] == 0
    assert "1 image showed a face only when turned" in report.summary()
    (listed,) = json.loads((out / "prepare.json").read_text())["turned"]
    assert listed["source"] == "sad/0.jpg" and listed["degrees"] == 270
    crops = [np.asarray(Image.open(p), dtype=float) for p in sorted(out.rglob("faces/*/*.png"))]
    assert len(crops) == 6
    # one face, every crop upright (JPEG's losses apart); upside down would be far off
    assert (
        max(np.abs(c - crops[0]).mean() for c in crops)
        < 20
        < np.abs(crops[0][::-1] - crops[0]).mean()
    )
    again = prepare(folder_data(photos), out, size=64, detector="haar", progress=False)
    assert json.loads((out / "prepare.json").read_text())["turned"] == [listed]  # kept
    assert again.counts["skipped_existing"] == 6


def photo_folder(root, astronaut, classes=("happy", "sad"), per_class=3):
    """root/<class>/<k>.jpg: the 256-px astronaut (fake_detector's one face) per_class times."""
    face = astronaut.resize((256, 256))
    for name in classes:
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            face.save(root / name / f"{k}.jpg", quality=90)
    return root


def folder_data(root, **settings) -> FERData:
    from lionfer.config_sections import DataConfig
    from lionfer.data.datasets import folder

    return folder.load(DataConfig(dataset="folder", root=str(root), **settings), seed=0)


def test_prepare_refuses_an_out_inside_the_photo_folder(tmp_path, astronaut, fake_detector):
    # data.root=photos --out photos/faces: the folder dataset reads every folder under its root,
    # so the crops would be trained on as a class "faces" next time
    photos = photo_folder(tmp_path / "photos", astronaut)
    data = folder_data(photos)
    for out in (photos / "faces", photos / "happy" / "cache"):
        with pytest.raises(InputError, match="lies inside data.root=.*photos, every folder"):
            prepare(data, out, size=32, progress=False)
        assert not out.exists()
    unlabeled = photo_folder(tmp_path / "phone", astronaut, classes=("2024",), per_class=2)
    data = folder_data(photos, unlabeled_root=str(unlabeled))
    with pytest.raises(InputError, match="read as unlabeled images"):
        prepare(data, unlabeled / "crops", size=32, progress=False)
    assert prepare(data, tmp_path / "photos-faces", size=32, progress=False).rows == 8


def test_prepare_refuses_to_write_among_the_images_it_crops(tmp_path, astronaut, fake_detector):
    # prepare run on its own cache: "delete the folder to start again" would delete the input
    cache = tmp_path / "cache"
    prepare(folder_data(photo_folder(tmp_path / "photos", astronaut)), cache, size=32)
    import lionfer.data.datasets  # noqa: F401  (registers "manifest")
    from lionfer.config_sections import DataConfig
    from lionfer.registry import DATASETS

    own = DATASETS.get("manifest")(DataConfig(dataset="manifest", root=str(cache)), seed=0)
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    with pytest.raises(InputError, match="holds the train images being prepared"):
        prepare(own, cache, size=32, progress=False)
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before


def test_classes_of_the_data_s_own_keep_their_names_in_the_cache(
    tmp_path, astronaut, fake_detector
):
    # as ids, cat = 0 and dog = 1 would be read back as the FER classes Surprise and Fear
    import lionfer.data.datasets  # noqa: F401
    from lionfer.config_sections import DataConfig
    from lionfer.registry import DATASETS

    photos = photo_folder(tmp_path / "photos", astronaut, classes=("cat", "dog", "emu"))
    data = folder_data(photos)
    out = tmp_path / "out"
    prepare(data, out, size=32, progress=False)
    cache = DATASETS.get("manifest")(DataConfig(dataset="manifest", root=str(out)), seed=0)
    assert cache.class_names == data.class_names == ("cat", "dog", "emu")
    for part in ("train", "test"):
        source = getattr(data, part)
        labels = dict(zip(source.ids, source.labels.tolist(), strict=True))
        rows = [r for r in read_csv(out / "manifest.csv") if r["split"] == part]
        assert [labels[r["source"]] for r in rows] == getattr(cache, part).labels.tolist()
    numbered = photo_folder(tmp_path / "numbered", astronaut, classes=("1", "2"))
    with pytest.raises(InputError, match=r"class names \['1', '2'\] .* read as numbers"):
        prepare(folder_data(numbered), tmp_path / "numbered-out", size=32, progress=False)
    assert not (tmp_path / "numbered-out").exists()


def test_a_given_box_outside_or_far_larger_than_its_image_is_a_bad_box(tmp_path, astronaut):
    path = tmp_path / "face.jpg"
    astronaut.resize((256, 256)).save(path)
    boxes = [SMALL_BOX, (-500, -500, 100, 100), (10, 10, 100_000, 100_000), (200, 200, 100, 100)]
    train = ImageSet(images=[str(path)] * 4, labels=[HAPPY] * 4, boxes=boxes)
    data = FERData("boxed", CLASS_NAMES, train=train, test=train.subset(np.array([], int)))
    report = prepare(data, tmp_path / "out", size=32, progress=False)
    assert report.counts["done"] == 2 and report.counts["bad_box"] == 2  # the last: at the border
    assert report.counts["unreadable"] == 0 and report.counts["errors"] == 0
    reasons = [r["reason"] for r in read_csv(tmp_path / "out" / "failures.csv")]
    assert reasons[0].startswith("bad box: face box (x=-500, y=-500, w=100, h=100)")
    assert "lies outside its 256×256 image; fix the box" in reasons[0]
    assert "w=100000, h=100000) of" in reasons[1] and "is more than 2× its 256×256" in reasons[1]


def test_an_edited_manifest_is_not_replaced(tiny_data, tmp_path, fake_detector):
    out = tmp_path / "out"
    prepare(tiny_data, out, size=32, splits=("unlabeled",), progress=False)
    edited = "path,label,split\nfaces/unlabeled/000000.png,,unlabeled\n"
    (out / "manifest.csv").write_text(edited)
    with pytest.raises(InputError, match="manifest.csv was changed since prepare wrote it"):
        prepare(tiny_data, out, size=32, progress=False)
    assert (out / "manifest.csv").read_text() == edited
    (out / "manifest.csv").rename(out / "manifest-edited.csv")  # as the message says
    assert prepare(tiny_data, out, size=32, progress=False).rows == 4
    assert (out / "manifest-edited.csv").read_text() == edited
    again = prepare(tiny_data, out, size=32, progress=False)  # its own manifest: replaced
    assert again.counts["skipped_existing"] == 4
    (out / "prepare.json").write_text('{"dataset": "tiny", "si')  # damaged by hand
    with pytest.raises(InputError, match="prepare.json cannot be read"):
        prepare(tiny_data, out, size=32, progress=False)


def test_the_summary_says_what_was_left_out_and_where(tmp_path, astronaut, fake_detector):
    photos = photo_folder(tmp_path / "photos", astronaut)
    (photos / "sad" / "notes.txt").write_text("the sad ones")
    Image.new("RGB", (128, 128)).save(photos / "sad" / "wall.png")  # no face
    out = tmp_path / "out"
    summary = prepare(folder_data(photos), out, size=32, progress=False).summary()
    assert "no_face 1," in summary.splitlines()[0]
    assert "note: ignored 1 hidden or non-image file" in summary
    assert f"1 image gave no crop; {out / 'failures.csv'} lists each with its reason" in summary


def test_images_with_several_faces_are_listed_also_after_a_resume(
    tmp_path, astronaut, two_face_file
):
    path, _ = two_face_file
    single = tmp_path / "one.jpg"
    astronaut.resize((256, 256)).save(single)
    train = ImageSet(images=[str(path), str(single)], labels=[HAPPY, HAPPY])
    data = FERData("two", CLASS_NAMES, train=train, test=train.subset(np.array([], int)))
    out = tmp_path / "out"
    report = prepare(data, out, size=32, splits=("train",), progress=False)
    assert f"several faces in 1 image (kept the largest face of each); {out}" in str(report)
    listed = [{"source": str(path), "split": "train", "faces": 2}]
    assert json.loads((out / "prepare.json").read_text())["several_faces"] == listed
    again = prepare(data, out, size=32, splits=("train",), progress=False)
    assert again.counts["skipped_existing"] == 2 and again.counts["multi_face"] == 0
    assert json.loads((out / "prepare.json").read_text())["several_faces"] == listed


STOP_SCRIPT = """
import os, signal, sys
from lionfer.cli import main
from lionfer.data import prepare
from lionfer.data.faces import Face

calls = []

def detect(image, detector, turn=False):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.{signal})  # while the second image is under way
    return [Face((88, 33, 47, 47), 1.0, None, "fake")]

prepare.detect = detect
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("name,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_stops_prepare_after_the_image_under_way(tmp_path, astronaut, name, code):
    photos = photo_folder(tmp_path / "photos", astronaut)
    out = tmp_path / "out"
    argv = ["prepare", "data.dataset=folder", f"data.root={photos}", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-c", STOP_SCRIPT.replace("{signal}", name), *argv, "--size", "32"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == code, result.stderr
    assert f"interrupted by {name}; the faces cropped so far are kept in {out}" in result.stderr
    assert "Run the same command again to go on" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(list((out / "faces" / "train").iterdir())) == 2
    assert not json.loads((out / "prepare.json").read_text())["complete"]
    assert not (out / "manifest.csv").exists()


def test_an_interrupted_prepare_counts_the_images_of_the_split_under_way(
    tiny_data, tmp_path, monkeypatch
):
    """PrepareInterrupted.step: the images done, those of the split it stopped in among them."""

    def detect_then_stop(image, detector, turn=False):
        os.kill(os.getpid(), signal.SIGTERM)  # while the first image is under way
        return [Face(SMALL_BOX, 1.0, None, "fake")]

    monkeypatch.setattr("lionfer.data.prepare.detect", detect_then_stop)
    with pytest.raises(PrepareInterrupted) as stopped:
        prepare(tiny_data, tmp_path / "out", size=32, splits=("train",), progress=False)
    assert stopped.value.step == 1 and stopped.value.signum == signal.SIGTERM


def test_crop_names_and_the_cache_digest_take_a_name_that_is_not_utf8():
    """A source named in Latin-1 bytes (held with surrogate escapes), as the Python API may pass."""
    name = os.fsdecode(b"caf\xe9.jpg")
    images = ImageSet(np.zeros((1, 8, 8, 3), np.uint8), np.zeros(1, np.int64), ids=[name])
    (stem,) = crop_stems(images, "source")
    assert stem.startswith("caf-")
    data = FERData("latin1", CLASS_NAMES, images, images)
    assert image_sources(data)["train"].startswith("1 images, sha256 ")
