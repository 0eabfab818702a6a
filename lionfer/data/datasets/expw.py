"""ExpW (Expression in-the-Wild) reader: label/label.lst lists one face per line (box + FER-order
expression) in the photos under image/origin/. ExpW has no official split, so lionfer holds out a
stratified 20% of faces as test, seeded by data.data_seed so every run sees the same split.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lionfer import labels
from lionfer.data.base import FERData, ImageSet
from lionfer.data.checks import (
    check_label_ids,
    check_listed_files,
    drop_duplicates,
    first_match,
    parse_float,
    parse_int,
    read_utf8,
    require_dir,
    require_file,
    require_seven,
)
from lionfer.data.splits import hold_out
from lionfer.errors import MissingInputError

LABEL_LIST = "label/label.lst"  # 91,793 faces in the release (a secondary-source count)
IMAGE_DIR = "image/origin"
TEST_FRACTION = 0.2
FIELDS = ("image_name", "face_id", "top", "left", "right", "bottom", "confidence", "expression")
FIX = (
    f"Set data.root to the ExpW folder holding {LABEL_LIST} and {IMAGE_DIR}/ "
    "(or data.label_file to the label list)"
)


@dataclass
class FaceList:
    """label.lst as parsed: one entry per face line."""

    names: list[str]  # image file name per face
    face_ids: list[int]
    boxes: np.ndarray  # (N, 4) x, y, w, h
    expression: np.ndarray  # (N,) ExpW ids 0..6 (FER2013 order)
    lines: list[int]


def load(cfg, seed: int) -> FERData:
    """Read ExpW from cfg.root; the test split depends only on cfg.data_seed and the list."""
    require_seven(cfg, "expw")
    if not cfg.root:
        raise ValueError(f"expw: data.root is empty. {FIX}")
    root = require_dir(cfg.root, "ExpW root", FIX)
    list_path = root / (cfg.label_file or LABEL_LIST)
    fix = FIX
    if not cfg.label_file and (root / Path(LABEL_LIST).name).is_file():
        fix = f"{root} holds label.lst itself: set data.root={root.parent}"
    faces = read_label_list(require_file(list_path, "ExpW list", fix))
    image_dir = root / IMAGE_DIR
    if not image_dir.is_dir():
        raise MissingInputError(
            f"ExpW image folder not found: expected the folder {image_dir}. "
            + (image_fix(root, faces.names[0]) or FIX)
        )
    boxes = faces.boxes
    empty = (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    # a box that ends left of or above the photo holds none of it (and cannot be cropped)
    outside = ~empty & ((boxes[:, 0] + boxes[:, 2] <= 0) | (boxes[:, 1] + boxes[:, 3] <= 0))
    notes = []
    if empty.any():
        notes.append(f"expw: skipped {int(empty.sum())} faces with an empty box")
    if outside.any():
        notes.append(
            f"expw: skipped {int(outside.sum())} faces whose box lies outside the photo "
            "(ending left of or above it)"
        )
    idx = np.flatnonzero(~empty & ~outside)
    keys = [f"{faces.names[i]}#{faces.face_ids[i]}" for i in idx]
    unique, more = drop_duplicates(keys, faces.expression[idx], "expw label list")
    idx = idx[unique]
    paths = [str(image_dir / faces.names[i]) for i in idx]
    first_missing = bool(paths) and not Path(paths[0]).is_file()
    fix = image_fix(root, faces.names[idx[0]]) if first_missing else ""
    exists, missing = check_listed_files(paths, cfg.skip_bad, "expw", fix)
    idx = idx[exists]
    faces_set = ImageSet(
        images=[p for p, ok in zip(paths, exists, strict=True) if ok],
        labels=labels.to_canonical(faces.expression[idx], labels.EXPW),
        ids=[f"{faces.names[i]}#{faces.face_ids[i]}" for i in idx],
        boxes=faces.boxes[idx],
    )
    train, test = hold_out(faces_set, TEST_FRACTION, cfg.data_seed)
    split_note = (
        f"expw: no official split; lionfer holds out a stratified {TEST_FRACTION:.0%} of faces "
        f"as test (data_seed={cfg.data_seed}): {len(train)} train, {len(test)} test. "
        "Publish data_seed with results"
    )
    return FERData(
        name="expw",
        class_names=labels.class_names(7),
        train=train,
        test=test,
        split_rule="balanced",
        notes=notes + more + missing + [split_note],
    )


def image_fix(root: Path, name: str) -> str:
    """The fix when the photos are not in image/origin/: the release's origin.7z.* left packed,
    or the first listed photo found elsewhere under root (image/, image/origin/origin/,
    origin/); "" when neither."""
    packed = sorted(p.name for p in root.glob("image/origin.7z*")) + sorted(
        p.name for p in root.glob("origin.7z*")
    )
    if packed and not (root / IMAGE_DIR / name).is_file():
        return (
            f"Found {packed[0]}: unpack the archive (7z x {packed[0]}) so that "
            f"{root / IMAGE_DIR} holds the photos"
        )
    name = glob.escape(name)
    found = first_match(root, (f"image/{name}", f"image/*/*/{name}", f"*/{name}", name))
    if found is None:
        return ""
    return (
        f"The first listed photo is at {found}: move the photos of {found.parent} into "
        f"{root / IMAGE_DIR}"
    )


def read_label_list(path: Path) -> FaceList:
    """Parse `image_name face_id top left right bottom confidence expression` lines."""
    names, face_ids, boxes, expression, lines = [], [], [], [], []
    text = read_utf8(path, "save the list as UTF-8 (or re-copy label.lst from the ExpW release)")
    for line, row in enumerate(text.splitlines(), start=1):
        fields = row.split()
        if not fields or fields[0].startswith("#") or (not names and fields[0] == FIELDS[0]):
            continue  # blank, comment, or the documented header
        where = f"{path}, line {line}"
        if len(fields) != len(FIELDS):
            raise ValueError(
                f"{where}: {len(fields)} fields, expected {len(FIELDS)} ({' '.join(FIELDS)}); "
                "fix or delete that line"
            )
        face_id, top, left, right, bottom = (
            parse_int(fields[i], FIELDS[i], where) for i in range(1, 6)
        )
        names.append(fields[0])
        face_ids.append(face_id)
        boxes.append((left, top, right - left, bottom - top))
        parse_float(fields[6], FIELDS[6], where)  # unused, but a bad value means a bad line
        expression.append(parse_int(fields[7], FIELDS[7], where))
        lines.append(line)
    if not names:
        raise ValueError(f"{path} lists no faces; re-copy label.lst from the ExpW release")
    check_label_ids(expression, labels.EXPW, str(path), lines)
    return FaceList(
        names, face_ids, np.asarray(boxes, dtype=np.int64), np.asarray(expression), lines
    )
