"""Errors that carry the fix in their message, and the one-line check used by every config class.

Kept free of torch and of lionfer's other modules so that configs, registries and the CLI can
import it without pulling in anything heavy.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config key or value that lionfer cannot use; the message says how to fix it."""


def check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")
