"""This library's rows: ``MLP.fit`` as a user would call it, one epoch per record."""

from __future__ import annotations

from typing import Any

import numpy as np

from .timing import Schedule, run_epochs
from .workloads import Workload


def make_optimizer(workload: Workload) -> Any:
    """The workload's optimizer from ``mlp.optim``."""
    from mlp.optim import SGD, Adam

    if workload.optimizer == "momentum":
        return SGD(lr=workload.lr, momentum=workload.momentum)
    return Adam(lr=workload.lr)


def train_ours(
    workload: Workload,
    device: str,
    X: np.ndarray,
    y: np.ndarray,
    schedule: Schedule,
    precision: str = "float32",
) -> dict[str, Any]:
    """``fit`` one epoch at a time (``initial_epoch=i``), the optimizer carried along.

    An epoch's seconds are ``fit``'s own record: the epoch's steps from the shuffle to the
    one read of the loss totals, which on a GPU waits for the device (so the whole epoch
    is synchronised). ``fit``'s input checks before the epoch are not counted. The model's
    float32 matmuls run at ``precision`` (``tf32``, ``bf16``: tensor cores on a GPU, the
    rounding emulated on the CPU), as ``get_backend(device, precision=...)`` sets them.
    """
    from backends import get_backend
    from backends.threads import numpy_blas
    from mlp import MLP

    backend = get_backend(device, precision=precision)
    model = MLP(
        list(workload.sizes),
        activation=workload.activation,
        device=backend,
        dtype="float32",
        seed=0,
    )
    optimizer = make_optimizer(workload)
    losses: list[float] = []
    blas = numpy_blas()[:1]  # none where threadpoolctl is missing: no note
    threads: set[int] = set()

    def run_epoch(i: int) -> float:
        (record,) = model.fit(
            X,
            y,
            epochs=i + 1,
            initial_epoch=i,
            seed=0,
            shuffle=True,
            batch_size=workload.batch_size,
            optimizer=optimizer,
            callback=lambda _: threads.update(c.get_num_threads() for c in blas),  # untimed
        )
        losses.append(record["loss"])
        return record["seconds"]

    out = {**run_epochs(run_epoch, schedule), "final_loss": losses[-1]}
    if device == "cpu" and len(threads) == 1:  # BLAS's, in the fit (backends/threads.py)
        out["threads"] = threads.pop()
    return out
