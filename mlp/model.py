"""The multilayer perceptron: layers, one flat parameter buffer, a training loop built for speed.

The training step never allocates, never copies between host and device, and never waits
for the device: the data is uploaded once per fit, batches are gathered on the device into
preallocated buffers, and loss/accuracy are summed on the device and read once per epoch.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from backends import Backend, get_backend
from backends.base import BufferCache, check_activation

from .layers import Dropout, Layer, Linear, init_weight
from .optim import Adam, Optimizer, real_number
from .steps import TrainingSteps

#: Rows per chunk when predicting or evaluating: large enough for BLAS, small enough for memory.
EVAL_BATCH = 4096
#: uint8 inputs are pixel intensities: scaled by this to [0, 1] as they are loaded.
UINT8_SCALE = 1.0 / 255.0
_DTYPES = ("float32", "float64")


class TrainingDiverged(RuntimeError):
    """The training loss (or, after the epoch's last step, a weight) became NaN or infinite."""

    def __init__(self, epoch: int, loss: float, what: str = "the loss") -> None:
        shown = loss if what == "the loss" else "NaN or infinite"
        super().__init__(
            f"training diverged: {what} became {shown} in epoch {epoch}; "
            "lower the learning rate or check the inputs"
        )
        self.epoch = epoch
        self.loss = loss


class MLP:
    """A multilayer perceptron trained with softmax cross-entropy on NumPy or CuPy.

    ``sizes`` lists the layer widths, input first: ``MLP([784, 512, 256, 10])``.
    Hidden layers use ``activation``; the last layer outputs raw logits unless
    ``output_activation`` is set (then the model is for inference, as in the tutorial).
    Inputs may be float arrays, or uint8 images which are scaled to [0, 1] on the device.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        device: str | Backend = "cpu",
        dtype: str = "float32",
        seed: int = 0,
        dropout: float = 0.0,
        init: str = "auto",
        output_activation: str | None = None,
    ) -> None:
        self.sizes = _check_sizes(sizes)
        self.activation = check_activation(activation)
        self.output_activation = (
            None if output_activation is None else check_activation(output_activation)
        )
        self.dtype = _model_dtype(dtype)
        self.seed = _non_negative_int("seed", seed)
        self.dropout = real_number("dropout probability", dropout)
        if not 0.0 <= self.dropout < 1.0:  # a negative rate was silently ignored
            raise ValueError(f"dropout probability must be in [0, 1), got {dropout}")
        self.init = _init_scheme(init, self.activation)
        self.optimizer: Optimizer | None = None

        last = len(self.sizes) - 2
        self.layers: list[Layer] = []
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            act = self.activation if i < last else (self.output_activation or "identity")
            self.layers.append(Linear(fan_in, fan_out, act))
            if i < last and self.dropout > 0.0:
                self.layers.append(Dropout(self.dropout))
        self.linears = [layer for layer in self.layers if isinstance(layer, Linear)]
        self.num_parameters = sum(layer.size for layer in self.linears)
        self._bind(get_backend(device), self._initial_parameters())

    # ------------------------------------------------------------------ parameters and devices
    def _initial_parameters(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        flat = np.zeros(self.num_parameters)
        offset = 0
        for layer in self.linears:
            n_weight = layer.in_features * layer.out_features
            weight = init_weight(rng, layer.in_features, layer.out_features, self.init)
            flat[offset : offset + n_weight] = weight.ravel()
            offset += layer.size  # biases start at zero
        return flat

    def _bind(self, backend: Backend, host_params: np.ndarray) -> None:
        """Put the flat parameter buffer on ``backend`` and point every layer into it."""
        self.backend = backend
        self.params = backend.asarray(host_params, dtype=self.dtype)
        self.grads = backend.zeros((self.num_parameters,), self.dtype)
        self._buffers = BufferCache(backend)
        for layer in self.layers:
            layer.bind(backend)
        offset = 0
        for layer in self.linears:
            layer.attach(
                self.params[offset : offset + layer.size], self.grads[offset : offset + layer.size]
            )
            offset += layer.size
        self._row_index: Any = None

    @property
    def device(self) -> str:
        return self.backend.device

    def to(self, device: str | Backend) -> MLP:
        """Move parameters, gradients and optimizer state to ``device``; returns ``self``.

        A device name keeps the matmul precision (``bf16`` stays ``bf16``); pass a backend
        (``get_backend(device, precision=...)``) to change it.
        """
        keep = None if isinstance(device, Backend) else self.backend.precision
        backend = get_backend(device, precision=keep)
        grads = self.backend.to_numpy(self.grads)
        with backend.activated():  # writes land on the new device, even on a second GPU
            self._bind(backend, self.backend.to_numpy(self.params))
            self.grads[...] = backend.asarray(grads)
            if self.optimizer is not None and self.optimizer.backend is not None:
                self.optimizer.to(backend)
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of the parameters: ``"0.weight"``, ``"0.bias"``, ``"1.weight"``, …"""
        out: dict[str, np.ndarray] = {}
        for i, layer in enumerate(self.linears):
            out[f"{i}.weight"] = self.backend.to_numpy(layer.weight).copy()
            out[f"{i}.bias"] = self.backend.to_numpy(layer.bias).copy()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load parameters saved by ``state_dict``; all keys and shapes are checked first."""
        expected = {}
        for i, layer in enumerate(self.linears):
            expected[f"{i}.weight"] = (layer.in_features, layer.out_features)
            expected[f"{i}.bias"] = (layer.out_features,)
        if not isinstance(state, Mapping):
            raise TypeError(f"expected a dict of arrays (see state_dict()), got {type(state)}")
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        values = {}
        for key, shape in expected.items():
            value = np.asarray(
                state[key]
                if not self.backend.is_array(state[key])
                else self.backend.to_numpy(state[key])
            )
            if value.shape != shape:
                raise ValueError(f"{key} has shape {value.shape}, expected {shape}")
            if value.dtype.kind not in "fiu":
                raise ValueError(f"{key} must hold real numbers, got dtype {value.dtype}")
            with np.errstate(over="ignore"):
                value = value.astype(self.dtype)  # checked as stored: 1e39 is inf in float32
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{key} contains NaN or infinity (as {self.dtype})")
            values[key] = value
        with self.backend.activated():
            for i, layer in enumerate(self.linears):
                layer.weight[...] = self.backend.asarray(values[f"{i}.weight"], dtype=self.dtype)
                layer.bias[...] = self.backend.asarray(values[f"{i}.bias"], dtype=self.dtype)

    def config(self) -> dict[str, Any]:
        """What it takes to build the same model again."""
        return {
            "sizes": list(self.sizes),
            "activation": self.activation,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "dropout": self.dropout,
            "init": self.init,
            "output_activation": self.output_activation,
        }

    def save(self, path: Any, **kwargs: Any) -> Any:
        """Write an atomic ``.npz`` checkpoint: weights, config, optimizer state."""
        from .checkpoint import save_model

        return save_model(path, self, **kwargs)

    @classmethod
    def load(cls, path: Any, device: str | Backend = "cpu") -> MLP:
        """Rebuild a saved model on ``device`` (any device, whatever it was saved from)."""
        from .checkpoint import load_model

        return load_model(path, device=device)

    def __repr__(self) -> str:
        widths = "-".join(str(s) for s in self.sizes)
        return (
            f"MLP({widths}, activation={self.activation!r}, device={self.device!r}, "
            f"dtype={self.dtype.name!r}, parameters={self.num_parameters})"
        )

    # ------------------------------------------------------------------ input handling
    def _device_inputs(self, X: Any) -> tuple[Any, float]:
        """Upload inputs once: uint8 stays compact (scaled per batch), floats become ``dtype``."""
        be = self.backend
        if not be.is_array(X):
            if type(X).__module__.startswith("cupy"):
                be.check(X)  # a GPU array handed to a CPU model: say how to fix it
            try:
                X = np.asarray(X)
            except ValueError as exc:  # rows of different lengths, say
                raise ValueError(f"inputs are not a numeric table: {exc}") from None
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(
                f"expected inputs of shape (n, {self.sizes[0]}), got {tuple(X.shape)}: "
                f"the model's first layer takes {self.sizes[0]} features"
            )
        if X.shape[0] == 0:
            raise ValueError("no input rows")
        if X.dtype == np.uint8:
            return be.asarray(X), UINT8_SCALE
        if X.dtype.kind not in "fiub":
            raise ValueError(f"inputs must be numeric, got dtype {X.dtype}")
        with np.errstate(over="ignore"):
            X = be.asarray(X, dtype=self.dtype)
        if not be.all_finite(X):  # once per call, not per batch
            raise ValueError(f"inputs contain NaN or infinity (as {self.dtype})")
        return X, 1.0

    def _device_labels(self, y: Any, rows: int) -> Any:
        """Labels as an (n, 1) int32 column on the device, checked against the output layer."""
        be = self.backend
        y = be.to_numpy(y) if be.is_array(y) else np.asarray(y)
        if y.ndim != 1 or y.shape[0] != rows:
            raise ValueError(f"expected {rows} labels in a 1-D array, got shape {y.shape}")
        whole = y.dtype.kind in "iu" or (
            y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))
        )
        if not whole:
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
        classes = self.sizes[-1]
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise ValueError(
                f"labels must be in [0, {classes - 1}] for a {classes}-output model, "
                f"got values from {y.min()} to {y.max()}"
            )
        return be.asarray(y.astype(np.int32).reshape(-1, 1))

    def _rows(self, n: int) -> Any:
        """Device index vector 0..n-1 (cached): in-order batches are gathered like shuffled ones."""
        if self._row_index is None or self._row_index.shape[0] < n:
            self._row_index = self.backend.asarray(np.arange(n, dtype=np.int64))
        return self._row_index[:n]

    def _batch(
        self, name: str, source: Any, rows: Any, scale: float, width: int, dtype: Any
    ) -> Any:
        out = self._buffers.get(name, (rows.shape[0], width), dtype)
        return self.backend.gather_rows(source, rows, out, scale)

    # ------------------------------------------------------------------ passes
    def _forward(self, x: Any, training: bool = False) -> Any:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def _backward(self, grad: Any) -> None:
        for i in range(len(self.layers) - 1, -1, -1):
            grad = self.layers[i].backward(grad, need_dx=i > 0)

    def _chunks(self, X: Any, scale: float, batch_size: int = EVAL_BATCH):
        """Yield ``(slice, input batch)`` over all rows, converted on the device."""
        n = X.shape[0]
        rows = self._rows(n)
        for start in range(0, n, batch_size):
            part = slice(start, min(start + batch_size, n))
            yield part, self._batch("x", X, rows[part], scale, self.sizes[0], self.dtype)

    def forward(self, X: Any) -> Any:
        """Outputs (logits, or ``output_activation`` values) for ``X``, on the model's device."""
        with self.backend.activated():
            X, scale = self._device_inputs(X)
            out = self.backend.empty((X.shape[0], self.sizes[-1]), self.dtype)
            for part, xb in self._chunks(X, scale):
                out[part] = self._forward(xb)
            return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities as a NumPy array: the softmax of the logits, or, for an
        inference model built with ``output_activation``, that activation's outputs."""
        if self.output_activation is None and self.sizes[-1] == 1:
            raise ValueError(_ONE_OUTPUT)
        with self.backend.activated():
            out = self.forward(X)
            if self.output_activation is None:
                out = self.backend.softmax(out, out=out)
            return self.backend.to_numpy(out)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels as a NumPy array."""
        with self.backend.activated():
            out = self.forward(X)
            if self.sizes[-1] == 1:  # one output: a threshold, not an argmax
                threshold = 0.5 if self.output_activation == "sigmoid" else 0.0
                return (self.backend.to_numpy(out)[:, 0] > threshold).astype(np.int64)
            return self.backend.to_numpy(self.backend.argmax(out))

    def _check_trainable(self) -> None:
        if self.output_activation is not None:
            raise ValueError(
                "softmax cross-entropy needs raw logits: build the model without output_activation"
            )
        if self.sizes[-1] == 1:
            raise ValueError(_ONE_OUTPUT)

    def _evaluate_device(self, X: Any, scale: float, y: Any) -> tuple[float, float]:
        totals = self.backend.zeros((2,), np.float64)
        for part, xb in self._chunks(X, scale):
            logits = self._forward(xb)
            self.backend.softmax_cross_entropy_accumulate(logits, y[part, 0], logits, totals)
        loss_sum, correct = self.backend.to_numpy(totals)
        return float(loss_sum / X.shape[0]), float(correct / X.shape[0])

    def evaluate(self, X: Any, y: Any) -> dict[str, float]:
        """Mean cross-entropy and accuracy on ``(X, y)``."""
        self._check_trainable()
        with self.backend.activated():
            X, scale = self._device_inputs(X)
            loss, accuracy = self._evaluate_device(X, scale, self._device_labels(y, X.shape[0]))
            return {"loss": loss, "accuracy": accuracy}

    def loss_and_gradients(self, X: Any, y: Any) -> tuple[float, dict[str, np.ndarray]]:
        """Mean softmax cross-entropy over all of ``(X, y)`` and its gradients (dropout off)."""
        self._check_trainable()
        with self.backend.activated():
            X, scale = self._device_inputs(X)
            labels = self._device_labels(y, X.shape[0])
            xb = self._batch("x", X, self._rows(X.shape[0]), scale, self.sizes[0], self.dtype)
            totals = self.backend.zeros((2,), np.float64)
            logits = self._forward(xb)
            grad = self.backend.softmax_cross_entropy_accumulate(
                logits, labels[:, 0], logits, totals
            )
            self._backward(grad)
            grads = {}
            for i, layer in enumerate(self.linears):
                grads[f"{i}.weight"] = self.backend.to_numpy(layer.grad_weight).copy()
                grads[f"{i}.bias"] = self.backend.to_numpy(layer.grad_bias).copy()
            return float(self.backend.to_numpy(totals)[0]) / X.shape[0], grads

    # ------------------------------------------------------------------ training
    def fit(
        self,
        X: Any,
        y: Any,
        epochs: int = 10,
        batch_size: int = 128,
        optimizer: Optimizer | None = None,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        initial_epoch: int = 0,
        callback: Callable[[dict[str, Any]], Any] | None = None,
        on_batch: Callable[[int], Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Train with mini-batches; returns one record per epoch.

        Each record holds ``epoch``, ``loss`` and ``accuracy`` (on the training batches),
        ``seconds`` (training time of the epoch), and ``val_loss``/``val_accuracy`` with
        ``validation_data``. Epoch ``e`` shuffles with a generator seeded by ``(seed, e)``,
        so training resumed at ``initial_epoch`` follows the same path as an unbroken run.
        ``callback`` gets each record; ``on_batch`` gets the batch index (host-side only).
        """
        self._check_trainable()
        epochs = _positive_int("epochs", epochs)
        batch_size = _positive_int("batch_size", batch_size)
        initial_epoch = _non_negative_int("initial_epoch", initial_epoch)
        if initial_epoch > epochs:
            raise ValueError(f"initial_epoch must be in [0, {epochs}], got {initial_epoch}")
        seed = self.seed if seed is None else _non_negative_int("seed", seed)
        _check_fit_options(optimizer, validation_data, shuffle, callback, on_batch)
        be = self.backend
        history: list[dict[str, Any]] = []
        with be.activated():
            X, scale = self._device_inputs(X)
            n = X.shape[0]
            labels = self._device_labels(y, n)
            if validation_data is not None:
                X_val, val_scale = self._device_inputs(validation_data[0])
                y_val = self._device_labels(validation_data[1], X_val.shape[0])
            # only now, with every argument checked: a failed call leaves the model as it was
            optimizer = optimizer or self.optimizer or Adam()
            optimizer.bind(self.backend, self.num_parameters, self.dtype, model=self)
            self.optimizer = optimizer
            dropouts = [layer for layer in self.layers if isinstance(layer, Dropout)]
            steps = TrainingSteps(
                self, X, labels, scale, batch_size, optimizer, record=not dropouts
            )
            for epoch in range(initial_epoch, epochs):
                start_time = time.perf_counter()
                # drawn on the host so every device sees the same order
                order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else None
                steps.start_epoch(order)
                if dropouts:
                    dropout_rng = be.random_generator([seed, epoch, 1])
                    for layer in dropouts:
                        layer.generator = dropout_rng
                for step, start in enumerate(range(0, n, batch_size)):
                    steps.run(min(batch_size, n - start))
                    optimizer.steps += 1  # the device's count moved with the step
                    if on_batch is not None:
                        on_batch(step)
                loss_sum, correct = be.to_numpy(steps.totals)  # the one read of the epoch
                record: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "loss": float(loss_sum / n),
                    "accuracy": float(correct / n),
                    "seconds": time.perf_counter() - start_time,
                }
                if not math.isfinite(record["loss"]):
                    raise TrainingDiverged(epoch + 1, record["loss"])
                if not be.all_finite(self.params):  # the last step's update is not in the loss
                    raise TrainingDiverged(epoch + 1, math.nan, what="a weight")
                if validation_data is not None:
                    record["val_loss"], record["val_accuracy"] = self._evaluate_device(
                        X_val, val_scale, y_val
                    )
                history.append(record)
                if callback is not None:
                    callback(record)
        return history


_ONE_OUTPUT = (
    "a softmax over one output is always 1: use two outputs for two classes (or, for an "
    "inference model, output_activation='sigmoid')"
)


def _check_sizes(sizes: Sequence[int]) -> list[int]:
    ordered = isinstance(sizes, (list, tuple, np.ndarray))  # a set has no order to keep
    if not ordered or any(isinstance(s, (bool, np.bool_)) for s in sizes):
        raise ValueError(f"layer sizes must be a list of integers, got {sizes!r}")
    try:
        values = [int(s) for s in sizes]
    except (TypeError, ValueError):
        raise ValueError(f"layer sizes must be integers, got {sizes!r}") from None
    if len(values) < 2 or any(v <= 0 for v in values) or list(sizes) != values:
        raise ValueError(f"need at least two positive integer layer sizes, got {list(sizes)!r}")
    parameters = sum(a * b + b for a, b in itertools.pairwise(values))
    if parameters * 8 > sys.maxsize:  # float64 at initialisation: no array can be that big
        raise ValueError(
            f"layer sizes {values} make {parameters:,} parameters: far more than any "
            "memory holds; use smaller layers"
        )
    return values


def _init_scheme(init: str, activation: str) -> str:
    if init == "auto":
        return "he" if activation == "relu" else "xavier"
    if init not in ("he", "xavier"):
        raise ValueError(f"unknown init {init!r}: choose auto, he or xavier")
    return init


def _model_dtype(dtype: Any) -> np.dtype:
    try:  # np.dtype(None) is float64: None is no answer
        name = None if dtype is None else np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}: choose float32 or float64")
    return np.dtype(name)


def _whole_number(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``; a bool, a float or a string is a mistake."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}")
    return int(value)


def _non_negative_int(name: str, value: Any) -> int:
    return _whole_number(name, value, 0)


def _check_fit_options(
    optimizer: Any, validation_data: Any, shuffle: Any, callback: Any, on_batch: Any
) -> None:
    """``fit``'s other arguments, before any work: a wrong one fails now, not an epoch in."""
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an optimizer such as Adam(lr=1e-3), got {optimizer!r}")
    if validation_data is not None and not (
        isinstance(validation_data, (tuple, list)) and len(validation_data) == 2
    ):
        raise ValueError("validation_data must be a pair (X_val, y_val)")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
    for name, hook in (("callback", callback), ("on_batch", on_batch)):
        if hook is not None and not callable(hook):
            raise TypeError(f"{name} must be a function, got {hook!r}")


def _positive_int(name: str, value: Any) -> int:
    return _whole_number(name, value, 1)
