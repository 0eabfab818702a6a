"""TensorBoard mirror of a run's metric records (train.tensorboard=true): every numeric value of a
metrics.jsonl train or eval record becomes a scalar `<event>/<key>` at the record's step, written
to RUN/tensorboard/. metrics.jsonl stays the source of truth; this is a view of it: a resume
hides the steps it drops from metrics.jsonl (trained again) from TensorBoard too."""

from __future__ import annotations

from numbers import Real
from pathlib import Path

from lionfer.errors import ConfigError

METRIC_EVENTS = ("train", "eval")  # the others (start, resume, warning, ...) are bookkeeping


def scalars(record: dict) -> dict[str, float]:
    """The scalars of one metrics record, nested groups included (an eval event's "labels"
    figures), named `<event>/<key>` or `<event>/<group>/.../<key>`; none for records that are
    not metrics."""
    event = record.get("event")
    if event not in METRIC_EVENTS:
        return {}
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
        self._purge_step: int | None = None

    def rewind(self, step: int) -> None:
        """A resume from `step`: events after it, written before the stop, are hidden from
        TensorBoard (the event file opened next purges them), as metrics.jsonl drops them."""
        self._purge_step = step + 1

    def write(self, record: dict) -> None:
        if "step" not in record:
            return
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.folder), purge_step=self._purge_step)
        for tag, value in scalars(record).items():
            self._writer.add_scalar(tag, value, global_step=int(record["step"]))
        self._writer.flush()  # a record every train.log_every steps: cheap, and nothing is lost

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
