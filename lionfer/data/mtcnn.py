"""MTCNN face detection (Zhang, Zhang, Li and Qiao, "Joint Face Detection and Alignment Using
Multitask Cascaded Convolutional Networks", IEEE SPL 2016) on a torch device (lionfer detects on
CPU), with the weights that ship inside lionfer (lionfer/weights/mtcnn_*.pt, MIT licensed:
lionfer/weights/MTCNN-LICENSE.txt).

Three networks in a cascade, each pass keeping fewer, better candidates:

1. P-Net, fully convolutional, slides a 12×12 window (stride 2) over an image pyramid (factor
   0.709, the largest scale making a MIN_FACE_SIZE face 12 px): face score and box offsets per
   window. Windows above threshold, NMS within each scale, then across scales.
2. R-Net re-scores each candidate (its square crop resized to 24×24) and refines the box.
3. O-Net re-scores at 48×48, refines the box and predicts 5 landmarks (eye, eye, nose tip, mouth
   corner, mouth corner); the last NMS measures overlap by the smaller box (intersection / min
   area), which removes a small box nested in a larger one.

Between stages boxes are calibrated by the regressed offsets (fractions of the box side) and made
square around their centre. Pyramid levels and crops are resized by area averaging (OpenCV);
crops that leave the image are padded with black, as in the paper's code. Coordinates are
continuous pixels, 0-based: a box (x1, y1, x2, y2) covers [x1, x2) × [y1, y2). Input pixels are
scaled as the published networks expect, (v − 127.5) / 128.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torchvision.ops import nms

MIN_FACE_SIZE = 20  # px: the smallest face searched for
PYRAMID_FACTOR = 0.709  # each pyramid level's scale is the previous one times this (area ≈ 1/2)
THRESHOLDS = (0.6, 0.7, 0.7)  # face probability kept by P-Net, R-Net, O-Net
NMS_IOU = (0.5, 0.7, 0.7, 0.7)  # P-Net per scale, P-Net across scales, R-Net, O-Net (by min area)
CROP_BATCH = 512  # R-Net and O-Net crops per forward pass (bounds memory on crowded images)

# sha256 of each weight file in lionfer/weights, checked before the file is read.
WEIGHTS = {
    "pnet": ("mtcnn_pnet.pt", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f"),
    "rnet": ("mtcnn_rnet.pt", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86"),
    "onet": ("mtcnn_onet.pt", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"),
}


class WeightsError(RuntimeError):
    """An MTCNN weight file that is missing, altered or unreadable."""


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, best score first."""

    boxes: np.ndarray  # (N, 4) float64 x1, y1, x2, y2
    scores: np.ndarray  # (N,) float64 O-Net face probability
    landmarks: np.ndarray  # (N, 5, 2) float64 x, y: eye, eye, nose, mouth corner, mouth corner

    def __len__(self) -> int:
        return len(self.scores)


class PNet(nn.Module):
    """Proposal network: 12×12 input → face score (2) and box offsets (4) per window."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, 3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return F.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    # The published dense layers read their input in (width, height, channel) order.
    return x.permute(0, 3, 2, 1).reshape(len(x), -1)


class RNet(nn.Module):
    """Refinement network: 24×24 crop → face score and box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, 3)
        self.prelu1 = nn.PReLU(28)
        self.conv2 = nn.Conv2d(28, 48, 3)
        self.prelu2 = nn.PReLU(48)
        self.conv3 = nn.Conv2d(48, 64, 2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten_whc(self.prelu3(self.conv3(x)))))
        return F.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output network: 48×48 crop → face score, box offsets and 5 landmarks (x1..x5, y1..y5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return F.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def weights_dir() -> Path:
    """Where the packaged weight files are."""
    return Path(str(resources.files("lionfer") / "weights"))


def load_state(name: str, directory: Path | None = None) -> dict[str, torch.Tensor]:
    """The state dict of network name ("pnet", "rnet", "onet"), its file's sha256 checked first."""
    filename, expected = WEIGHTS[name]
    path = (directory or weights_dir()) / filename
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(
            f"MTCNN weights file {path} is missing; lionfer ships it, so reinstall lionfer "
            "(pip install --force-reinstall lionfer)"
        ) from None
    except OSError as error:
        raise WeightsError(f"cannot read MTCNN weights file {path}: {error}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise WeightsError(
            f"MTCNN weights file {path} is damaged or altered (sha256 {actual[:12]}..., expected "
            f"{expected[:12]}...); reinstall lionfer (pip install --force-reinstall lionfer)"
        )
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class MTCNN:
    """The three networks, in eval mode on device, and the cascade that runs them."""

    def __init__(
        self,
        device: str | torch.device = "cpu",
        min_face_size: float = MIN_FACE_SIZE,
        thresholds: tuple[float, float, float] = THRESHOLDS,
        factor: float = PYRAMID_FACTOR,
        weights: Path | None = None,
    ) -> None:
        if min_face_size < 12:
            raise ValueError(
                f"min_face_size must be at least 12 px (P-Net's window); got {min_face_size}"
            )
        if not 0 < factor < 1:
            raise ValueError(f"the pyramid factor must be in (0, 1); got {factor}")
        self.device = torch.device(device)
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        nets = {"pnet": PNet(), "rnet": RNet(), "onet": ONet()}
        for name, net in nets.items():
            net.load_state_dict(load_state(name, weights))
            net.eval().requires_grad_(False).to(self.device)
        self.pnet, self.rnet, self.onet = nets["pnet"], nets["rnet"], nets["onet"]

    def scales(self, height: int, width: int) -> list[float]:
        """The pyramid: scales at which a face of min_face_size … the image's short side fills
        P-Net's 12 px window."""
        scale, side, out = 12.0 / self.min_face_size, float(min(height, width)), []
        while side * scale >= 12:
            out.append(scale)
            scale *= self.factor
        return out

    @torch.inference_mode()
    def detect(self, image: Image.Image | np.ndarray) -> Detections:
        """Faces in an RGB image (PIL, or uint8 array H×W×3)."""
        array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(
                f"expected an RGB image (H, W, 3); got an array of shape {array.shape}"
            )
        pixels = _normalise(array.astype(np.float32))  # (H, W, 3)
        boxes = self._propose(pixels)
        if len(boxes):
            boxes = self._refine(pixels, boxes)
        if len(boxes):
            return self._output(pixels, boxes)
        return _empty()

    def _propose(self, pixels: np.ndarray) -> torch.Tensor:
        """Stage 1: (N, 4) square candidate boxes from P-Net over the pyramid."""
        height, width = pixels.shape[:2]
        found, scores = [], []
        for scale in self.scales(height, width):
            size = (math.ceil(height * scale), math.ceil(width * scale))
            level = cv2.resize(pixels, size[::-1], interpolation=cv2.INTER_AREA)
            prob, offsets = self.pnet(self._tensor(level[None]))
            rows, cols = torch.nonzero(prob[0] >= self.thresholds[0], as_tuple=True)
            if len(rows) == 0:
                continue
            # Window (row, col) covers [2·col, 2·col + 12) × [2·row, 2·row + 12) of this level.
            sy, sx = size[0] / height, size[1] / width
            x1, y1 = 2 * cols / sx, 2 * rows / sy
            windows = torch.stack([x1, y1, x1 + 12 / sx, y1 + 12 / sy], dim=1).float()
            score = prob[0, rows, cols]
            keep = nms(windows, score, NMS_IOU[0])
            found.append(torch.cat([windows[keep], offsets[0][:, rows[keep], cols[keep]].T], 1))
            scores.append(score[keep])
        if not found:
            return torch.zeros(0, 4, device=self.device)
        # As in the paper's code, NMS compares the windows themselves, then they are calibrated.
        found, score = torch.cat(found), torch.cat(scores)
        found = found[nms(found[:, :4], score, NMS_IOU[1])]
        return _square(_calibrate(found[:, :4], found[:, 4:]))

    def _refine(self, pixels: np.ndarray, boxes: torch.Tensor) -> torch.Tensor:
        """Stage 2: the candidates R-Net keeps, calibrated and squared."""
        prob, offsets = _batched(self.rnet, self._tensor(_crops(pixels, boxes, 24)))
        keep = prob >= self.thresholds[1]
        boxes, prob, offsets = boxes[keep], prob[keep], offsets[keep]
        keep = nms(boxes, prob, NMS_IOU[2])
        return _square(_calibrate(boxes[keep], offsets[keep]))

    def _output(self, pixels: np.ndarray, boxes: torch.Tensor) -> Detections:
        """Stage 3: O-Net's scores, calibrated boxes and landmarks."""
        prob, offsets, points = _batched(self.onet, self._tensor(_crops(pixels, boxes, 48)))
        keep = prob >= self.thresholds[2]
        boxes, prob, offsets, points = boxes[keep], prob[keep], offsets[keep], points[keep]
        # Landmarks are fractions of the box O-Net was shown, x1..x5 then y1..y5.
        side = (boxes[:, 2:] - boxes[:, :2])[:, None, :]
        landmarks = boxes[:, None, :2] + torch.stack([points[:, :5], points[:, 5:]], dim=2) * side
        boxes = _calibrate(boxes, offsets)
        keep = _nms_min(boxes, prob, NMS_IOU[3])
        return Detections(
            boxes=boxes[keep].double().cpu().numpy(),
            scores=prob[keep].double().cpu().numpy(),
            landmarks=landmarks[keep].double().cpu().numpy(),
        )

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) float32 → (N, 3, H, W) on the networks' device."""
        return torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2)


def _empty() -> Detections:
    return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return (pixels - np.float32(127.5)) * np.float32(1.0 / 128.0)


def _calibrate(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Boxes moved by the regressed offsets, each a fraction of the box's width or height."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """The square with side max(w, h) on each box's centre."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1, keepdim=True) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _crops(pixels: np.ndarray, boxes: torch.Tensor, size: int) -> np.ndarray:
    """(N, size, size, 3): each box's pixels (rounded to whole pixels) resized to size×size,
    averaged over the source pixels when shrinking; the part of a box outside the image is black
    (the input's normalised zero)."""
    height, width = pixels.shape[:2]
    black = _normalise(np.zeros(3, np.float32))
    out = np.empty((len(boxes), size, size, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        crop = np.empty((y2 - y1, x2 - x1, 3), np.float32)
        crop[:] = black
        ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if ix1 < ix2 and iy1 < iy2:
            crop[iy1 - y1 : iy2 - y1, ix1 - x1 : ix2 - x1] = pixels[iy1:iy2, ix1:ix2]
        shrink = crop.shape[0] > size or crop.shape[1] > size
        out[k] = cv2.resize(
            crop, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    return out


def _batched(net: nn.Module, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
    outputs = [net(crops[i : i + CROP_BATCH]) for i in range(0, len(crops), CROP_BATCH)]
    return tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))


def _nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS where overlap is intersection over the smaller box's area: indices, best first."""
    order = torch.argsort(scores, descending=True)
    boxes = boxes[order]
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    lo = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=2)
    overlap = inter / torch.minimum(area[:, None], area[None, :]).clamp(min=1e-9)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlap[i] > threshold
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]
