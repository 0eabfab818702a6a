"""MkDocs hooks (mkdocs.yml `hooks:`): what the pages need at build time.

The pages are written for GitHub too, so they escape a pipe inside a code span of a table row
(`--format csv\\|jsonl`), as GitHub's tables require; Python-Markdown already keeps such pipes
inside their cell and would print the backslash, so it is removed here.
"""

from __future__ import annotations

import re

CODE_SPAN = re.compile(r"`[^`\n]*`")


def unescape_table_pipes(markdown: str) -> str:
    """`a\\|b` → `a|b` inside the code spans of table rows (lines that start with `|`)."""

    def fix_row(line: str) -> str:
        if not line.lstrip().startswith("|"):
            return line
        return CODE_SPAN.sub(lambda span: span.group(0).replace("\\|", "|"), line)

    return "\n".join(fix_row(line) for line in markdown.split("\n"))


def on_page_markdown(markdown: str, **kwargs) -> str:
    return unescape_table_pipes(markdown)
