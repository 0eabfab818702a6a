"""Which action Python's warnings filters take for a warning: for the places that catch warnings
to name or record them (the image readers, a run's warning log) and must still honour the
filters in force, an "error" above all (python -W error)."""

from __future__ import annotations

import warnings


def filter_action(filters: tuple, text: str, category: type, module: str, lineno: int) -> str:
    """The action of the first of warnings' `filters` that fits a warning of `text` and
    `category` raised in `module` at `lineno`, as warn_explicit picks it."""
    for action, message, kind, module_pattern, filter_line in filters:
        fits = matches(message, text) and matches(module_pattern, module)
        if fits and issubclass(category, kind) and filter_line in (0, lineno):
            return action
    return warnings.defaultaction


def matches(rule, text: str) -> bool:
    """A filter's message or module test: None fits all, a plain string (Python's own default
    filters hold some) only itself, a compiled pattern what it matches from the start."""
    return rule is None or (rule == text if isinstance(rule, str) else bool(rule.match(text)))
