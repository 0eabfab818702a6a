"""`lionfer report`: finished runs and sweeps in, one folder out: report.md (figures in figures/),
a self-contained report.html, and a CSV file per table. Reading is lionfer.reporting.run_finder,
numbers are lionfer.reporting.tables, flags are lionfer.reporting.collapse, the sections are
lionfer.reporting.table_sections, figure_sections and label_sections, the folder is
lionfer.reporting.report_folder; this module puts them in order and writes them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from lionfer.errors import ConfigError
from lionfer.reporting import collapse
from lionfer.reporting import tables as T
from lionfer.reporting.document import Output, Section, Table, code, plain, to_html, to_markdown
from lionfer.reporting.figure_sections import (
    LABELS,
    LEARNING,
    confusion_sections,
    curve_section,
    per_class_sections,
    sensitivity_sections,
)
from lionfer.reporting.label_sections import (
    RunLabels,
    gallery_sections,
    relabel_pair_sections,
    relabel_sections,
    run_labels,
    run_labels_sections,
)
from lionfer.reporting.report_folder import earlier_files, save
from lionfer.reporting.run_finder import load_runs
from lionfer.reporting.runs import Collection, ordered_runs, shown_path
from lionfer.reporting.table_sections import (
    ablation_section,
    accuracy_sections,
    flags_section,
    mask_sections,
    runs_section,
)
from lionfer.words import counted


@dataclass
class ReportResult:
    out: Path
    runs: int
    skipped: int
    files: list[str]
    warnings: list[str] = field(default_factory=list)  # one line per flagged method
    sections: list[Section] = field(default_factory=list)  # the report as written
    labels: list[RunLabels] = field(default_factory=list)  # each run's account of its labels
    unfinished: list[tuple[Path, str]] = field(default_factory=list)  # not in the tables

    def __str__(self) -> str:
        left = [f"{self.skipped} skipped"] if self.skipped else []
        left += [f"{len(self.unfinished)} not finished"] if self.unfinished else []
        left_out = f", {' and '.join(left)} (see report.md)" if left else ""
        tables = sum(f.endswith(".csv") for f in self.files)
        done = (
            f"report of {self.runs} run{'s' * (self.runs != 1)}{left_out}: "
            f"{self.out / 'report.md'}, {self.out / 'report.html'} and {tables} CSV "
            f"file{'s' * (tables != 1)}"
        )
        return "\n".join([done, *self.warnings])


def overview(c: Collection, paths, out: Path) -> Section:
    columns = T.order_columns(c.runs)
    read = ", ".join(code(shown_path(Path(p), out)) for p in paths)
    section = Section("Overview").add(
        f"{counted(len(c.runs), 'finished run')} of {counted(len(c.methods), 'method')} on "
        f"{', '.join(plain(col) for col in columns)}, read from {read} (folders in this report are "
        f"relative to its folder). Made by lionfer on {time.strftime('%Y-%m-%d %H:%M')}."
    )
    if c.skipped:
        section.add(f"{counted(len(c.skipped), 'run folder', 'was')} skipped:")
        rows = [[shown_path(p, out), why] for p, why in c.skipped]
        section.add(Table(["folder", "why"], rows))
    if c.unfinished:
        section.add(
            f"{counted(len(c.unfinished), 'run', 'has')} not finished and "
            f"{'is' if len(c.unfinished) == 1 else 'are'} not in the tables:"
        )
        rows = [[shown_path(p, out), how] for p, how in c.unfinished]
        section.add(Table(["folder", "how it stands"], rows))
    for note in c.notes:
        section.add(f"Note: {plain(note)}")
    return section


def make_report(paths, out, best_on_test: bool = False, gallery: int = 8) -> ReportResult:
    """Read the runs under `paths` and write the report into `out`."""
    if isinstance(gallery, bool) or not isinstance(gallery, int) or gallery < 0:
        raise ConfigError(
            f"--gallery is how many relabeled faces to show per method: 0 (none) or more, got "
            f"{gallery!r}"
        )
    out = Path(out)
    earlier = earlier_files(out)
    collection = load_runs(paths)
    output = Output(out)
    flags = {run.path: collapse.run_flags(run) for run in collection.runs}
    groups = collapse.group_flags(collection.runs, flags)
    labels = run_labels(collection)
    sections = [
        overview(collection, paths, out),
        *accuracy_sections(collection, output, best_on_test, groups),
        flags_section(collection, flags, out),
        *ablation_section(collection, output),
        *sensitivity_sections(collection, output),
        *curve_section(collection, output, LEARNING),
        *per_class_sections(collection, output),
        *confusion_sections(collection, output),
        *mask_sections(collection, output),
        *relabel_sections(collection, output),
        *relabel_pair_sections(collection, output),
        *run_labels_sections(labels, out),
        *curve_section(collection, output, LABELS),
        *gallery_sections(collection, output, gallery),
        runs_section(collection, output, flags),
    ]
    title = "lionfer report"
    output.write_text("report.md", to_markdown(title, sections))
    output.write_text("report.html", to_html(title, sections))
    record = {
        "files": output.files,
        "runs": [str(r.path) for r in collection.runs],
        "flags": collapse.records(ordered_runs(collection), flags),
        "skipped": [[str(p), why] for p, why in collection.skipped],
        "unfinished": [[str(p), how] for p, how in collection.unfinished],
    }
    save(output, earlier, record)
    warnings = collapse.warnings(collection.methods, groups, out / "report.md")
    counts = (len(collection.runs), len(collection.skipped), output.files)
    return ReportResult(out, *counts, warnings, sections, labels, collection.unfinished)
