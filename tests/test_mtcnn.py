"""lionfer's MTCNN: the shipped weights (checksums, missing or altered files), the astronaut found
with plausible landmarks, tiny and empty images, and, where facenet-pytorch is installed, the same
networks and closely matching boxes as its implementation."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from lionfer.data import faces, mtcnn
from lionfer.data.mtcnn import MTCNN, WEIGHTS, WeightsError


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    return MTCNN()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()  # 512×512, one frontal face near (225, 120)


def iou(a, b) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


# weights


def test_shipped_weights_match_their_checksums_and_licence():
    folder = mtcnn.weights_dir()
    for filename, sha256 in WEIGHTS.values():
        assert hashlib.sha256((folder / filename).read_bytes()).hexdigest() == sha256
    notice = (folder / "MTCNN-LICENSE.txt").read_text()
    assert notice.count("MIT License\n\nCopyright") == 3
    assert all(sha256 in notice for _, sha256 in WEIGHTS.values())


def test_an_altered_weights_file_is_refused(tmp_path):
    for filename, _ in WEIGHTS.values():
        shutil.copy(mtcnn.weights_dir() / filename, tmp_path / filename)
    data = bytearray((tmp_path / "mtcnn_rnet.pt").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "mtcnn_rnet.pt").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"mtcnn_rnet\.pt is damaged or altered.*reinstall"):
        MTCNN(weights=tmp_path)


def test_a_missing_weights_file_says_which_and_how_to_fix(tmp_path):
    with pytest.raises(WeightsError, match=r"mtcnn_pnet\.pt is missing.*reinstall lionfer"):
        MTCNN(weights=tmp_path)


def test_missing_weights_stop_mtcnn_and_send_auto_to_haar(tmp_path, monkeypatch, astronaut):
    monkeypatch.setattr(mtcnn, "weights_dir", lambda: tmp_path)
    faces._mtcnn.cache_clear()
    try:
        with pytest.raises(faces.DetectorUnavailable, match="missing.*detector='haar'"):
            faces.detect(Image.fromarray(astronaut), "mtcnn")
        with pytest.warns(RuntimeWarning, match="missing.*falling back to the Haar cascade"):
            found = faces.detect(Image.fromarray(astronaut), "auto")
        assert [face.detector for face in found] == ["haar"]
    finally:
        faces._mtcnn.cache_clear()


# detection


def test_the_astronaut_is_one_face_with_plausible_landmarks(detector, astronaut):
    found = detector.detect(astronaut)
    assert len(found) == 1 and found.scores[0] > 0.99
    (x1, y1, x2, y2), points = found.boxes[0], found.landmarks[0]
    assert 150 < (x1 + x2) / 2 < 300 and 60 < (y1 + y2) / 2 < 180 and 60 < x2 - x1 < 140
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert np.all((points >= [x1, y1]) & (points <= [x2, y2]))
    # A PIL image gives the same answer as its array.
    again = detector.detect(Image.fromarray(astronaut))
    np.testing.assert_allclose(again.boxes, found.boxes)


def test_boxes_follow_the_face_when_the_image_is_scaled(detector, astronaut):
    (box,) = detector.detect(astronaut).boxes
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.Resampling.LANCZOS))
    (half,) = detector.detect(small).boxes
    assert iou(half * 2, box) > 0.8


def test_a_face_cut_by_the_image_border_is_boxed_past_the_border(detector, astronaut):
    # The crop starts inside the face: the box may leave the image, but not by much.
    found = detector.detect(np.ascontiguousarray(astronaut[90:400, 200:450]))
    assert len(found) == 1
    x1, y1, x2, y2 = found.boxes[0]
    assert -40 < x1 < 10 and -60 < y1 < 20 and 40 < x2 < 110


@pytest.mark.parametrize("shape", [(1, 1), (12, 12), (19, 40), (8, 300)])
def test_images_too_small_for_a_face_have_none(detector, shape):
    found = detector.detect(np.full((*shape, 3), 128, np.uint8))
    assert len(found) == 0
    assert found.boxes.shape == (0, 4) and found.landmarks.shape == (0, 5, 2)


def test_wrong_input_and_settings_are_refused(detector):
    with pytest.raises(ValueError, match="RGB image"):
        detector.detect(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="at least 12 px"):
        MTCNN(min_face_size=8)
    assert detector.scales(20, 1000) == [0.6]  # the short side sets the pyramid
    assert detector.scales(19, 1000) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_finds_the_same_face(detector, astronaut):
    on_gpu = MTCNN(device="cuda").detect(astronaut)
    assert len(on_gpu) == 1
    np.testing.assert_allclose(on_gpu.boxes, detector.detect(astronaut).boxes, atol=1.0)


# the same detector as facenet-pytorch's, where it is installed


def test_the_networks_compute_what_facenet_pytorch_computes(detector):
    reference = pytest.importorskip("facenet_pytorch.models.mtcnn")
    generator = torch.Generator().manual_seed(0)
    for ours, theirs, size in (
        (detector.pnet, reference.PNet(), 31),
        (detector.rnet, reference.RNet(), 24),
        (detector.onet, reference.ONet(), 48),
    ):
        theirs.eval()
        x = torch.randn(3, 3, size, size, generator=generator)
        with torch.no_grad():
            mine, ref = ours(x), theirs(x)
        probability = ref[-1][:, 1]
        torch.testing.assert_close(mine[0], probability)
        torch.testing.assert_close(mine[1], ref[0])  # box offsets
        if len(ref) == 3:
            torch.testing.assert_close(mine[2], ref[1])  # landmarks


def test_boxes_match_facenet_pytorch(detector, astronaut):
    reference = pytest.importorskip("facenet_pytorch")
    theirs = reference.MTCNN(keep_all=True, device="cpu")
    lfw = skdata.lfw_subset()[:100:10]  # 25×25 grey faces, upscaled onto a grey canvas
    images = [astronaut, np.ascontiguousarray(astronaut[40:340, 120:420])] + [
        np.stack([np.pad(np.asarray(Image.fromarray((f * 255).astype(np.uint8)).resize(
            (100, 100), Image.Resampling.BICUBIC)), 50, constant_values=128)] * 3, axis=-1)
        for f in lfw
    ]  # fmt: skip
    overlaps = []
    for image in images:
        mine = detector.detect(image)
        boxes, probs = theirs.detect(Image.fromarray(image))
        boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes.tolist(), float)
        boxes = boxes[[p is not None and p >= 0.9 for p in np.reshape(probs, -1)]]
        assert len(mine.boxes[mine.scores >= 0.9]) == len(boxes)
        overlaps += [max(iou(box, other) for other in boxes) for box in mine.boxes[: len(boxes)]]
    assert len(overlaps) >= 10
    assert min(overlaps) > 0.8 and np.median(overlaps) > 0.9
