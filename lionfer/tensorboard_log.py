"""TensorBoard mirror of a run's metric records (train.tensorboard=true): every numeric value of a
metrics.jsonl record becomes a scalar `<event>/<key>` at the record's step, written to
RUN/tensorboard/. metrics.jsonl stays the source of truth; this is a view of it."""

from __future__ import annotations

from numbers import Real
from pathlib import Path

from lionfer.errors import ConfigError


def scalars(record: dict) -> dict[str, float]:
    """The scalars of one metrics record, nested groups included (an eval event's "labels"
    figures), named `<event>/<key>` or `<event>/<group>/.../<key>`."""
    event = record.get("event", "record")
    top = {k: v for k, v in record.items() if k not in ("event", "step")}
    return _flatten(top, event)


def _flatten(values: dict, prefix: str) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}/{key}"))
        elif isinstance(value, Real) and not isinstance(value, bool):
            out[f"{prefix}/{key}"] = float(value)
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
