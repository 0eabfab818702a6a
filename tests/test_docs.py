"""The documentation: the site builds with `mkdocs build --strict` (no broken link or anchor, no
page outside the nav), its generated tables name every config key and method, the README stays
short and its links (and CONTRIBUTING.md's) resolve, and CONTRIBUTING.md has a line for every
module of the package."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
README_MAX_LINES = 250


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as `make docs` builds it, into a temporary folder."""
    pytest.importorskip("mkdocs", reason="the docs are built with mkdocs (the dev extra has it)")
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}{done.stderr}"
    return out


def page_html(site: Path, page: str) -> str:
    """The built HTML of a docs page ("cli.md" → site/cli/index.html)."""
    name = Path(page).stem
    return (site / ("index.html" if name == "index" else f"{name}/index.html")).read_text()


def nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [page for value in node.values() for page in nav_pages(value)]
    return [page for item in node for page in nav_pages(item)]


def test_the_site_builds_strictly(site):
    assert (site / "index.html").is_file()
    assert not list(site.rglob("*.py")), "docs/hooks.py is not a page: it must not be published"


def test_every_docs_page_is_in_the_nav():
    yaml = pytest.importorskip("yaml", reason="mkdocs.yml is read with PyYAML (mkdocs needs it)")
    nav = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert sorted(nav) == pages, "every page of docs/ once in mkdocs.yml's nav, and no other"


def test_the_readme_stays_short():
    lines = len(README.read_text().splitlines())
    assert lines < README_MAX_LINES, f"README.md has {lines} lines: move reference text to docs/"


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    return [link for link in links if not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("source", [README, CONTRIBUTING], ids=lambda p: p.name)
def test_the_links_of_the_readme_and_contributing_resolve(source, site):
    headings = re.findall(r"^#+ (.+)$", source.read_text(), re.MULTILINE)
    for link in relative_links(source):
        path, _, anchor = link.partition("#")
        if not path:
            assert anchor in {github_slug(h) for h in headings}, f"{source.name}: {link}"
            continue
        target = (source.parent / path).resolve()
        assert target.exists(), f"{source.name} links to {path}, which does not exist"
        if anchor:
            assert target.parent == DOCS and target.suffix == ".md", link
            ids = set(re.findall(r'id="([^"]+)"', page_html(site, target.name)))
            assert anchor in ids, f"{source.name} links to {link}: the page has no such anchor"


def test_the_config_tables_are_generated_with_every_key(site):
    import lionfer.algorithms  # noqa: F401  (registers the methods)
    from lionfer.config_sections import SECTIONS
    from lionfer.registry import ALGORITHMS

    html = page_html(site, "config.md")
    for section, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            assert f"<code>{section}.{field.name}</code>" in html, f"{section}.{field.name}"
    # one field's type, default, value in default.toml and comment, as config.py has them
    rows = re.findall(r"<tr>\s*<td><code>data.num_workers</code></td>(.*?)</tr>", html, re.DOTALL)
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in rows]
    expected = ["int", "<code>0</code>", "<code>1</code>", "data-loading worker processes"]
    assert expected in cells, cells
    for entry in ALGORITHMS:
        assert f'id="{entry.name}"' in html, entry.name
        for field in dataclasses.fields(entry.config):
            assert f"<code>algorithm.{field.name}</code>" in html
    assert "<!-- generated" not in html


def test_each_generated_section_says_where_to_find_it_on_the_unbuilt_page(site):
    """GitHub shows the pages unbuilt: a line under each marker stands in for the section, and
    the build replaces both."""
    for page in sorted(DOCS.glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.startswith("<!-- generated: ") and line != "<!-- generated: contributing -->":
                assert lines[i + 1].startswith("_Rendered when the site is built"), (page, line)
    for html in site.rglob("*.html"):
        assert "Rendered when the site is built" not in html.read_text(encoding="utf-8"), html


def test_the_registry_listings_are_what_lionfer_list_prints(site, capsys):
    from lionfer.cli import main

    for what, page in [("algorithms", "algorithms.md"), ("models", "performance.md")]:
        assert main(["list", what]) == 0
        printed = capsys.readouterr().out
        html = page_html(site, page)
        for line in printed.splitlines():
            name = line.split()[0]
            assert name.replace("<", "&lt;").replace(">", "&gt;") in html, (what, name)


def listed_modules() -> dict[str, str]:
    """{path: line} of CONTRIBUTING.md's layout: `- `lionfer/...`: what it holds`."""
    text = CONTRIBUTING.read_text().split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^- `(lionfer/[^`]+)`: (.+)$", text, re.MULTILINE))


def test_contributing_has_a_line_for_every_module():
    listed = listed_modules()
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "lionfer").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    missing = sorted(modules - set(listed))
    hints = []
    for path in missing:
        docstring = ast.get_docstring(ast.parse((ROOT / path).read_text())) or ""
        hints.append(f"- `{path}`: {docstring.splitlines()[0] if docstring else '...'}")
    assert not missing, "CONTRIBUTING.md's layout lacks:\n" + "\n".join(hints)
    for path in listed:
        assert (ROOT / path).exists(), f"CONTRIBUTING.md lists {path}, which does not exist"


def test_the_command_table_has_a_row_for_every_command():
    """docs/cli.md's table names every subcommand of `lionfer`; one documented on another page
    links to it (README.md: "every command and flag")."""
    import argparse

    from lionfer.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    text = (DOCS / "cli.md").read_text()
    described = {
        found[1]: line.rsplit(" | ", 1)[-1]  # the row's last cell: what the command does
        for line in text.splitlines()
        if (found := re.match(r"\| `lionfer (\w+)", line))
    }
    assert set(sub.choices) <= set(described), set(sub.choices) - set(described)
    for command in ("sweep", "report", "predict", "export", "relabel", "audit"):
        links = re.findall(r"\]\(([\w-]+\.md)(#[\w-]+)?\)", described[command])
        assert links, f"the row of lionfer {command} links to no page"
        assert all((DOCS / page).is_file() for page, _ in links)


def test_the_pages_lionfer_sends_users_to_online_are_there():
    """Messages name documentation by its online address (an installed lionfer has no docs/):
    each page docs_page names, and each #anchor after it, is one of docs/."""
    sent = []
    for path in (ROOT / "lionfer").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        sent += re.findall(r"docs_page\(['\"]([\w.-]+)['\"]\)\}?(?:#([\w-]+))?", text)
    assert len(sent) >= 3
    for page, anchor in sent:
        assert (DOCS / page).is_file(), page
        headings = re.findall(r"^#+ (.+)$", (DOCS / page).read_text(), flags=re.M)
        assert not anchor or anchor in {github_slug(h) for h in headings}, (page, anchor)


def load_hooks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_results_table_is_the_committed_report_rendered():
    """The README's headline table cannot be typed by hand: it equals the table rendered from the
    report CSV files in docs/results/showcase/, as the Results page shows it."""
    text = README.read_text()
    block = text.split("<!-- results showcase -->\n")[1].split("<!-- end results showcase -->")[0]
    assert block == load_hooks().results_table("showcase")
    assert "<!-- generated: results showcase -->" in (DOCS / "results.md").read_text()


def test_a_results_table_is_rendered_from_the_csv_files(tmp_path, monkeypatch):
    hooks = load_hooks()
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "table1.csv").write_text(
        "method,column,seeds,mean,std,flags\n"
        "fixmatch,synthetic@140,3,64.75,5.4,\n"
        "mixmatch,synthetic@140,2,18.5,,collapsed in 2/2 seeds\n"
    )
    (folder / "mean_class_acc.csv").write_text(
        "method,column,seeds,mean,std\nfixmatch,synthetic@140,3,60.0,1.0\n"
        "mixmatch,synthetic@140,2,17.0,\n"
    )
    (folder / "relabel.csv").write_text(
        "method,column,figure,seeds,mean,std\n"
        "fixmatch,synthetic@140,relabel.given_accuracy,3,76.19,4.5\n"
        "fixmatch,synthetic@140,relabel.current_accuracy,3,70.0,2.0\n"
        "fixmatch,synthetic@140,relabel.count,3,4.0,1.0\n"
        "fixmatch,synthetic@140,relabel.precision,3,25.0,5.0\n"
    )
    (folder / "made.toml").write_text(
        'commands = ["lionfer sweep demo --out runs/demo"]\ncommit = "abc1234"\n'
        'machine = "a laptop"\ndate = "2026-01-01"\n'
    )
    monkeypatch.setattr(hooks, "RESULTS", tmp_path)
    rows = hooks.results_table("demo").splitlines()
    assert rows[2] == (
        "| fixmatch | 140 | 64.75 ± 5.40 (n=3) | 60.00 ± 1.00 | 76.2 → 70.0 ± 2.0 "
        "| 4.0 ± 1.0 (25 ± 5) |  |"
    )
    assert rows[3] == "| mixmatch | 140 | 18.50 (n=2) | 17.00 |  |  | collapsed in 2/2 seeds |"
    assert "commit `abc1234` on a laptop" in rows[5]


def test_a_labels_table_pools_the_runs_relabel_counts(tmp_path, monkeypatch):
    """Precision, fixed, broken and demoted are pooled over the seeds from runs.csv's counts
    (not averaged per seed); methods that change no label get empty cells."""
    hooks = load_hooks()
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "table1.csv").write_text(
        "method,column,seeds,mean,std,flags\n"
        "fixmatch,digits@100,2,80.0,2.0,\n"
        "lion:evidence,digits@100,2,90.0,1.0,\n"
    )
    counts = (
        "relabel.count,relabel.precision,relabel.given_accuracy,relabel.current_accuracy,"
        "relabel.broken,relabel.by_error_type.slip.wrong_given,relabel.by_error_type.slip.fixed,"
        "relabel.by_error_type.ambiguity.wrong_given,relabel.by_error_type.ambiguity.fixed,"
        "relabel.demoted.count,relabel.demoted.wrong_given"
    )
    (folder / "runs.csv").write_text(
        f"folder,method,seed,test_acc,{counts}\n"
        "a,fixmatch,0,0.8,,,,,,,,,,,\n"
        "b,lion:evidence,0,0.9,4,0.75,0.8,0.9,1,10,3,2,0,2,1\n"
        "c,lion:evidence,1,0.9,1,1.0,0.9,0.92,0,8,0,1,1,0,0\n"
    )
    (folder / "made.toml").write_text(
        'commands = ["lionfer report a b c"]\ncommit = "abc1234"\nmachine = "a laptop"\n'
        'date = "2026-01-01"\n'
    )
    monkeypatch.setattr(hooks, "RESULTS", tmp_path)
    rows = hooks.labels_table("demo").splitlines()
    assert rows[2] == "| fixmatch | 80.00 ± 2.00 (n=2) |  |  |  |  |  |  |"
    # 3 of 4 right and 1 of 1: 4/5 pooled (80%), where the per-seed mean would say 87.5%
    assert rows[3] == (
        "| lion:evidence | 90.00 ± 1.00 (n=2) | 2.5 | 80% (4/5) | 3/18 · 1/3 | 1 | 2 (1) "
        "| 85.0 → 91.0 |"
    )
    assert "commit `abc1234` on a laptop" in rows[5]


@pytest.mark.parametrize("name", sorted(d.name for d in (DOCS / "results").iterdir()))
def test_every_committed_result_is_shown_on_the_results_page(name):
    text = (DOCS / "results.md").read_text()
    assert f"<!-- generated: results {name} -->" in text or (
        f"<!-- generated: labels {name} -->" in text
    )
