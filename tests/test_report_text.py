"""The words of a report: names from the runs (sweep labels, columns, classes, folders) are
shown as they are in report.md, rendered by a Markdown renderer or read as text, and in
report.html, while the report's own `code` and **strong** spans stay markup; the overview counts
in words; folders are given as seen from the report's folder."""

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_report import fake_run, read_csv

from lionfer.reporting.document import Markup, Section, Table, code, plain, to_html, to_markdown
from lionfer.reporting.report_command import make_report

ODD = ["*x*", "<i>x<_i>", "a|b", 'c&d "q"', "A`b **c** ]x", "<img src=x onerror=alert(2)>"]


class Parsed(HTMLParser):
    """The elements and the text of an HTML document."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.images, self.texts = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)


@pytest.mark.parametrize(
    "value, markdown",
    [
        ("*x*", r"\*x\*"),
        ("<i>x<_i>", r"&lt;i&gt;x&lt;\_i&gt;"),
        ('c&d "q"', 'c&amp;d "q"'),
        ("A`b **c** ]x", r"A\`b \*\*c\*\* \]x"),
        ("clear_threshold=0.8", "clear_threshold=0.8"),  # "_" inside a word emphasises nothing
        ("_x_ # [y](z) ~w~", r"\_x\_ \# \[y\](z) &#126;w&#126;"),
        ("two\nlines", "two lines"),
    ],
)
def test_a_value_is_escaped_for_markdown_and_read_back_as_it_was(value, markdown):
    assert plain(value) == markdown
    section = Section("s").add(f"**{plain(value)}** in `code`")
    html = to_html("t", [section])
    assert f"<p><strong>{_escaped(value)}</strong> in <code>code</code></p>" in html


def _escaped(value: str) -> str:
    import html

    return html.escape(" ".join(value.splitlines()))


def test_a_code_span_holds_any_value():
    assert code("runs/a b") == "`runs/a b`"
    assert code("A`b") == "``A`b``" and code("`x") == "`` `x ``"
    html = to_html("t", [Section("s").add(f"from {code('A`b **c**')} and {code('`x')}")])
    assert "<p>from <code>A`b **c**</code> and <code>`x</code></p>" in html


def test_cells_are_values_unless_markup():
    table = Table(["class *x*", "flags"], [["<i>x<_i>", Markup("**collapsed**: 95%")]])
    md = to_markdown("t", [Section("s").add(table)])
    assert r"| class \*x\* | flags |" in md
    assert r"| &lt;i&gt;x&lt;\_i&gt; | **collapsed**: 95% |" in md
    html = to_html("t", [Section("s").add(table)])
    assert "<td>&lt;i&gt;x&lt;_i&gt;</td><td><strong>collapsed</strong>: 95%</td>" in html


def odd_report(tmp_path) -> Path:
    """A report of runs whose sweep labels, column, classes and folders are all ODD names."""
    sweep = tmp_path / "sweep"
    points = []
    for k, label in enumerate(ODD):
        folder = f"runs/{label.replace('/', '_')} {k}"
        run = fake_run(sweep, folder, seed=k, acc=0.5)
        summary = json.loads((run / "summary.json").read_text())
        summary["class_names"] = ODD[:2]
        summary["per_class_acc"] = {ODD[0]: 0.5, ODD[1]: 0.25}
        (run / "summary.json").write_text(json.dumps(summary))
        points.append({"label": label, "column": "syn*x*@100", "folder": folder})
    (sweep / "sweep.json").write_text(json.dumps({"points": points}))
    out = tmp_path / "report"
    make_report([sweep], out)
    return out


def test_names_render_as_written_in_a_markdown_renderer(tmp_path):
    markdown = pytest.importorskip("markdown")
    out = odd_report(tmp_path)
    md = (out / "report.md").read_text(encoding="utf-8")
    rendered = Parsed(markdown.markdown(md, extensions=["tables"]))
    # only the report's own elements: no <i>, <em>, <b>, ... from a name, no image but its figures
    own = {"h1", "h2", "p", "strong", "code", "img", "table", "thead", "tbody", "tr", "th", "td"}
    assert set(rendered.tags) <= own
    assert all(src.startswith("figures/") for src in rendered.images)
    assert len(rendered.images) == md.count("](figures/")
    for name in ODD:
        assert rendered.text.count(name) >= 2, name  # its table rows, its folder, its figures
    assert "syn*x*@100" in rendered.text and "Per-class accuracy" in rendered.text


def test_names_are_text_in_report_html(tmp_path):
    out = odd_report(tmp_path)
    page = Parsed((out / "report.html").read_text(encoding="utf-8"))
    assert "em" not in page.tags and "i" not in page.tags and "b" not in page.tags
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "<td>A`b **c** ]x</td>" in (out / "report.html").read_text(encoding="utf-8")
    for name in ODD:
        assert name in page.text, name
    assert "<p><strong>syn*x*@100</strong></p>" in (out / "report.html").read_text()


def test_the_overview_counts_in_words(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, "a", acc=0.5)
    (fake_run(root, "bad", seed=1) / "summary.json").write_text("{not json")
    stopped = root / "stopped"
    stopped.mkdir()
    (stopped / "metrics.jsonl").write_text('{"event": "start", "num_labeled": 28}\n')
    make_report([root], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "1 finished run of 1 method on synthetic@100" in md
    assert "1 run folder was skipped:" in md
    assert "1 run has not finished and is not in the tables:" in md


def test_folders_are_given_as_seen_from_the_report_folder(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    lion = fake_run(root, "lion s0", algorithm="lion", acc=0.5, relabel={"count": 2})
    fake_run(root, "fm s0", acc=0.5)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the report is made from another folder
    out = tmp_path / "reports" / "first"
    make_report([Path("..") / "runs"], out)
    folders = [row["folder"] for row in read_csv(out / "runs.csv")]
    assert sorted(folders) == ["../../runs/fm s0", "../../runs/lion s0"]
    assert all((out / folder / "summary.json").is_file() for folder in folders)
    md = (out / "report.md").read_text()
    assert "read from `../../runs`" in md
    assert "| ../../runs/lion s0/relabels.csv |" in md
    assert os.path.samefile(out / "../../runs/lion s0", lion)
