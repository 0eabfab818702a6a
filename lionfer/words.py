"""Counts in words for messages: "1 labeled image", "3 runs were"."""

from __future__ import annotations


def counted(n: int, noun: str, verb: str = "") -> str:
    """'1 run folder was', '2 run folders were' (verb "was" or "has"), '3 methods'."""
    plural = n != 1
    verb = {"was": "were", "has": "have"}.get(verb, verb) if plural else verb
    return f"{n} {noun}{'s' * plural}" + (f" {verb}" if verb else "")
