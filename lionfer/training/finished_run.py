"""A finished run's data: the image sets it trained on, rebuilt from its config.toml and the
split it saved (finished_run_data), and the error that says the run's own data moved or went
(run_data_context). For evaluating, auditing and reading back a run after it ended."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lionfer.data.pipeline import RunData, build_run_data
from lionfer.data.splits import Split
from lionfer.errors import MissingInputError
from lionfer.training.checkpoint import check_split_fits


def finished_run_data(run: str | Path, cfg, state: dict) -> RunData:
    """The image sets a finished run trained on: its config's data (cfg, from the run's
    config.toml) with the split it saved (run/split.json), rebuilt without decoding every image
    again (build_run_data's recheck=False). The split.json must be the split the run's
    checkpoint (state, as the caller loaded it) recorded, as on resume: its per-image state is
    indexed by position in it (check_split_fits)."""
    split_file = Path(run) / "split.json"
    if split_file.is_file():  # a missing one is named by build_run_data, as the run's data
        check_split_fits(state, Split.load(split_file), split_file, "finished", cfg)
    data_cfg = dataclasses.replace(cfg.data, split_file=str(split_file))
    return build_run_data(data_cfg, cfg.seed, recheck=False, reread="finished")


@contextmanager
def run_data_context(run: Path) -> Iterator[None]:
    """A missing file or folder of the run's own data becomes an error that says it is the run's
    data, named in its config.toml, that moved or went."""
    try:
        yield
    except MissingInputError as error:
        if not (run / "split.json").is_file():  # the run's own file, not its data, is missing
            raise
        raise MissingInputError(
            f"the data that {run} trained on is not where its config.toml says ({error}); put "
            f"it back there, or set data.root in {run / 'config.toml'} to where it is now"
        ) from error
