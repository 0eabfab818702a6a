"""Fixture builders for the predict, export and audit tests: a checkpoint made without training,
rendered face scenes the real detectors find, a short video clip, and one tiny trained run."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from conftest import TINY
from PIL import Image

from lionfer.config_sections import ModelConfig
from lionfer.data.datasets import synthetic
from lionfer.labels import CLASS_NAMES
from lionfer.models import build_model

P_COLUMNS = [f"p_{n.lower()}" for n in CLASS_NAMES]  # the table's probability columns

IMAGE_SIZE = 24
TINIER = [
    "data.num_train=70",
    "data.num_test=14",
    "data.num_labels=14",
    "train.steps=2",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.log_every=1",
]


def make_checkpoint(path: Path, seed: int = 0, **extra) -> Path:
    """A checkpoint with the keys lionfer train writes that a predictor reads (random weights)."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(name="cnn_small"), len(CLASS_NAMES))
    state = {
        "step": 0,
        "ema": model.state_dict(),
        "class_names": list(CLASS_NAMES),
        "model_name": "cnn_small",
        "image_size": IMAGE_SIZE,
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def faces(classes=(3, 0, 4), size: int = 96) -> np.ndarray:
    """Plain rendered faces (N, size, size, 3), one per canonical class id given."""
    geometry = np.stack([synthetic.prototype(c) for c in classes])
    return synthetic.render(geometry, size, np.random.default_rng(0), plain=True)


def scene(face_images, at=((20, 30), (180, 40)), size=(320, 160)) -> Image.Image:
    """Faces pasted on a flat background at the given top-left corners."""
    canvas = Image.new("RGB", size, (90, 120, 90))
    for face, corner in zip(face_images, at, strict=False):
        canvas.paste(Image.fromarray(face), corner)
    return canvas


def blank(size=(160, 120)) -> Image.Image:
    return Image.new("RGB", size, (128, 128, 128))


def write_clip(
    path: Path, frames: list[Image.Image], fps: float = 10.0, codec: str = "MJPG"
) -> Path:
    """A video of RGB frames (all of one size) as OpenCV writes it: an MJPG .avi by default, the
    container chosen by path's suffix."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, frames[0].size)
    assert writer.isOpened()
    for frame in frames:
        writer.write(np.ascontiguousarray(np.asarray(frame)[:, :, ::-1]))
    writer.release()
    return path


def trained_run(tmp_path_factory) -> Path:
    """A 2-step LION run on 70 synthetic faces (14 labeled), trained once per test session."""
    from lionfer.config import load_config
    from lionfer.training.run import train

    out = tmp_path_factory.getbasetemp() / "lionfer-tiny-run"
    if not (out / "summary.json").is_file():
        train(load_config(None, [*TINY, *TINIER]), out, progress=False, overwrite=True)
    return out


def write_mp4(path: Path, frames: list[Image.Image], fps: float = 10.0) -> Path:
    """An mp4v .mp4 of RGB frames with its index (moov) moved before the frame data, as cameras
    and `ffmpeg -movflags +faststart` write them: a copy cut short still opens."""
    write_clip(path, frames, fps, codec="mp4v")
    boxes = _boxes(path.read_bytes())
    moov = next(box for kind, box in boxes if kind == b"moov")
    moov = _shift_chunk_offsets(moov, len(moov))
    head = [box for kind, box in boxes if kind == b"ftyp"]
    rest = [box for kind, box in boxes if kind not in (b"ftyp", b"moov")]
    path.write_bytes(b"".join([*head, moov, *rest]))
    return path


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The top-level (type, whole box) of an ISO media byte string (32-bit sizes only)."""
    boxes, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        boxes.append((data[at + 4 : at + 8], data[at : at + size]))
        at += size
    return boxes


def _shift_chunk_offsets(box: bytes, shift: int) -> bytes:
    """The box with every stco entry (a chunk's file offset) moved by shift bytes."""
    kind = box[4:8]
    if kind == b"stco":
        count = int.from_bytes(box[12:16], "big")
        offsets = [
            int.from_bytes(box[16 + 4 * i : 20 + 4 * i], "big") + shift for i in range(count)
        ]
        return box[:16] + b"".join(o.to_bytes(4, "big") for o in offsets)
    if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl"):
        children = [_shift_chunk_offsets(child, shift) for _, child in _boxes(box[8:])]
        return box[:8] + b"".join(children)
    return box
