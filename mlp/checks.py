"""Every check of a value a caller hands the library, in one place.

A value is checked once, where it enters: a model's settings when it is built, an
optimizer's when it is made, ``fit``'s arguments and data before any work. The command
line parses its options with these same functions (``mlp/cli/common.py``), so a rule and
its message are written once. A mistake raises ``InvalidArgument`` or ``DataError`` (both
``ValueError``); a value of the wrong type (text where a number goes), ``WrongType``, an
``InvalidArgument`` that is a ``TypeError`` too (as scikit-learn's parameter errors are).
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from backends import ACTIVATIONS, Backend

from .errors import DataError, InvalidArgument, WrongType

#: Model dtypes: float32 (the default, fast) and float64 (for gradient checks).
DTYPES = ("float32", "float64")
#: Initial-weight schemes; ``auto`` is He for ReLU, Xavier for the others.
INITS = ("auto", "he", "xavier")
#: The losses a model may train with (``mlp/losses.py``).
LOSSES = ("cross_entropy", "squared_error")


# ---------------------------------------------------------------------------------- numbers
def whole_number(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int of at least ``minimum``; a bool, a float or a string is a mistake."""
    whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not whole or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f">= {minimum}"
        error = InvalidArgument if whole else WrongType
        raise error(f"{name} must be a {kind} integer, got {value!r}")
    return int(value)


#: A seed's bound: checkpoints keep seeds as int64.
SEEDS = 2**63


def seed(name: str, value: Any) -> int:
    """A random seed: a whole number that an int64 holds, as the checkpoint keeps it (a
    larger one trained, and saved a file nothing could read back)."""
    value = whole_number(name, value)
    if value >= SEEDS:
        raise InvalidArgument(f"{name} must be below 2**63, got {value}")
    return value


def positive_int(name: str, value: Any) -> int:
    return whole_number(name, value, 1)


def finite_number(name: str, value: Any) -> float:
    """``value`` as a finite float; a string, a bool, NaN, infinity (or a number too large
    for a float) is a mistake."""
    numeric = isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, (bool, np.bool_)) or not numeric:
        raise WrongType(f"{name} must be a finite number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise InvalidArgument(f"{name} must be a finite number, got {value!r}")
    return number


def positive_number(name: str, value: Any) -> float:
    number = finite_number(name, value)
    if not number > 0:
        raise InvalidArgument(f"{name} must be positive, got {value!r}")
    return number


def non_negative_number(name: str, value: Any) -> float:
    number = finite_number(name, value)
    if not number >= 0:
        raise InvalidArgument(f"{name} must be a non-negative number, got {value!r}")
    return number


def fraction(name: str, value: Any) -> float:
    """A number in [0, 1): a dropout probability, a momentum, one of Adam's betas."""
    number = finite_number(name, value)
    if not 0.0 <= number < 1.0:
        raise InvalidArgument(f"{name} must be in [0, 1), got {value!r}")
    return number


# ---------------------------------------------------------------------------------- models
def layer_sizes(sizes: Sequence[int]) -> list[int]:
    """At least two positive integer widths, in order; parameters some memory could hold."""
    ordered = isinstance(sizes, (list, tuple, np.ndarray))  # a set has no order to keep
    numbers = ordered and all(
        isinstance(s, (int, float, np.integer, np.floating)) and not isinstance(s, bool)
        for s in sizes
    )
    if not numbers:
        raise WrongType(f"layer sizes must be a list of integers, got {sizes!r}")
    try:
        values = [int(s) for s in sizes]
    except (TypeError, ValueError):
        raise WrongType(f"layer sizes must be integers, got {sizes!r}") from None
    if len(values) < 2 or any(v <= 0 for v in values) or list(sizes) != values:
        raise InvalidArgument(
            f"need at least two positive integer layer sizes, got {list(sizes)!r}"
        )
    parameters = sum(a * b + b for a, b in itertools.pairwise(values))
    if parameters * 8 > sys.maxsize:  # float64 at initialisation: no array can be that big
        raise InvalidArgument(
            f"layer sizes {values} make {parameters:,} parameters: far more than any "
            "memory holds; use smaller layers"
        )
    return values


def activation(name: Any) -> str:
    if name not in ACTIVATIONS:
        raise InvalidArgument(
            f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}"
        )
    return name


def init_scheme(init: Any, activation_name: str) -> str:
    """``he``, ``xavier``, or ``auto``: He for ReLU, Xavier for sigmoid and tanh."""
    if init not in INITS:
        raise InvalidArgument(f"unknown init {init!r}: choose one of {', '.join(INITS)}")
    if init == "auto":
        return "he" if activation_name == "relu" else "xavier"
    return init


def loss(name: Any) -> str:
    if name not in LOSSES:
        raise InvalidArgument(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
    return name


def model_dtype(dtype: Any) -> np.dtype:
    try:  # np.dtype(None) is float64: None is no answer
        name = None if dtype is None else np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise InvalidArgument(f"unsupported dtype {dtype!r}: choose float32 or float64")
    return np.dtype(name)


# ---------------------------------------------------------------------------------- data
def as_table(X: Any, backend: Backend) -> Any:
    """``X``, any array or array-like, as an array of ``backend`` (``Backend.adopt``: in place
    where it already lives on that device); rows of different lengths are a mistake."""
    try:
        return backend.adopt(X)
    except ValueError as exc:
        raise DataError(f"inputs are not a numeric table: {exc}") from None


#: What ``unrepresentable`` says of values that hold a NaN or an infinity.
NOT_FINITE = "NaN or infinity"


def unrepresentable(values: Any, dtype: Any) -> str | None:
    """What keeps float ``values`` (host or device) from computing in ``dtype``: NaN or
    infinity, or a magnitude past its range; None when they fit. Two reductions, no mask:
    the largest magnitude is NaN where any value is."""
    if values.dtype.kind != "f" or values.size == 0:
        return None
    largest = float(max(values.max(), -values.min()))
    if not math.isfinite(largest):
        return NOT_FINITE
    if largest > float(np.finfo(dtype).max):
        name = np.dtype(dtype).name
        return f"values up to {largest:g}, beyond {name}'s range, which the model computes in"
    return None


def inputs(X: Any, features: int) -> None:
    """A numeric table of at least one row and ``features`` columns (host or device)."""
    if X.ndim != 2 or X.shape[1] != features:
        raise DataError(
            f"expected inputs of shape (n, {features}), got {tuple(X.shape)}: "
            f"the model's first layer takes {features} features"
        )
    if X.shape[0] == 0:
        raise DataError("no input rows")
    if X.dtype.kind not in "fiub":
        raise DataError(f"inputs must be numeric, got dtype {X.dtype}")


def class_labels(y: np.ndarray, rows: int, classes: int) -> np.ndarray:
    """Integer labels in [0, classes), one per row (a 1-D array or an (n, 1) column, as
    Keras takes them; booleans are 0 and 1), as an (n, 1) int32 column."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != rows:
        raise DataError(f"expected {rows} labels in a 1-D array, got shape {y.shape}")
    if y.dtype.kind == "b":
        y = y.astype(np.int32)
    whole = y.dtype.kind in "iu" or (
        y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))
    )
    if not whole:
        raise DataError(f"labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise DataError(
            f"labels must be in [0, {classes - 1}] for a {classes}-class model, "
            f"got values from {y.min()} to {y.max()}"
        )
    return y.astype(np.int32).reshape(-1, 1)


def regression_targets(y: np.ndarray, rows: int, outputs: int, dtype: np.dtype) -> np.ndarray:
    """Float targets, a row per input and a column per output (1-D for one output), finite
    as ``dtype`` stores them, as an (n, outputs) array of it."""
    if y.dtype.kind not in "fiub":
        raise DataError(f"regression targets must be numbers, got dtype {y.dtype}")
    shape = (rows,) if outputs == 1 and y.ndim == 1 else (rows, outputs)
    if y.shape != shape:
        raise DataError(
            f"expected {rows} targets of {outputs} value(s) each for a {outputs}-output model, "
            f"got shape {y.shape}"
        )
    problem = unrepresentable(y, dtype)
    if problem:
        raise DataError(f"regression targets hold {problem}")
    return y.astype(dtype).reshape(rows, outputs)


def sample_weights(weights: Any, rows: int, dtype: np.dtype, held: int = 0) -> np.ndarray:
    """One number per row, finite, none negative, not all zero (scikit-learn's rule), as
    ``dtype`` holds them (their sum too, which divides the loss). With the last ``held``
    rows held out for validation, neither part may be all zero."""
    try:
        weights = np.asarray(weights)
    except ValueError:  # a ragged list
        raise DataError(f"sample weights must be numbers, got {weights!r:.60}") from None
    if weights.dtype.kind not in "fiub":  # text, complex, dates: refused as inputs are
        raise DataError(f"sample weights must be numbers, got dtype {weights.dtype}")
    weights = weights.astype(float)
    if weights.shape != (rows,):
        raise DataError(f"expected {rows} sample weights in a 1-D array, got shape {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise DataError("sample weights must be finite, none negative, and not all zero")
    total = float(np.sum(weights))
    if total > float(np.finfo(dtype).max):
        raise DataError(
            f"sample weights summing to {total:.3g} overflow {np.dtype(dtype).name}: scale "
            "them down (only their ratios count)"
        )
    kept = weights.astype(dtype)
    parts = (
        {"": slice(None)}
        if not held
        else {"training ": slice(-held), "held-out ": slice(-held, None)}
    )
    for part, where in parts.items():
        if not np.any(kept[where] > 0):
            tiny = f" as {np.dtype(dtype).name}" if np.any(weights[where] > 0) else ""
            split = f" (validation_split holds out the last {held} rows)" if held else ""
            raise DataError(
                f"the {part}sample weights are all zero{tiny}{split}: sample weights must be "
                "finite, none negative, and not all zero"
            )
    return kept


def class_names(names: Any, classes: int) -> list[str] | None:
    """A classifier's class names, one short line of text per class (``None``: no names)."""
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise WrongType(f"class names must be a list of texts, got {names!r:.60}")
    names = list(names)
    if not classes:
        raise InvalidArgument("a regression model has no classes to name")
    if len(names) != classes:
        raise InvalidArgument(f"expected {classes} class names, one per class, got {len(names)}")
    for name in names:
        if not isinstance(name, str):
            raise WrongType(f"a class name must be a text, got {name!r:.60}")
        if len(name) > 1000 or not name.isprintable():
            raise InvalidArgument(
                f"a class name must be one printable line of text, got {name!r:.60}"
            )
    return names


# ---------------------------------------------------------------------------------- fit
def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise WrongType(f"{name} must be True or False, got {value!r}")
    return bool(value)


def monitor(value: Any) -> str | None:
    """The record key a rule watches (``None``: its default): text, or it could never be a
    record's key, and the mistake would surface an epoch into ``fit``."""
    if value is not None and not isinstance(value, str):
        raise WrongType(f"monitor must be the name of a metric, such as 'val_loss', got {value!r}")
    return value


def fit_options(validation_data: Any, shuffle: Any, callback: Any, on_batch: Any) -> None:
    """``fit``'s other arguments, before any work: a wrong one fails now, not an epoch in."""
    if validation_data is not None and not (
        isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3)
    ):
        raise InvalidArgument(
            "validation_data must be a pair (X_val, y_val) or (X_val, y_val, sample_weight)"
        )
    boolean("shuffle", shuffle)
    for name, hook in (("callback", callback), ("on_batch", on_batch)):
        if hook is not None and not callable(hook):
            raise WrongType(f"{name} must be a function, got {hook!r}")
