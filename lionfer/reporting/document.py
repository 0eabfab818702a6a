"""A report as data (sections of paragraphs, tables and figures), written as Markdown (figures as
PNG files beside it), as one self-contained HTML file (figures embedded as base64 PNG) and its
tables as plain text for a terminal; the report folder, which records every file written.

A paragraph is the report's own words in Markdown (`code` and **strong** spans), a value from the
runs put into it through plain() or code(); a table cell and a caption are values, shown as they
are in both formats, unless a cell is Markup (the report's own words, as a paragraph). So a name
such as `*x*` or `<i>` reads the same in report.md, rendered or not, and in report.html."""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from lionfer.atomic import write_bytes_atomic
from lionfer.data.images import path_text


class Markup(str):
    """A table cell in the report's own words (Markdown, as a paragraph), not a value."""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]  # values, or Markup


@dataclass
class Image:
    name: str  # file name under figures/
    png: bytes
    caption: str  # a value: shown as it is


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # str paragraphs (Markdown), Table, Image

    def add(self, *blocks) -> Section:
        self.blocks.extend(blocks)
        return self


# Markdown's inline characters, and "_" where it may open or close emphasis (not inside a word)
_SPECIAL = re.compile(r"[\\`*\[\]#&<>~]|(?<![^\W_])_|_(?![^\W_])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "~": "&#126;"}  # not every renderer takes \<


def _one_line(value) -> str:
    return " ".join(str(value).splitlines())


def plain(value) -> str:
    """A value (a name, a path, a reason) as Markdown that any renderer shows as it is: its
    Markdown characters backslash-escaped, its HTML ones as entities, a line break as a space."""
    return _SPECIAL.sub(lambda m: _ENTITIES.get(m[0], "\\" + m[0]), _one_line(value))


def code(value) -> str:
    """A value as a Markdown code span: fenced by one backtick more than it holds in a row, and
    padded with a space where it begins or ends with one (renderers strip one)."""
    text = _one_line(value)
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_cell(cell) -> str:
    text = str(cell) if isinstance(cell, Markup) else plain(cell)
    return _one_line(text).replace("|", "\\|")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of cells written as given (the caller escapes what needs it)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A table as aligned plain text, a rule of dashes under the header."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines = [line.rstrip() for line in lines]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_markdown(title: str, sections: list[Section], figures: str = "figures") -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                cells = [[_md_cell(c) for c in row] for row in block.rows]
                lines.append(markdown_table([_md_cell(h) for h in block.header], cells))
            elif isinstance(block, Image):
                lines.append(f"![{plain(block.caption)}]({figures}/{block.name})")
            else:
                lines.append(str(block))
            lines.append("")
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
figure { margin: 0.5em 0 1.5em; }
figcaption { font-size: 0.85em; color: #555; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


# what Markdown reads in the report's own words: a backslash escape, a run of backticks (a code
# span's fence), ** (strong) and an entity
_TOKEN = re.compile(r"\\([!-/:-@\[-`{-~])|(`+)|\*\*|&(?:#\d+|#[xX][\da-fA-F]+|[A-Za-z]\w*);")


def _inline(text: str) -> str:
    """The report's own words (Markdown) as HTML: `code` and **strong** spans as elements, a
    backslash escape or an entity as the character it stands for, the rest escaped."""
    out, strong, at = [], False, 0
    while (found := _TOKEN.search(text, at)) is not None:
        out.append(html.escape(text[at : found.start()]))
        at = found.end()
        if found[1] is not None:
            out.append(html.escape(found[1]))
        elif found[2] is not None:  # a code span runs to the next run of as many backticks
            close = re.compile(f"(?<!`){found[2]}(?!`)").search(text, at)
            if close is None:
                out.append(found[2])
                continue
            span = text[at : close.start()]
            if span.startswith(" ") and span.endswith(" ") and span.strip():
                span = span[1:-1]
            out.append(f"<code>{html.escape(span)}</code>")
            at = close.end()
        elif found[0] == "**":
            out.append("</strong>" if strong else "<strong>")
            strong = not strong
        else:
            out.append(html.escape(html.unescape(found[0])))
    out.append(html.escape(text[at:]))
    return "".join(out) + ("</strong>" if strong else "")


def _html_cell(cell) -> str:
    return _inline(cell) if isinstance(cell, Markup) else html.escape(str(cell))


def to_html(title: str, sections: list[Section]) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                header = "".join(f"<th>{_html_cell(h)}</th>" for h in block.header)
                out.append(f"<table><tr>{header}")
                for row in block.rows:
                    out.append("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>")
                out.append("</table>")
            elif isinstance(block, Image):
                data = base64.b64encode(block.png).decode("ascii")
                out.append(
                    f'<figure><img alt="{html.escape(block.caption)}" '
                    f'src="data:image/png;base64,{data}"><figcaption>'
                    f"{html.escape(block.caption)}</figcaption></figure>"
                )
            else:
                out.append(f"<p>{_inline(block)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


@dataclass
class Output:
    """The report's files, held until save(): every file is recorded, to be listed in
    report.json, and none is written before the whole report is made."""

    folder: Path
    files: list[str] = field(default_factory=list)
    data: dict[str, bytes] = field(default_factory=dict)

    def write_bytes(self, name: str, data: bytes) -> None:
        self.data[name] = data
        self.files.append(name)

    def write_text(self, name: str, text: str) -> None:
        """Text as UTF-8, a run folder's name that is not UTF-8 (a Latin-1 name, which Python
        holds with surrogate escapes) in it with its bytes as \\xNN (path_text)."""
        self.write_bytes(name, path_text(text).encode())

    def csv(self, name: str, header: list[str], rows: list[list]) -> None:
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        self.write_text(name, text.getvalue())

    def image(self, name: str, png: bytes, caption: str) -> Image:
        """A figure in figures/; a name already used in this report (two methods whose names
        give one file name) gets -2, -3, ... before its suffix."""
        stem, dot, suffix = name.rpartition(".")
        copy = 1
        while f"figures/{name}" in self.data:
            copy += 1
            name = f"{stem}-{copy}{dot}{suffix}"
        self.write_bytes(f"figures/{name}", png)
        return Image(name, png, caption)

    def save(self) -> None:
        """Write every file (write_file): each whole, or not at all."""
        for name, data in self.data.items():
            write_file(self.folder / name, data)


def write_file(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all (lionfer.atomic.write_bytes_atomic: into `<name>.tmp`
    beside it, then renamed over it, so that a link at its name is replaced, not followed; an
    OSError names `path`), the `<name>.tmp` a leftover or a link left there removed first, so that
    it is made anew, never written through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(path.name + ".tmp").unlink(missing_ok=True)
    write_bytes_atomic(path, data)
