"""Saving and loading checkpoints: atomic, flushed writes and weights_only loads, and the model a
checkpoint holds.

load_checkpoint is the one reader of a checkpoint file (training's resume, evaluation, prediction,
export, audit): a file that is not a lionfer checkpoint (an image, text, truncated, a pickle that
would run code, a plain state dict) is refused with a one-line CheckpointError that says what the
file is and what to pass instead; nothing in it is ever executed. checkpoint_model is the one
builder of the network a checkpoint holds (its EMA weights). A checkpoint that does not fit the
run's data (other classes, per-sample state of another length) is refused too.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import tomllib
import warnings
from pathlib import Path

import torch
from torch import nn

from lionfer.atomic import flush_to_disk, replacing
from lionfer.config import to_toml
from lionfer.config_sections import ModelConfig
from lionfer.data.split_record import check_run_split, split_record
from lionfer.data.splits import Split
from lionfer.errors import CheckpointError, CheckpointWriteError, MissingInputError
from lionfer.models import build_model, check_state_dict
from lionfer.registry import MODELS
from lionfer.torch_refusals import not_a_checkpoint

# What using a checkpoint's model needs (prediction, export, audit).
MODEL_KEYS = ("ema", "class_names", "model_name", "image_size")
# What every checkpoint lionfer train writes holds (resume and evaluate read all of it).
REQUIRED_KEYS = ("step", "model", "optimizer", "algorithm", "rng", *MODEL_KEYS)
# The fix a refusal ends with unless the caller names another.
RUN_FIX = "use checkpoints/last.pt or best.pt of a run made by `lionfer train`"


def save_checkpoint(state: dict, path: Path) -> None:
    """Write to `<name>.tmp`, flush it to disk and rename it over `path`, so an interruption or a
    full disk never leaves half a checkpoint: the previous file stays until the new one is whole.
    An OSError becomes CheckpointWriteError naming the file and the reason."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp, open(tmp, "wb") as handle:
            writer = _KeepWriteError(handle)
            try:
                torch.save(state, writer)
            except RuntimeError as error:
                if writer.error is None:
                    raise
                raise writer.error from error  # torch reports a failed write (ENOSPC) vaguely
            flush_to_disk(handle)
    except OSError as error:
        raise _write_failed(path, error) from error


def split_state(split: Split) -> dict:
    """split_record as a checkpoint holds it: its index lists as tensors (quick to load)."""
    record = split_record(split)
    for key in ("labeled", "val"):
        record[key] = torch.from_numpy(record[key])
    return record


def saved_split(state: dict) -> dict | None:
    """The split record a checkpoint holds (split_state), with numpy index lists; None for a
    checkpoint saved before checkpoints recorded their split."""
    record = state.get("split")
    if not isinstance(record, dict) or "digest" not in record:
        return None
    record = dict(record)
    for key in ("labeled", "val"):
        record[key] = torch.as_tensor(record[key]).numpy().astype("int64")
    return record


def check_split_fits(state: dict, split: Split, split_file: Path, reread: str, cfg=None) -> None:
    """The split a run re-reads (its split.json) against the one its checkpoint recorded; for a
    checkpoint saved before checkpoints recorded it, against the run's settings (cfg, else the
    config the checkpoint holds); check_run_split."""
    settings = None
    if cfg is not None:
        settings = config_values(cfg)
    elif "config" in state:
        settings = config_values(state["config"])
    check_run_split(split, saved_split(state), split_file, reread, settings)


def _write_failed(path: Path, error: OSError) -> CheckpointWriteError:
    """A checkpoint write's OSError as CheckpointWriteError naming the file and the reason."""
    reason = error.strerror or os.strerror(error.errno or errno.EIO) or str(error)
    return CheckpointWriteError(f"could not write checkpoint {path}: {reason}")


def copy_checkpoint(source: Path, path: Path) -> None:
    """Write `path` as a copy of the checkpoint `source`, as save_checkpoint writes (a temporary
    file renamed over it): best.pt at the step last.pt was just saved at holds the same state."""
    path = Path(path)
    try:
        with replacing(path) as tmp, open(source, "rb") as src, open(tmp, "wb") as handle:
            shutil.copyfileobj(src, handle, 1 << 20)
            flush_to_disk(handle)
    except OSError as error:
        raise _write_failed(path, error) from error


class _KeepWriteError:
    """A file for torch.save that keeps the OSError of a failed write: torch itself reports a
    full disk only as 'RuntimeError: [enforce fail at inline_container.cc] unexpected pos'."""

    def __init__(self, handle):
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.handle.flush()


def load_checkpoint(path: Path, keys: tuple[str, ...] = REQUIRED_KEYS, fix: str = RUN_FIX) -> dict:
    """A lionfer checkpoint as a dict of tensors and plain values (loaded with weights_only),
    holding at least `keys`. A missing file is a MissingInputError, any other refusal a
    CheckpointError; each is one line naming the file and the problem, ending with `fix` (what
    to pass instead)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"checkpoint not found: {path}; {fix}")
    try:
        with warnings.catch_warnings():  # torch's notes on a foreign pickle; the error says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file; none is executed
        raise CheckpointError(
            f"{path} is not a lionfer checkpoint: {not_a_checkpoint(path, error)}; {fix}"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} is not a lionfer checkpoint: it holds a {type(state).__name__}, not a dict "
            f"of tensors and values; {fix}"
        )
    missing = [key for key in keys if key not in state]
    if missing:
        hint = (
            "it looks like bare model weights (those belong in model.pretrained)"
            if state and all(isinstance(v, torch.Tensor) for v in state.values())
            else "it was written by another lionfer version or another program"
        )
        listed = ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise CheckpointError(
            f"{path} is not a lionfer checkpoint: {hint} (missing {listed}); {fix}"
        )
    return state


def checkpoint_model(state: dict, path: Path, weights: str = "ema") -> nn.Module:
    """The network a checkpoint holds, in eval mode on the CPU, with its EMA weights (the model
    lionfer evaluates, predicts with and exports; weights="model": the live model's). It is built
    from the checkpoint's own record (model_name and model_config; older checkpoints have no
    model_config, and the defaults shaped their model), so it needs no config file. `path` only
    names the file in errors."""
    name, num_classes = state["model_name"], len(state["class_names"])
    if name not in MODELS:
        raise CheckpointError(
            f"{path} holds a {name!r} model, which this lionfer version does not have "
            f"(models: {', '.join(MODELS.names())}); it was written by another lionfer version"
        )
    saved = state.get("model_config", {})
    shape = {k: saved[k] for k in ("dropout", "feature_scale") if k in saved}
    model_cfg = ModelConfig(name=name, **shape)
    model, on_meta = unfilled_model(model_cfg, num_classes)
    problems = check_state_dict(model.state_dict(), state[weights])
    if problems:
        raise CheckpointError(
            f"{path}: the weights do not fit lionfer's {name!r} model ({'; '.join(problems)}); "
            "the checkpoint was written by another lionfer version"
        )
    if on_meta:
        model.to_empty(device="cpu")  # memory for the weights, without drawing any
    model.load_state_dict(state[weights])
    return model.eval()


def unfilled_model(model_cfg: ModelConfig, num_classes: int) -> tuple[nn.Module, bool]:
    """(the model of model_cfg, for a state dict to fill; whether it is on the meta device).
    Built on the meta device, its initial weights are never drawn: loading a model leaves
    torch's global random generator alone (a caller's seeded stream, a run training in another
    thread). A model with tensors that no state dict holds (non-persistent buffers), or one
    that cannot be built there, is built on the CPU as usual, which draws from it."""
    try:
        with torch.device("meta"):
            model = build_model(model_cfg, num_classes)
        if state_holds_all(model):
            return model, True
    except Exception:  # built again below, where a real error is raised
        pass
    return build_model(model_cfg, num_classes), False


def state_holds_all(model: nn.Module) -> bool:
    """Whether the model's state dict holds every tensor it has (no non-persistent buffer, no
    tensor kept as a plain attribute)."""
    held = set(model.state_dict(keep_vars=True))
    named = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    named += [n for n, _ in model.named_buffers(remove_duplicate=False)]
    plain = any(isinstance(v, torch.Tensor) for m in model.modules() for v in vars(m).values())
    return set(named) <= held and not plain


# The settings of how a run is carried out, not of what it learns (on one device a run repeats to
# the bit whatever they are), the weights it began from (the checkpoint holds the weights since)
# and where its images are (a dataset moved, or a run copied to another machine: resume checks
# the images themselves, by the training list's hash and the state's lengths): a resumed run may
# change them, and train.steps. Not data.cache_images: the cache gives RandAugment the images at
# data.image_size, so the strong views change.
RESUME_FREE = frozenset(
    {"train.device", "data.num_workers", "train.eval_batch_size"}
    | {"train.eval_every", "train.log_every", "train.checkpoint_every", "train.tensorboard"}
    | {"model.pretrained", "data.root", "data.unlabeled_root"}
)


def config_values(cfg) -> dict:
    """A config (or the TOML text of one) as {"section.key": value}, values as TOML reads them."""
    tree = tomllib.loads(cfg if isinstance(cfg, str) else to_toml(cfg))
    values = {}
    for key, value in tree.items():
        if isinstance(value, dict):  # a section; tables inside it (data.class_map) are values
            values.update({f"{key}.{name}": item for name, item in value.items()})
        else:
            values[key] = value
    return values


def config_changes(state: dict, cfg) -> dict[str, list]:
    """{key: [value in the checkpoint's config, value in cfg]} for each setting that differs.
    Checkpoints that predate the config in them are compared on their model and image size;
    settings that a checkpoint's version did not have are not compared."""
    now = config_values(cfg)
    if "config" in state:
        saved = config_values(state["config"])
    else:
        model = state.get("model_config", {})
        saved = {f"model.{key}": value for key, value in model.items()}
        saved.update({"model.name": state["model_name"], "data.image_size": state["image_size"]})
    return {k: [v, now[k]] for k, v in saved.items() if k in now and now[k] != v}


def describe_changes(changes: dict[str, list], first: str, second: str) -> str:
    shown = [f"{key} ({_toml(a)} {first}, {_toml(b)} {second})" for key, (a, b) in changes.items()]
    return ", ".join(shown[:6]) + (f" and {len(shown) - 6} more" if len(shown) > 6 else "")


def _toml(value) -> str:
    """A config value as config.toml spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


def check_resume_config(state: dict, cfg, path: Path) -> dict[str, list]:
    """A run continues with the settings it was trained with (the config saved in its checkpoint):
    refuse a config.toml that changes what it learns from (a setting outside RESUME_FREE but
    train.steps), or a train.steps the checkpoint is past. Returns the changes allowed."""
    run = Path(path).parent.parent
    changes = config_changes(state, cfg)
    refused = {k: v for k, v in changes.items() if k not in RESUME_FREE | {"train.steps"}}
    if refused:
        raise CheckpointError(
            f"{path} (step {state['step']}) was trained with other settings than "
            f"{run / 'config.toml'} holds: {describe_changes(refused, 'then', 'now')}. A run "
            "continues with the settings it began with: put back the config.toml (or the "
            "last.pt) the run was made with, or train the new settings as a new run (lionfer "
            f"train {run / 'config.toml'} --out NEW); only train.steps and how the run is "
            "carried out (train.device, data.num_workers, train.eval_every, ...) may change"
        )
    if state["step"] > cfg.train.steps:
        raise CheckpointError(
            f"{path} is at step {state['step']}, past train.steps={cfg.train.steps} in "
            f"{run / 'config.toml'}; set train.steps to {state['step']} or more to continue it"
        )
    split_file = run / "split.json"
    if split_file.is_file():  # the split its state is indexed by, checked before the data
        check_split_fits(state, Split.load(split_file), split_file, "resume", cfg)
    return changes


def resume_fix(run: Path) -> str:
    """What to do when a run's checkpoints/last.pt cannot be read."""
    best = Path(run) / "checkpoints" / "best.pt"
    fix = "the run cannot continue from it: put back a good copy of the file"
    if best.is_file():
        fix += f", or continue from the last best evaluation by copying {best} over it"
    return f"{fix}, or start the run again with --overwrite"


def restore_algorithm(algorithm, state: dict) -> None:
    """An algorithm's per-image state and its modules' weights (LION's heads, ReMixMatch's
    rotation head) from a checkpoint's state."""
    algorithm.load_state_dict(state["algorithm"])
    modules = algorithm.modules()
    if modules is not None:
        modules.load_state_dict(state["algorithm_modules"])


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():  # as many GPUs as both machines have
        for index, device_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)


def check_state_fits(state: dict, fresh: dict, run_data, path: Path) -> None:
    """A checkpoint must fit the run's data: the same classes, the split it recorded (the run's
    split.json, check_split_fits), and per-sample algorithm state as long as the labeled /
    unlabeled set it indexes (else it would land on other images)."""
    names = list(run_data.data.class_names)
    if list(state["class_names"]) != names:
        raise CheckpointError(
            f"{path} was trained on the classes {list(state['class_names'])}, but the run's data "
            f"now has {names}; restore the data the run was made with, or start a new run"
        )
    split = getattr(run_data, "split", None)
    if split is not None:
        check_split_fits(state, split, Path(path).parent.parent / "split.json", "resume")
    saved = state["algorithm"]
    if set(saved) != set(fresh):
        raise CheckpointError(
            f"{path} holds the algorithm state {sorted(saved)}, but this lionfer expects "
            f"{sorted(fresh)}: it was saved by another version or algorithm; start a new run"
        )
    sets = {"labeled": len(run_data.labeled), "unlabeled": len(run_data.unlabeled)}
    for key, tensor in saved.items():
        if tuple(tensor.shape) == tuple(fresh[key].shape):
            continue
        rows = fresh[key].shape[0] if fresh[key].dim() else None
        which = [name for name, size in sets.items() if size == rows]
        now = f"the {which[0]} set has {rows} images now" if which else "this run differs"
        raise CheckpointError(
            f"{path}: the per-sample state {key!r} has shape {tuple(tensor.shape)}, but {now} "
            f"(expected {tuple(fresh[key].shape)}); the images changed since the checkpoint was "
            "saved, so the state would land on other images. Restore the data the run was made "
            "with, or start a new run"
        )
