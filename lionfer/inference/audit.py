"""Reviewing labels with a trained model.

`lionfer audit`: rank a labeled dataset's images by how strongly the model disputes their labels.
score = p(model's label) − p(given label), the probability margin by which the model prefers its
own label (0 when it agrees); ranked by score, descending, ties by p(given) ascending. Writes
suspects.csv (every image) and a self-contained HTML page of the top suspects. An image labeled
with a class the model never had a training label of is not judged: the model cannot name that
class, so its dispute would mean nothing.

`lionfer relabel`: a run's labeled set with the given and current (corrected) labels, the step of
each relabel and the candidate weights, from the checkpoint's algorithm state.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lionfer.algorithms.lion_report import RELABEL_COLUMNS as RUN_RELABEL_COLUMNS
from lionfer.algorithms.lion_report import label_state
from lionfer.atomic import write_csv_atomic, write_text_atomic
from lionfer.data.base import FERData, ImageSet
from lionfer.data.images import ImageError
from lionfer.errors import InputError
from lionfer.inference.model_file import MODEL_FIX, ModelInfo, checkpoint_file
from lionfer.inference.predictor import Predictor, probability_column
from lionfer.training.checkpoint import MODEL_KEYS, load_checkpoint

AUDIT_COLUMNS = (
    "rank",
    "id",
    "split",
    "index",
    "given_label",
    "given_name",
    "model_label",
    "model_name",
    "p_given",
    "p_model",
    "score",
)
RELABEL_COLUMNS = (
    *RUN_RELABEL_COLUMNS,
    "changed",
    "ambiguous",
    "demoted",
    "new_class_agreement",
)
THUMBNAIL = 96  # px, the longer side of a face on the HTML page
SPLITS = ("train", "test")
UNTRAINED = "untrained class"  # the error of an image whose label the model never trained on


def refuse_existing(path: Path, overwrite: bool, flag: str = "--out") -> None:
    from lionfer.training.runfolder import check_out_file, refuse_run_file

    if path.is_dir():
        raise InputError(f"{path} is a folder; name the file to write, e.g. {path / 'out.csv'}")
    check_out_file(path, flag)
    refuse_run_file(path, flag)
    if path.exists() and not overwrite:
        raise InputError(
            f"{path} already exists; pass --overwrite to replace it or choose another {flag}"
        )


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """All rows at once via a temporary file (lionfer.atomic), so a reader never sees half a
    table and a failed write leaves none."""
    table = [columns]
    table += [["" if row.get(c) is None else _cell(row[c]) for c in columns] for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(path, table, lineterminator="\n")


def _cell(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


# ---- audit ----


def audit_score(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """(N,) p(argmax) − p(given) for probabilities (N, C) and given labels (N,)."""
    rows = np.arange(len(given))
    return probs.max(axis=1) - probs[rows, given]


def rank_order(score: np.ndarray, p_given: np.ndarray) -> np.ndarray:
    """Indices by score descending, then p(given) ascending, then position."""
    return np.lexsort((np.arange(len(score)), p_given, -score))


@dataclass
class AuditReport:
    out: Path
    html: Path
    counts: Counter = field(default_factory=Counter)  # audited, disputed, unreadable, untrained
    top: int = 0
    notes: list[str] = field(default_factory=list)  # the dataset's, images that appear twice

    def summary(self) -> str:
        c = self.counts
        untrained = (
            f"; {c['untrained']} images of classes the model had no training label of not judged"
            if c["untrained"]
            else ""
        )
        return "".join(f"note: {note}\n" for note in self.notes) + (
            f"audited {c['audited']} labeled images: the model disputes {c['disputed']} labels "
            f"(its label differs); {c['unreadable']} unreadable images skipped{untrained}\n"
            f"ranked table: {self.out}\ntop {self.top} suspects: {self.html}"
        )


def labeled_images(data: FERData, splits: tuple[str, ...]) -> Iterator[tuple[str, ImageSet, int]]:
    for split in splits:
        images = {"train": data.train, "test": data.test}[split]
        for i in np.flatnonzero(images.labels >= 0):
            yield split, images, int(i)


def given_name(item: tuple[str, ImageSet, int], names) -> str:
    _, images, i = item
    return names[int(images.labels[i])]


def by_training(items: list, info: ModelInfo) -> tuple[list, list]:
    """(the items labeled with a class the model had training labels of, the others)."""
    trained, untrained = [], []
    for item in items:
        known = given_name(item, info.class_names) in info.trained_classes
        (trained if known else untrained).append(item)
    return trained, untrained


def untrained_row(item: tuple[str, ImageSet, int], names) -> dict:
    name = given_name(item, names)
    error = f"{UNTRAINED}: the model never saw a training label of {name}; not judged"
    return _row(*item, names, error=error)


def no_trained_labels(data: FERData, splits, items: list, info: ModelInfo) -> str:
    """Why an audit of images labeled only with untrained classes is refused, and the fix."""
    labels = {given_name(item, info.class_names) for item in items}
    given = [name for name in info.class_names if name in labels]
    return (
        f"the model never saw a training label of {', '.join(given)}, the classes of all "
        f"{len(items)} labeled images of {data.name} ({', '.join(splits)}), so it cannot judge "
        f"their labels; audit images labeled with the classes it was trained on "
        f"({', '.join(info.trained_classes)}), or train a model on labels of {', '.join(given)}"
    )


def audit(
    predictor: Predictor, data: FERData, splits: tuple[str, ...] = SPLITS, progress: bool = False
) -> list[dict]:
    """One row per labeled image (AUDIT_COLUMNS + p_<class> + error), ranked; then the images
    labeled with a class the model never had a training label of, not judged, and the unreadable
    images, each with its error and no rank."""
    names = predictor.class_names
    if tuple(data.class_names) != tuple(names):
        raise InputError(
            f"the model's classes {list(names)} differ from the dataset's "
            f"{list(data.class_names)}; audit a dataset with the classes the model was trained on"
        )
    items = list(labeled_images(data, splits))
    if not items:
        raise InputError(f"{data.name} has no labeled images in {', '.join(splits)}")
    items, unjudged = by_training(items, predictor.info)
    if not items:
        raise InputError(no_trained_labels(data, splits, unjudged, predictor.info))
    untrained = [untrained_row(item, names) for item in unjudged]
    rows, failed = [], []
    with tqdm(total=len(items), desc="audit", unit="img", disable=not progress) as bar:
        for start in range(0, len(items), predictor.batch_size):
            batch, images = [], []
            for split, image_set, i in items[start : start + predictor.batch_size]:
                try:
                    images.append(image_set.load(i))
                    batch.append((split, image_set, i))
                except ImageError as error:
                    failed.append(_row(split, image_set, i, names, error=f"unreadable: {error}"))
            probs = predictor.probabilities(images)
            rows += [_row(*item, names, p) for item, p in zip(batch, probs, strict=True)]
            bar.update(len(items[start : start + predictor.batch_size]))
    if rows:
        score = np.array([r["score"] for r in rows])
        p_given = np.array([r["p_given"] for r in rows])
        rows = [rows[i] for i in rank_order(score, p_given)]
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows + untrained + failed


def _row(split, images: ImageSet, i: int, names, probs=None, error: str = "") -> dict:
    given = int(images.labels[i])
    row = {"rank": None, "id": images.ids[i], "split": split, "index": i, "error": error}
    row.update(given_label=given, given_name=names[given])
    if probs is None:
        return row
    model = int(np.argmax(probs))
    row.update(model_label=model, model_name=names[model])
    row.update(p_given=float(probs[given]), p_model=float(probs[model]))
    row["score"] = float(audit_score(probs[None], np.array([given]))[0])
    row.update({probability_column(n): float(p) for n, p in zip(names, probs, strict=True)})
    return row


def audit_to_files(
    predictor: Predictor,
    data_cfg,
    seed: int,
    out: str | Path,
    html_path: str | Path | None = None,
    top: int = 50,
    splits: tuple[str, ...] = SPLITS,
    overwrite: bool = False,
    progress: bool = True,
) -> AuditReport:
    """Audit the dataset a DataConfig describes; write suspects.csv and the HTML page."""
    from lionfer.data.pipeline import copy_notes, load_dataset

    out = Path(out)
    page = Path(html_path) if html_path else out.with_suffix(".html")
    if top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    refuse_existing(out, overwrite)
    refuse_existing(page, overwrite, "--html" if html_path else "--out")
    data = load_dataset(data_cfg, seed, check=())  # unreadable images are listed below
    rows = audit(predictor, data, splits, progress)
    names = predictor.class_names
    columns = [*AUDIT_COLUMNS, *(probability_column(n) for n in names), "error"]
    ranked = [r for r in rows if r["rank"] is not None]
    untrained = [r for r in rows if r["error"].startswith(UNTRAINED)]
    note = untrained_note(untrained, out)
    shown = ranked[:top]
    text = audit_html(shown, data, names, predictor.info.path, note)
    new = not out.exists()
    write_csv(out, columns, rows)
    try:
        page.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(page, text)
    except BaseException:  # the command again needs no --overwrite for a table it just wrote
        if new:
            out.unlink(missing_ok=True)
        raise
    notes = data.notes + copy_notes(data) + [note] * bool(note)
    report = AuditReport(out, page, top=len(shown), notes=notes)
    report.counts.update(
        audited=len(ranked),
        disputed=sum(r["model_label"] != r["given_label"] for r in ranked),
        unreadable=len(rows) - len(ranked) - len(untrained),
        untrained=len(untrained),
    )
    return report


def untrained_note(untrained: list[dict], out: Path) -> str:
    """What the images the model never had a training label of mean for the audit ("": none)."""
    if not untrained:
        return ""
    given = sorted({(r["given_label"], r["given_name"]) for r in untrained})  # class order
    classes = ", ".join(name for _, name in given)
    return (
        f"the model never saw a training label of {classes}: it cannot name these classes, so "
        f"the {len(untrained)} images labeled with them are not judged (in {out} without a "
        f"rank, error '{UNTRAINED}'); audit them with a model trained on labels of them"
    )


def thumbnail_base64(image: Image.Image, size: int = THUMBNAIL) -> str:
    """A PNG thumbnail (longer side `size`) as base64 text for a data: URL."""
    thumb = image.convert("RGB").copy()
    scale = size / max(thumb.size)
    thumb = thumb.resize((max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))))
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def audit_html(rows: list[dict], data: FERData, names, model: str, note: str = "") -> str:
    """A self-contained page: one table row per suspect with its face embedded as a PNG; note,
    where given, under the table."""
    sets = {"train": data.train, "test": data.test}
    body = []
    for r in rows:
        face = thumbnail_base64(sets[r["split"]].load(r["index"]))
        bars = "".join(
            f'<div class="bar"><span style="width:{100 * r[probability_column(n)]:.1f}%"></span>'
            f"{html.escape(n)} {r[probability_column(n)]:.3f}</div>"
            for n in names
        )
        body.append(
            f"<tr><td>{r['rank']}</td>"
            f'<td><img alt="face" src="data:image/png;base64,{face}"></td>'
            f"<td>{html.escape(str(r['id']))}<br><small>{r['split']} #{r['index']}</small></td>"
            f"<td>{html.escape(r['given_name'])}</td><td>{html.escape(r['model_name'])}</td>"
            f"<td>{r['p_given']:.3f}</td><td>{r['p_model']:.3f}</td><td>{r['score']:.3f}</td>"
            f"<td>{bars}</td></tr>"
        )
    title = f"lionfer audit: top {len(rows)} suspected labels in {html.escape(data.name)}"
    note = f"<p>Note: {html.escape(note)}.</p>" if note else ""
    return HTML_PAGE.format(
        title=title, model=html.escape(model), rows="\n".join(body), count=len(rows), note=note
    )


HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }}
img {{ image-rendering: auto; }}
.bar {{ position: relative; width: 14em; font-size: 0.8em; line-height: 1.3em; }}
.bar span {{ position: absolute; left: 0; top: 0; bottom: 0; background: #cde; z-index: -1; }}
</style></head><body>
<h1>{title}</h1>
<p>Model: {model}. Score = p(model's label) &minus; p(given label): how much more probable the
model finds its own label than the given one (0 when it agrees). Highest scores first; review them
and fix the labels that are wrong.</p>
<table>
<tr><th>rank</th><th>face</th><th>id</th><th>given</th><th>model</th><th>p(given)</th>
<th>p(model)</th><th>score</th><th>probabilities</th></tr>
{rows}
</table>
<p>{count} suspects shown; every labeled image is in the CSV file.</p>
{note}
</body></html>
"""


# ---- relabel ----


@dataclass
class RelabelReport:
    out: Path
    labeled: int
    changed: int
    ambiguous: int
    corrected: int | None  # changed to the true label, of those whose true label is known
    demoted: int = 0  # training as unlabeled images now (the evidence recipe)
    demoted_wrong: int | None = None  # of them, wrongly labeled as given, of those known
    changed_known: int | None = None  # the relabeled images of known truth (None: all)
    demoted_known: int | None = None  # the demoted images of known truth (None: all)

    def summary(self) -> str:
        line = f"{self.labeled} labeled images, {self.changed} relabeled"
        line += _of_known(
            self.corrected, self.changed, self.changed_known, "to the true label", "to it"
        )
        line += f", {self.ambiguous} ambiguous now"
        if self.demoted:
            line += f", {self.demoted} demoted to unlabeled"
            line += _of_known(
                self.demoted_wrong,
                self.demoted,
                self.demoted_known,
                "of them wrongly labeled",
                "wrongly labeled",
            )
        return f"{line} -> {self.out}"


def _of_known(count: int | None, total: int, known: int | None, every: str, some: str) -> str:
    """A truth count of `total` images: ' (2 to the true label)' where the truth of all of them
    is known (known None or total), ' (1 of the 3 with a known true label to it)' where of some,
    '' where of none (or count None: no truth at all)."""
    if count is None or known == 0:
        return ""
    if known is None or known == total:
        return f" ({count} {every})"
    return f" ({count} of the {known} with a known true label {some})"


def relabel_rows(run: str | Path, checkpoint: str = "last") -> tuple[list[str], list[dict]]:
    """(columns, one row per labeled image of the run) from its checkpoint's algorithm state.

    w_<class>: the candidate weights at the relabel for relabeled images, the current candidate
    weights for images that are ambiguous now, the current evidence for images demoted now (the
    evidence recipe: why they train as unlabeled), empty otherwise. An algorithm without label
    state leaves every current label equal to the given one.
    """
    from lionfer.config import load_config
    from lionfer.training.finished_run import finished_run_data, run_data_context

    run = Path(os.path.expanduser(run))  # "~/runs/x", as a shell reads it
    if not run.is_dir():
        raise InputError(f"relabel needs a run folder (made by `lionfer train`), got {run}")
    state = load_checkpoint(checkpoint_file(run, checkpoint), MODEL_KEYS, MODEL_FIX)
    cfg = load_config(run / "config.toml")
    with run_data_context(run):
        labeled = finished_run_data(run, cfg, state).labeled
    names = list(state["class_names"])
    table = label_state(state.get("algorithm", {}), labeled.labels, len(names))
    weight_columns = [f"w_{n.lower()}" for n in names]
    rows = []
    for i in range(len(labeled)):
        truth = None if labeled.true_labels is None else int(labeled.true_labels[i])
        given, current = int(labeled.labels[i]), int(table["label"][i])
        w = table["w"][i]
        row = {
            "index": i,
            "id": labeled.ids[i],
            "given_label": given,
            "current_label": current,
            "step": int(table["step"][i]) if table["step"][i] >= 0 else None,
            "true_label": truth if truth is not None and truth >= 0 else None,
            "given_name": names[given],
            "current_name": names[current],
            "weight": None if np.isnan(table["weight"][i]) else float(table["weight"][i]),
            # a demoted image trains unlabeled: counted as demoted, never as changed (summary.json)
            "changed": current != given and not bool(table["demoted"][i]),
            "ambiguous": bool(table["ambiguous"][i]),
            "demoted": bool(table["demoted"][i]),
            "new_class_agreement": (
                None if np.isnan(table["agreement"][i]) else float(table["agreement"][i])
            ),
            **{
                c: (None if np.isnan(v) else float(v))
                for c, v in zip(weight_columns, w, strict=True)
            },
        }
        rows.append(row)
    return [*RELABEL_COLUMNS, *weight_columns], rows


def write_relabel_table(
    run: str | Path, out: str | Path, checkpoint: str = "last", overwrite: bool = False
) -> RelabelReport:
    out = Path(out)
    refuse_existing(out, overwrite)
    columns, rows = relabel_rows(run, checkpoint)
    write_csv(out, columns, rows)
    # the truth counts are over the images whose true label is known, where any is
    changed = [r for r in rows if r["changed"]]
    demoted = [r for r in rows if r["demoted"]]
    changed_known = [r for r in changed if r["true_label"] is not None]
    demoted_known = [r for r in demoted if r["true_label"] is not None]
    known = any(r["true_label"] is not None for r in rows)
    return RelabelReport(
        out,
        labeled=len(rows),
        changed=len(changed),
        ambiguous=sum(r["ambiguous"] for r in rows),
        corrected=(
            sum(r["current_label"] == r["true_label"] for r in changed_known) if known else None
        ),
        demoted=len(demoted),
        demoted_wrong=(
            sum(r["given_label"] != r["true_label"] for r in demoted_known) if known else None
        ),
        changed_known=len(changed_known) if known else None,
        demoted_known=len(demoted_known) if known else None,
    )
