"""Training: the epoch loop, the row order on the device, and the step, recorded once.

The training step never allocates, never copies between host and device, and never waits
for the device: the data is uploaded once per fit, batches are gathered on the device into
preallocated buffers, and loss and accuracy are summed on the device and read once per epoch.

A small MLP's step on a GPU is bound by the host: each of its twenty-odd ops costs a launch
(5-20 µs of Python and driver work) while the GPU does a few µs of arithmetic. So whatever
changes from one step to the next lives on the device: the batch's first position in the
epoch's row order, and the optimizer's update count, each advanced by the step itself. The
same step can then be recorded as a CUDA graph (``Backend.capture``) and replayed with one
launch per batch; on the CPU, as the op bodies it calls (``backends/recording.py``), which
saves its Python and checks. Where recording is refused, it runs op by op, unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from backends import threads
from backends.buffers import BufferCache, DeviceCounter

from . import checks, distributed
from .errors import TrainingDiverged
from .layers import Dropout
from .optim import Adam, Optimizer, make_optimizer
from .progress import Verbose
from .schedules import make_schedule
from .stopping import EarlyStopping, unrecorded

if TYPE_CHECKING:
    from .distributed import Communicator
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
    communicator: Communicator | None = None,
) -> list[dict[str, Any]]:
    """``MLP.fit``: every argument and the data are checked before the model changes.

    Without ``initial_epoch``, ``epochs`` more epochs after the ``model.epochs_trained``
    already done; with it (a resume, as in Keras), epochs ``initial_epoch + 1`` to ``epochs``.
    With a ``communicator``, every process of its world calls ``fit`` alike and they train
    the one model together (``mlp/distributed.py``): rank 0's weights and optimizer state
    to start with, the same records on every process, ``verbose`` shown by rank 0 alone.
    """
    model.check_trainable()
    epochs = checks.positive_int("epochs", epochs)
    batch_size = checks.positive_int("batch_size", batch_size)
    going_on = initial_epoch is None  # not a resume at a given epoch
    if going_on:
        initial_epoch, epochs = model.epochs_trained, model.epochs_trained + epochs
    initial_epoch = checks.whole_number("initial_epoch", initial_epoch)
    if initial_epoch > epochs:
        raise checks.InvalidArgument(f"initial_epoch must be in [0, {epochs}], got {initial_epoch}")
    seed = model.seed if seed is None else checks.seed("seed", seed)
    optimizer = _optimizer(optimizer, model.optimizer)
    checks.fit_options(validation_data, shuffle, callback, on_batch)
    split = checks.fraction("validation_split", validation_split)
    if split and validation_data is not None:
        raise checks.InvalidArgument("give validation_data or validation_split, not both")
    schedule = make_schedule(lr_schedule)
    if isinstance(lr_schedule, str) and type(model.schedule) is type(schedule):
        schedule = model.schedule  # the one an earlier fit made of this name goes on
    stopping = EarlyStopping() if early_stopping is True else early_stopping or None
    if stopping is not None and not isinstance(stopping, EarlyStopping):
        raise TypeError(f"early_stopping must be True or an EarlyStopping, got {early_stopping!r}")
    distributed.check(communicator)
    be = model.backend
    history: list[dict[str, Any]] = []
    with be.activated():
        X, scale = model.device_inputs(X)
        n = X.shape[0]
        targets = model.device_targets(y, n)
        held = held_out(n, split)
        weights = model.device_weights(sample_weight, n, held=held)
        validation = None
        if split:
            n, validation = _split(held, X, scale, targets, weights)
        elif validation_data is not None:
            validation = _validation(model, validation_data)
        optimizer = optimizer or model.optimizer or Adam()
        if callback is None:  # no callback adds a key: a monitor fit never records fails now
            _check_monitors(model, validation is not None, schedule, stopping)
        if communicator is not None:
            communicator.agree(
                distributed.fingerprint(
                    model, optimizer, X, targets, weights, validation, n, batch_size, epochs,
                    initial_epoch, seed, shuffle, schedule, stopping,
                )
            )  # fmt: skip
            distributed.check_batch(communicator, batch_size)
        # only now, with every argument checked: a failed call leaves the model as it was
        optimizer.bind(be, model.num_parameters, model.dtype, model=model)
        model.optimizer = optimizer
        if isinstance(lr_schedule, str):
            model.schedule = schedule
        if communicator is not None:
            distributed.start_alike(communicator, model, optimizer)
        if schedule is not None:
            if schedule.origin is None:  # its curve counts from here, or from a resumed run's 0
                schedule.origin = initial_epoch if going_on else 0
            schedule.start(optimizer.lr, epochs)
        if stopping is not None:
            stopping.start()
        root = communicator is None or communicator.is_root
        shown = Verbose(n, batch_size, epochs, initial_epoch + 1) if verbose and root else None
        dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
        step = TrainingStep(
            model, X, targets, weights, scale, batch_size, optimizer, n,
            record=not dropouts, communicator=communicator,
        )  # fmt: skip
        try:
            with be.threads_for(step.largest_product(), model.dtype):
                for epoch in range(initial_epoch, epochs):
                    start_time = time.perf_counter()
                    if schedule is not None:
                        optimizer.lr = schedule.rate(epoch, optimizer.lr, history)
                    # drawn on the host so every device sees the same order
                    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else None
                    step.start_epoch(order)
                    if dropouts:
                        dropout_rng = be.random_generator(
                            [seed, epoch, 1] + ([communicator.rank] if communicator else [])
                        )  # each process its own masks
                        for layer in dropouts:
                            layer.generator = dropout_rng
                    for batch, start in enumerate(range(0, n, batch_size)):
                        step.run(min(batch_size, n - start))
                        if on_batch is not None:
                            on_batch(batch)
                        if shown is not None:
                            shown.batch(batch)
                    loss_sum, hits = step.summed_totals()  # the one read of the epoch
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
                    if communicator is not None:  # before anything is measured or saved
                        distributed.check_replicas(communicator, model, f"epoch {epoch + 1}")
                    if validation is not None:
                        measured = model.evaluate_on_device(*validation, communicator=communicator)
                        record.update({f"val_{key}": value for key, value in measured.items()})
                    model.epochs_trained = epoch + 1
                    history.append(record)
                    if shown is not None:
                        shown.end(record)
                    if callback is not None:
                        callback(record)
                    if schedule is not None:  # a metric the callback adds may be watched
                        schedule.observe(record)
                    if shown is not None:
                        shown.line(record)
                    if stopping is not None and stopping.stop(record, model):
                        break
        finally:
            if shown is not None:
                shown.close()
        if communicator is not None and model.epochs_trained > initial_epoch:
            distributed.check_replicas(communicator, model, "the last epoch's callback")
        if stopping is not None and stopping.restore_best_weights:
            stopping.restore(model)
    return history


def _check_monitors(model: Any, validated: bool, schedule: Any, stopping: Any) -> None:
    """A schedule's or early stopping's ``monitor`` that no record of this fit will hold
    (``val_loss`` without validation data, a misspelt name) fails before any epoch."""
    measured = {"loss"} | ({"accuracy"} if model.loss_function.classifies else set())
    recorded = {"epoch", "seconds", *measured, *(f"val_{key}" for key in measured if validated)}
    recorded |= {"lr"} if schedule is not None else set()
    for rule in (schedule, stopping):
        monitor = getattr(rule, "monitor", None)
        if monitor is not None and monitor not in recorded:
            raise unrecorded(monitor, recorded)


def _optimizer(spec: Optimizer | str | None, kept: Optimizer | None) -> Optimizer | None:
    """An optimizer, or one by name (``"adam"``, ``"sgd"``: ``optim.OPTIMIZERS``): the
    model's own (``kept``) where an earlier fit made it of that name, going on with its
    moments and rate as a schedule made of a name goes on."""
    if isinstance(spec, str):
        same = kept is not None and kept.made_of == spec.lower()
        return kept if same else make_optimizer(spec)
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
    (as given, before any shuffle), counted as Keras counts them, all but ``floor(rows * (1 -
    fraction))`` (7 of 100 for 0.07, where ``ceil(100 * 0.07)`` rounds up to 8); 0 for none."""
    held = rows - math.floor(rows * (1.0 - fraction))
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
    would hold one epoch's generator. With a ``communicator`` (``mlp.distributed``), this
    process takes its share of every batch, and the gradients are summed across processes
    before the update: inside the recorded step on GPUs (NCCL), op by op on the CPU (MPI's
    host calls are no backend op a recording could replay).
    """

    def __init__(
        self,
        model: MLP,
        X: Any,
        targets: Any,
        weights: Any,
        scale: float,
        batch_size: int,
        optimizer: Optimizer | None,
        rows: int,
        record: bool = True,
        communicator: Any = None,
    ) -> None:
        be = model.backend
        self.model, self.X, self.targets, self.weights = model, X, targets, weights
        self.scale, self.batch_size = scale, batch_size
        self.optimizer = optimizer
        self.communicator = communicator
        if communicator is not None:
            communicator.bind(be)
        self.record = record and (communicator is None or communicator.recordable)
        self.rows = rows  # the first ``rows`` of X are trained on (the rest: validation_split)
        self.order = be.asarray(np.arange(rows, dtype=np.int64))  # the epoch's row order
        self.batch = DeviceCounter(be, by=batch_size)  # where the next batch starts in it
        # where this process's share of it starts (with one process, the batch's start)
        self.start = self.batch if communicator is None else DeviceCounter(be, by=batch_size)
        self.totals = be.zeros((2,), np.float64)  # summed loss and correct predictions
        self._buffers = BufferCache(be)  # the batch's inputs, targets and weights
        self._shares: dict[int, Any] = {}  # a batch size's share of the gradient, on the device
        self._position = 0  # the next batch's start, counted on the host
        self._total_weight: float | None = None
        self._recording: Any = None
        self._recorded_with: Any = None  # the optimizer settings the recording holds
        self._settings: Any = None  # those of the last step

    def start_epoch(self, order: np.ndarray | None) -> None:
        """Rewind to the first batch and zero the totals; ``order`` (host) replaces the order."""
        if order is not None:
            self.order[...] = self.model.backend.asarray(order.astype(np.int64, copy=False))
        self._position = 0
        self.batch.set(0)
        if self.start is not self.batch:
            self.start.set(self._share(self.batch_size)[0])
        self.totals[...] = 0

    def run(self, size: int) -> None:
        """One step on the next ``size`` rows: replayed where recorded, else run (and, for a
        full batch, recorded for the steps after it)."""
        settings = tuple(self.optimizer.hyperparameters().values())  # frozen in a recording
        if settings != self._settings:  # changed between steps (a schedule, a callback)
            self._settings = settings
            self.optimizer.ready()  # a momentum switched on needs its velocity
        self._position += size
        if size == self.batch_size and self._recording is not None:
            if settings == self._recorded_with:
                self._recording()
                return
            self._recording = None  # the settings changed (a schedule): record afresh
        if size != self.batch_size and self.start is not self.batch:  # a short last batch
            self.start.set(self._position - size + self._share(size)[0])
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

    def summed_totals(self) -> np.ndarray:
        """The summed loss and correct predictions so far, over every process: the one read
        of an epoch."""
        totals = self.model.backend.to_numpy(self.totals)
        return totals if self.communicator is None else self.communicator.sum(totals)

    def largest_product(self) -> tuple[int, int, int]:
        """The step's largest matrix product, rows × inner × columns: this process's share
        of a batch through the widest layer."""
        first, stop = self._share(min(self.batch_size, self.rows))
        return threads.largest_product(stop - first, self.model.sizes)

    def _share(self, size: int) -> tuple[int, int]:
        """This process's ``[start, stop)`` of a batch of ``size`` rows."""
        return (0, size) if self.communicator is None else self.communicator.share(size)

    def gradients(self, size: int, training: bool = True) -> None:
        """The gradient of the mean loss of the next batch of ``size`` rows into
        ``model.grads``, summed over the processes' shares of it; its loss into the totals."""
        model, be, comm = self.model, self.model.backend, self.communicator
        first, stop = self._share(size)
        rows = stop - first
        if rows == 0:  # a last batch with fewer rows than there are processes
            model.grads[...] = 0
            for layer in reversed(model.linears):
                comm.gradient_ready(layer.grads)
            comm.gradients_done(model.grads)
            return
        xb = self._buffers.get("x", (rows, model.sizes[0]), model.dtype)
        yb = self._buffers.get("y", (rows, self.targets.shape[1]), self.targets.dtype)
        be.gather_batch(self.X, self.targets, self.order, xb, yb, self.scale, self.start.array)
        wb = weight_sum = None
        if self.weights is not None:  # the whole batch's weights give each row its share
            batch = self._buffers.get("batch_w", (size, 1), model.dtype)
            be.gather_rows(self.weights, self.order, batch, 1.0, start=self.batch.array)
            weight_sum = be.sum_rows(batch, out=self._buffers.get("w_sum", (1,), model.dtype))
            wb = batch[first:stop]
        outputs = model.forward_pass(xb, training=training)
        grad = model.loss_function.accumulate(be, outputs, yb, self.totals, wb, weight_sum)
        if comm is None:
            model.backward_pass(grad)
            return
        if self.weights is None and rows != size:  # the mean over the share, made the batch's
            be.multiply(grad, self._batch_share(size, rows), out=grad)
        model.backward_pass(grad, ready=comm.gradient_ready)
        comm.gradients_done(model.grads)

    def _batch_share(self, size: int, rows: int) -> Any:
        """``rows / size`` as a one-element device array, made once per batch size."""
        share = self._shares.get(size)
        if share is None:
            be = self.model.backend
            share = self._shares[size] = be.asarray(np.array([rows / size], self.model.dtype))
        return share

    def _step(self, size: int) -> None:
        self.gradients(size)
        self.batch.advance()
        if self.start is not self.batch:
            self.start.advance()
        self.optimizer.update(self.model.params, self.model.grads)

    def _arrays(self) -> tuple:
        """Every array a recorded step reads or writes, kept alive as long as it is."""
        model = self.model
        counters = (self.batch.arrays(), self.start.arrays())
        return (
            self.X, self.targets, self.weights, self.order, counters, self.totals,
            model.params, model.grads, self.optimizer.arrays(), self._buffers.arrays(),
            tuple(self._shares.values()), tuple(layer.arrays() for layer in model.layers),
        )  # fmt: skip
