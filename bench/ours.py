"""This library's rows: ``MLP.fit`` as a user would call it, one epoch per record."""

from __future__ import annotations

from typing import Any

import numpy as np

from .workloads import Workload


def make_optimizer(workload: Workload) -> Any:
    """The workload's optimizer from ``mlp.optim``."""
    from mlp.optim import SGD, Adam

    if workload.optimizer == "momentum":
        return SGD(lr=workload.lr, momentum=workload.momentum)
    return Adam(lr=workload.lr)


def train_ours(
    workload: Workload, device: str, X: np.ndarray, y: np.ndarray, warmup: int, epochs: int
) -> dict[str, Any]:
    """Train ``warmup + epochs`` epochs in one ``fit`` call; the timed epochs are the last ones.

    Each epoch's seconds are ``fit``'s own record: the epoch's steps from the shuffle to the
    one read of the loss totals, which on a GPU waits for the device (so the whole epoch
    is synchronised). The data upload and input checks happen once, before the first epoch.
    """
    from mlp import MLP

    model = MLP(
        list(workload.sizes), activation=workload.activation, device=device, dtype="float32", seed=0
    )
    records = model.fit(
        X,
        y,
        epochs=warmup + epochs,
        batch_size=workload.batch_size,
        optimizer=make_optimizer(workload),
        shuffle=True,
        seed=0,
    )
    seconds = [r["seconds"] for r in records]
    return {
        "warmup_seconds": seconds[:warmup],
        "epoch_seconds": seconds[warmup:],
        "final_loss": records[-1]["loss"],
    }
