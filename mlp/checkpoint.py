"""Checkpoints: a model, its optimizer and where training stands, in one ``.npz`` file.

Why ``.npz``: NumPy reads and writes it with nothing else installed, every array keeps its
exact dtype and bits (so a resumed run can be bitwise identical), and ``np.load`` with
``allow_pickle=False`` never runs code from the file. Everything that is not an array (the
model's configuration, optimizer hyperparameters, epoch, seed, history) is one JSON document
stored as a uint8 array, so no pickle is ever needed.

Layout (format version 3; this reads versions 1 and 2 too, which had no ``last.params``,
and version 1 no ``best.params``)::

    __meta__         uint8 bytes of a JSON document (see ``_meta``)
    param.<key>      the model's ``state_dict()``: ``param.0.weight``, ``param.0.bias``, …
    optim.<name>     the optimizer's flat state buffers (``optim.m``, ``optim.v``, …)
    best.params      early stopping's best epoch's flat parameters (the metadata's
                     ``best_epoch``), where a run keeps them: a resume goes on as if unbroken
    last.params      where a run ended on those best weights (``ended_on_best``, so that
                     ``param.*`` are the best epoch's), its last epoch's own: a longer run
                     goes on from them

The metadata's ``optimizer`` holds the class's ``name``, its ``hyperparameters``, its
``steps`` and, where ``make_optimizer`` made it of a name (``"adam"``), ``made_of``; its
``history`` holds a record per epoch, whose validation metrics may be NaN or infinite
(written as Python's ``json`` writes them), the training loss never.

Writes are atomic: a temporary file in the same folder, flushed and fsynced, then renamed
over the target, so a crash or SIGKILL during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import checkpoint_reader as reader
from . import checks
from .checkpoint_reader import (
    FORMAT,
    FORMAT_VERSION,
    LATER_SETTINGS,
    META,
    MODEL_SETTINGS,
)
from .data import CLASS_NAMES
from .errors import CheckpointError, InvalidArgument
from .files import atomic_write
from .optim import Optimizer
from .version import VERSION

if TYPE_CHECKING:  # the model calls this module to save and load itself; never the reverse
    from .model import MLP

__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "CheckpointError", "load_checkpoint"]


@dataclass
class Checkpoint:
    """A checkpoint read and checked in full: nothing is built until every part is valid."""

    path: Path
    meta: dict[str, Any]
    params: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)
    #: early stopping's best epoch and its flat parameters, where the run kept them
    best: tuple[int, np.ndarray] | None = None
    #: the last epoch's flat parameters, where the run ended on its best epoch's (``params``)
    last: np.ndarray | None = None

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["model"]

    @property
    def epoch(self) -> int:
        """Epochs completed: training resumes at this ``initial_epoch``."""
        return int(self.meta["epoch"])

    @property
    def seed(self) -> int:
        return int(self.meta["rng"]["seed"])

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.meta.get("history", []))

    @property
    def class_names(self) -> list[str] | None:
        """A classifier's class names in label order: as saved, else its dataset's; ``None``
        where neither is known (the labels are then their numbers)."""
        names = self.meta.get("classes")  # checked at load: one per class
        dataset = self.run.get("dataset")
        known = CLASS_NAMES.get(dataset)
        if names is None and known is not None and len(known) == reader.class_count(self.meta):
            names = known
        return None if names is None else list(names)

    @property
    def run(self) -> dict[str, Any]:
        """Whatever the trainer stored about the run (dataset, batch size, …)."""
        return dict(self.meta.get("run", {}))

    @property
    def model_settings(self) -> dict[str, Any]:
        """The stored model's ``MLP`` arguments (all present: checked at load)."""
        settings = {key: self.config[key] for key in MODEL_SETTINGS}
        return settings | {key: self.config.get(key, d) for key, d in LATER_SETTINGS.items()}

    def build_optimizer(self) -> Optimizer | None:
        """The stored optimizer with its hyperparameters (state is loaded by ``restore``)."""
        spec = self.meta.get("optimizer")
        return reader.stored_optimizer(spec)  # checked at load: it builds

    def check_matches(self, model: MLP, optimizer: Optimizer | None = None) -> None:
        """Raise ``CheckpointError`` naming every difference from the model (and optimizer)."""
        differences = [
            f"{key} {stored!r} in the file but {wanted!r} here"
            for key, wanted in model.config().items()
            if key != "seed" and (stored := self.model_settings[key]) != wanted
        ]
        spec = self.meta.get("optimizer")
        if optimizer is not None and spec is not None:
            name, stored = spec["name"], set(self.optimizer_state)  # checked at load
            if name != type(optimizer).__name__:
                differences.append(
                    f"optimizer {name} in the file but {type(optimizer).__name__} here"
                )
            elif stored != set(optimizer.state_names):  # only SGD's state varies
                differences.append(
                    f"optimizer {name} {_with_state(stored)} in the file but "
                    f"{_with_state(optimizer.state_names)} here"
                )
        if differences:
            raise CheckpointError(self.path, "does not match this model: " + "; ".join(differences))

    def restore(self, model: MLP, optimizer: Optimizer | None = None) -> Optimizer | None:
        """Load weights (and optimizer state) into an existing, matching model.

        Everything is checked before anything is written, so a mismatch leaves ``model``
        as it was. Returns the optimizer, bound to the model's device with its state loaded.
        """
        self.check_matches(model, optimizer)
        if optimizer is not None:
            optimizer.check_model(model)
        spec = self.meta.get("optimizer")
        if optimizer is None and spec is not None:
            optimizer = self.build_optimizer()
        model.load_state_dict(self.params)
        model.epochs_trained = self.epoch
        if optimizer is not None:
            optimizer.bind(model.backend, model.num_parameters, model.dtype, model=model)
            if spec is not None:
                optimizer.load_state_dict({**self.optimizer_state, "steps": spec["steps"]})
            model.optimizer = optimizer
        return optimizer


# ---------------------------------------------------------------------------------- saving
def save_checkpoint(
    path: str | os.PathLike,
    model: MLP,
    optimizer: Optimizer | None = None,
    epoch: int | None = None,
    seed: int | None = None,
    history: list[dict[str, Any]] | None = None,
    run: dict[str, Any] | None = None,
    classes: Sequence[str] | None = None,
    best: tuple[int, np.ndarray] | None = None,
    last: np.ndarray | None = None,
) -> Path:
    """Write ``model`` (+ optimizer state, epoch, seed, history) to ``path`` atomically;
    ``epoch`` is by default the epochs the model has trained; ``classes``, a classifier's
    class names in label order (a ``run`` naming its ``dataset`` implies that dataset's);
    ``best``, early stopping's best epoch and its weights (``EarlyStopping.best_weights``);
    ``last``, where the model holds those best weights, the last epoch's own."""
    classes = checks.class_names(classes, model.loss_function.classes)
    path = Path(path)
    epoch = model.epochs_trained if epoch is None else epoch
    optimizer = optimizer if optimizer is not None else model.optimizer
    if optimizer is not None and optimizer.backend is None:
        optimizer = None  # never stepped: no state to keep, hyperparameters go with it
    arrays: dict[str, np.ndarray] = {
        f"param.{key}": value for key, value in model.state_dict().items()
    }
    opt_meta = None
    if optimizer is not None:
        state = optimizer.state_dict()
        opt_meta = {
            "name": type(optimizer).__name__,
            "hyperparameters": optimizer.hyperparameters(),
            "steps": int(state.pop("steps")),
        }
        if optimizer.made_of is not None:  # a later fit given that name goes on with it
            opt_meta["made_of"] = optimizer.made_of
        arrays.update({f"optim.{name}": value for name, value in state.items()})
    meta = _meta(model, opt_meta, epoch, model.seed if seed is None else seed, history, run)
    if classes is not None:
        meta["classes"] = classes
    if best is not None:
        meta["best_epoch"] = int(best[0])
        arrays["best.params"] = _flat(model, best[1], "best")
    if last is not None:
        if best is None:
            raise InvalidArgument("last weights are kept beside the best ones only: give best")
        meta["ended_on_best"] = True
        arrays["last.params"] = _flat(model, last, "last")
    text = json.dumps(meta)
    reader.check_saving(json.loads(text))  # what the load will read: never a file it refuses
    arrays[META] = np.frombuffer(text.encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def _flat(model: MLP, params: Any, what: str) -> np.ndarray:
    """``best``'s or ``last``'s weights as ``best.params`` / ``last.params`` hold them."""
    flat = np.asarray(params, dtype=model.dtype)
    if flat.shape != (model.num_parameters,):
        raise InvalidArgument(
            f"{what} weights must be the model's {model.num_parameters} flat parameters, "
            f"got an array of shape {flat.shape}"
        )
    return flat


def _meta(
    model: MLP,
    optimizer: dict[str, Any] | None,
    epoch: int,
    seed: int,
    history: list[dict[str, Any]] | None,
    run: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mlp_version": VERSION,
        "model": model.config(),
        "optimizer": optimizer,
        "epoch": int(epoch),
        # fit draws epoch e's shuffle from default_rng([seed, e]) and its dropout masks from
        # the backend's generator seeded with [seed, e, 1]: (seed, epoch) is the whole state.
        "rng": {
            "seed": int(seed),
            "next_epoch": int(epoch),
            "scheme": "numpy.random.default_rng([seed, epoch])",
        },
        "saved_on": model.device,
        "history": list(history or []),
        "run": dict(run or {}),
    }


# ---------------------------------------------------------------------------------- loading
def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint in full; any problem is one ``CheckpointError``, and none
    costs more memory than the model the file describes (``mlp/checkpoint_reader.py``)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(path, "is a folder, not a checkpoint file")
    if not path.is_file():  # a pipe would wait for a writer for ever
        raise CheckpointError(path, "not a regular file (a pipe or a device), not a checkpoint")
    meta, optimizer, arrays = reader.read(path)
    params = {k[len("param.") :]: v for k, v in arrays.items() if k.startswith("param.")}
    optimizer_state = {k[len("optim.") :]: v for k, v in arrays.items() if k.startswith("optim.")}
    best = None if "best_epoch" not in meta else (meta["best_epoch"], arrays["best.params"])
    last = arrays.get("last.params")
    finite = {f"weight {key}": value for key, value in params.items()}
    if best is not None:
        finite[f"epoch {best[0]}'s best weights"] = best[1]
    if last is not None:
        finite[f"epoch {meta['epoch']}'s own weights"] = last
    for what, value in finite.items():
        if not np.all(np.isfinite(value)):
            raise CheckpointError(path, f"NaN or infinity in {what}")
    if optimizer is not None:
        size = sum(v.size for v in params.values())
        try:  # what each buffer can hold: finite, and a second moment >= 0
            optimizer.checked_state(
                {**optimizer_state, "steps": meta["optimizer"]["steps"]},
                size,
                meta["model"]["dtype"],
            )
        except InvalidArgument as exc:
            raise CheckpointError(path, str(exc)) from None
    return Checkpoint(path, meta, params, optimizer_state, best, last)


def _with_state(state_names: Collection[str]) -> str:
    """SGD's state is its momentum's velocity, or nothing."""
    return "with momentum" if state_names else "without momentum"
