"""Training: the epoch loop, the row order on the device, and the step, recorded once.

The training step never allocates, never copies between host and device, and never waits
for the device: the data is uploaded once per fit, batches are gathered on the device into
preallocated buffers, and loss and accuracy are summed on the device and read once per epoch.

A small MLP's step on a GPU is bound by the host: each of its twenty-odd ops costs a launch
(5-20 µs of Python and driver work) while the GPU does a few µs of arithmetic. So whatever
changes from one step to the next lives on the device: the batch's first position in the
epoch's row order, and the optimizer's update count, each advanced by the step itself. The
same step can then be recorded as a CUDA graph (``Backend.capture``) and replayed with one
launch per batch. On the CPU, or where recording is refused, it runs op by op, unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.buffers import BufferCache, DeviceCounter

from . import checks
from .errors import TrainingDiverged
from .layers import Dropout
from .optim import Adam, Optimizer, make_optimizer
from .progress import Verbose
from .schedules import make_schedule
from .stopping import EarlyStopping

if TYPE_CHECKING:
    from .model import MLP


def fit(
    model: MLP,
    X: Any,
    y: Any,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: Optimizer | str | None = None,
    validation_data: tuple | None = None,
    validation_split: float = 0.0,
    shuffle: bool = True,
    seed: int | None = None,
    initial_epoch: int | None = None,
    sample_weight: Any = None,
    lr_schedule: Any = None,
    early_stopping: EarlyStopping | bool | None = None,
    verbose: bool = False,
    callback: Callable[[dict[str, Any]], Any] | None = None,
    on_batch: Callable[[int], Any] | None = None,
) -> list[dict[str, Any]]:
    """``MLP.fit``: every argument and the data are checked before the model changes.

    Without ``initial_epoch``, ``epochs`` more epochs after the ``model.epochs_trained``
    already done; with it (a resume, as in Keras), epochs ``initial_epoch + 1`` to ``epochs``.
    """
    model.check_trainable()
    epochs = checks.positive_int("epochs", epochs)
    batch_size = checks.positive_int("batch_size", batch_size)
    if initial_epoch is None:
        initial_epoch, epochs = model.epochs_trained, model.epochs_trained + epochs
    initial_epoch = checks.whole_number("initial_epoch", initial_epoch)
    if initial_epoch > epochs:
        raise checks.InvalidArgument(f"initial_epoch must be in [0, {epochs}], got {initial_epoch}")
    seed = model.seed if seed is None else checks.whole_number("seed", seed)
    optimizer = _optimizer(optimizer)
    checks.fit_options(validation_data, shuffle, callback, on_batch)
    split = checks.fraction("validation_split", validation_split)
    if split and validation_data is not None:
        raise checks.InvalidArgument("give validation_data or validation_split, not both")
    schedule = make_schedule(lr_schedule)
    stopping = EarlyStopping() if early_stopping is True else early_stopping or None
    if stopping is not None and not isinstance(stopping, EarlyStopping):
        raise TypeError(f"early_stopping must be True or an EarlyStopping, got {early_stopping!r}")
    be = model.backend
    history: list[dict[str, Any]] = []
    with be.activated():
        X, scale = model.device_inputs(X)
        n = X.shape[0]
        targets = model.device_targets(y, n)
        weights = model.device_weights(sample_weight, n)
        validation = None
        if split:
            n, validation = _split(held_out(n, split), X, scale, targets, weights)
        elif validation_data is not None:
            validation = _validation(model, validation_data)
        # only now, with every argument checked: a failed call leaves the model as it was
        optimizer = optimizer or model.optimizer or Adam()
        optimizer.bind(be, model.num_parameters, model.dtype, model=model)
        model.optimizer = optimizer
        if schedule is not None:
            schedule.start(optimizer.lr, epochs)
        if stopping is not None:
            stopping.start()
        shown = Verbose(n, batch_size, epochs) if verbose else None
        dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
        step = TrainingStep(
            model, X, targets, weights, scale, batch_size, optimizer, n, record=not dropouts
        )
        try:
            for epoch in range(initial_epoch, epochs):
                start_time = time.perf_counter()
                if schedule is not None:
                    optimizer.lr = schedule.rate(epoch, optimizer.lr, history)
                # drawn on the host so every device sees the same order
                order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else None
                step.start_epoch(order)
                if dropouts:
                    dropout_rng = be.random_generator([seed, epoch, 1])
                    for layer in dropouts:
                        layer.generator = dropout_rng
                for batch, start in enumerate(range(0, n, batch_size)):
                    step.run(min(batch_size, n - start))
                    if on_batch is not None:
                        on_batch(batch)
                    if shown is not None:
                        shown.batch(batch)
                loss_sum, hits = be.to_numpy(step.totals)  # the one read of the epoch
                record: dict[str, Any] = {
                    "epoch": epoch + 1,
                    **model.loss_function.record(float(loss_sum), float(hits), step.weight()),
                    "seconds": time.perf_counter() - start_time,
                }
                if schedule is not None:
                    record["lr"] = optimizer.lr
                if not math.isfinite(record["loss"]):
                    raise TrainingDiverged(epoch + 1, record["loss"])
                if not be.all_finite(model.params):  # the last step's update is not in the loss
                    raise TrainingDiverged(epoch + 1, math.nan, what="a weight")
                if validation is not None:
                    measured = model.evaluate_on_device(*validation)
                    record.update({f"val_{key}": value for key, value in measured.items()})
                model.epochs_trained = epoch + 1
                history.append(record)
                if shown is not None:
                    shown.end(record)
                if callback is not None:
                    callback(record)
                if stopping is not None and stopping.stop(record, model):
                    break
        finally:
            if shown is not None:
                shown.close()
        if stopping is not None and stopping.restore_best_weights:
            stopping.restore(model)
    return history


def _optimizer(spec: Optimizer | str | None) -> Optimizer | None:
    """An optimizer, or one by name (``"adam"``, ``"sgd"``: ``optim.OPTIMIZERS``)."""
    if isinstance(spec, str):
        return make_optimizer(spec)
    if spec is not None and not isinstance(spec, Optimizer):
        raise TypeError(
            f"optimizer must be a name such as 'adam' or an optimizer such as Adam(lr=1e-3), "
            f"got {spec!r}"
        )
    return spec


def _validation(model: MLP, data: tuple) -> tuple:
    """``validation_data``, ``(X, y)`` or ``(X, y, sample_weight)``, on the device as
    ``evaluate_on_device`` takes it."""
    X, scale = model.device_inputs(data[0])
    rows = X.shape[0]
    weights = model.device_weights(data[2], rows) if len(data) == 3 else None
    return X, scale, model.device_targets(data[1], rows), weights


def held_out(rows: int, fraction: float) -> int:
    """How many of ``rows`` a ``validation_split`` of ``fraction`` holds out: the last ones
    (as given, before any shuffle, as in Keras); 0 for no split."""
    held = math.ceil(rows * fraction)
    if fraction and (held < 1 or held >= rows):
        raise checks.InvalidArgument(
            f"validation_split={fraction} of {rows} rows leaves no rows to train on or none "
            "to validate on"
        )
    return held


def _split(held: int, X: Any, scale: float, targets: Any, weights: Any) -> tuple:
    """The training rows' count, and the last ``held`` rows as validation data."""
    rest = X.shape[0] - held
    kept = None if weights is None else weights[rest:]
    return rest, (X[rest:], scale, targets[rest:], kept)


class TrainingStep:
    """One fit's device state and its step. The full-batch step is recorded once (again when
    the optimizer's settings change); a short last batch runs op by op.

    ``record`` is False for models whose step draws random numbers (dropout): a recording
    would hold one epoch's generator.
    """

    def __init__(
        self,
        model: MLP,
        X: Any,
        targets: Any,
        weights: Any,
        scale: float,
        batch_size: int,
        optimizer: Optimizer,
        rows: int,
        record: bool = True,
    ) -> None:
        be = model.backend
        self.model, self.X, self.targets, self.weights = model, X, targets, weights
        self.scale, self.batch_size, self.record = scale, batch_size, record
        self.optimizer = optimizer
        self.rows = rows  # the first ``rows`` of X are trained on (the rest: validation_split)
        self.order = be.asarray(np.arange(rows, dtype=np.int64))  # the epoch's row order
        self.start = DeviceCounter(be, by=batch_size)  # where the next batch starts in it
        self.totals = be.zeros((2,), np.float64)  # summed loss and correct predictions
        self._buffers = BufferCache(be)  # the batch's inputs, targets and weights
        self._total_weight: float | None = None
        self._recording: Any = None
        self._recorded_with: Any = None  # the optimizer settings the recording holds

    def start_epoch(self, order: np.ndarray | None) -> None:
        """Rewind to the first batch and zero the totals; ``order`` (host) replaces the order."""
        if order is not None:
            self.order[...] = self.model.backend.asarray(order.astype(np.int64, copy=False))
        self.start.set(0)
        self.totals[...] = 0

    def run(self, size: int) -> None:
        """One step on the next ``size`` rows: replayed where recorded, else run (and, for a
        full batch, recorded for the steps after it)."""
        settings = tuple(self.optimizer.hyperparameters().values())  # frozen in a recording
        if size == self.batch_size and self._recording is not None:
            if settings == self._recorded_with:
                self._recording()
                return
            self._recording = None  # the settings changed (a schedule): record afresh
        self._step(size)
        if size == self.batch_size and self.record and self._recorded_with != settings:
            self._recorded_with = settings  # one try per setting: a refusal is not retried
            self._recording = self.model.backend.capture(
                lambda: self._step(size), keep=self._arrays()
            )

    def weight(self) -> float:
        """What an epoch's totals are divided by: its rows, or their summed weights."""
        if self.weights is None:
            return float(self.rows)
        if self._total_weight is None:  # read once per fit
            be = self.model.backend
            self._total_weight = float(be.to_numpy(be.sum_rows(self.weights[: self.rows]))[0])
        return self._total_weight

    def _step(self, size: int) -> None:
        model, be = self.model, self.model.backend
        xb = self._buffers.get("x", (size, model.sizes[0]), model.dtype)
        be.gather_rows(self.X, self.order, xb, self.scale, start=self.start.array)
        yb = self._buffers.get("y", (size, self.targets.shape[1]), self.targets.dtype)
        be.gather_rows(self.targets, self.order, yb, 1.0, start=self.start.array)
        wb = weight_sum = None
        if self.weights is not None:
            wb = self._buffers.get("w", (size, 1), model.dtype)
            be.gather_rows(self.weights, self.order, wb, 1.0, start=self.start.array)
            weight_sum = be.sum_rows(wb, out=self._buffers.get("w_sum", (1,), model.dtype))
        outputs = model.forward_pass(xb, training=True)
        grad = model.loss_function.accumulate(be, outputs, yb, self.totals, wb, weight_sum)
        model.backward_pass(grad)
        self.start.advance()
        self.optimizer.update(model.params, model.grads)

    def _arrays(self) -> tuple:
        """Every array a recorded step reads or writes, kept alive as long as it is."""
        model = self.model
        return (
            self.X, self.targets, self.weights, self.order, self.start.arrays(), self.totals,
            model.params, model.grads, self.optimizer.arrays(), self._buffers.arrays(),
            tuple(layer.arrays() for layer in model.layers),
        )  # fmt: skip
