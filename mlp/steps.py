"""The training step, written so that a GPU can record it once and replay it.

A small MLP's step on a GPU is bound by the host: each of its twenty-odd ops costs a launch
(5-20 µs of Python and driver work) while the GPU does a few µs of arithmetic. So the step
keeps everything that changes from one step to the next on the device: ``cursor`` holds the
batch's first position in the epoch's row order and the optimizer's step count, and the
step advances it itself. The same step can then be recorded as a CUDA graph
(``Backend.capture``) and replayed with one launch per batch. On the CPU, or where recording
is refused, it runs op by op, unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .optim import Optimizer


class TrainingSteps:
    """The device state of one ``fit`` and its step. The full-batch step is recorded once
    (again when the optimizer's settings change); a short last batch runs op by op.

    ``record`` is False for models whose step draws random numbers (dropout): a recording
    would hold one epoch's generator.
    """

    def __init__(
        self,
        model: Any,
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
        self.order = be.empty((X.shape[0],), np.int64)  # the epoch's row order
        self.order[...] = model._rows(X.shape[0])
        # [first row of the next batch, optimizer steps taken], and what one step adds
        self.cursor = be.zeros((2,), np.int64)
        self.start, self.count = self.cursor[0:1], self.cursor[1:2]
        self.advance_by = be.asarray(np.array([batch_size, 1], np.int64))
        self.totals = be.zeros((2,), np.float64)  # summed loss and correct predictions
        self._recording: Any = None
        self._recorded_with: Any = None  # the optimizer settings the recording holds

    def start_epoch(self, order: np.ndarray | None) -> None:
        """Reset the cursor and the epoch's totals; ``order`` (host) replaces the row order."""
        be = self.model.backend
        if order is not None:
            self.order[...] = be.asarray(order.astype(np.int64, copy=False))
        self.cursor[...] = be.asarray(np.array([0, self.optimizer.steps], np.int64))
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
        xb = model._buffers.get("x", (size, model.sizes[0]), model.dtype)
        be.gather_rows(self.X, self.order, xb, self.scale, start=self.start)
        yb = model._buffers.get("y", (size, 1), np.int32)
        be.gather_rows(self.labels, self.order, yb, 1.0, start=self.start)
        logits = model._forward(xb, training=True)
        grad = be.softmax_cross_entropy_accumulate(logits, yb[:, 0], logits, self.totals)
        model._backward(grad)
        be.add(self.cursor, self.advance_by, out=self.cursor)
        self.optimizer.update(model.params, model.grads, self.count)

    def _arrays(self) -> tuple:
        """Every array a recorded step reads or writes, kept alive as long as it is."""
        model = self.model
        caches = [model._buffers] + [layer._buffers for layer in model.layers]
        return (
            self.X, self.labels, self.order, self.cursor, self.advance_by, self.totals,
            model.params, model.grads, tuple(self.optimizer.state.values()),
            tuple(cache.arrays() for cache in caches),
        )  # fmt: skip
