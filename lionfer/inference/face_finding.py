"""How a Predictor finds faces: a detector by name (MTCNN or Haar through lionfer.data.faces, which
also searches a photo saved sideways turned) or one of your own, the contract that one must keep
and the checks on what it returns, and a found face's crop (FaceCrop) as the model reads it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from lionfer.data.faces import DETECT_MAX_SIDE, Face, detect, pick_faces
from lionfer.errors import InputError
from lionfer.inference.sources import described

FACE_SIZE = 112  # `lionfer prepare`'s default --size: faces are aligned at it, then resized
# MTCNN finds faces of at least 20 px (its min_face_size) and fails on a smaller image; the Haar
# cascade looks for 24 px and more. Smaller images (as detection sees them) hold no face to find.
MIN_DETECT_SIDE = 20
# A face detector of your own: RGB image -> faces (lionfer.data.faces.Face: box x, y, w, h in
# pixels, score, optional (5, 2) landmarks for the alignment, detector name).
Detector = Callable[[Image.Image], list[Face]]
DETECTOR_CONTRACT = (
    "a face detector must return a list of lionfer.data.faces.Face(box, score, landmarks, "
    "detector), box = (x, y, w, h) in the image's pixels, score a number or None, landmarks a "
    "(5, 2) array or None"
)


class DetectorContractError(InputError):
    """A detector of your own that returned something other than a list of Faces: a mistake in
    its code, the same on every image, so the job stops at the first instead of writing it as
    an error row of each image."""


class InvalidBox(ValueError):
    """A box from a detector of your own that holds no face of the image: one with no area, or
    none inside the image (see checked_faces). Its frame gets an error row."""


@dataclass
class FaceCrop:
    box: tuple[float, float, float, float]  # x, y, w, h in the frame's pixels
    score: float | None  # MTCNN probability or Haar neighbour count; None for cropped inputs
    tensor: torch.Tensor  # (3, S, S), the model's input


def detector_name(detector: str | Detector) -> str:
    """A detector's name: its own, or the name of a detector of your own (function or class)."""
    if callable(detector):
        return getattr(detector, "__name__", type(detector).__name__)
    return detector


def find_faces(image: Image.Image, detector: str | Detector, turn: bool = True) -> list[Face]:
    """The faces of an RGB image, largest first (ties: higher score first). With turn, a photo
    without a face as stored is searched turned (a photo saved sideways; faces.detect); a
    detector of your own sees the image as given."""
    if callable(detector):
        return pick_faces(checked_faces(detector(image), image, detector_name(detector)), "all")
    if min(image.size) * min(1.0, DETECT_MAX_SIDE / max(image.size)) < MIN_DETECT_SIDE:
        return []
    return pick_faces(detect(image, detector, turn=turn), "all")


def checked_faces(found: Any, image: Image.Image, name: str) -> list[Face]:
    """The faces the detector of your own called `name` returned for image, checked. Anything but
    an iterable of Faces with boxes of 4 numbers and a number (or None) for score breaks the
    contract (DETECTOR_CONTRACT): DetectorContractError, which stops the job. A box that is not
    finite, has no width or height, or lies wholly outside the image (its area clipped to the
    image is 0) holds no face of it: InvalidBox, an error row for the frame. A box partly outside
    is kept as given, as MTCNN's are (its crop is padded black)."""
    faces = _kept_contract(found, name)
    _check_boxes(faces, image, name)
    return faces


def _kept_contract(found: Any, name: str) -> list[Face]:
    """found as a list of Faces whose boxes are 4 numbers and scores numbers or None, or
    DetectorContractError."""
    if isinstance(found, str | bytes | Face) or not isinstance(found, Iterable):
        raise DetectorContractError(
            f"the face detector {name} returned {described(found)}; {DETECTOR_CONTRACT}"
        )
    faces = list(found)
    for face in faces:
        if not isinstance(face, Face):
            raise DetectorContractError(
                f"the face detector {name} returned a list holding {described(face)}; "
                f"{DETECTOR_CONTRACT}"
            )
        box, score = face.box, face.score
        if not (
            isinstance(box, tuple | list | np.ndarray)
            and len(box) == 4
            and all(isinstance(v, numbers.Real) for v in box)
        ):
            raise DetectorContractError(
                f"the face detector {name} returned a Face whose box is {box!r}, not 4 "
                f"numbers; {DETECTOR_CONTRACT}"
            )
        if score is not None and not isinstance(score, numbers.Real):
            raise DetectorContractError(
                f"the face detector {name} returned a Face whose score is {score!r}; "
                f"{DETECTOR_CONTRACT}"
            )
    return faces


def _check_boxes(faces: list[Face], image: Image.Image, name: str) -> None:
    """InvalidBox for the first box that is not finite or has no area inside the image."""
    width, height = image.size
    for face in faces:
        x, y, w, h = (float(v) for v in face.box)
        inside_w = min(x + w, width) - max(x, 0.0)
        inside_h = min(y + h, height) - max(y, 0.0)
        finite = all(math.isfinite(v) for v in (x, y, w, h))
        if not finite or min(w, h, inside_w, inside_h) <= 0:
            why = "is not finite" if not finite else "has no area"
            where = "" if not finite or min(w, h) <= 0 else " inside the image"
            raise InvalidBox(
                f"the face detector {name} returned the box (x, y, w, h) = "
                f"({x:g}, {y:g}, {w:g}, {h:g}), which {why}{where}, for a {width}×{height} "
                "image"
            )
