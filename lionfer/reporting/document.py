"""A report as data (sections of paragraphs, tables and figures), written as Markdown (figures as
PNG files beside it), as one self-contained HTML file (figures embedded as base64 PNG) and its
tables as plain text for a terminal; the report folder, which records every file written."""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    name: str  # file name under figures/
    png: bytes
    caption: str


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # str paragraphs, Table, Image

    def add(self, *blocks) -> Section:
        self.blocks.extend(blocks)
        return self


def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


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
                lines.append(f"![{block.caption}]({figures}/{block.name})")
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


def _inline(text: str) -> str:
    """Escape, then render `code` and **strong** spans as in the Markdown."""
    parts = html.escape(str(text)).split("`")
    return "".join(
        f"<code>{p}</code>" if i % 2 else re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", p)
        for i, p in enumerate(parts)
    )


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
                out.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in block.header))
                for row in block.rows:
                    out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
                out.append("</table>")
            elif isinstance(block, Image):
                data = base64.b64encode(block.png).decode("ascii")
                out.append(
                    f'<figure><img alt="{html.escape(block.caption)}" '
                    f'src="data:image/png;base64,{data}"><figcaption>'
                    f"{_inline(block.caption)}</figcaption></figure>"
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

    def csv(self, name: str, header: list[str], rows: list[list]) -> None:
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        self.write_bytes(name, text.getvalue().encode())

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
        for name, data in self.data.items():
            path = self.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
