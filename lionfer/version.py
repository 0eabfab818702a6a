"""lionfer's version: one place, read by the package, its build (pyproject.toml) and the files
it writes (meta.json, exported models); and where its documentation is read online, for the
messages that send a user there (an installed lionfer has no docs/ folder)."""

__version__ = "0.1.0"

DOCS_URL = "https://github.com/lionfer/lionfer/blob/main/docs"


def docs_page(page: str) -> str:
    """The online address of a documentation page, e.g. docs_page("results.md")."""
    return f"{DOCS_URL}/{page}"
