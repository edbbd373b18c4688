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
from .optim import Adam, Optimizer

if TYPE_CHECKING:
    from .model import MLP


def fit(
    model: MLP,
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
    """``MLP.fit``: every argument and the data are checked before the model changes."""
    model.check_trainable()
    epochs = checks.positive_int("epochs", epochs)
    batch_size = checks.positive_int("batch_size", batch_size)
    initial_epoch = checks.whole_number("initial_epoch", initial_epoch)
    if initial_epoch > epochs:
        raise checks.InvalidArgument(f"initial_epoch must be in [0, {epochs}], got {initial_epoch}")
    seed = model.seed if seed is None else checks.whole_number("seed", seed)
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an optimizer such as Adam(lr=1e-3), got {optimizer!r}")
    checks.fit_options(validation_data, shuffle, callback, on_batch)
    be = model.backend
    history: list[dict[str, Any]] = []
    with be.activated():
        X, scale = model.device_inputs(X)
        n = X.shape[0]
        labels = model.device_labels(y, n)
        if validation_data is not None:
            X_val, val_scale = model.device_inputs(validation_data[0])
            y_val = model.device_labels(validation_data[1], X_val.shape[0])
        # only now, with every argument checked: a failed call leaves the model as it was
        optimizer = optimizer or model.optimizer or Adam()
        optimizer.bind(be, model.num_parameters, model.dtype, model=model)
        model.optimizer = optimizer
        dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
        step = TrainingStep(model, X, labels, scale, batch_size, optimizer, record=not dropouts)
        for epoch in range(initial_epoch, epochs):
            start_time = time.perf_counter()
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
            loss_sum, correct = be.to_numpy(step.totals)  # the one read of the epoch
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": float(loss_sum / n),
                "accuracy": float(correct / n),
                "seconds": time.perf_counter() - start_time,
            }
            if not math.isfinite(record["loss"]):
                raise TrainingDiverged(epoch + 1, record["loss"])
            if not be.all_finite(model.params):  # the last step's update is not in the loss
                raise TrainingDiverged(epoch + 1, math.nan, what="a weight")
            if validation_data is not None:
                record["val_loss"], record["val_accuracy"] = model.evaluate_on_device(
                    X_val, val_scale, y_val
                )
            history.append(record)
            if callback is not None:
                callback(record)
    return history


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
        labels: Any,
        scale: float,
        batch_size: int,
        optimizer: Optimizer,
        record: bool = True,
    ) -> None:
        be = model.backend
        self.model, self.X, self.labels, self.scale = model, X, labels, scale
        self.batch_size, self.optimizer, self.record = batch_size, optimizer, record
        self.order = be.asarray(np.arange(X.shape[0], dtype=np.int64))  # the epoch's row order
        self.start = DeviceCounter(be, by=batch_size)  # where the next batch starts in it
        self.totals = be.zeros((2,), np.float64)  # summed loss and correct predictions
        self._buffers = BufferCache(be)  # the batch's inputs and labels
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

    def _step(self, size: int) -> None:
        model, be = self.model, self.model.backend
        xb = self._buffers.get("x", (size, model.sizes[0]), model.dtype)
        be.gather_rows(self.X, self.order, xb, self.scale, start=self.start.array)
        yb = self._buffers.get("y", (size, 1), np.int32)
        be.gather_rows(self.labels, self.order, yb, 1.0, start=self.start.array)
        logits = model.forward_pass(xb, training=True)
        grad = be.softmax_cross_entropy_accumulate(logits, yb[:, 0], logits, self.totals)
        model.backward_pass(grad)
        self.start.advance()
        self.optimizer.update(model.params, model.grads)

    def _arrays(self) -> tuple:
        """Every array a recorded step reads or writes, kept alive as long as it is."""
        model = self.model
        return (
            self.X, self.labels, self.order, self.start.arrays(), self.totals,
            model.params, model.grads, self.optimizer.arrays(), self._buffers.arrays(),
            tuple(layer.arrays() for layer in model.layers),
        )  # fmt: skip
