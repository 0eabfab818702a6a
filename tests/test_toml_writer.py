"""Config files are written as TOML that reads back to the same values, whatever the strings hold:
`lionfer config show` and every run's config.toml (which resume and report read back)."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lionfer.config import DEFAULT_CONFIG, from_dict, load_config, save_config, to_toml

ROOT = Path(__file__).resolve().parent.parent

HOSTILE_STRINGS = [
    '/tmp/a"b\nc',
    "back\\slash\\",
    "tab\there\rcarriage",
    "'single' and \"double\" and '''triple'''",
    'ends with a quote"',
    "Ünïcødé 表情 😀 \u200b",
    "control \x00\x01\x1f\x7f",
    "# not a comment = [x]",
    "",
]


def as_read(value):
    """A config dict as TOML gives it back: tuples are arrays, read as lists."""
    if isinstance(value, dict):
        return {k: as_read(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_read(v) for v in value]
    return value


HOSTILE_KEYS = ["a.b", 'q"k', "sp ace", "Ünï 😀", "", "x=y", "[t]", "'", "1"]


@pytest.mark.parametrize("text", HOSTILE_STRINGS)
def test_hostile_strings_round_trip(tmp_path, text):
    cfg = from_dict({"data": {"variant": text}, "algorithm": {"name": "lion"}})
    assert tomllib.loads(to_toml(cfg)) == as_read(cfg.to_dict())
    save_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml").data.variant == text


def test_hostile_table_keys_round_trip(tmp_path):
    class_map = {key: i % 7 for i, key in enumerate(HOSTILE_KEYS)}
    raw = {"data": {"dataset": "folder", "class_map": class_map, "noise": "asymmetric",
                    "noise_map": {"0": 4}}}  # fmt: skip
    cfg = from_dict(raw)
    assert tomllib.loads(to_toml(cfg)) == as_read(cfg.to_dict())
    save_config(cfg, tmp_path / "config.toml")
    again = load_config(tmp_path / "config.toml")
    assert again.data.class_map == class_map and again.data.noise_map == {"0": 4}
    assert again == cfg


def test_config_show_with_a_hostile_value_reads_back_identically(tmp_path):
    """`lionfer config show 'data.root="/tmp/a\\"b\\nc"'`: its output is TOML with that root."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lionfer",
            "config",
            "show",
            'data.root="/tmp/a\\"b\\nc"',
            'data.class_map={"a.b" = 1, "q\\"k" = 2, "表情" = 3}',
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    shown = tomllib.loads(result.stdout)
    assert shown["data"]["root"] == '/tmp/a"b\nc'
    assert shown["data"]["class_map"] == {"a.b": 1, 'q"k': 2, "表情": 3}
    expected = load_config(
        DEFAULT_CONFIG,
        ['data.root="/tmp/a\\"b\\nc"', 'data.class_map={"a.b" = 1, "q\\"k" = 2, "表情" = 3}'],
    )
    assert shown == as_read(expected.to_dict())
    assert from_dict(shown) == expected
