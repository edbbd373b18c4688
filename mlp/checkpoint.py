"""Checkpoints: a model, its optimizer and where training stands, in one ``.npz`` file.

Why ``.npz``: NumPy reads and writes it with nothing else installed, every array keeps its
exact dtype and bits (so a resumed run can be bitwise identical), and ``np.load`` with
``allow_pickle=False`` never runs code from the file. Everything that is not an array (the
model's configuration, optimizer hyperparameters, epoch, seed, history) is one JSON document
stored as a uint8 array, so no pickle is ever needed.

Layout (format version 1)::

    __meta__         uint8 bytes of a JSON document (see ``_meta``)
    param.<key>      the model's ``state_dict()``: ``param.0.weight``, ``param.0.bias``, …
    optim.<name>     the optimizer's flat state buffers (``optim.m``, ``optim.v``, …)

Writes are atomic: a temporary file in the same folder, flushed and fsynced, then renamed
over the target, so a crash or SIGKILL during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import itertools
import json
import os
import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CheckpointError
from .files import atomic_write
from .optim import SGD, Adam, AdamW, Optimizer
from .version import VERSION

if TYPE_CHECKING:  # the model calls this module to save and load itself; never the reverse
    from .model import MLP

FORMAT = "mlp-checkpoint"
FORMAT_VERSION = 1
_META = "__meta__"
_OPTIMIZERS: dict[str, type[Optimizer]] = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}
#: The model's settings the metadata stores (``MLP.config()``), each an ``MLP`` argument.
MODEL_SETTINGS = ("sizes", "activation", "dtype", "seed", "dropout", "init", "output_activation")


@dataclass
class Checkpoint:
    """A checkpoint read and checked in full: nothing is built until every part is valid."""

    path: Path
    meta: dict[str, Any]
    params: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)

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
    def run(self) -> dict[str, Any]:
        """Whatever the trainer stored about the run (dataset, batch size, …)."""
        return dict(self.meta.get("run", {}))

    @property
    def model_settings(self) -> dict[str, Any]:
        """The stored model's ``MLP`` arguments (all present: checked at load)."""
        return {key: self.config[key] for key in MODEL_SETTINGS}

    def build_optimizer(self) -> Optimizer | None:
        """The stored optimizer with its hyperparameters (state is loaded by ``restore``)."""
        spec = self.meta.get("optimizer")
        return None if spec is None else _make_optimizer(spec)

    def check_matches(self, model: MLP, optimizer: Optimizer | None = None) -> None:
        """Raise ``CheckpointError`` naming every difference from the model (and optimizer)."""
        differences = [
            f"{key} {stored!r} in the file but {wanted!r} here"
            for key, wanted in model.config().items()
            if key != "seed" and (stored := self.config.get(key)) != wanted
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
    epoch: int = 0,
    seed: int | None = None,
    history: list[dict[str, Any]] | None = None,
    run: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (+ optimizer state, epoch, seed, history) to ``path`` atomically."""
    path = Path(path)
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
        arrays.update({f"optim.{name}": value for name, value in state.items()})
    meta = _meta(model, opt_meta, epoch, model.seed if seed is None else seed, history, run)
    arrays[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


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
    """Read and check a checkpoint in full; any problem is one ``CheckpointError``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(path, "is a folder, not a checkpoint file")
    arrays = _read_arrays(path)
    if _META not in arrays:
        raise CheckpointError(path, f"not an mlp checkpoint (no {_META} entry)")
    meta = _read_meta(path, arrays.pop(_META))
    params = {k[len("param.") :]: v for k, v in arrays.items() if k.startswith("param.")}
    optimizer_state = {k[len("optim.") :]: v for k, v in arrays.items() if k.startswith("optim.")}
    checkpoint = Checkpoint(path, meta, params, optimizer_state)
    _check_contents(checkpoint)
    return checkpoint


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with path.open("rb") as f:
            magic = f.read(6)
        if not magic:
            raise CheckpointError(path, "empty file (truncated, or never written)")
        if magic.startswith(b"\x93NUMPY"):
            raise CheckpointError(path, "not an mlp checkpoint (a single .npy array)")
        if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip file's first record
            raise CheckpointError(path, "not an mlp checkpoint (not an .npz file)")
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}  # read all now: CRC errors show here
    except CheckpointError:
        raise
    except PermissionError as exc:
        raise CheckpointError(path, f"cannot read ({exc.strerror})") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        if "pickle" in str(exc):
            problem = "holds pickled objects, which are never loaded (not an mlp checkpoint)"
        else:
            problem = f"truncated or corrupt checkpoint ({_one_line(exc)})"
        raise CheckpointError(path, problem) from None


def _read_meta(path: Path, raw: np.ndarray) -> dict[str, Any]:
    try:
        meta = json.loads(raw.astype(np.uint8, copy=False).tobytes().decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(path, f"corrupt checkpoint metadata ({_one_line(exc)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(path, "not an mlp checkpoint (unknown metadata)")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise CheckpointError(
            path,
            f"checkpoint format version {version!r}, but this mlp reads version "
            f"{FORMAT_VERSION}" + ("; upgrade mlp to load it" if newer else ""),
        )
    return meta


def _check_contents(ckpt: Checkpoint) -> None:
    """Every array present, of the shape and dtype the configuration implies, and finite."""
    path, meta = ckpt.path, ckpt.meta
    try:
        cfg = meta["model"]
        sizes = [int(s) for s in cfg["sizes"]]
        dtype = np.dtype(cfg["dtype"])
        int(meta["epoch"])
        int(meta["rng"]["seed"])
        absent = set(MODEL_SETTINGS) - set(cfg)
        if absent:
            raise KeyError(", ".join(sorted(absent)))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"incomplete checkpoint metadata ({_one_line(exc)})") from None
    problem = _run_and_history_problem(meta)
    if problem:
        raise CheckpointError(path, f"corrupt checkpoint metadata ({problem})")
    expected: dict[str, tuple[int, ...]] = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        expected[f"{i}.weight"] = (fan_in, fan_out)
        expected[f"{i}.bias"] = (fan_out,)
    missing = sorted(set(expected) - set(ckpt.params))
    unexpected = sorted(set(ckpt.params) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            path,
            f"weights do not match its layer sizes {sizes}: "
            f"missing {missing}, unexpected {unexpected}",
        )
    for key, shape in expected.items():
        value = ckpt.params[key]
        if value.shape != shape or value.dtype != dtype:
            raise CheckpointError(
                path,
                f"weight {key} is {value.dtype}{list(value.shape)}, "
                f"but layer sizes {sizes} need {dtype}{list(shape)}",
            )
        if not np.all(np.isfinite(value)):
            raise CheckpointError(path, f"weight {key} contains NaN or infinity")
    spec = meta.get("optimizer")
    if spec is None:
        return
    name = spec.get("name") if isinstance(spec, dict) else None
    if name not in _OPTIMIZERS:
        raise CheckpointError(path, f"unknown optimizer {name!r} in the checkpoint")
    try:
        optimizer = _make_optimizer(spec)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"bad optimizer settings ({_one_line(exc)})") from None
    n = sum(a * b + b for a, b in itertools.pairwise(sizes))
    names = set(optimizer.state_names)
    if set(ckpt.optimizer_state) != names:
        raise CheckpointError(
            path,
            f"optimizer {name} needs state {sorted(names)}, "
            f"the file holds {sorted(ckpt.optimizer_state)}",
        )
    for key, value in ckpt.optimizer_state.items():
        if value.shape != (n,):
            raise CheckpointError(
                path, f"optimizer state {key} has shape {list(value.shape)}, expected [{n}]"
            )
    if not isinstance(spec.get("steps"), int) or spec["steps"] < 0:
        raise CheckpointError(path, "optimizer step count missing or invalid")


#: What a history record may hold (``MLP.fit``'s records), each a number when present.
_HISTORY_NUMBERS = ("loss", "accuracy", "seconds", "val_loss", "val_accuracy")


def _run_and_history_problem(meta: dict[str, Any]) -> str:
    """What is wrong with the run description or the history (read back on resume and
    plotted), or ``""``: a hand-edited file fails here, not halfway through a run."""
    if not isinstance(meta.get("run", {}), dict):
        return "'run' is not an object"
    history = meta.get("history", [])
    if not isinstance(history, list):
        return "'history' is not a list"
    for i, record in enumerate(history):
        if not isinstance(record, dict) or not _is_number(record.get("epoch"), int):
            return f"history entry {i} is not an epoch's record"
        for key in _HISTORY_NUMBERS:
            if key in record and not _is_number(record[key], (int, float)):
                return f"history entry {i} has a {key} that is not a number"
    return ""


def _is_number(value: Any, kinds: type | tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and not isinstance(value, bool)


def _with_state(state_names: Collection[str]) -> str:
    """SGD's state is its momentum's velocity, or nothing."""
    return "with momentum" if state_names else "without momentum"


def _make_optimizer(spec: dict[str, Any]) -> Optimizer:
    kwargs = dict(spec.get("hyperparameters") or {})
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return _OPTIMIZERS[spec["name"]](**kwargs)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
