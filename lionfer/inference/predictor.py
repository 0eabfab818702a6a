"""Using a trained model on new images and videos: `load(MODEL)` → Predictor.

MODEL is a run folder, a checkpoint (.pt) or an exported ONNX file. The Predictor finds and aligns
faces as `lionfer prepare` does (MTCNN with 5-point alignment to a FACE_SIZE crop, Haar fallback;
or takes each input as one face with cropped=True), classifies them in batches with the model's
evaluation transform, and yields one row per face with stable columns (`columns()`); with
embeddings=True each row also holds the face's embedding, the unit-length feature the classifier
reads (`emb_0` ... `emb_<D-1>`). The model runs in lionfer.inference.classifiers, faces are found
in lionfer.inference.face_finding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lionfer.data import transforms
from lionfer.data.faces import DETECTORS, DetectorUnavailable, Face, align
from lionfer.data.images import ImageError, open_photo
from lionfer.device import inference_device, resolve_device
from lionfer.errors import InputError
from lionfer.inference.classifiers import OnnxClassifier, TorchClassifier, over_trained
from lionfer.inference.face_finding import (
    FACE_SIZE,
    Detector,
    DetectorContractError,
    FaceCrop,
    InvalidBox,
    checked_faces,
    detector_name,
    find_faces,
)
from lionfer.inference.model_file import ModelInfo, checkpoint_file, torch_model
from lionfer.inference.sources import (
    Source,
    collect_sources,
    described,
    input_items,
    memory_images,
)
from lionfer.inference.video import (
    DamagedVideoError,
    EmptyVideoError,
    VideoError,
    clip_frames,
)

FIXED_COLUMNS = ("source", "frame", "time_s", "face", "x", "y", "w", "h", "score", "label")


def probability_column(class_name: str) -> str:
    """p_<class name lower-cased, non-word characters as '_'>, e.g. p_surprise."""
    return "p_" + re.sub(r"\W+", "_", class_name.strip().lower())


def embedding_columns(dim: int) -> list[str]:
    return [f"emb_{k}" for k in range(dim)]


def columns(class_names: Iterable[str], embedding_dim: int = 0) -> list[str]:
    """The output columns; embedding_dim > 0: the embedding's too (emb_0 ...)."""
    probabilities = [probability_column(n) for n in class_names]
    return [*FIXED_COLUMNS, *probabilities, *embedding_columns(embedding_dim), "error"]


def load(
    model: str | Path,
    device: str = "cpu",
    checkpoint: str = "last",
    detector: str | Detector = "auto",
    face_size: int = FACE_SIZE,
    batch_size: int = 32,
    embeddings: bool = False,
) -> Predictor:
    """A Predictor for a run folder (its checkpoints/<checkpoint>.pt), a checkpoint file or an
    exported .onnx file. device: "cpu", "cuda", "cuda:N", "mps" or "auto" (CUDA where visible,
    else the CPU, as train.device=auto); detector: "auto", "mtcnn", "haar", or your own Detector;
    embeddings: each row of predict() also holds the face's embedding."""
    path = checkpoint_file(model, checkpoint)
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise InputError(
            f"device must be a name such as 'cpu', 'cuda', 'cuda:0', 'mps' or 'auto', got "
            f"{device!r}"
        )
    if device == "auto":
        device = str(resolve_device(device))
    inference_device(device)  # a device that is not there is refused before any work
    if path.suffix.lower() == ".onnx":
        classifier = OnnxClassifier(path, device)
        info = classifier.info
    else:
        module, info = torch_model(path, device)
        classifier = TorchClassifier(module)
    return Predictor(classifier, info, detector, face_size, batch_size, embeddings)


@dataclass
class Frame:
    """One image or video frame and what was found in it. A frame with an error gives one row
    with that error and no label; `reason` is its key in the skip report."""

    source: Source
    index: int
    time_s: float | None
    faces: list[FaceCrop] = field(default_factory=list)
    error: str = ""
    reason: str = ""
    image: Image.Image | None = None  # kept only for annotation
    scale: int = 1  # the file's pixels per pixel of image (a huge JPEG is read reduced)
    probs: np.ndarray | None = None  # (F, C), set when its batch has run
    features: np.ndarray | None = None  # (F, D), set with probs where embeddings are asked
    # the last frame of its batch: a job going on after it batches the frames as before, so
    # that its probabilities are those of an uninterrupted job to the last digit
    batch_end: bool = False


@dataclass(frozen=True, eq=False)
class SourceDone:
    """Every row of this source has been yielded before this marker."""

    source: Source


def whole_number(what: str, value: Any, minimum: int) -> None:
    """Refuse a setting that is not a whole number of at least `minimum` (2.5 or "2" would pass
    a comparison, or fail it with a TypeError, and then be misused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{what} must be a whole number of at least {minimum}, got {value!r}")


class Predictor:
    """Faces in, probabilities out; see the module docstring."""

    def __init__(
        self,
        classify: Callable[[torch.Tensor], np.ndarray],
        info: ModelInfo,
        detector: str | Detector = "auto",
        face_size: int = FACE_SIZE,
        batch_size: int = 32,
        embeddings: bool = False,
    ):
        if not callable(detector) and detector not in DETECTORS:
            raise InputError(f"unknown face detector {detector!r}; choose one of {DETECTORS}")
        if not isinstance(embeddings, bool | np.bool_):  # "no" would read as True
            raise InputError(f"embeddings must be True or False, got {embeddings!r}")
        whole_number("the batch size (--batch-size, batch_size)", batch_size, 1)
        whole_number("the face size (--face-size, face_size)", face_size, 8)
        if embeddings and not hasattr(classify, "feature_dim"):
            raise InputError(
                "embeddings=True needs a classifier that gives them: a feature_dim attribute and "
                "classify(x, features=True) returning (probabilities, features)"
            )
        if embeddings and classify.feature_dim is None:
            classify(torch.zeros(0), features=True)  # a file without them: raises, naming why
        self.classify, self.info = classify, info
        self.detector, self.face_size, self.batch_size = detector, face_size, batch_size
        self.embedding_dim = classify.feature_dim if embeddings else 0  # 0: no embeddings
        self.transform = transforms.evaluate(info.image_size, info.mean, info.std)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    @property
    def trained_classes(self) -> tuple[str, ...]:
        """The classes the model had labeled training images of: the only ones it names."""
        return self.info.trained_classes

    @property
    def columns(self) -> list[str]:
        return columns(self.class_names, self.embedding_dim)

    def probabilities(self, images: Any) -> np.ndarray:
        """(N, C) class probabilities of face crops, in batches of batch_size: one or a list (any
        iterable) of PIL images or uint8 arrays, as predict takes them ((H, W, 3), (H, W),
        (N, H, W, 3)). A class the model had no labeled training image of gets 0 (see
        classifiers.over_trained). An item that is no face crop, an empty image or one that
        cannot be decoded is an InputError naming its position: the result has no row to say so
        in."""
        return self._classify(self._crop_tensors(images, "probabilities"))[0]

    def embeddings(self, images: Any) -> np.ndarray:
        """(N, D) embeddings of face crops (unit length: the feature the classifier reads, so
        a dot product is their cosine similarity), taken as probabilities takes them."""
        return self._classify(self._crop_tensors(images, "embeddings"), features=True)[1]

    def _crop_tensors(self, images: Any, method: str) -> torch.Tensor:
        crops = []
        for k, item in enumerate(input_items(images)):
            if not isinstance(item, Image.Image | np.ndarray):
                files = "; for files, use predict(paths, cropped=True)"
                raise InputError(
                    f"{method}: item {k} is {described(item)}, not a face crop (a PIL image or a "
                    f"uint8 array){files if isinstance(item, str | Path) else ''}"
                )
            try:
                images_k = memory_images(item)
            except InputError as error:
                raise InputError(f"{method}: item {k}: {error}") from error
            for crop in images_k:
                if 0 in crop.size:  # predict's row says unreadable: here nothing could
                    width, height = crop.size
                    raise InputError(
                        f"{method}: item {k} is an empty image ({width}×{height} pixels); a face "
                        "crop needs at least one pixel"
                    )
            crops += images_k
        size = self.info.image_size
        if not crops:
            return torch.zeros((0, 3, size, size))
        return torch.stack([self.transform(crop) for crop in crops])

    def _classify(
        self, tensors: torch.Tensor, features: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, C) probabilities (float64) and, with features, (N, D) embeddings (float32)."""
        if not len(tensors):
            dim = getattr(self.classify, "feature_dim", None) if features else 0
            if dim is None:
                self.classify(tensors, features=True)  # a file without embeddings: raises
            empty = np.zeros((0, len(self.class_names)))
            return empty, np.zeros((0, dim or 0), dtype=np.float32) if features else None
        size = self.batch_size
        batches = [tensors[i : i + size] for i in range(0, len(tensors), size)]
        if not features:  # a classify of one argument (x) serves too
            probs = np.concatenate([self.classify(b) for b in batches]).astype(np.float64)
            return over_trained(probs, self.class_names, self.trained_classes), None
        probs, feats = zip(*(self.classify(b, features=True) for b in batches), strict=True)
        probs = np.concatenate(probs).astype(np.float64)
        probs = over_trained(probs, self.class_names, self.trained_classes)
        return probs, np.concatenate(feats).astype(np.float32)

    @property
    def detector_name(self) -> str:
        return detector_name(self.detector)

    def detect(self, image: Image.Image, turn: bool = True) -> list[Face]:
        """The faces of an RGB image, largest first (ties: higher score first). With turn, a photo
        without a face as stored is searched turned (a photo saved sideways; faces.detect); a
        detector of your own sees the image as given."""
        return find_faces(image, self.detector, turn)

    def checked_faces(self, found: Any, image: Image.Image) -> list[Face]:
        """The faces a detector of your own returned for image, checked: see
        lionfer.inference.face_finding.checked_faces."""
        return checked_faces(found, image, self.detector_name)

    def faces(self, image: Image.Image, cropped: bool = False, turn: bool = True) -> list[FaceCrop]:
        """Every face of an RGB image, largest first (as `prepare --multi-face all` orders them),
        aligned to face_size (upright where the image was turned to find it); with cropped=True
        the whole image is one face. turn: see detect (video frames are not turned)."""
        if cropped:
            return [FaceCrop((0.0, 0.0, *map(float, image.size)), None, self.transform(image))]
        found = self.detect(image, turn)
        return [
            FaceCrop(f.box, f.score, self.transform(align(image, f, self.face_size))) for f in found
        ]

    def predict(self, images: Any, cropped: bool = False, frame_stride: int = 1):
        """A pandas DataFrame, one row per face (columns()): images are paths (image or video
        files, folders, globs), PIL images or uint8 RGB arrays, one or a list (any iterable).
        Its column types are fixed whatever the rows hold (an empty table, or one of errors
        only, included): frame and face Int64, source, label and error object with None where
        missing (pandas 3 would infer its str type, with NaN, only where some value is text),
        the others float64; so tables of several calls concatenate and write with one schema."""
        import pandas as pd

        sources, *_ = collect_sources(input_items(images))
        rows = [
            row
            for item in self.stream(sources, cropped, frame_stride)
            if isinstance(item, Frame)
            for row in self.rows(item)
        ]
        table = pd.DataFrame(rows, columns=self.columns)
        text = ["source", "label", "error"]
        types = {c: "Int64" if c in ("frame", "face") else "float64" for c in self.columns}
        table = table.astype({c: t for c, t in types.items() if c not in text})
        words = table[text].astype(object)
        table[text] = words.where(words.notna(), None)
        return table

    def stream(
        self,
        sources: Iterable[Source],
        cropped: bool = False,
        frame_stride: int = 1,
        keep_images: bool = False,
        start_frames: dict[str, int] | None = None,
    ) -> Iterator[Frame | SourceDone]:
        """Frames with their probabilities, in input order, and a SourceDone after each source.

        At most batch_size frames (and about batch_size faces) are held at once, so memory is
        flat however long a video is. start_frames: a clip's first frame by its source name (a
        job going on where it stopped); the others start at frame 0.
        """
        start_frames = start_frames or {}
        whole_number("the frame stride (--frame-stride, frame_stride)", frame_stride, 1)
        if not isinstance(cropped, bool | np.bool_):  # "no" would read as True
            raise InputError(f"cropped must be True or False, got {cropped!r}")
        pending: list[Frame | SourceDone] = []
        held_frames = held_faces = 0
        for source in sources:
            start = start_frames.get(source.name, 0)
            for frame in self._frames(source, cropped, frame_stride, keep_images, start):
                pending.append(frame)
                held_frames, held_faces = held_frames + 1, held_faces + len(frame.faces)
                if held_faces >= self.batch_size or held_frames >= self.batch_size:
                    yield from self._flush(pending)
                    held_frames = held_faces = 0
            pending.append(SourceDone(source))
        yield from self._flush(pending)

    def _flush(self, pending: list[Frame | SourceDone]) -> Iterator[Frame | SourceDone]:
        held = [item for item in pending if isinstance(item, Frame) and item.faces]
        if held:
            tensors = torch.stack([f.tensor for item in held for f in item.faces])
            probs, features = self._classify(tensors, features=self.embedding_dim > 0)
            start = 0
            for item in held:
                item.probs = probs[start : start + len(item.faces)]
                if features is not None:
                    item.features = features[start : start + len(item.faces)]
                start += len(item.faces)
        items = list(pending)
        pending.clear()
        frames = [item for item in items if isinstance(item, Frame)]
        if frames:
            frames[-1].batch_end = True
        yield from items

    def _frames(
        self, source: Source, cropped: bool, stride: int, keep: bool, start: int = 0
    ) -> Iterator[Frame]:
        if source.kind == "memory":
            if source.error:  # a damaged image opened lazily: as its file would be by path
                error = f"unreadable: {source.error}"
                yield Frame(source, 0, None, error=error, reason="unreadable")
                return
            if 0 in source.image.size:
                width, height = source.image.size
                error = f"unreadable: the image is empty ({width}×{height} pixels)"
                yield Frame(source, 0, None, error=error, reason="unreadable")
                return
            yield self._frame(source, 0, None, source.image, cropped, keep)
        elif source.kind == "image":
            try:
                image, scale = open_photo(source.path)
            except ImageError as error:
                yield Frame(source, 0, None, error=f"unreadable: {error}", reason="unreadable")
                return
            yield self._frame(source, 0, None, image, cropped, keep, scale)
        else:
            try:
                for index, time_s, image in clip_frames(source.path, stride, start):
                    yield self._frame(source, index, time_s, image, cropped, keep)
            except DamagedVideoError as error:
                yield Frame(
                    source,
                    error.frame,
                    error.time_s,
                    error=f"damaged video: {error}",
                    reason="damaged_video",
                )
            except VideoError as error:
                reason = "empty_video" if isinstance(error, EmptyVideoError) else "unreadable"
                yield Frame(
                    source, 0, None, error=f"{reason.replace('_', ' ')}: {error}", reason=reason
                )

    def _frame(
        self,
        source: Source,
        index: int,
        time_s: float | None,
        image: Image.Image,
        cropped: bool,
        keep: bool,
        scale: int = 1,
    ) -> Frame:
        frame = Frame(source, index, time_s, image=image if keep else None, scale=scale)
        try:
            frame.faces = self.faces(image, cropped, turn=source.kind != "video")
        except DetectorUnavailable as error:  # a set-up problem: stop, keeping what is done
            raise InputError(str(error)) from error
        except DetectorContractError:  # a mistake in your detector's code: the same everywhere
            raise
        except InvalidBox as error:
            frame.error, frame.reason = f"error: {error}", "error"
            return frame
        except Exception as error:
            # A detector crash on one frame must not end a long job; it is reported per row.
            frame.error, frame.reason = f"error: {type(error).__name__}: {error}", "error"
            return frame
        if not frame.faces:
            frame.error, frame.reason = "no face found", "no_face"
        for face in frame.faces:  # boxes in the file's pixels
            face.box = tuple(v * scale for v in face.box)
        return frame

    def rows(self, frame: Frame) -> list[dict]:
        """The output rows of a frame whose batch has run (columns())."""
        base = {"source": frame.source.name, "frame": frame.index, "time_s": frame.time_s}
        names = [probability_column(n) for n in self.class_names]
        embedding = embedding_columns(self.embedding_dim)
        if frame.error:
            empty = dict.fromkeys(("face", "x", "y", "w", "h", "score", "label", *names))
            empty.update(dict.fromkeys(embedding))
            return [{**base, **empty, "error": frame.error}]
        rows = []
        for k, (face, probs) in enumerate(zip(frame.faces, frame.probs, strict=True)):
            x, y, w, h = (float(v) for v in face.box)
            features = () if frame.features is None else frame.features[k]
            finite = bool(np.isfinite(probs).all())  # an exported model of NaN weights: no label
            rows.append(
                {
                    **base,
                    "face": k,
                    "x": x,
                    "y": y,
                    "w": w,
                    "h": h,
                    "score": face.score,
                    "label": self.class_names[int(np.argmax(probs))] if finite else None,
                    **{n: float(p) for n, p in zip(names, probs, strict=True)},
                    # 8 decimals: a float32 unit vector's precision, in half the text
                    **{n: round(float(v), 8) for n, v in zip(embedding, features, strict=True)},
                    "error": None if finite else "the model's probabilities are not finite",
                }
            )
        return rows
