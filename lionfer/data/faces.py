"""Face detection and alignment, offline: MTCNN (lionfer.data.mtcnn, its weights shipped inside
lionfer) with OpenCV's Haar cascade only where MTCNN cannot run, a 5-point similarity alignment to
the ArcFace template, a square box crop when there are no landmarks, and the rule that picks faces
in a crowded image. Detectors are built on first use and cached, never at import (the Haar
cascade once per thread: it cannot serve two at once).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

DETECTORS = ("auto", "mtcnn", "haar")
MULTI_FACE = ("largest", "all")

# The standard ArcFace/InsightFace 5-point template for 112×112 crops, (x, y) per point in the
# order MTCNN returns them: eye, eye, nose tip, mouth corner, mouth corner (image-left first).
# align() scales it by size / 112.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
BOX_MARGIN = 1.2  # a detected box without landmarks is enlarged by this before the square crop
MTCNN_MIN_SCORE = 0.9  # MTCNN's own last stage keeps ≥ 0.7; 0.9 also drops weak detections
DETECT_MAX_SIDE = 1024  # larger images are shrunk for detection only (speed); crops use full res
HAAR_FILE = "haarcascade_frontalface_default.xml"
# MTCNN's small convolutions gain nothing from more torch threads and lose 3-10x when the cores are
# shared (0.14 s vs 0.5-2 s per 512 px image on a busy 2-core machine), so detect on one thread.
MTCNN_THREADS = 1
# Where a photo shows no sure face as stored, detect(turn=True) searches it turned a quarter each
# way and upside down: a photo saved sideways without an EXIF rotation (EXIF-rotated ones are
# turned upright when read). Degrees counter-clockwise, as PIL's transposes.
TURNS = {
    90: Image.Transpose.ROTATE_90,
    270: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
}
# A face found only in a turned photo must score at least this: three more looks at a photo find
# more false faces in objects and textures (among scikit-image's sample pictures, MTCNN found one
# at 0.92 in the coffee cup turned a quarter, Haar 6 to 13 neighbours in coins, gravel, cells and
# a clock; the astronaut's face, turned, scores 0.99+ and 29 to 44). For MTCNN it is also the
# score below which a photo is searched turned though a face was found as stored: MTCNN finds
# some faces lying on their side (the astronaut turned clockwise: 0.96) with landmarks that do
# not fit them.
TURNED_MIN_SCORE = {"mtcnn": 0.99, "haar": 20.0}
SAME_FACE_IOU = 0.3  # a face seen turned and one seen as stored with this overlap are one face


class DetectorUnavailable(RuntimeError):
    """A face detector that cannot be built here (a missing package or model file)."""


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in pixel coordinates of the image given to detect()."""

    box: tuple[float, float, float, float]  # x, y, w, h
    score: float  # MTCNN: face probability; Haar: neighbour count (not a probability)
    landmarks: np.ndarray | None  # (5, 2) x, y in ARCFACE_TEMPLATE_112's point order, or None
    detector: str
    turned: int = 0  # degrees counter-clockwise the image was turned to find it (see detect)

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


def detect(
    image: Image.Image,
    detector: str = "auto",
    min_score: float = MTCNN_MIN_SCORE,
    turn: bool = False,
) -> list[Face]:
    """Faces in an RGB image. "auto" runs MTCNN, and the Haar cascade only when MTCNN cannot be
    built (its weights missing or damaged; a warning says so), never when MTCNN ran and found
    nothing: Haar finds "faces" in lettering and textures that MTCNN rejects. "mtcnn" and "haar"
    run only that detector. With turn, an image without a face (for MTCNN: without one scoring
    TURNED_MIN_SCORE) is searched again turned by each of TURNS (_surer_when_turned): faces read
    turned come back in the coordinates of the image given, with .turned set, and align() crops
    them upright."""
    if detector not in DETECTORS:
        raise ValueError(f"unknown face detector {detector!r}; choose one of {DETECTORS}")
    small, scale = _shrink(image.convert("RGB"), DETECT_MAX_SIDE)
    if detector == "haar":
        find = _detect_haar
    elif detector == "mtcnn":
        model = _mtcnn()
        find = functools.partial(_detect_mtcnn, model, min_score=min_score)
    else:
        model = _mtcnn_or_none()
        find = (
            functools.partial(_detect_mtcnn, model, min_score=min_score)
            if model is not None
            else _detect_haar
        )
    faces = find(small)
    best = max((f.score for f in faces), default=-np.inf)
    if turn and (not faces or (faces[0].detector == "mtcnn" and best < TURNED_MIN_SCORE["mtcnn"])):
        turned = {
            degrees: [_turned_back(f, degrees, small.size) for f in find(small.transpose(t))]
            for degrees, t in TURNS.items()
        }
        faces = _surer_when_turned(faces, turned)
    return [_rescaled(face, 1.0 / scale) for face in faces]


def _surer_when_turned(faces: list[Face], turned: dict[int, list[Face]]) -> list[Face]:
    """The faces of a photo read again turned (turned: per turn, its faces in the photo's
    coordinates). Without a face as stored: the faces of the turn whose best face scores highest,
    where that scores TURNED_MIN_SCORE. With faces: each stored face that a face seen turned
    overlaps (SAME_FACE_IOU) is that face where it scores TURNED_MIN_SCORE and more than it (a face
    on its side, read upright); a face seen turned scoring TURNED_MIN_SCORE that overlaps none is
    added, the surest of those that overlap each other (a photo stored upside down, whose stored
    reading found only a weaker false face); no face found as stored is lost."""
    sure = {
        d: [f for f in found if f.score >= TURNED_MIN_SCORE[f.detector]]
        for d, found in turned.items()
    }
    if not faces:
        top = {d: max((f.score for f in found), default=-np.inf) for d, found in sure.items()}
        degrees = max(top, key=top.get)
        return turned[degrees] if top[degrees] > -np.inf else []
    candidates = [f for found in sure.values() for f in found]
    read = []
    for face in faces:
        better = [
            t for t in candidates if t.score > face.score and iou(t.box, face.box) >= SAME_FACE_IOU
        ]
        choice = max(better, key=lambda t: t.score, default=face)
        if all(choice is not r for r in read):
            read.append(choice)
    for face in sorted(candidates, key=lambda t: -t.score):
        if all(iou(face.box, f.box) < SAME_FACE_IOU for f in [*faces, *read]):
            read.append(face)
    return read


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two boxes (x, y, w, h)."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _turned_back(face: Face, degrees: int, size: tuple[int, int]) -> Face:
    """A face found in an image (width, height = size) turned by degrees counter-clockwise, in
    the coordinates of the image as given."""
    width, height = size

    def back(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if degrees == 90:
            return width - v, u
        if degrees == 270:
            return v, height - u
        return width - u, height - v

    u, v, w, h = face.box
    x0, y0 = back(np.array([u, u + w]), np.array([v, v + h]))
    box = (float(x0.min()), float(y0.min()), float(np.ptp(x0)), float(np.ptp(y0)))
    landmarks = None
    if face.landmarks is not None:
        landmarks = np.stack(back(face.landmarks[:, 0], face.landmarks[:, 1]), axis=1)
    return Face(box, face.score, landmarks, face.detector, degrees)  # type: ignore[arg-type]


def pick_faces(faces: list[Face], multi_face: str = "largest") -> list[Face]:
    """The faces to keep, largest box area first (ties: higher score first).

    "largest" keeps only the first; "all" keeps every face in that order (crop k is _f{k}).
    """
    if multi_face not in MULTI_FACE:
        raise ValueError(f"unknown multi_face rule {multi_face!r}; choose one of {MULTI_FACE}")
    ranked = sorted(faces, key=lambda face: (face.area, face.score), reverse=True)
    return ranked[:1] if multi_face == "largest" else ranked


def align(image: Image.Image, face: Face, size: int) -> Image.Image:
    """A size×size RGB crop of the face: a similarity transform of its 5 landmarks onto the ArcFace
    template scaled to size, or, without usable landmarks, a square box crop (BOX_MARGIN), turned
    upright where the face was found in the image turned (Face.turned)."""
    if face.landmarks is not None:
        aligned = _warp_to_template(image.convert("RGB"), face.landmarks, size)
        if aligned is not None:
            return aligned
    square = crop_square(image, face.box, size, BOX_MARGIN)
    return square.transpose(TURNS[face.turned]) if face.turned else square


def crop_square(
    image: Image.Image, box: tuple[float, float, float, float], size: int, margin: float = 1.0
) -> Image.Image:
    """The square of side max(w, h) · margin centred on box (x, y, w, h), resized to size×size.

    Along an axis where the square fits in the image it is shifted inside (clamped); where it does
    not fit it stays centred and the outside is padded black.
    """
    x, y, w, h = (float(v) for v in box)
    side = max(1, round(max(w, h) * margin))
    left = _clamped_start(x + w / 2 - side / 2, side, image.width)
    top = _clamped_start(y + h / 2 - side / 2, side, image.height)
    # PIL pads a crop that leaves the image with zeros (black).
    square = image.convert("RGB").crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.Resampling.BICUBIC)


def _clamped_start(start: float, side: int, length: int) -> int:
    if side <= length:
        return int(min(max(round(start), 0), length - side))
    return round(start)


def _warp_to_template(image: Image.Image, landmarks: np.ndarray, size: int) -> Image.Image | None:
    """Warp so the landmarks land on the scaled template; None if no transform can be fitted."""
    source = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    target = ARCFACE_TEMPLATE_112 * (size / 112.0)
    matrix = _similarity(source, target)
    if matrix is None:
        return None
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.9:
        # warpAffine samples bilinearly and would alias a big face; shrink with PIL's
        # antialiasing first so the warp itself is close to 1:1.
        shrunk = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        factors = np.array([shrunk[0] / image.width, shrunk[1] / image.height], dtype=np.float32)
        image = image.resize(shrunk, Image.Resampling.BILINEAR, reducing_gap=None)
        matrix = _similarity(source * factors, target)
        if matrix is None:
            return None
    warped = cv2.warpAffine(
        np.asarray(image), matrix, (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )  # fmt: skip
    return Image.fromarray(warped)


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    if not np.all(np.isfinite(source)):
        return None
    matrix, _ = cv2.estimateAffinePartial2D(source, target, method=cv2.LMEDS)
    return matrix


def _shrink(image: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    scale = min(1.0, max_side / max(image.size))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR), scale


def _rescaled(face: Face, factor: float) -> Face:
    if factor == 1.0:
        return face
    box = tuple(float(v) * factor for v in face.box)
    landmarks = None if face.landmarks is None else face.landmarks * factor
    return Face(box, face.score, landmarks, face.detector, face.turned)  # type: ignore[arg-type]


def _detect_mtcnn(model: Any, image: Image.Image, min_score: float) -> list[Face]:
    with _torch_threads(MTCNN_THREADS):
        found = model.detect(image)
    return [
        Face((x1, y1, x2 - x1, y2 - y1), float(p), landmarks, "mtcnn")
        for (x1, y1, x2, y2), p, landmarks in zip(
            found.boxes.tolist(), found.scores, found.landmarks, strict=True
        )
        if p >= min_score
    ]


def _detect_haar(image: Image.Image) -> list[Face]:
    gray = cv2.equalizeHist(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY))
    min_side = max(24, min(gray.shape) // 20)
    rects, neighbours = _haar().detectMultiScale2(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
    )
    return [
        Face(tuple(float(v) for v in rect), float(n), None, "haar")  # type: ignore[arg-type]
        for rect, n in zip(np.reshape(rects, (-1, 4)), np.reshape(neighbours, -1), strict=True)
    ]


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run a block on at most count torch threads, restoring the caller's setting after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(min(count, previous))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@functools.cache
def _mtcnn() -> Any:
    """lionfer's MTCNN on CPU, from the weight files shipped in lionfer/weights; its networks'
    first random weights, which the files replace, are drawn from a generator of their own."""
    from lionfer.data.mtcnn import MTCNN, WeightsError

    try:
        with _private_initialisers():
            return MTCNN(device="cpu")
    except WeightsError as error:
        raise DetectorUnavailable(f"{error} (or use detector='haar')") from error


def _private_initialisers() -> Any:
    """A block (of this thread) in which torch's weight initialisers draw from a generator of
    their own, not from torch's global one: building a detector leaves a caller's seeded stream,
    and a run training in another thread, where they were."""
    import torch
    from torch.nn import init
    from torch.overrides import TorchFunctionMode

    fills = {init.uniform_, init.normal_, init.trunc_normal_, init.kaiming_uniform_}
    fills |= {init.kaiming_normal_, init.xavier_uniform_, init.xavier_normal_, init.orthogonal_}
    fills |= {init.sparse_, torch.Tensor.uniform_, torch.Tensor.normal_}
    generator = torch.Generator().manual_seed(0)

    class PrivateInitialisers(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = dict(kwargs or {})
            if func in fills and kwargs.get("generator") is None:
                kwargs["generator"] = generator
            return func(*args, **kwargs)

    return PrivateInitialisers()


def _mtcnn_or_none() -> Any | None:
    try:
        return _mtcnn()
    except DetectorUnavailable as error:
        # Python's default filter shows this once per process, not once per image.
        warnings.warn(f"{error}; falling back to the Haar cascade", RuntimeWarning, stacklevel=3)
        return None


_HAAR = threading.local()


def _haar() -> cv2.CascadeClassifier:
    """This thread's Haar cascade, built on its first use in the thread (about 40 ms). One cascade
    called from several threads at once mixes their images up (detectMultiScale2 keeps its
    working state in the object: one image got another's faces), so threads sharing a Predictor
    each detect with their own; a lock instead would make them take turns."""
    cascade = getattr(_HAAR, "cascade", None)
    if cascade is None:
        path = cv2.data.haarcascades + HAAR_FILE
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(
                f"cannot load the Haar cascade {path}; reinstall opencv-python-headless"
            )
        _HAAR.cascade = cascade
    return cascade
