"""The multilayer perceptron: its layers, one flat parameter buffer, the forward and backward
passes, and inference. Training lives in ``mlp/training.py``; the file format in
``mlp/checkpoint.py``.

Threads: inference (``forward``, ``predict``, ``predict_proba``, ``evaluate``) computes with
layer replicas and buffers of its own call (the backend's work buffers are per thread too),
so any number of threads may call it at once on one model, each taking the backend and the
layers together (``_snapshot``). The calls that change the model (``fit``,
``loss_and_gradients``, ``to``, ``load_state_dict``) take turns: one made while another runs
in another thread raises ``ModelBusy`` (a ``fit`` callback may restore weights). Inference
during a ``fit`` in another thread reads the weights as they change; during ``to`` or
``load_state_dict`` (a hot reload), the old ones or the new, never half of each.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from backends import Backend, get_backend
from backends.buffers import BufferCache
from backends.errors import BackendUnavailable

from . import checks, distributed, training
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .errors import CheckpointError, DataError, InvalidArgument, ModelBusy
from .layers import INITIALIZERS, Dropout, Layer, Linear
from .losses import loss_for
from .optim import Optimizer
from .schedules import Schedule

#: Rows per chunk when predicting or evaluating: large enough for BLAS, small enough for memory.
EVAL_BATCH = 4096
#: uint8 inputs are pixel intensities: scaled by this to [0, 1] as they are loaded.
UINT8_SCALE = 1.0 / 255.0


class MLP:
    """A multilayer perceptron on NumPy or CuPy, a classifier or a regressor by its ``loss``.

    ``sizes`` lists the layer widths, input first: ``MLP([784, 512, 256, 10])``.
    Hidden layers use ``activation``; the last layer outputs raw values unless
    ``output_activation`` is set (then the model is for inference, as in the tutorial).
    ``loss="cross_entropy"`` (the default) trains on integer class labels: a softmax over
    two or more outputs, a sigmoid over one (two classes); ``loss="squared_error"`` on float
    targets, a column per output (``mlp/losses.py``).
    Inputs may be float arrays, or uint8 images which are scaled to [0, 1] on the device, of
    NumPy or of any library that speaks DLPack (PyTorch, JAX, CuPy): one already on the
    model's device is used in place, not copied (``Backend.adopt``).
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
        loss: str = "cross_entropy",
    ) -> None:
        self.sizes = checks.layer_sizes(sizes)
        self.activation = checks.activation(activation)
        self.output_activation = (
            None if output_activation is None else checks.activation(output_activation)
        )
        self.dtype = checks.model_dtype(dtype)
        self.seed = checks.seed("seed", seed)
        self.dropout = checks.fraction("dropout probability", dropout)
        self.init = checks.init_scheme(init, self.activation)
        self.loss = checks.loss(loss)
        self.loss_function = loss_for(self.loss, self.sizes[-1])
        self.optimizer: Optimizer | None = None
        #: the schedule a ``fit`` made of a name (``"step"``): the next ``fit`` given that
        #: name goes on with it, as with the optimizer, rather than lowering the rate again
        self.schedule: Schedule | None = None
        #: epochs ``fit`` has trained (a checkpoint's epoch when loaded): the next ``fit``
        #: goes on from here, its shuffles and records numbered as if never interrupted
        self.epochs_trained = 0
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

    def _bind(self, backend: Backend, host_params: np.ndarray, grads: Any = None) -> None:
        """Put a new flat parameter buffer on ``backend`` (beside ``grads``, else zeros) and
        point every layer into it, under the lock inference takes its snapshot with: a call
        computes with the old buffer or the new one, never half of each."""
        params = backend.asarray(host_params, dtype=self.dtype)
        if grads is None:
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
            grads = backend.asarray(self.backend.to_numpy(self.grads))
            self._bind(backend, self.backend.to_numpy(self.params), grads)
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
            try:
                value = self.backend.adopt_on_host(state[key])  # as inputs are: torch's too
            except ValueError:  # a ragged list
                raise InvalidArgument(
                    f"{key} is not an array of numbers: {state[key]!r:.60}"
                ) from None
            if value.shape != shape:
                raise InvalidArgument(f"{key} has shape {value.shape}, expected {shape}")
            if value.dtype.kind not in "fiu":
                raise InvalidArgument(f"{key} must hold real numbers, got dtype {value.dtype}")
            problem = checks.unrepresentable(value, self.dtype)  # 1e39 is inf in float32
            if problem:
                raise InvalidArgument(f"{key} holds {problem}")
            values[key] = value.astype(self.dtype)
        layout = [f"{i}.{part}" for i in range(len(self.linears)) for part in ("weight", "bias")]
        flat = np.concatenate([values[key].ravel() for key in layout])  # the buffer's order
        in_fit = self._changer == threading.get_ident()
        with self.changing("load_state_dict", within_fit=True), self.backend.activated():
            if in_fit:  # a fit callback: the step fit recorded works on this very buffer
                self.params[...] = self.backend.asarray(flat, dtype=self.dtype)
            else:  # a new buffer, swapped in whole: inference meanwhile reads old or new
                self._bind(self.backend, flat, self.grads)

    def config(self) -> dict[str, Any]:
        """What it takes to build the same model again: ``MLP(**model.config())`` (the
        matmul precision is the backend's: pass it as ``device``)."""
        return {
            "sizes": list(self.sizes),
            "activation": self.activation,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "dropout": self.dropout,
            "init": self.init,
            "output_activation": self.output_activation,
            "loss": self.loss,
        }

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Host arrays only, so a model pickled on a GPU unpickles on a machine without."""
        return {
            "config": self.config(),
            "device": self.device,
            "precision": self.backend.precision,
            "params": self.backend.to_numpy(self.params).copy(),
            "optimizer": self.optimizer,  # pickles its state on the host (Optimizer)
            "schedule": self.schedule,
            "epochs_trained": self.epochs_trained,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuilt on the device it was pickled on, or on the CPU (with a warning) where that
        device is not available here."""
        try:
            backend = get_backend(state["device"], precision=state["precision"])
        except BackendUnavailable as exc:
            warnings.warn(
                f"this model was pickled on {state['device']}, which is not available here "
                f"({exc}): it is loaded on the CPU",
                RuntimeWarning,
                stacklevel=2,
            )
            backend = get_backend("cpu", precision=state["precision"])
        self.__init__(**state["config"], device=backend)
        with backend.activated():
            self.params[...] = backend.asarray(state["params"], dtype=self.dtype)
        self.epochs_trained = state["epochs_trained"]
        self.schedule = state.get("schedule")  # absent from a pickle of an older mlp
        optimizer = state["optimizer"]
        if optimizer is not None:
            optimizer.bind(backend, self.num_parameters, self.dtype, model=self)
            self.optimizer = optimizer

    def __copy__(self) -> MLP:
        """A deep copy: a copy of the state ``__getstate__`` gives would share the optimizer
        (which refuses a second model) and the schedule with this model."""
        return copy.deepcopy(self)

    def save(self, path: Any, **kwargs: Any) -> Any:
        """Write an atomic ``.npz`` checkpoint: weights, config, optimizer state (the format
        and the keyword arguments: ``mlp.checkpoint.save_checkpoint``)."""
        return save_checkpoint(path, self, **kwargs)

    def to_onnx(self, path: Any, classes: Any = None, *, uint8_input: bool = False) -> Any:
        """Write the model as an ONNX graph that outputs what ``predict_proba`` (for a
        regression, ``predict``) returns; ``mlp.export.to_onnx`` says what it holds."""
        from .export import to_onnx  # onnx is imported only when exporting

        return to_onnx(self, path, classes, uint8_input=uint8_input)

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
        """Inputs checked and put on ``backend``'s device (by default the model's) once per
        call, through ``Backend.adopt``: an array already there is used in place (a CPU
        tensor on the CPU, a CUDA tensor on its GPU), host data is uploaded once. uint8 stays
        compact (scaled per batch); other dtypes become ``dtype``, a copy where they differ.
        Returns the device array and the scale its batches take."""
        be = self.backend if backend is None else backend
        X = checks.as_table(X, be)
        checks.inputs(X, self.sizes[0])
        if X.dtype == np.uint8:
            return be.asarray(X), UINT8_SCALE
        with np.errstate(over="ignore"):
            converted = be.asarray(X, dtype=self.dtype)
        if not be.all_finite(converted):  # once per call, not per batch
            raise DataError(f"inputs hold {checks.unrepresentable(X, self.dtype)}")
        return converted, 1.0

    def device_targets(self, y: Any, rows: int, backend: Backend | None = None) -> Any:
        """Targets checked against the loss and the output layer, on the device: class labels
        as an (n, 1) int32 column, regression targets as (n, outputs) of ``dtype``. They are
        checked on the host (``Backend.adopt_on_host``: a copy only from a GPU)."""
        be = self.backend if backend is None else backend
        try:
            y = be.adopt_on_host(y)
        except ValueError:  # a ragged list
            raise DataError(f"targets are not numbers, one per row: got {y!r:.60}") from None
        return be.asarray(self.loss_function.host_targets(y, rows, self.dtype))

    def device_weights(
        self, weights: Any, rows: int, backend: Backend | None = None, held: int = 0
    ) -> Any:
        """Sample weights (``None``: every row counts once) as an (n, 1) column on the device
        (``held``: how many of the last rows a ``validation_split`` holds out)."""
        if weights is None:
            return None
        be = self.backend if backend is None else backend
        try:
            weights = be.adopt_on_host(weights)  # checked on the host, as targets are
        except ValueError:  # a ragged list
            raise DataError(f"sample weights must be numbers, got {weights!r:.60}") from None
        return be.asarray(checks.sample_weights(weights, rows, self.dtype, held).reshape(-1, 1))

    def check_trainable(self) -> None:
        if self.output_activation is not None:
            raise InvalidArgument(
                f"{self.loss} trains raw outputs: build the model without output_activation"
            )

    # ------------------------------------------------------------------ the passes
    def forward_pass(self, x: Any, training: bool = False) -> Any:
        """The outputs for a batch ``x`` already on the device, through the model's own layers
        (their buffers hold what the backward pass needs): the training step's forward."""
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward_pass(self, grad: Any, ready: Callable[[Any], Any] | None = None) -> None:
        """Gradients of the last forward pass into ``self.grads``, from dL/d(outputs);
        ``ready`` gets each layer's slice of them as soon as it is complete, last layer first
        (a data-parallel step starts summing it across processes)."""
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            grad = layer.backward(grad, need_dx=i > 0)
            if ready is not None and isinstance(layer, Linear):
                ready(layer.grads)

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
        """Outputs (logits, or ``output_activation`` values) for ``X``, an (n, outputs) array
        of ``dtype`` on the model's device: a ``numpy.ndarray`` on the CPU, a
        ``cupy.ndarray`` on CUDA, made for this call alone, so the caller owns it (no later
        call writes into it).

        Both speak DLPack, so ``torch.from_dlpack(model.forward(x))`` (or JAX's, or CuPy's
        ``from_dlpack``) is a tensor sharing its memory, on the same device, with no copy.
        """
        return self._outputs(X)[1]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities as a NumPy array on the host (``torch.from_numpy`` shares
        it), a column per class (two for one sigmoid output), or, for an inference model
        built with ``output_activation``, that activation's outputs. A regression model has
        none, with or without ``output_activation``."""
        if not self.loss_function.classifies:
            raise InvalidArgument("a squared_error model has no class probabilities: use predict")
        be, out = self._outputs(X)
        with be.activated():
            if self.output_activation is not None:
                return be.to_numpy(out)
            return self.loss_function.probabilities(be, out)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels, (n,), or for regression values, (n, outputs) (a column for one
        output), as a NumPy array on the host: a regression's values pass through its
        ``output_activation``, a classifier's labels come from it."""
        be, out = self._outputs(X)
        with be.activated():
            if self.output_activation is None or not self.loss_function.classifies:
                return self.loss_function.predictions(be, out)
            if self.sizes[-1] == 1:  # one output: a threshold, not an argmax
                threshold = 0.5 if self.output_activation == "sigmoid" else 0.0
                return (be.to_numpy(out)[:, 0] > threshold).astype(np.int64)
            return be.to_numpy(be.argmax(out))

    def evaluate_on_device(
        self,
        X: Any,
        scale: float,
        targets: Any,
        weights: Any = None,
        view: tuple[Backend, list[Layer]] | None = None,
        communicator: Any = None,
    ) -> dict[str, float]:
        """The loss (and accuracy, for a classifier) of inputs and targets already on the
        device, weighted by ``weights`` (an (n, 1) column) where given. With a
        ``communicator`` (``mlp.distributed``), each process measures its share of the rows
        and the totals are summed across processes."""
        view = self._snapshot() if view is None else view
        be = view[0]
        totals = be.zeros((2,), np.float64)
        total = X.shape[0]
        weight_sum = None
        if weights is not None:
            weight_sum = be.sum_rows(weights)
            total = float(be.to_numpy(weight_sum)[0])
        if communicator is not None:
            mine = slice(*communicator.share(X.shape[0]))
            X, targets = X[mine], targets[mine]
            weights = None if weights is None else weights[mine]

        def accumulate(rows: slice, outputs: Any) -> None:
            w = None if weights is None else weights[rows]
            self.loss_function.accumulate(be, outputs, targets[rows], totals, w, weight_sum)

        self._inference(view, X, scale, accumulate)
        loss_sum, hits = be.to_numpy(totals)
        if communicator is not None:
            loss_sum, hits = communicator.sum([loss_sum, hits])
        return self.loss_function.record(float(loss_sum), float(hits), total)

    def evaluate(
        self, X: Any, y: Any, sample_weight: Any = None, communicator: Any = None
    ) -> dict[str, float]:
        """The mean loss on ``(X, y)`` (weighted by ``sample_weight``), and a classifier's
        accuracy: ``{"loss": ..., "accuracy": ...}``; with a ``communicator``, measured in
        shares by every process and the same on each."""
        self.check_trainable()
        view = self._snapshot()
        be = view[0]
        with be.activated():
            X, scale = self.device_inputs(X, be)
            targets = self.device_targets(y, X.shape[0], be)
            weights = self.device_weights(sample_weight, X.shape[0], be)
            if communicator is not None:
                distributed.agree_on_data(communicator, self, X, targets, weights)
            return self.evaluate_on_device(X, scale, targets, weights, view, communicator)

    def loss_and_gradients(
        self, X: Any, y: Any, sample_weight: Any = None, communicator: Any = None
    ) -> tuple[float, dict[str, np.ndarray]]:
        """The mean loss over all of ``(X, y)`` (weighted by ``sample_weight``) and its
        gradients, dropout off: the training step's, for one batch of every row. With a
        ``communicator``, each process computes its share of the rows and the gradients are
        summed across processes, as a data-parallel step does."""
        self.check_trainable()
        be = self.backend
        with self.changing("loss_and_gradients", within_fit=True), be.activated():
            X, scale = self.device_inputs(X)
            n = X.shape[0]
            targets = self.device_targets(y, n)
            weights = self.device_weights(sample_weight, n)
            if communicator is not None:
                distributed.agree_on_data(communicator, self, X, targets, weights)
            step = training.TrainingStep(
                self, X, targets, weights, scale, n, None, n, record=False,
                communicator=communicator,
            )  # fmt: skip
            step.start_epoch(None)
            step.gradients(n, training=False)
            grads = {}
            for i, layer in enumerate(self.linears):
                grads[f"{i}.weight"] = be.to_numpy(layer.grad_weight).copy()
                grads[f"{i}.bias"] = be.to_numpy(layer.grad_bias).copy()
            return float(step.summed_totals()[0]) / step.weight(), grads

    # ------------------------------------------------------------------ training
    def fit(self, X: Any, y: Any, epochs: int = 10, **options: Any) -> list[dict[str, Any]]:
        """Train ``epochs`` more epochs with mini-batches; returns one record per epoch.

        Each record holds ``epoch`` (counted over every ``fit`` of this model), ``loss``
        (and a classifier's ``accuracy``) on the training batches, ``seconds``, and
        ``val_loss`` (``val_accuracy``) with validation. Epoch ``e`` shuffles with a
        generator seeded by ``(seed, e)``, so two ``fit(epochs=1)`` train as one
        ``fit(epochs=2)``, and a run resumed at ``initial_epoch`` as an unbroken one.

        Options (``mlp/training.py``): ``batch_size=128``, ``optimizer`` (an ``Optimizer``
        or a name: ``"adam"``, the default, ``"sgd"``, ``"momentum"``, ``"adamw"``),
        ``validation_data=(X, y[, sample_weight])`` or ``validation_split`` (the last
        fraction of the rows), ``shuffle=True``, ``seed``, ``initial_epoch``,
        ``sample_weight``, ``lr_schedule`` (``"step"``, ``"cosine"``, ``"plateau"``, a
        ``mlp.schedules.Schedule`` or a function ``(epoch, lr) -> lr``), ``early_stopping``
        (``True`` or an ``mlp.stopping.EarlyStopping``), ``verbose`` (a progress bar and a
        line per epoch), ``callback`` (gets each record before a schedule and
        ``early_stopping`` judge it, so a metric it adds, such as ``val_r2``, can be
        watched), ``on_batch`` (the batch index).
        """
        with self.changing("fit"):
            return training.fit(self, X, y, epochs=epochs, **options)
