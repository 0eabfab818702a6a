"""The folder `lionfer prepare` writes its face cache into: whether it may (not among the images
it crops, not inside a folder dataset's tree, not someone else's folder, not a cache of other
settings, not a manifest edited since), what identifies the images it crops, the names of their
crop files, and how a file is written there (whole or not at all: under a temp name, renamed)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from lionfer.atomic import csv_text, replacing
from lionfer.data.base import FERData, ImageSet
from lionfer.errors import RunExistsError

SPLITS = ("train", "test", "unlabeled")
_SHOWN = 3  # entries of a foreign --out folder an error names
# How crops are named in faces/<split>/: "source" (caches made now) after the image they come
# from, so images added, removed or renamed since only add or leave crops; "position" (caches
# made before) by the image's index in its split, so those may not change.
NAMINGS = ("source", "position")
_STEM_CHARS = 32  # of the source's file name kept in a crop's name, for people browsing faces/
TEMP_SUFFIX = ".part"  # a file being written: .<name>.<pid>.part, renamed to <name> when whole


def crop_stems(images: ImageSet, naming: str) -> list[str]:
    """The name of each image's crop file in its split's folder, without the face suffix and
    .png: under "source", the source's file name (letters, digits, - and _ only) and a hash of
    what the crop is made from (image_identity), an id listed twice getting a name per listing;
    under "position", its index."""
    if naming == "position":
        return [f"{i:06d}" for i in range(len(images))]
    seen: Counter = Counter()
    stems = []
    for i, source in enumerate(map(str, images.ids)):
        listed, seen[source] = seen[source], seen[source] + 1
        identity = f"{source}\n{listed}\n{image_identity(images, i)}"
        digest = sha256(identity.encode("utf-8", "surrogateescape"))[:16]
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(source.split("#")[0]).stem)
        stems.append(f"{name[:_STEM_CHARS].strip('_') or 'image'}-{digest}")
    return stems


def image_identity(images: ImageSet, i: int) -> str:
    """What crop i is made from, beyond its id (the same id may name another image: another
    data.root with the same file names, a photo replaced under its name, another seed of the
    embedded faces): a file's real path, size and modification time, or an in-memory image's
    pixels; and its face box, where the dataset gives one."""
    box = "" if images.boxes is None else " ".join(map(str, images.boxes[i].tolist()))
    if not images.is_files:
        pixels = np.ascontiguousarray(images.images[i])
        return f"{pixels.shape} {pixels.dtype} {sha256(pixels.tobytes())}"
    path = os.path.realpath(images.images[i])
    try:
        stat = os.stat(path)
    except OSError:  # unreadable: it gives no crop, so no name is reused
        return f"{path} missing {box}"
    return f"{path} {stat.st_size} {stat.st_mtime_ns} {box}"


def split_set(data: FERData, split: str) -> ImageSet | None:
    return {"train": data.train, "test": data.test, "unlabeled": data.unlabeled}[split]


def image_sources(data: FERData) -> dict[str, str]:
    """Per split, a hash of its image ids in order, kept in prepare.json: a cache that names its
    crops by position (crop i is image i of its split) may not resume on other images."""
    hashes = {}
    for split in SPLITS:
        images = split_set(data, split)
        if images is not None and len(images):
            digest = sha256("\n".join(map(str, images.ids)).encode("utf-8", "surrogateescape"))
            hashes[split] = f"{len(images)} images, sha256 {digest[:16]}"
    return hashes


def crop_path(stem: Path, k: int, multi_face: str) -> Path:
    suffix = ".png" if multi_face == "largest" else f"_f{k}.png"
    return stem.with_name(stem.name + suffix)


def is_done(stem: Path, size: int, multi_face: str) -> bool:
    return is_readable(crop_path(stem, 0, multi_face), size)


def is_readable(path: Path, size: int) -> bool:
    if not path.is_file():
        return False
    try:
        with Image.open(path) as image:
            right_size = image.size == (size, size)
            image.verify()  # checks the PNG chunks and CRCs without decoding
        return right_size
    except Exception:
        return False


def crop_files(stem: Path, multi_face: str) -> list[Path]:
    """The finished crop files of an image, in face order."""
    first = crop_path(stem, 0, multi_face)
    if not first.is_file():
        return []
    if multi_face == "largest":
        return [first]
    files, k = [], 0
    while crop_path(stem, k, multi_face).is_file():
        files.append(crop_path(stem, k, multi_face))
        k += 1
    return files


def check_out_apart(out: Path, data: FERData) -> None:
    """Refuse an out_dir that holds images of data (prepare run on its own cache), or, for the
    folder dataset, that lies inside its data.root or data.unlabeled_root (as `lionfer train`
    refuses a run's --out there): every folder there is read as data, so the crops would be read
    as a class of their own (or as unlabeled images) the next time."""
    here, real = os.path.abspath(out), os.path.realpath(out)
    for split in SPLITS:
        images = split_set(data, split)
        if images is None or not len(images) or not images.is_files:
            continue
        paths = [os.path.abspath(p) for p in images.images]
        inside = next((p for p in paths if p.startswith((here + os.sep, real + os.sep))), None)
        if inside is not None:
            raise RunExistsError(
                f"--out {out} holds the {split} images being prepared (e.g. {inside}): prepare "
                "would write its crops and files among them. Give an --out outside the dataset's "
                "folders"
            )
        if data.name != "folder":
            continue
        key = "data.unlabeled_root" if split == "unlabeled" else "data.root"
        tree = os.path.realpath(_read_folder(paths, images.ids, split))
        if real == tree or real.startswith(tree + os.sep):
            read_as = "unlabeled images" if split == "unlabeled" else "a class of their own"
            raise RunExistsError(
                f"--out {out} lies inside {key}={tree}, every folder of which the folder dataset "
                f"reads as data: the crops would be read as {read_as} the next time. Give an "
                f"--out outside it (e.g. {tree}-faces)"
            )


def _read_folder(paths: list[str], ids: list[str], split: str) -> str:
    """The folder the folder dataset read a split's images from: the path less its id (ids are
    relative to data.root, "unlabeled/<path>" below data.unlabeled_root), else the deepest
    folder that holds them all."""
    relative = Path(ids[0]).parts[split == "unlabeled" :]
    parts = Path(paths[0]).parts
    if relative and parts[-len(relative) :] == relative:
        return str(Path(*parts[: -len(relative)]))
    return os.path.commonpath([os.path.dirname(p) for p in paths])


def check_resumable(out: Path, settings: dict, sources: dict[str, str]) -> dict:
    """Refuse to write into a folder that is not a prepare cache, to mix crops of different
    settings in one, or of other images where crops are named by position, or to replace a
    manifest.csv or failures.csv edited since prepare wrote it (their sha256 is in prepare.json).
    Returns the previous prepare.json ({} if there is none); its "naming" is the cache's (NAMINGS;
    "position" where it was made before crops were named by source)."""
    if out.exists() and not out.is_dir():
        raise RunExistsError(f"--out {out} is a file; give a folder for the face cache")
    previous_file = out / "prepare.json"
    if not previous_file.is_file():
        _check_empty(out)
        return {"naming": "source"}
    previous = _read_previous(out, previous_file)
    changed = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
    if changed:
        what = ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in changed.items())
        raise RunExistsError(
            f"{out} was prepared with {what}; resuming would mix crops. Use a new output folder, "
            f"or delete {out} to start again"
        )
    previous["naming"] = previous.get("naming", "position")
    if previous["naming"] not in NAMINGS:
        raise RunExistsError(
            f"{previous_file} names its crops by {previous['naming']!r}, which this lionfer does "
            f"not know (a newer one made it?); use a new output folder, or delete {out}"
        )
    if previous["naming"] == "position":
        _check_same_images(out, previous, sources)
    _check_unedited(out, previous)
    return previous


def _check_empty(out: Path) -> None:
    """A folder without prepare.json must be new or empty: prepare would replace files there."""
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if entries:
        shown = ", ".join(p.name + "/" * p.is_dir() for p in entries[:_SHOWN])
        raise RunExistsError(
            f"{out} holds {len(entries)} entries that are not a lionfer prepare cache "
            f"({shown}{' ...' if len(entries) > _SHOWN else ''}); prepare writes "
            "manifest.csv, failures.csv, prepare.json and faces/ there and would replace "
            "files of yours. Give a new or empty --out folder"
        )


def _read_previous(out: Path, previous_file: Path) -> dict:
    """The cache's prepare.json; one that cannot be read is refused: its settings are unknown."""
    try:
        return json.loads(previous_file.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:
        raise RunExistsError(
            f"{previous_file} cannot be read ({error}), so the settings its crops were made with "
            f"are unknown; use a new output folder, or delete {out} to start again"
        ) from None


def _check_same_images(out: Path, previous: dict, sources: dict[str, str]) -> None:
    """Crops named by position (crop i is image i of its split) may not resume on a split
    whose images changed (sources: each split's image_sources now)."""
    before = previous.get("sources") or {}  # absent in caches made before it was recorded
    for split, now in sources.items():
        if before.get(split, now) != now and (out / "faces" / split).is_dir():
            raise RunExistsError(
                f"the {split} images changed since {out} was prepared ({before[split]} then, "
                f"{now} now: images added, removed or renamed, or another data.data_seed); "
                "its crops are numbered by position (a cache made before lionfer named them by "
                "image) and would get other images' labels. Use a new output folder, which "
                f"takes added images from then on, or delete {out} to start again"
            )


def _check_unedited(out: Path, previous: dict) -> None:
    """The files prepare wrote (their sha256 in prepare.json's "written") must be as it wrote
    them: prepare would replace a user's edits."""
    written = previous.get("written") or {}  # absent in caches made before it was recorded
    for name, digest in written.items():
        path = out / name
        if path.is_file() and sha256(path.read_bytes()) != digest:
            edited = path.with_name(f"{path.stem}-edited.csv")
            use = f"; train from it with data.root={edited}" if name == "manifest.csv" else ""
            raise RunExistsError(
                f"{path} was changed since prepare wrote it, and prepare would write it anew. "
                f"Keep your edits under another name (e.g. {edited}, which prepare leaves "
                f"alone{use}), then run prepare again"
            )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def remove_partial_files(folder: Path, names: tuple[str, ...] = ("*",)) -> None:
    """Temp files left by an interrupted or failed run (the finished files are never partial):
    those the writers here wrote for the files named by `names` (glob patterns)."""
    for name in names:
        for path in folder.glob(f".{name}{TEMP_SUFFIX}" if name == "*" else f".{name}.*"):
            if path.name.endswith(TEMP_SUFFIX):
                path.unlink()


def write_png(path: Path, image: Image.Image) -> None:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    _write_bytes(path, buffer.getvalue())


def write_csv(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Write the CSV; returns its sha256."""
    data = csv_text([header, *rows], lineterminator="\n").encode("utf-8")
    _write_bytes(path, data)
    return sha256(data)


def write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    """Write to a hidden temp name, then rename: a reader never sees half a file. A failed write
    (a full disk) removes the temp file and is raised naming `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")) as temp:
        temp.write_bytes(data)
