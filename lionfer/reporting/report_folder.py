"""The report's folder: the files an earlier report there wrote (its report.json), which a new
one replaces, the names a report may write, and saving: refused, before anything is written,
where the folder holds others' files or a link out of it; the earlier report's stale files
deleted, report.json written last."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lionfer.atomic import naming
from lionfer.errors import ConfigError
from lionfer.reporting.document import Output, write_file
from lionfer.reporting.figure_sections import SENSITIVITY
from lionfer.training.runfolder import check_out_folder

MARK = "report.json"  # lists the files a report wrote, so that the next one may replace them


def earlier_files(out: Path) -> list[str]:
    """The files an earlier report in `out` wrote (its report.json), which a new one replaces;
    [] for a new or empty folder. Any other content is refused, before the report is made, and
    so is an `out` that cannot be a folder (below a file) or cannot be written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the report")
    check_out_folder(out)
    if not out.is_dir() or not any(out.iterdir()):
        return []
    if not (out / MARK).is_file():
        raise ConfigError(
            f"--out {out} holds files that are not a lionfer report; choose an empty or new folder"
        )
    try:
        files = json.loads((out / MARK).read_text(encoding="utf-8"))["files"]
        if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
            raise TypeError("its files are not a list of names")
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"{out / MARK} is damaged ({error}), so the files of the earlier report are not "
            "known; choose an empty or new folder"
        ) from error
    return files


# Every name a report may write besides report.json: only these are ever replaced or deleted,
# whatever an edited report.json lists. A figure's name ends in a slug (T.slug), maybe with -2.
REPORT_FILES = frozenset(
    {"report.md", "report.html", "table1.csv", "mean_class_acc.csv", "table1_best_val.csv"}
    | {"table1_best_test.csv", "mask_rate.csv", "ablation.csv", "runs.csv", "gallery.csv"}
    | {f"sensitivity_{key}.csv" for key, _ in SENSITIVITY}
    | {"learning_curves.csv", "label_accuracy.csv", "per_class_acc.csv", "confusion.csv"}
    | {"relabel.csv", "relabel_pairs.csv"}
)
FIGURE_FILE = re.compile(
    r"figures/(learning_curves|label_accuracy|(sensitivity|per_class|confusion|gallery)_"
    r"[a-z0-9._-]+)\.png"
)


def report_file(name: str) -> bool:
    """Whether a report may write a file of this name (REPORT_FILES, FIGURE_FILE)."""
    return name in REPORT_FILES or FIGURE_FILE.fullmatch(name) is not None


def check_links(out: Path, names: list[str]) -> None:
    """Refuse, before anything is written, a link where this report writes: a folder of its
    files (figures/) that is a link, or a file's name that links out of `out`. A link at a
    file's name that stays inside `out` is replaced by the file (document.write_file)."""
    inside = out.resolve()
    for name in names:
        path = out / name
        folder = path.parent
        if folder != out and folder.is_symlink():
            raise ConfigError(
                f"--out {out} holds {folder.relative_to(out)}, a link to {folder.resolve()}: the "
                "report writes its figures into a folder of its own, never through a link; "
                "remove the link or choose an empty or new folder"
            )
        if path.is_symlink() and not path.resolve().is_relative_to(inside):
            raise ConfigError(
                f"--out {out} holds {name}, a link to {path.resolve()}, outside {out}, which the "
                "report will neither write through nor replace (it writes nothing outside its "
                "folder); remove the link or choose an empty or new folder"
            )


def save(output: Output, earlier: list[str], record: dict) -> None:
    """Replace the earlier report's files by this one's; refused, before anything is written,
    where a file this report writes is there and is not the earlier report's, or where it would
    write through a link (check_links). Each file is written whole, then its earlier files
    that this report does not write again are deleted, then report.json: a write that fails
    leaves the earlier report in place but for the files written before it, and report.json
    listing both reports' files, so that the same command can run again."""
    out = output.folder
    theirs = [n for n in output.files if (out / n).exists() and n not in earlier]
    if theirs:
        raise ConfigError(
            f"--out {out} holds {', '.join(theirs)}, which the earlier report there did not "
            "write; move it away or choose an empty or new folder"
        )
    unknown = [name for name in output.files if not report_file(name)]
    if unknown:  # a new table or figure: name it in REPORT_FILES or FIGURE_FILE
        raise RuntimeError(f"report files of no known name: {', '.join(unknown)}")
    check_links(out, [*output.files, MARK])
    out.mkdir(parents=True, exist_ok=True)
    both = list(dict.fromkeys([*earlier, *output.files]))
    write_file(out / MARK, record_text({**record, "files": both}))
    output.save()
    for name in earlier:
        path = out / name
        stale = name not in output.files and report_file(name)
        linked = path.parent != out and path.parent.is_symlink()  # figures/ made a link since
        if stale and not linked and (path.is_symlink() or path.is_file()):
            with naming(path):
                path.unlink()  # a link itself, not what it links to
    write_file(out / MARK, record_text(record))


def record_text(record: dict) -> bytes:
    return (json.dumps(record, indent=1) + "\n").encode()
