"""lionfer's version: one place, read by the package, its build (pyproject.toml) and the files
it writes (meta.json, exported models)."""

__version__ = "0.1.0"
