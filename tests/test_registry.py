"""The registries: each filled by one table of lazy "module:attribute" entries, listed without
importing their implementation, and unknown names as config errors with a suggestion."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

import lionfer.algorithms  # noqa: F401  (the table of algorithms)
import lionfer.data.datasets  # noqa: F401  (the table of datasets)
from lionfer.config import load_config
from lionfer.errors import ConfigError
from lionfer.registry import ALGORITHMS, DATASETS, MODELS, Registry

READERS = pathlib.Path(lionfer.data.datasets.__file__).parent


def build_tiny() -> str:
    return "tiny"


def test_a_lazy_entry_is_imported_on_first_use_and_a_name_is_added_once():
    registry = Registry("thing")
    registry.add("tiny", f"{__name__}:build_tiny", "a tiny thing")
    assert registry.entry("tiny").target == f"{__name__}:build_tiny"
    assert registry.get("tiny") is build_tiny
    for target in (f"{__name__}:build_tiny", build_tiny):  # not even the same object again
        with pytest.raises(ValueError, match="already registered"):
            registry.add("tiny", target, "another thing")
    assert not hasattr(registry, "register")  # one way in: a table of add() calls


@pytest.mark.parametrize("registry", [ALGORITHMS, MODELS, DATASETS], ids=lambda r: r.kind)
def test_every_registry_is_one_table_of_lazy_entries(registry):
    entries = list(registry)
    assert entries
    for entry in entries:
        assert isinstance(entry.target, str) and ":" in entry.target, entry.name
        assert callable(registry.get(entry.name)), entry.name
        assert isinstance(registry.entry(entry.name).target, str), entry.name  # still lazy


def test_the_readers_do_not_register_themselves():
    for path in READERS.glob("*.py"):
        if path.name != "__init__.py":
            source = path.read_text()
            assert "lionfer.registry" not in source and "DATASETS" not in source, path.name


def test_unknown_names_are_config_errors_with_a_suggestion():
    with pytest.raises(ConfigError) as info:
        MODELS.entry("cnn_smal")
    assert str(info.value).startswith("unknown model 'cnn_smal'. Did you mean 'cnn_small'?")
    assert isinstance(info.value, KeyError)


def test_the_dataset_table_names_each_reader_and_whether_it_reads_files():
    from lionfer.data.datasets import DATASET_TABLE, FILE_DATASETS

    for name, target, description, reads_files in DATASET_TABLE:
        entry = DATASETS.entry(name)
        assert entry.target == f"lionfer.data.datasets.{target}", name
        reader = DATASETS.get(name)
        assert f"{reader.__module__}:{reader.__name__}" == entry.target, name
        assert entry.description == description, name
        assert (name in FILE_DATASETS) == reads_files, name
    assert DATASETS.names() == sorted(name for name, *_ in DATASET_TABLE)
    assert FILE_DATASETS == set(DATASETS.names()) - {"synthetic", "digits"}


def test_listing_and_validating_datasets_import_no_reader():
    code = (
        "import sys\n"
        "from lionfer.cli import main\n"
        "from lionfer.config import load_config\n"
        "assert main(['list', 'datasets']) == 0\n"
        "load_config(None, ['data.dataset=rafdb', 'data.root=/nowhere'])\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('lionfer.data.'))\n"
        "assert loaded == ['lionfer.data.datasets'], loaded\n"
        "assert 'numpy' not in sys.modules and 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "affectnet"


def test_an_unknown_dataset_is_a_config_error_listing_the_datasets():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.dataset=rafd"])
    message = str(info.value)
    assert message.startswith("data.dataset: unknown dataset 'rafd'. Did you mean 'rafdb'?")
    assert message.endswith("Available: " + ", ".join(DATASETS.names()))


def test_the_model_table_names_the_factories():
    import lionfer.backbones

    for entry in MODELS:
        assert callable(MODELS.get(entry.name))
    assert MODELS.get("cnn_small") is lionfer.backbones.build_cnn_small
