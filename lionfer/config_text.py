"""Config as text: TOML files read as UTF-8; the command line's `[CONFIG] [key=value ...]` items
(which one is the config file, each override's key and value); values written as TOML in
messages, with a hint where a value wants quotes. lionfer.config builds the Config from them (and
writes it as TOML)."""

from __future__ import annotations

import datetime
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

from lionfer.errors import ConfigError

PACKAGED_CONFIGS = Path(__file__).parent / "configs"
DEFAULT_CONFIG = PACKAGED_CONFIGS / "default.toml"  # the embedded data at CPU scale
# An override's key: dotted bare names (`train.steps`, `data.class_map.happy`). A table key with
# dots, spaces or quotes is set in the table form instead (`data.class_map={"a.b" = 3}`).
KEY_PATTERN = re.compile(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*")
# Top-level keys of a sweep file (lionfer.experiments.sweep_file) that no config file has.
SWEEP_FILE_KEYS = ("config", "algorithms", "variants", "seeds")


SCALAR_KINDS = {bool: "a boolean", int: "an integer", float: "a number"}


def packaged_listing(what: str) -> list[tuple[str, str]]:
    """(name, what it is) of every packaged config (its comment's opening phrase) or sweep (its
    description), the names `lionfer train NAME` and `lionfer sweep NAME` take."""
    folder = PACKAGED_CONFIGS if what == "configs" else PACKAGED_CONFIGS / "sweeps"
    rows = []
    for path in sorted(folder.glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        if what == "sweeps":
            about = str(tomllib.loads(text).get("description", ""))
        else:
            first = next((line for line in text.splitlines() if line.startswith("#")), "")
            about = re.split(r"[:.](?:\s|$)", first.lstrip("# ").strip(), maxsplit=1)[0]
        rows.append((path.stem, about))
    return rows


def as_toml(value: Any) -> str:
    """A parsed value as it is written in TOML (true, 2024-01-01, 3.5, 'x'), for messages."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return repr(value)


def quote_hint(value: Any, key: str) -> str:
    """A value TOML read as another type than the string wanted (true, 123, 2024-01-01), with
    how to give it as a string: in quotes."""
    if isinstance(value, list | dict):
        return repr(value)
    text = as_toml(value)
    time = "a time" if isinstance(value, datetime.time) else "a date"
    kind = next((w for t, w in SCALAR_KINDS.items() if isinstance(value, t)), time)
    name = key.rpartition(".")[2]
    return (
        f"{text}, which TOML reads as {kind}; put it in quotes: '{key}=\"{text}\"' on a "
        f'command line, {name} = "{text}" in a file'
    )


def unquoted_hint(value: Any, opening: str) -> str:
    """For a table or list that did not parse (left as the text typed): strings in it need
    quotes."""
    if not (isinstance(value, str) and value.lstrip().startswith(opening)):
        return ""
    example = '{Fear = "Surprise"}' if opening == "{" else '["Neutral"]'
    return f"; it is not valid TOML: the strings in it need quotes, e.g. {example}"


def names_value(message: str, value: Any) -> bool:
    """Whether a check's message already gives the value (`got 2`, `unknown recipe 'papr'`,
    `ferplus is the truth of ...`)."""
    if "got " in message:
        return True
    pattern = rf"(?<![\w.]){re.escape(str(value))}(?![\w.])"
    return isinstance(value, str) and re.search(pattern, message) is not None


def parse_value(text: str) -> Any:
    """A command-line value: a TOML literal (1, 0.5, true, "x", {a = 1}) or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def override_key(assignment: str) -> list[str]:
    """The parts of a `dotted.key=value` override's key; ConfigError for an item without '=' or
    a key that is not dotted bare names (quotes, spaces: a table key of that kind goes in the
    table form, `data.class_map={"a.b" = 3}`)."""
    if not isinstance(assignment, str):
        raise ConfigError(
            f"override {assignment!r} is not text: give each override as a 'key=value' string, "
            "e.g. 'train.steps=100'"
        )
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key=value, e.g. train.steps=100")
    key = assignment.split("=", 1)[0].strip()
    if KEY_PATTERN.fullmatch(key) is None:
        bare = re.split(r"[\"'\s]", key)[0]  # the dotted names before the first quote or space
        table = bare.rstrip(".") if bare.endswith(".") else bare.rpartition(".")[0]
        raise ConfigError(
            f"override key {key!r} is not a dotted key such as train.steps: a table key with "
            "quotes, dots or spaces is given in the table's {...} form, e.g. "
            f"'{table if '.' in table else 'data.class_map'}={{\"a.b\" = 3}}'"
        )
    return key.split(".")


def read_toml(path: str | Path, what: str = "config file") -> dict:
    """The tables of a TOML file. TOML is UTF-8 whatever the locale (a leading byte-order mark is
    skipped); a folder, a missing or unreadable file, other text or bad TOML is a ConfigError
    naming the file (`what` says what it was given as)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a TOML file")
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start}): TOML files must be "
            "UTF-8; save it as UTF-8 (not UTF-16 or a local code page)"
        ) from error
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error


def refuse_sweep_file(raw: dict, path: Path) -> None:
    """A sweep file given where a config file belongs: say how to run it."""
    found = [key for key in SWEEP_FILE_KEYS if key in raw]
    if found:
        raise ConfigError(
            f"{path} looks like a sweep file, not a config file (it sets {', '.join(found)}): "
            f"run it with lionfer sweep {shlex.quote(str(path))} --out DIR"
        )


def split_config_args(items: list[str]) -> tuple[Path | None, list[str]]:
    """[CONFIG] [key=value ...] in any order: the config is the one item that names an existing
    file, ends in .toml or holds no '=' (a TOML file or a packaged config); without one, the
    packaged default.toml (the embedded data at CPU scale). An item is an override where the text
    before its first '=' is a dotted key, so `runs/lr=1e-3/config.toml` is a config file."""
    names, overrides = [], []
    for item in items:
        kind = _item_kind(item)
        (names if kind == "config" else overrides).append(item)
    if not names:
        return DEFAULT_CONFIG, overrides
    if len(names) > 1:
        raise ConfigError(
            f"expected one config file and key=value overrides, got {len(names)} config files: "
            f"{', '.join(map(repr, names))}"
        )
    return _find_config(names[0]), overrides


def _item_kind(item: str) -> str:
    """'config' or 'override' for a command-line item; ConfigError for one that is neither. An
    existing file or folder is the config (a folder is refused by _find_config, naming its
    config.toml); os.path's tests, unlike Path's, take an override too long to be a file name."""
    if "=" not in item or os.path.isfile(item) or os.path.isdir(item):
        return "config"
    key = item.split("=", 1)[0].strip()
    if KEY_PATTERN.fullmatch(key) or re.match(r"(?:[\w-]+\.)*[\"']", key):
        return "override"  # a quoted key is refused with its fix by override_key
    if item.endswith(".toml"):
        return "config"
    raise ConfigError(
        f"{item!r} is neither an existing config file nor key=value with a dotted key (e.g. "
        "train.steps=100)"
    )


def _find_config(name: str) -> Path:
    """The config file an item names: a file, or a packaged config by name."""
    path = Path(name)
    if path.is_file():
        return path
    if path.is_dir():
        own = path / "config.toml"
        hint = f"; the run's own config is {own}" if own.is_file() else ": give a .toml file"
        raise ConfigError(f"{name} is a folder, not a config file{hint}")
    packaged = PACKAGED_CONFIGS / f"{name.removesuffix('.toml')}.toml"
    if packaged.is_file():
        return packaged
    names = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.toml")))
    raise ConfigError(f"config file not found: {name} (packaged configs: {names})")
