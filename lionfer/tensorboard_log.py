"""TensorBoard mirror of a run's metric records (train.tensorboard=true): every numeric value of a
metrics.jsonl record becomes a scalar `<event>/<key>` at the record's step, written to
RUN/tensorboard/. metrics.jsonl stays the source of truth; this is a view of it."""

from __future__ import annotations

from numbers import Real
from pathlib import Path

from lionfer.errors import ConfigError


def scalars(record: dict) -> dict[str, float]:
    """The scalars of one metrics record: numbers at the top level and one level down (an eval
    event's nested "labels" figures), named `<event>/<key>` or `<event>/<group>/<key>`."""
    event = record.get("event", "record")
    out = {}
    for key, value in record.items():
        if key in ("event", "step"):
            continue
        if isinstance(value, dict):
            for sub, inner in value.items():
                if isinstance(inner, Real) and not isinstance(inner, bool):
                    out[f"{event}/{key}/{sub}"] = float(inner)
        elif isinstance(value, Real) and not isinstance(value, bool):
            out[f"{event}/{key}"] = float(value)
    return out


class TensorBoardLog:
    """Writes records as they are logged; the event file is opened on the first record, so the
    run folder may be created (or replaced) after this object."""

    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ConfigError(
                "train.tensorboard=true needs the tensorboard package: pip install "
                "'lionfer[tensorboard]' (or set train.tensorboard=false)"
            ) from error
        self._writer_class, self.folder, self._writer = SummaryWriter, Path(folder), None

    def write(self, record: dict) -> None:
        if "step" not in record:
            return
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.folder))
        for tag, value in scalars(record).items():
            self._writer.add_scalar(tag, value, global_step=int(record["step"]))
        self._writer.flush()  # a record every train.log_every steps: cheap, and nothing is lost

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
