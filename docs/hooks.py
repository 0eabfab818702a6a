"""MkDocs hooks (mkdocs.yml `hooks:`): the parts of the pages that come from the code.

A page line `<!-- generated: NAME -->` is replaced when the site is built, so these tables cannot
drift from the code (with the line after it, where that line reads "_Rendered when the site is
built ..._": it says where to find the section for a reader of the page unbuilt, on GitHub):
- `config-keys`: every key of the `seed`, `[data]`, `[model]` and `[train]` sections, from the
  dataclasses of lionfer/config_sections.py (seed: lionfer/config.py's Config): type, default,
  the packaged default.toml's value, comment;
- `algorithm-keys`: every method's `[algorithm]` keys, from lionfer/algorithms/hparams.py (LION
  with a column per recipe);
- `lionfer list algorithms|models|datasets`: what that command prints (the registries);
- `contributing`: the page becomes CONTRIBUTING.md (its links to docs/ made site links);
- `results NAME`: a packaged sweep's table from the `lionfer report` CSV files committed in
  docs/results/NAME/, with the commands, commit and machine of its made.toml;
- `labels NAME`: the label-quality table of docs/results/NAME/ (one column of runs): relabels,
  their precision and the labels fixed, broken and demoted, pooled over seeds from runs.csv.
A field's comment is the one on its line, else the comment lines right above it. The pages are
also written for GitHub, so a pipe escaped inside a table cell's code span is unescaped here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import sys
import tokenize
import tomllib
from pathlib import Path
from typing import Any, get_type_hints

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document the checkout being built, not an installed lionfer

# a marker and the line that stands in for its section where the page is read unbuilt (GitHub)
MARKER = re.compile(
    r"^<!-- generated: (.+?) -->$(?:\n_Rendered when the site is built[^\n]*_$)?", re.MULTILINE
)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def field_comments(cls: type) -> dict[str, str]:
    """{field: comment} for a dataclass: the comment on the field's line, else the block of
    comment lines directly above it."""
    path = Path(sys.modules[cls.__module__].__file__)
    source = path.read_text()
    comments = {}  # line number → comment text
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"class {cls.__name__}"))
    out = {}
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line and not line[0].isspace():
            break  # the end of the class body
        match = re.match(r"    (\w+): ", line)
        if not match:
            continue
        number = i + 1
        if number in comments and not line.strip().startswith("#"):
            out[match.group(1)] = comments[number]
            continue
        above = []
        while number - 1 in comments and lines[number - 2].strip().startswith("#"):
            number -= 1
            above.insert(0, comments[number])
        out[match.group(1)] = " ".join(above)
    return out


def toml_value(value: Any) -> str:
    """A value as it is written in a config file or a `key=value` override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text if len(text) <= 8 else f"{value:.4g}"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def cell(text: str) -> str:
    """A comment as a Markdown table cell: outside its code spans, a pipe would end the cell, a
    `<` could open a tag and a `*` emphasis."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")
    return "".join(parts)


def code(value: Any) -> str:
    return f"`{toml_value(value)}`"


def default_of(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def type_name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


def key_rows(
    cls: type, prefix: str, packaged: dict | None, skip: tuple[str, ...] = ()
) -> list[str]:
    """A table row per field: key, type, default, (the packaged config's value,) comment."""
    comments = field_comments(cls)
    hints = get_type_hints(cls)
    rows = []
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        columns = [f"`{prefix}{field.name}`", type_name(hints[field.name]), code(default_of(field))]
        if packaged is not None:
            columns.append(code(packaged[field.name]) if field.name in packaged else "")
        columns.append(cell(comments.get(field.name, "")))
        rows.append("| " + " | ".join(columns) + " |")
    return rows


def config_keys() -> str:
    from lionfer.config import DEFAULT_CONFIG, Config
    from lionfer.config_sections import SECTIONS, AlgorithmConfig

    packaged = tomllib.loads(DEFAULT_CONFIG.read_text())
    header = ["| key | type | default | `default.toml` | what it is |", "|---|---|---|---|---|"]
    out = ["### `seed`", "", *header]
    out += key_rows(Config, "", packaged, skip=("data", "model", "algorithm", "train"))
    for name, cls in SECTIONS.items():
        out += ["", f"### `[{name}]`", "", *header]
        out += key_rows(cls, f"{name}.", packaged.get(name, {}))
    out += ["", "### `[algorithm]`", "", *header]
    out += key_rows(AlgorithmConfig, "algorithm.", packaged.get("algorithm", {}), skip=("params",))
    out += ["", "The other `[algorithm]` keys are the method's own: [below](#algorithm-keys)."]
    return "\n".join(out)


def algorithm_keys() -> str:
    import lionfer.algorithms  # noqa: F401  (registers the methods; imports no torch)
    from lionfer.config import DEFAULT_CONFIG
    from lionfer.config_sections import AlgorithmConfig
    from lionfer.registry import ALGORITHMS

    packaged = tomllib.loads(DEFAULT_CONFIG.read_text()).get("algorithm", {})
    packaged_name = packaged.pop("name", AlgorithmConfig.name)
    out = []
    for entry in ALGORITHMS:
        cls = entry.config
        out += [f"### `{entry.name}`", "", f"{entry.description}; keys of `{cls.__name__}`.", ""]
        recipes = getattr(cls, "RECIPES", None)
        if recipes:
            out += recipe_table(cls, recipes)
        else:
            out += ["| key | type | default | what it is |", "|---|---|---|---|"]
            out += key_rows(cls, "algorithm.", None)
        if packaged_name == entry.name and packaged:
            given = ", ".join(f"`{k} = {toml_value(v)}`" for k, v in packaged.items())
            out += ["", f"The packaged `default.toml` sets {given}."]
        out.append("")
    return "\n".join(out)


def recipe_table(cls: type, recipes: dict[str, dict]) -> list[str]:
    """A column per recipe; a value the recipe sets (rather than the field default) is bold."""
    comments = field_comments(cls)
    hints = get_type_hints(cls)
    names = list(recipes)
    out = [
        f"`algorithm.recipe` picks a recipe: the fields it sets (in bold) apply under any key set "
        f"explicitly. Without one a config gets `{cls.DEFAULT_RECIPE}`.",
        "",
        "| key | type | " + " | ".join(f"`{r}`" for r in names) + " | what it is |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for field in dataclasses.fields(cls):
        values = []
        for recipe in names:
            if field.name == "recipe":
                values.append(code(recipe))
            elif field.name in recipes[recipe]:
                values.append(f"**{code(recipes[recipe][field.name])}**")
            else:
                values.append(code(default_of(field)))
        out.append(
            f"| `algorithm.{field.name}` | {type_name(hints[field.name])} | "
            + " | ".join(values)
            + f" | {cell(comments.get(field.name, ''))} |"
        )
    return out


def lionfer_list(what: str) -> str:
    from lionfer.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["list", what])
    if code != 0:
        raise RuntimeError(f"lionfer list {what} exited with {code}")
    return f"```text\n$ lionfer list {what}\n{printed.getvalue()}```"


def contributing() -> str:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    text = text.replace("](docs/", "](").replace("](README.md)", "](index.md)")
    return text


RESULTS = ROOT / "docs" / "results"


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _mean_std(row: dict[str, str], scale: float = 1.0, digits: int = 2) -> str:
    mean, std = float(row["mean"]) * scale, row.get("std") or ""
    text = f"{mean:.{digits}f}"
    return text + (f" ± {float(std) * scale:.{digits}f}" if std else "")


def made_by(folder: Path) -> str:
    """The lines under a results table: the commit, machine, date and commands of its made.toml."""
    made = tomllib.loads((folder / "made.toml").read_text())
    commands = "\n".join(made["commands"])
    return (
        f"\n\nRuns made at commit `{made['commit']}` on {made['machine']} ({made['date']}):\n\n"
        + f"```bash\n{commands}\n```\n"
    )


def results_table(name: str) -> str:
    """The table of docs/results/NAME/: one row per method, test accuracy and mean class accuracy
    (mean ± std over seeds, %), for methods that change labels the labeled set's accuracy before
    → after and the relabels' precision, and the report's flags."""
    from lionfer.reporting.document import markdown_table
    from lionfer.run_names import split_column

    folder = RESULTS / name
    tables = {f: _csv(folder / f"{f}.csv") for f in ("table1", "mean_class_acc")}
    # relabel.csv: only where some run changes labels
    tables["relabel"] = _csv(folder / "relabel.csv") if (folder / "relabel.csv").is_file() else []
    relabel = {(r["method"], r["column"], r["figure"]): r for r in tables["relabel"]}  # in %
    mean_class = {(r["method"], r["column"]): r for r in tables["mean_class_acc"]}
    header = [
        "method",
        "labels",
        "test acc %",
        "mean class acc %",
        "labels right % (given → end)",
        "relabels (precision %)",
        "flags",
    ]
    rows = []
    for row in tables["table1"]:
        key = (row["method"], row["column"])
        labels_right = relabels = ""
        if key + ("relabel.given_accuracy",) in relabel:
            given = float(relabel[key + ("relabel.given_accuracy",)]["mean"])
            current = _mean_std(relabel[key + ("relabel.current_accuracy",)], 1, 1)
            labels_right = f"{given:.1f} → {current}"
            count = _mean_std(relabel[key + ("relabel.count",)], 1, 1)
            precision = relabel.get(key + ("relabel.precision",))
            relabels = count + (f" ({_mean_std(precision, 1, 0)})" if precision else "")
        labels = split_column(row["column"])[1]
        test_acc = f"{_mean_std(row)} (n={row['seeds']})"
        mean_class_acc = _mean_std(mean_class[key])
        rows.append(
            [row["method"], labels, test_acc, mean_class_acc, labels_right, relabels, row["flags"]]
        )
    return markdown_table(header, rows) + made_by(folder)


def _runs_by_method(folder: Path) -> dict[str, list[dict[str, str]]]:
    """runs.csv's rows by method, in table1.csv's order."""
    runs = _csv(folder / "runs.csv")
    order = [row["method"] for row in _csv(folder / "table1.csv")]
    return {m: [r for r in runs if r["method"] == m] for m in dict.fromkeys(order)}


def _total(runs: list[dict[str, str]], key: str) -> int:
    """The sum of a runs.csv count over runs (0 where a run lacks it)."""
    return sum(round(float(r[key])) for r in runs if r.get(key))


def _pooled(right: int, total: int) -> str:
    return f"{100 * right / total:.0f}% ({right}/{total})" if total else "–"


def labels_table(name: str) -> str:
    """The label-quality table of docs/results/NAME/ (one column of runs): per method test
    accuracy (mean ± std over seeds, %) and, for methods that change labels, pooled over the
    seeds from runs.csv: relabels a run, precision (right / changed), wrongly given labels fixed
    by error type, correct labels broken, demoted images (how many wrongly labeled) and the
    labeled set's accuracy given → at the end."""
    from lionfer.reporting.document import markdown_table

    folder = RESULTS / name
    accuracy = {row["method"]: row for row in _csv(folder / "table1.csv")}
    header = [
        "method",
        "test acc %",
        "relabels/run",
        "precision",
        "fixed: slips · ambiguity",
        "broken",
        "demoted (wrongly labeled)",
        "labels right %",
    ]
    rows = []
    for method, runs in _runs_by_method(folder).items():
        row = [method, f"{_mean_std(accuracy[method])} (n={accuracy[method]['seeds']})"]
        runs = [r for r in runs if r.get("relabel.count")]
        if runs:
            count = _total(runs, "relabel.count")
            right = sum(
                round(float(r["relabel.precision"]) * float(r["relabel.count"]))
                for r in runs
                if r.get("relabel.precision")
            )
            fixed = [
                f"{_total(runs, f'relabel.by_error_type.{kind}.fixed')}/"
                f"{_total(runs, f'relabel.by_error_type.{kind}.wrong_given')}"
                for kind in ("slip", "ambiguity")
            ]
            demoted = _total(runs, "relabel.demoted.count")
            given, end = (
                sum(100 * float(r[f"relabel.{k}_accuracy"]) for r in runs) / len(runs)
                for k in ("given", "current")
            )
            row += [
                f"{count / len(runs):.1f}",
                _pooled(right, count),
                " · ".join(fixed),
                str(_total(runs, "relabel.broken")),
                f"{demoted} ({_total(runs, 'relabel.demoted.wrong_given')})"
                if any(r.get("relabel.demoted.count") for r in runs)
                else "–",
                f"{given:.1f} → {end:.1f}",
            ]
        else:
            row += [""] * 6
        rows.append(row)
    return markdown_table(header, rows) + made_by(folder)


GENERATORS = {
    "config-keys": config_keys,
    "algorithm-keys": algorithm_keys,
    "lionfer list algorithms": lambda: lionfer_list("algorithms"),
    "lionfer list models": lambda: lionfer_list("models"),
    "lionfer list datasets": lambda: lionfer_list("datasets"),
    **{f"results {d.name}": (lambda d=d: results_table(d.name)) for d in RESULTS.iterdir()},
    **{f"labels {d.name}": (lambda d=d: labels_table(d.name)) for d in RESULTS.iterdir()},
}


def unescape_table_pipes(markdown: str) -> str:
    """`a\\|b` → `a|b` inside the code spans of table rows (lines that start with `|`):
    GitHub's tables need the escape, Python-Markdown keeps such pipes in their cell already and
    would print the backslash."""

    def fix_row(line: str) -> str:
        if not line.lstrip().startswith("|"):
            return line
        return CODE_SPAN.sub(lambda span: span.group(0).replace("\\|", "|"), line)

    return "\n".join(fix_row(line) for line in markdown.split("\n"))


def generate(markdown: str) -> str:
    """Every marker replaced by what it names; an unknown name fails the build."""
    if "<!-- generated: contributing -->" in markdown:
        markdown = contributing()

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated section {name!r}; known: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return unescape_table_pipes(generate(markdown))
