"""The registry: names listed without importing their implementation, completed when the
implementation registers itself, and unknown names as config errors with a suggestion."""

from __future__ import annotations

import pytest

from lionfer.errors import ConfigError
from lionfer.registry import DATASETS, MODELS, Registry


def build_tiny() -> str:
    return "tiny"


def test_a_lazy_entry_is_imported_on_first_use_or_completed_by_its_module():
    registry = Registry("thing")
    registry.add("tiny", f"{__name__}:build_tiny", "a tiny thing")
    assert registry.entry("tiny").target == f"{__name__}:build_tiny"
    assert registry.get("tiny") is build_tiny
    registry.register("tiny", "a tiny thing")(build_tiny)  # the module registers the same object
    assert registry.entry("tiny").target is build_tiny
    with pytest.raises(ValueError, match="already registered"):
        registry.add("tiny", lambda: None, "another thing")


def test_unknown_names_are_config_errors_with_a_suggestion():
    with pytest.raises(ConfigError) as info:
        MODELS.entry("cnn_smal")
    assert str(info.value).startswith("unknown model 'cnn_smal'. Did you mean 'cnn_small'?")
    assert isinstance(info.value, KeyError)


def test_the_dataset_table_matches_what_the_readers_register():
    from lionfer.data.pipeline import DATASET_TABLE, register_readers

    register_readers()
    for name, target, description, _ in DATASET_TABLE:
        entry = DATASETS.entry(name)
        assert not isinstance(entry.target, str), name
        reader = f"{entry.target.__module__}:{entry.target.__name__}"
        assert f"lionfer.data.datasets.{target}" == reader
        assert entry.description == description, name
    assert sorted(DATASETS.names()) == sorted(name for name, *_ in DATASET_TABLE)


def test_the_model_table_names_the_factories():
    import lionfer.backbones

    for entry in MODELS:
        assert callable(MODELS.get(entry.name))
    assert MODELS.get("cnn_small") is lionfer.backbones.build_cnn_small
