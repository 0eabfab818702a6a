"""Which detector `auto` trusts: frames without a face (title cards whose lettering the Haar cascade
takes for faces, textures, noise) yield no face, faces MTCNN finds are all kept, and Haar runs
only where MTCNN cannot."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from predict_helpers import faces as rendered_faces
from predict_helpers import scene
from skimage import data as skdata

from lionfer.data import faces
from lionfer.data.datasets.synthetic import generate
from lionfer.data.faces import detect


def title_card(scale: float, thickness: int) -> Image.Image:
    """A 640×360 video title card: one line of light lettering on a flat teal ground."""
    card = np.full((360, 640, 3), (24, 208, 180), np.uint8)
    cv2.putText(
        card, "Quarterly Results", (40, 200), cv2.FONT_HERSHEY_DUPLEX, scale, (240, 215, 190),
        thickness, cv2.LINE_AA,
    )  # fmt: skip
    return Image.fromarray(card)


TITLE_CARDS = [title_card(1.5, 4), title_card(2.0, 6), title_card(3.0, 6)]


def test_title_cards_have_no_face_although_haar_sees_some():
    # Haar's "faces" are in the rounded Q and O of the lettering; MTCNN rejects them.
    assert sum(len(detect(card, "haar")) for card in TITLE_CARDS) > 0
    for card in TITLE_CARDS:
        assert detect(card, "auto") == []
        assert detect(card, "mtcnn") == []


def face_free_frames() -> list[Image.Image]:
    frames = [Image.fromarray(getattr(skdata, name)()).convert("RGB")
              for name in ("brick", "grass", "text", "page", "coffee", "rocket")]  # fmt: skip
    rng = np.random.default_rng(0)
    for index, text in enumerate(("THE END", "Chapter One", "OOO 808 GOOD")):
        frame = Image.new("RGB", (640, 360), tuple(int(v) for v in rng.integers(0, 256, 3)))
        font = ImageFont.load_default(size=60 + 20 * index)
        ImageDraw.Draw(frame).text((30, 120), text, fill=(250, 250, 250), font=font)
        frames.append(frame)
    blur = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 6)
    frames.append(Image.fromarray(cv2.normalize(blur, None, 0, 255, cv2.NORM_MINMAX)))
    return frames


def test_textures_scenes_and_lettering_have_no_face():
    assert [len(detect(frame, "auto")) for frame in face_free_frames()] == [0] * 10


def test_auto_keeps_every_face_mtcnn_finds():
    rendered = generate(6, 128, 0.0, np.random.default_rng(0)).images
    images = [
        Image.fromarray(face).resize((256, 256), Image.Resampling.BICUBIC) for face in rendered
    ]
    images.append(Image.fromarray(skdata.astronaut()))
    for image in images:
        by_mtcnn, by_auto = detect(image, "mtcnn"), detect(image, "auto")
        assert [face.box for face in by_auto] == [face.box for face in by_mtcnn]
        assert {face.detector for face in by_auto} <= {"mtcnn"}
    assert sum(len(detect(image, "auto")) for image in images) >= 4


def test_haar_runs_only_when_mtcnn_cannot(monkeypatch):
    def no_haar(image):
        raise AssertionError("auto ran the Haar cascade although MTCNN ran")

    monkeypatch.setattr(faces, "_detect_haar", no_haar)
    assert detect(TITLE_CARDS[0], "auto") == []  # MTCNN ran and found nothing: that is the answer

    monkeypatch.undo()
    monkeypatch.setattr(faces, "_mtcnn_or_none", lambda: None)  # MTCNN cannot be built
    assert [face.detector for face in detect(Image.fromarray(skdata.astronaut()), "auto")] == [
        "haar"
    ]


@pytest.mark.parametrize("size", [(1, 1), (10, 14), (19, 19)])
def test_images_too_small_for_a_face_have_none(size):
    image = Image.new("RGB", size, (128, 128, 128))
    for detector in faces.DETECTORS:
        assert detect(image, detector) == []


def test_threads_detecting_with_haar_at_once_each_get_their_own_images_faces():
    # One cascade shared by every thread gave an image the faces of another detected at the
    # same time (a photo came back with the box of the face in the photo before it).
    images = [
        scene(rendered_faces((c,)), at=((20 + 37 * k, 10 + 9 * k),))
        for k, c in enumerate((0, 3, 4, 5, 1, 2))
    ]
    images.append(scene(rendered_faces((3, 0)), at=((10, 40), (200, 20))))

    def boxes(image):  # the cascade's own order varies with its threads: compare them sorted
        return sorted(tuple(round(v) for v in face.box) for face in detect(image, "haar"))

    alone = [boxes(image) for image in images]
    assert all(alone) and len(alone[-1]) == 2
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(boxes, images * 4))
    assert together == alone * 4
