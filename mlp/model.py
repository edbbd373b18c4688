"""The multilayer perceptron: its layers, one flat parameter buffer, the forward and backward
passes, and inference. Training lives in ``mlp/training.py``; the file format in
``mlp/checkpoint.py``.

Threads: inference (``forward``, ``predict``, ``predict_proba``, ``evaluate``) computes with
layer replicas and buffers of its own call (the backend's work buffers are per thread too),
so any number of threads may call it at once on one model, each taking the backend and the
layers together (``_snapshot``). The calls that change the model (``fit``,
``loss_and_gradients``, ``to``, ``load_state_dict``) take turns: one made while another runs
in another thread raises ``ModelBusy`` (a ``fit`` callback may restore weights). Inference
during a ``fit`` in another thread reads the weights as they change.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from backends import Backend, get_backend
from backends.buffers import BufferCache

from . import checks, training
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .errors import CheckpointError, DataError, InvalidArgument, ModelBusy
from .layers import INITIALIZERS, Dropout, Layer, Linear
from .optim import Optimizer

#: Rows per chunk when predicting or evaluating: large enough for BLAS, small enough for memory.
EVAL_BATCH = 4096
#: uint8 inputs are pixel intensities: scaled by this to [0, 1] as they are loaded.
UINT8_SCALE = 1.0 / 255.0

_ONE_OUTPUT = (
    "a softmax over one output is always 1: use two outputs for two classes (or, for an "
    "inference model, output_activation='sigmoid')"
)


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
        self.sizes = checks.layer_sizes(sizes)
        self.activation = checks.activation(activation)
        self.output_activation = (
            None if output_activation is None else checks.activation(output_activation)
        )
        self.dtype = checks.model_dtype(dtype)
        self.seed = checks.whole_number("seed", seed)
        self.dropout = checks.fraction("dropout probability", dropout)
        self.init = checks.init_scheme(init, self.activation)
        self.optimizer: Optimizer | None = None
        self._changing_lock = threading.Lock()
        self._changer: int | None = None  # the thread holding it
        self._binding = threading.Lock()  # inference snapshots the backend and layers under it

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
            weight = INITIALIZERS[self.init](rng, layer.in_features, layer.out_features)
            flat[offset : offset + n_weight] = weight.ravel()
            offset += layer.size  # biases start at zero
        return flat

    def _bind(self, backend: Backend, host_params: np.ndarray) -> None:
        """Put the flat parameter buffer on ``backend`` and point every layer into it (under
        the lock inference takes its snapshot with)."""
        params = backend.asarray(host_params, dtype=self.dtype)
        grads = backend.zeros((self.num_parameters,), self.dtype)
        with self._binding:
            self.backend, self.params, self.grads = backend, params, grads
            for layer in self.layers:
                layer.bind(backend)
            offset = 0
            for layer in self.linears:
                end = offset + layer.size
                layer.attach(params[offset:end], grads[offset:end])
                offset = end

    @property
    def device(self) -> str:
        return self.backend.device

    @contextlib.contextmanager
    def changing(self, call: str, within_fit: bool = False) -> Iterator[None]:
        """Hold the model for a call that changes it; one made meanwhile from another thread
        raises ``ModelBusy``. ``within_fit``: the call may also run inside the holder's own
        call, from its thread (a ``fit`` callback restoring the best weights, say)."""
        if self._changer == threading.get_ident():
            if not within_fit:
                raise ModelBusy(f"{call} cannot run inside this model's own fit (a callback)")
            yield
            return
        if not self._changing_lock.acquire(blocking=False):
            raise ModelBusy(
                f"{call}: another thread is changing this model (fit, to, load_state_dict or "
                "loss_and_gradients): give each thread its own model, or wait for that call"
            )
        self._changer = threading.get_ident()
        try:
            yield
        finally:
            self._changer = None
            self._changing_lock.release()

    def to(self, device: str | Backend) -> MLP:
        """Move parameters, gradients and optimizer state to ``device``; returns ``self``.

        A device name keeps the matmul precision (``bf16`` stays ``bf16``); pass a backend
        (``get_backend(device, precision=...)``) to change it.
        """
        keep = None if isinstance(device, Backend) else self.backend.precision
        backend = get_backend(device, precision=keep)
        with self.changing("to"), backend.activated():  # writes land on the new device
            grads = self.backend.to_numpy(self.grads)
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
            raise InvalidArgument(
                f"state dict mismatch: missing {missing}, unexpected {unexpected}"
            )
        values = {}
        for key, shape in expected.items():
            value = np.asarray(
                state[key]
                if not self.backend.is_array(state[key])
                else self.backend.to_numpy(state[key])
            )
            if value.shape != shape:
                raise InvalidArgument(f"{key} has shape {value.shape}, expected {shape}")
            if value.dtype.kind not in "fiu":
                raise InvalidArgument(f"{key} must hold real numbers, got dtype {value.dtype}")
            with np.errstate(over="ignore"):
                value = value.astype(self.dtype)  # checked as stored: 1e39 is inf in float32
            if not np.all(np.isfinite(value)):
                raise InvalidArgument(f"{key} contains NaN or infinity (as {self.dtype})")
            values[key] = value
        with self.changing("load_state_dict", within_fit=True), self.backend.activated():
            for i, layer in enumerate(self.linears):
                layer.weight[...] = self.backend.asarray(values[f"{i}.weight"], dtype=self.dtype)
                layer.bias[...] = self.backend.asarray(values[f"{i}.bias"], dtype=self.dtype)

    def config(self) -> dict[str, Any]:
        """What it takes to build the same model again: ``MLP(**model.config())``."""
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
        """Write an atomic ``.npz`` checkpoint: weights, config, optimizer state (the format
        and the keyword arguments: ``mlp.checkpoint.save_checkpoint``)."""
        return save_checkpoint(path, self, **kwargs)

    @classmethod
    def load(cls, path: Any, device: str | Backend = "cpu") -> MLP:
        """Rebuild a saved model on ``device`` (any device, whatever it was saved from), with
        its optimizer and that optimizer's state."""
        return cls.from_checkpoint(load_checkpoint(path), device)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, device: str | Backend = "cpu") -> MLP:
        """The model a checkpoint holds, on ``device``, its optimizer restored."""
        backend = get_backend(device)  # an unavailable device is its own, clearer error
        try:
            model = cls(**checkpoint.model_settings, device=backend)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(checkpoint.path, f"invalid model configuration ({exc})") from None
        checkpoint.restore(model)
        return model

    def __repr__(self) -> str:
        widths = "-".join(str(s) for s in self.sizes)
        return (
            f"MLP({widths}, activation={self.activation!r}, device={self.device!r}, "
            f"dtype={self.dtype.name!r}, parameters={self.num_parameters})"
        )

    # ------------------------------------------------------------------ data entering the model
    def device_inputs(self, X: Any, backend: Backend | None = None) -> tuple[Any, float]:
        """Inputs checked and uploaded once (to ``backend``, by default the model's): uint8
        stays compact (scaled per batch), floats become ``dtype``. Returns the device array
        and the scale its batches take."""
        be = self.backend if backend is None else backend
        if not be.is_array(X):
            if type(X).__module__.startswith("cupy"):
                be.check_device(X)  # a GPU array handed to a CPU model: say how to fix it
            X = checks.as_table(X)
        checks.inputs(X, self.sizes[0])
        if X.dtype == np.uint8:
            return be.asarray(X), UINT8_SCALE
        with np.errstate(over="ignore"):
            X = be.asarray(X, dtype=self.dtype)
        if not be.all_finite(X):  # once per call, not per batch
            raise DataError(f"inputs contain NaN or infinity (as {self.dtype})")
        return X, 1.0

    def device_labels(self, y: Any, rows: int, backend: Backend | None = None) -> Any:
        """Labels as an (n, 1) int32 column on the device, checked against the output layer."""
        be = self.backend if backend is None else backend
        y = be.to_numpy(y) if be.is_array(y) else np.asarray(y)
        return be.asarray(checks.class_labels(y, rows, self.sizes[-1]))

    def check_trainable(self) -> None:
        if self.output_activation is not None:
            raise InvalidArgument(
                "softmax cross-entropy needs raw logits: build the model without output_activation"
            )
        if self.sizes[-1] == 1:
            raise InvalidArgument(_ONE_OUTPUT)

    # ------------------------------------------------------------------ the passes
    def forward_pass(self, x: Any, training: bool = False) -> Any:
        """The outputs for a batch ``x`` already on the device, through the model's own layers
        (their buffers hold what the backward pass needs): the training step's forward."""
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward_pass(self, grad: Any) -> None:
        """Gradients of the last forward pass into ``self.grads``, from dL/d(outputs)."""
        for i in range(len(self.layers) - 1, -1, -1):
            grad = self.layers[i].backward(grad, need_dx=i > 0)

    def _snapshot(self) -> tuple[Backend, list[Layer]]:
        """The backend and layer replicas one inference call computes with, taken together
        (``to`` swaps them under the same lock): a call never mixes two devices."""
        with self._binding:
            return self.backend, [layer.replica() for layer in self.layers]

    def _inference(
        self, view: tuple[Backend, list[Layer]], X: Any, scale: float, each: Callable
    ) -> None:
        """Call ``each(rows, outputs)`` chunk by chunk over ``X`` (on the device), computed by
        the snapshot's layer replicas into buffers of this call alone: concurrent callers
        share nothing."""
        be, layers = view
        buffers = BufferCache(be)
        n = X.shape[0]
        order = be.asarray(np.arange(n, dtype=np.int64))
        for start in range(0, n, EVAL_BATCH):
            rows = slice(start, min(start + EVAL_BATCH, n))
            x = buffers.get("x", (rows.stop - start, self.sizes[0]), self.dtype)
            x = be.gather_rows(X, order[rows], x, scale)
            for layer in layers:
                x = layer.forward(x)
            each(rows, x)

    def _outputs(self, X: Any) -> tuple[Backend, Any]:
        """The snapshot's backend and the outputs for ``X`` on its device."""
        view = self._snapshot()
        be = view[0]
        with be.activated():
            X, scale = self.device_inputs(X, be)
            out = be.empty((X.shape[0], self.sizes[-1]), self.dtype)

            def keep(rows: slice, outputs: Any) -> None:
                out[rows] = outputs

            self._inference(view, X, scale, keep)
        return be, out

    def forward(self, X: Any) -> Any:
        """Outputs (logits, or ``output_activation`` values) for ``X``, on the model's device."""
        return self._outputs(X)[1]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities as a NumPy array: the softmax of the logits, or, for an
        inference model built with ``output_activation``, that activation's outputs."""
        if self.output_activation is None and self.sizes[-1] == 1:
            raise InvalidArgument(_ONE_OUTPUT)
        be, out = self._outputs(X)
        with be.activated():
            if self.output_activation is None:
                out = be.softmax(out, out=out)
            return be.to_numpy(out)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels as a NumPy array."""
        be, out = self._outputs(X)
        with be.activated():
            if self.sizes[-1] == 1:  # one output: a threshold, not an argmax
                threshold = 0.5 if self.output_activation == "sigmoid" else 0.0
                return (be.to_numpy(out)[:, 0] > threshold).astype(np.int64)
            return be.to_numpy(be.argmax(out))

    def evaluate_on_device(
        self, X: Any, scale: float, labels: Any, view: tuple[Backend, list[Layer]] | None = None
    ) -> tuple[float, float]:
        """Mean cross-entropy and accuracy of inputs and labels already on the device."""
        view = self._snapshot() if view is None else view
        be = view[0]
        totals = be.zeros((2,), np.float64)

        def accumulate(rows: slice, logits: Any) -> None:
            be.softmax_cross_entropy_accumulate(logits, labels[rows, 0], logits, totals)

        self._inference(view, X, scale, accumulate)
        loss_sum, correct = be.to_numpy(totals)
        return float(loss_sum / X.shape[0]), float(correct / X.shape[0])

    def evaluate(self, X: Any, y: Any) -> dict[str, float]:
        """Mean cross-entropy and accuracy on ``(X, y)``."""
        self.check_trainable()
        view = self._snapshot()
        be = view[0]
        with be.activated():
            X, scale = self.device_inputs(X, be)
            labels = self.device_labels(y, X.shape[0], be)
            loss, accuracy = self.evaluate_on_device(X, scale, labels, view)
            return {"loss": loss, "accuracy": accuracy}

    def loss_and_gradients(self, X: Any, y: Any) -> tuple[float, dict[str, np.ndarray]]:
        """Mean softmax cross-entropy over all of ``(X, y)`` and its gradients (dropout off)."""
        self.check_trainable()
        be = self.backend
        with self.changing("loss_and_gradients", within_fit=True), be.activated():
            X, scale = self.device_inputs(X)
            labels = self.device_labels(y, X.shape[0])
            order = be.asarray(np.arange(X.shape[0], dtype=np.int64))
            x = be.gather_rows(X, order, be.empty((X.shape[0], self.sizes[0]), self.dtype), scale)
            totals = be.zeros((2,), np.float64)
            logits = self.forward_pass(x)
            grad = be.softmax_cross_entropy_accumulate(logits, labels[:, 0], logits, totals)
            self.backward_pass(grad)
            grads = {}
            for i, layer in enumerate(self.linears):
                grads[f"{i}.weight"] = be.to_numpy(layer.grad_weight).copy()
                grads[f"{i}.bias"] = be.to_numpy(layer.grad_bias).copy()
            return float(be.to_numpy(totals)[0]) / X.shape[0], grads

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
        """Train with mini-batches; returns one record per epoch (``mlp/training.py``).

        Each record holds ``epoch``, ``loss`` and ``accuracy`` (on the training batches),
        ``seconds`` (training time of the epoch), and ``val_loss``/``val_accuracy`` with
        ``validation_data``. Epoch ``e`` shuffles with a generator seeded by ``(seed, e)``,
        so training resumed at ``initial_epoch`` follows the same path as an unbroken run.
        ``callback`` gets each record; ``on_batch`` gets the batch index (host-side only).
        """
        with self.changing("fit"):
            return training.fit(
                self,
                X,
                y,
                epochs=epochs,
                batch_size=batch_size,
                optimizer=optimizer,
                validation_data=validation_data,
                shuffle=shuffle,
                seed=seed,
                initial_epoch=initial_epoch,
                callback=callback,
                on_batch=on_batch,
            )
