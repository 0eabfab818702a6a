"""`lionfer prepare`: crop every face of a dataset once into a cache that training reads fast.

out_dir/faces/<split>/<name>-<hash>.png (size×size RGB, named after its image: crop_stems),
manifest.csv (path,label,split,true_label,source; readable by the `manifest` dataset: canonical ids
for the FER classes, class names for classes of the data's own), failures.csv (source,split,reason)
and prepare.json. Resumable: finished crops are skipped (images added since are cropped, removed
ones left out of manifest.csv), writes are atomic, a bad image is recorded, never fatal, and
SIGINT or SIGTERM stops after the image under way (PrepareInterrupted). out_dir never lies among
the images it crops, a manifest.csv edited since prepare wrote it is not replaced, and a second
prepare into out_dir while one writes it is refused (flock, as training's RunLock).
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from lionfer.data.base import FERData, ImageSet
from lionfer.data.faces import (
    DETECTORS,
    MULTI_FACE,
    DetectorUnavailable,
    align,
    crop_square,
    detect,
    pick_faces,
)
from lionfer.data.images import ImageError, ImageTooSmallError, open_photo
from lionfer.data.prepare_cache import (
    SPLITS,
    check_out_apart,
    check_resumable,
    crop_files,
    crop_path,
    crop_stems,
    image_sources,
    is_done,
    remove_partial_files,
    split_set,
    write_csv,
    write_png,
    write_text,
)
from lionfer.errors import ConfigError, InputError, Interrupted
from lionfer.labels import CLASS_NAMES, CLASS_NAMES_8
from lionfer.run_lock import RunLock
from lionfer.stop_signals import StopSignals
from lionfer.words import counted

MANIFEST_COLUMNS = ("path", "label", "split", "true_label", "source")
FAILURE_COLUMNS = ("source", "split", "reason")
COUNTS = (
    "done",
    "skipped_existing",
    "no_face",
    "unreadable",
    "too_small",
    "bad_box",
    "errors",
    "multi_face",
)
GIVEN_BOX_MARGIN = 1.1  # dataset boxes (AffectNet, ExpW) are tight; keep a little context
MAX_BOX_SCALE = 2  # a given box wider or taller than this × the image's longer side is refused
SETTINGS = ("dataset", "size", "detector", "multi_face")  # must match to resume into a folder
ROOT_FILES = ("manifest.csv", "failures.csv", "prepare.json")  # out_dir's own files


@dataclass
class PrepareReport:
    """What one prepare() call did. counts: COUNTS over this call; rows: manifest rows in total."""

    out_dir: Path
    counts: Counter = field(default_factory=Counter)
    per_split: dict[str, Counter] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # source, split, reason
    several_faces: list[tuple[str, str, int]] = field(default_factory=list)  # source, split, faces
    several_faces_rule: str = "largest"  # prepare's multi_face: which of them were kept
    turned: list[tuple[str, str, int]] = field(default_factory=list)  # source, split, degrees
    notes: list[str] = field(default_factory=list)  # the dataset's (files ignored, test held out)
    rows: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        parts = ", ".join(f"{k} {self.counts[k]}" for k in COUNTS)
        lines = [
            f"prepared {self.out_dir}: {parts}; manifest rows {self.rows} ({self.seconds:.1f} s)"
        ]
        lines += [f"note: {note}" for note in self.notes]
        if self.failures:
            lines.append(
                f"{counted(len(self.failures), 'image')} gave no crop; "
                f"{self.out_dir / 'failures.csv'} lists each with its reason"
            )
        if self.several_faces:
            kept = "the largest face of each" if self.several_faces_rule == "largest" else "each"
            lines.append(
                f"several faces in {counted(len(self.several_faces), 'image')} (kept {kept}); "
                f"{self.out_dir / 'prepare.json'} lists them under several_faces"
            )
        if self.turned:
            lines.append(
                f"{counted(len(self.turned), 'image')} showed a face only when turned (stored "
                f"sideways or upside down); their crops are upright, and "
                f"{self.out_dir / 'prepare.json'} lists them under turned"
            )
        return "\n".join(lines)


class _NoFace(Exception):
    """The detector found no face in an image."""


class _BadBox(Exception):
    """A face box given with an image that cannot be cropped (outside or far larger than it)."""


class PrepareInterrupted(Interrupted):
    """prepare stopped on SIGINT or SIGTERM after the image under way; the crops made are kept,
    and the same call again goes on where it stopped. A KeyboardInterrupt, exit code 128 + N."""

    def __init__(self, signum: int, out: Path, done: int) -> None:
        self.signum, self.step, self.run = signum, done, str(out)
        KeyboardInterrupt.__init__(
            self,
            f"interrupted by {signal.Signals(signum).name}; the faces cropped so far are kept in "
            f"{out} (manifest.csv is written when prepare finishes). Run the same command "
            "again to go on: finished images are skipped",
        )


def prepare(
    data: FERData,
    out_dir: str | Path,
    size: int = 112,
    detector: str = "auto",
    multi_face: str = "largest",
    splits: tuple[str, ...] = SPLITS,
    progress: bool = True,
    min_size: int = 16,
) -> PrepareReport:
    """Crop the faces of data's splits into out_dir (see the module docstring).

    Images with a box are cropped by it (enlarged GIVEN_BOX_MARGIN, square); in-memory arrays are
    already faces and only resized; other files go through detect + align. Images smaller than
    min_size px on a side are failures ("too small").
    """
    _check_arguments(size, detector, multi_face, splits, min_size)
    out = Path(out_dir).expanduser()
    settings = {"dataset": data.name, "size": size, "detector": detector, "multi_face": multi_face}
    label_text = _label_writer(data)
    check_out_apart(out, data)
    lock, created = RunLock(), _missing_folders(out)  # one prepare writes a folder at a time
    if not out.is_file():
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire(out, "a prepare writing its crops there now")
    try:
        return _prepare_locked(data, out, settings, label_text, splits, progress, min_size)
    except BaseException:
        for folder in created:  # refused before writing: no empty folders left behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    finally:
        lock.release()


def _missing_folders(out: Path) -> list[Path]:
    """out and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not out.exists() and out != out.parent:
        missing.append(out)
        out = out.parent
    return missing


def _prepare_locked(
    data: FERData,
    out: Path,
    settings: dict,
    label_text,
    splits: tuple[str, ...],
    progress: bool,
    min_size: int,
) -> PrepareReport:
    sources = image_sources(data)
    previous = check_resumable(out, settings, sources)
    # each image's crop name, once: under the "source" naming it reads every file's identity
    stems = {
        split: crop_stems(images, previous["naming"])
        for split in SPLITS
        if (images := split_set(data, split)) is not None
    }
    # Images with several faces, by (source, split): those prepared before are kept unless redone.
    several = _entries(previous, "several_faces", "faces")
    turned = _entries(previous, "turned", "degrees")
    started = _write_started(out, settings, sources, previous, several, turned)
    found = (several, turned)
    multi_face = settings["multi_face"]
    report = PrepareReport(out_dir=out, notes=list(data.notes), several_faces_rule=multi_face)
    start = time.perf_counter()
    with StopSignals("image") as stop:
        for split in splits:
            images = split_set(data, split)
            if images is None or not len(images):
                continue
            if _crop_split(
                images, split, out, stems[split], settings, min_size, progress, report, found, stop
            ):
                started["several_faces"] = _listing(several, "faces")
                started["turned"] = _listing(turned, "degrees")
                write_text(out / "prepare.json", json.dumps(started, indent=2))
                raise PrepareInterrupted(stop.signum, out, report.counts["done"])
    _write_results(data, out, settings, label_text, stems, report, several, turned, started, start)
    return report


def _write_started(
    out: Path, settings: dict, sources: dict, previous: dict, several: dict, turned: dict
) -> dict:
    """Write prepare.json as of a run begun (complete: false), and return what it holds."""
    # Settings go on disk first, so even an interrupted run guards its folder against mixing.
    started = {
        **settings,
        "sources": sources,
        "naming": previous["naming"],
        "complete": False,
        "written": previous.get("written") or {},
        "several_faces": _listing(several, "faces"),
        "turned": _listing(turned, "degrees"),
    }
    remove_partial_files(out, ROOT_FILES)  # of a run stopped while writing them
    write_text(out / "prepare.json", json.dumps(started, indent=2))
    return started


def _crop_split(
    images: ImageSet,
    split: str,
    out: Path,
    names: list[str],
    settings: dict,
    min_size: int,
    progress: bool,
    report: PrepareReport,
    found: tuple[dict, dict],
    stop: StopSignals,
) -> bool:
    """Crop a split's images into out/faces/<split> (names: their crop_stems), counting them in
    report; found is (several, turned), {(source, split): faces or degrees}, where the images
    detected now replace what earlier runs noted. True where a stop signal came (after the
    image under way)."""
    size, detector, multi_face = settings["size"], settings["detector"], settings["multi_face"]
    several, turned = found
    folder = out / "faces" / split
    folder.mkdir(parents=True, exist_ok=True)
    remove_partial_files(folder)
    counts = report.per_split.setdefault(split, Counter())
    for i in tqdm(range(len(images)), desc=f"prepare {split}", unit="img", disable=not progress):
        failure, faces, degrees = _prepare_one(
            images, i, folder / names[i], size, detector, multi_face, min_size, counts
        )
        if failure:
            report.failures.append((images.ids[i], split, failure))
        if faces is not None:  # detected in this call, not skipped as done
            several.pop((images.ids[i], split), None)
            turned.pop((images.ids[i], split), None)
            if faces > 1:
                several[images.ids[i], split] = faces
            if degrees:
                turned[images.ids[i], split] = degrees
        if stop.signum is not None:
            report.counts.update(counts)
            return True
    report.counts.update(counts)
    return False


def _write_results(
    data: FERData,
    out: Path,
    settings: dict,
    label_text,
    stems: dict[str, list[str]],
    report: PrepareReport,
    several: dict,
    turned: dict,
    started: dict,
    start: float,
) -> None:
    """Once every image is cropped: manifest.csv, failures.csv and prepare.json complete, which
    list the several faces and turned images only of images still in the data."""
    present = {
        (str(i), split) for split in SPLITS for i in getattr(split_set(data, split), "ids", [])
    }
    several = {key: n for key, n in several.items() if key in present}
    turned = {key: n for key, n in turned.items() if key in present}
    report.several_faces = [(source, split, n) for (source, split), n in several.items()]
    report.turned = [(source, split, n) for (source, split), n in turned.items()]
    rows = _manifest_rows(data, out, settings["multi_face"], label_text, stems)
    written = {
        "manifest.csv": write_csv(out / "manifest.csv", MANIFEST_COLUMNS, rows),
        "failures.csv": write_csv(out / "failures.csv", FAILURE_COLUMNS, report.failures),
    }
    report.rows = len(rows)
    report.seconds = time.perf_counter() - start
    summary = {
        **_summary_json(data, settings, report),
        "several_faces": _listing(several, "faces"),
        "turned": _listing(turned, "degrees"),
        "naming": started["naming"],
        "sources": started["sources"],
        "written": written,
    }
    write_text(out / "prepare.json", json.dumps(summary, indent=2))


def _prepare_one(
    images: ImageSet,
    i: int,
    stem: Path,
    size: int,
    detector: str,
    multi_face: str,
    min_size: int,
    counts: Counter,
) -> tuple[str, int | None, int]:
    """Crop image i into the files stem(_fK).png, updating counts; returns (the failure reason
    or "", the number of faces detected; None where the image was done before and skipped, the
    degrees the image was turned to show them)."""
    if is_done(stem, size, multi_face):
        counts["skipped_existing"] += 1
        return "", None, 0
    try:
        crops, num_faces, degrees = _crops(images, i, size, detector, multi_face, min_size)
    except _NoFace:
        counts["no_face"] += 1
        return "no face found", 0, 0
    except _BadBox as error:
        counts["bad_box"] += 1
        return f"bad box: {error}", 0, 0
    except ImageTooSmallError as error:
        counts["too_small"] += 1
        return f"too small: {error}", 0, 0
    except ImageError as error:
        counts["unreadable"] += 1
        return f"unreadable: {error}", 0, 0
    except DetectorUnavailable as error:  # a set-up problem, not a bad image: stop
        raise InputError(str(error)) from error
    except Exception as error:
        # A decoder or detector crash on one image must not stop a night-long run; it is
        # counted as "errors" and listed with its type so a systematic bug stays visible.
        counts["errors"] += 1
        return f"error: {type(error).__name__}: {error}", 0, 0
    counts["multi_face"] += int(num_faces > 1)
    # Highest k first: the unsuffixed file (largest) or _f0 (all) is written last, so its
    # presence marks the whole image as done.
    for k in reversed(range(len(crops))):
        write_png(crop_path(stem, k, multi_face), crops[k])
    counts["done"] += 1
    return "", num_faces, degrees


def _crops(
    images: ImageSet, i: int, size: int, detector: str, multi_face: str, min_size: int
) -> tuple[list[Image.Image], int, int]:
    """(face crops of image i, number of faces detected, degrees the photo was turned to show
    them: a photo without a face as stored is searched turned, see faces.detect)."""
    if not images.is_files:  # in-memory arrays are already faces: resize only
        image = images.load(i)
        _check_size(image.size, min_size, f"image {images.ids[i]}")
        return [crop_square(image, (0, 0, *image.size), size)], 1, 0
    image, scale = open_photo(images.images[i], min_size=min_size)  # a huge JPEG at 1/scale
    if images.boxes is not None:
        box = tuple(round(int(v) / scale) for v in images.boxes[i])  # the list's, in file pixels
        _check_box(box, image.size, min_size, images.ids[i])
        return [crop_square(image, box, size, GIVEN_BOX_MARGIN)], 1, 0
    faces = detect(image, detector, turn=True)
    if not faces:
        raise _NoFace()
    crops = [align(image, face, size) for face in pick_faces(faces, multi_face)]
    return crops, len(faces), faces[0].turned


def _check_size(wh: tuple[int, int], min_size: int, what: str) -> None:
    if min(wh) < min_size:
        raise ImageTooSmallError(f"{what} is too small ({wh[0]}×{wh[1]}); minimum is {min_size} px")


def _check_box(box: tuple[int, ...], image_size: tuple[int, int], min_size: int, what: str) -> None:
    x, y, w, h = box
    width, height = image_size
    where = f"face box (x={x}, y={y}, w={w}, h={h}) of {what}"
    if w <= 0 or h <= 0 or x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise _BadBox(
            f"{where} lies outside its {width}×{height} image; fix the box in the dataset's list"
        )
    if max(w, h) > MAX_BOX_SCALE * max(width, height):
        raise _BadBox(
            f"{where} is more than {MAX_BOX_SCALE}× its {width}×{height} image; fix the box in "
            "the dataset's list (x, y, w, h in the file's pixels: left, top, width, height)"
        )
    _check_size((w, h), min_size, f"face box of {what}")


def _manifest_rows(
    data: FERData, out: Path, multi_face: str, label_text, stems: dict[str, list[str]]
) -> list[tuple[str, ...]]:
    """One row per crop present on disk for an image of the data, for every split (also ones
    prepared by earlier calls); crops of images no longer in the data are left out. stems: each
    split's crop names (crop_stems)."""
    rows = []
    for split in SPLITS:
        images = split_set(data, split)
        folder = out / "faces" / split
        if images is None or not folder.is_dir():
            continue
        for i, stem in enumerate(stems[split]):
            label = "" if split == "unlabeled" else label_text(images.labels[i])
            truth = "" if images.true_labels is None else label_text(images.true_labels[i])
            for path in crop_files(folder / stem, multi_face):
                relative = path.relative_to(out).as_posix()
                rows.append((relative, label, split, truth, images.ids[i]))
    return rows


def _label_writer(data: FERData):
    """How a class id is written in manifest.csv: the canonical id for the FER classes; the class
    name for classes of the data's own (a manifest reads every number as a canonical FER id, so
    'cat' = 0 and 'dog' = 1 would come back as Surprise and Fear). Names that read as numbers
    cannot be written so, and are refused before any work."""
    if tuple(data.class_names) in (CLASS_NAMES, CLASS_NAMES_8):
        return lambda value: "" if int(value) < 0 else str(int(value))
    from lionfer.data.datasets.manifest import NUMBER

    numbers = [name for name in data.class_names if NUMBER.fullmatch(name.strip())]
    if numbers:
        raise InputError(
            f"the class names {numbers} of data.dataset={data.name} read as numbers, and its "
            "classes are not the FER classes: the cache's manifest.csv, which reads every number "
            "as a canonical FER id (0 Surprise ... 6 Neutral), would give its images other "
            "classes. Rename those classes (folders) so that they are not numbers, or map each "
            "class to a FER class with data.class_map"
        )
    names = tuple(data.class_names)
    return lambda value: "" if int(value) < 0 else names[int(value)]


def _summary_json(data: FERData, settings: dict, report: PrepareReport) -> dict:
    return {
        **settings,
        "complete": True,
        "class_names": list(data.class_names),
        "template": "ArcFace 5-point 112x112, scaled to size",
        "counts": {k: report.counts[k] for k in COUNTS},
        "per_split": {s: {k: c[k] for k in COUNTS} for s, c in report.per_split.items()},
        "manifest_rows": report.rows,
        "seconds": round(report.seconds, 2),
        "notes": report.notes,
    }


def _entries(previous: dict, name: str, key: str) -> dict[tuple[str, str], int]:
    """prepare.json's list `name` ({"source", "split", key}) as {(source, split): value}."""
    return {(e["source"], e["split"]): e[key] for e in previous.get(name, [])}


def _listing(entries: dict[tuple[str, str], int], key: str) -> list[dict]:
    """{(source, split): value} as prepare.json lists it (_entries reads it back)."""
    return [{"source": s, "split": split, key: n} for (s, split), n in entries.items()]


def _check_arguments(
    size: int, detector: str, multi_face: str, splits: tuple[str, ...], min_size: int
) -> None:
    if not 8 <= size <= 1024:
        raise ConfigError(f"prepare size must lie in [8, 1024] pixels, got {size}")
    if detector not in DETECTORS:
        raise ConfigError(f"unknown face detector {detector!r}; choose one of {DETECTORS}")
    if multi_face not in MULTI_FACE:
        raise ConfigError(f"unknown multi_face rule {multi_face!r}; choose one of {MULTI_FACE}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ConfigError(f"splits must be a non-empty subset of {SPLITS}, got {tuple(splits)}")
    if min_size < 1:
        raise ConfigError(f"min_size must be at least 1 pixel, got {min_size}")
