"""A run's settings: mlp-train's defaults, those a ``--resume`` checkpoint holds (checked as
the options are), and the optimizer they name. A resumed run takes its own settings from the
file and refuses others; the changeable ones it takes unless the command line changes them."""

from __future__ import annotations

import argparse
from typing import Any

from backends import PRECISIONS

from .. import checks
from ..checkpoint import Checkpoint, load_checkpoint
from ..data import CLASSES, DATASETS
from ..errors import CheckpointError, InvalidArgument
from ..optim import OPTIMIZERS, Optimizer, make_optimizer
from ..schedules import SCHEDULES
from .common import UsageError, stored_data_dir

#: The run's own settings: a resumed run takes them from its checkpoint (one given otherwise
#: is refused); a fresh run, these defaults.
RUN_SETTINGS: dict[str, Any] = {
    "dataset": "fashion-mnist",
    "hidden": [512, 256],
    "activation": "relu",
    "dropout": 0.0,
    "dtype": "float32",
    "optimizer": "adam",
    "seed": 0,
    "validation_split": 0.0,  # which rows train: another split is another run
}
#: Settings a resumed run takes from its checkpoint too, unless the command line changes them
#: (``lr``: the rate the run started from, before any schedule lowered it).
CHANGEABLE_SETTINGS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 128,
    "lr": None,
    "lr_schedule": None,
    "early_stopping": None,
    "precision": "float32",
}


def resumed(key: str) -> str:
    """The help's note on a setting a resumed run takes from its checkpoint."""
    default = {**RUN_SETTINGS, **CHANGEABLE_SETTINGS}[key]
    return f"(default: {shown(default)}, or the resumed checkpoint's)"


def resumed_checkpoint(args: argparse.Namespace) -> Checkpoint | None:
    """The ``--resume`` checkpoint, read and checked in full (``None`` without one), and the
    settings the command line left out filled in: the checkpoint's, else the defaults."""
    checkpoint = None if args.resume is None else load_checkpoint(args.resume)
    stored = {} if checkpoint is None else stored_settings(checkpoint)
    # the changeable settings typed anew: the same command plus --resume changes none
    args.changed = {
        key
        for key in CHANGEABLE_SETTINGS
        if getattr(args, key) is not None and key in stored and getattr(args, key) != stored[key]
    }
    differences = [
        f"--{key.replace('_', '-')} {shown(stored[key])} in the file but {shown(given)} here"
        for key in RUN_SETTINGS
        if (given := getattr(args, key)) is not None and key in stored and given != stored[key]
    ]
    if differences:  # the weights' shapes and the optimizer's state are compared by ``restore``
        raise CheckpointError(checkpoint.path, "is another run: " + "; ".join(differences))
    for key, default in {**RUN_SETTINGS, **CHANGEABLE_SETTINGS}.items():
        if getattr(args, key) is None:
            setattr(args, key, stored.get(key, default))
    if args.lr_schedule == "none":  # said, to turn a resumed run's schedule off
        args.lr_schedule = None
    if checkpoint is not None:
        check_classifier(checkpoint, args.dataset)
        args.data_dir = args.data_dir or stored_data_dir(checkpoint)
    if checkpoint is not None and checkpoint.epoch > args.epochs:
        raise UsageError(
            f"{args.resume} already holds {checkpoint.epoch} epochs, more than "
            f"--epochs {args.epochs} (--epochs is the total, as when it started)"
        )
    return checkpoint


def check_classifier(checkpoint: Checkpoint, dataset: str) -> None:
    """mlp-train goes on with a classifier of the dataset's classes only: a regression
    model (the library's) or another class count would fail an epoch in, when saved."""
    model = checkpoint.model_settings
    outputs, classes = model["sizes"][-1], CLASSES[dataset]
    if model["loss"] != "cross_entropy" or outputs != classes:
        raise CheckpointError(
            checkpoint.path,
            f"holds a {model['loss']} model with {outputs} outputs; mlp-train goes on with "
            f"a classifier of {dataset}'s {classes} classes only (train this one with "
            "MLP.fit, docs/library.md)",
        )


def stored_settings(checkpoint: Checkpoint) -> dict[str, Any]:
    """The settings a checkpoint holds, as mlp-train's options name them (a checkpoint of
    ``model.save`` may lack the run's: its dataset, epochs, batch size)."""
    model = checkpoint.model_settings
    stored = {
        "hidden": model["sizes"][1:-1],
        "activation": model["activation"],
        "dropout": model["dropout"],
        "dtype": model["dtype"],
        "seed": checkpoint.seed,
    }
    run = checkpoint.run
    for key in ("dataset", "optimizer", "validation_split", *CHANGEABLE_SETTINGS):
        if key in run:
            try:
                stored[key] = STORED_RUN_CHECKS[key](run[key])
            except (InvalidArgument, TypeError) as exc:
                raise CheckpointError(checkpoint.path, f"unusable run settings ({exc})") from None
    spec = checkpoint.meta.get("optimizer")
    if "optimizer" not in stored and spec is not None:  # SGD with state: mlp-train's momentum
        name = spec["name"].lower()
        stored["optimizer"] = "momentum" if name == "sgd" and checkpoint.optimizer_state else name
    return stored


def _one_of(name: str, allowed: Any, none: bool = False) -> Any:
    def check(value: Any) -> Any:
        if (value is None and none) or (isinstance(value, str) and value in allowed):
            return value
        raise InvalidArgument(f"{name} {value!r} is not one of {', '.join(allowed)}")

    return check


def _optional(check: Any) -> Any:
    return lambda value: None if value is None else check(value)


#: The checks of a run's settings read back from a checkpoint (as the options check them).
STORED_RUN_CHECKS: dict[str, Any] = {
    "dataset": _one_of("dataset", DATASETS),
    "optimizer": _one_of("optimizer", OPTIMIZERS),
    "epochs": lambda value: checks.positive_int("epochs", value),
    "batch_size": lambda value: checks.positive_int("batch size", value),
    "lr": _optional(lambda value: checks.positive_number("learning rate", value)),
    "lr_schedule": _one_of("lr schedule", SCHEDULES, none=True),
    "validation_split": lambda value: checks.fraction("validation split", value),
    "early_stopping": _optional(lambda value: checks.positive_int("patience", value)),
    "precision": _one_of("precision", PRECISIONS),
}


def shown(value: Any) -> str:
    """A setting as it is typed: ``512,256`` for hidden widths, ``none`` for no hidden layer."""
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return str(value)


def default_lr(optimizer: str) -> float:
    return 1e-3 if optimizer in ("adam", "adamw") else 0.05


def build_optimizer(args: argparse.Namespace, checkpoint: Checkpoint | None) -> Optimizer:
    """The optimizer the options name; resumed, with the checkpoint's hyperparameters where
    the command line gives none (the learning rate and weight decay may change). The rate is
    the one the run started from (``args.lr``, settled from the checkpoint's run): the stored
    optimizer's is where a schedule had lowered it."""
    given = {
        key: value
        for key, value in (("lr", args.lr), ("weight_decay", args.weight_decay))
        if value is not None
    }
    stored = None if checkpoint is None else checkpoint.build_optimizer()
    if stored is not None and type(stored) is OPTIMIZERS[args.optimizer]:
        return make_optimizer(args.optimizer, **{**stored.hyperparameters(), **given})
    return make_optimizer(args.optimizer, **{"lr": default_lr(args.optimizer), **given})
