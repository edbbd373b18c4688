"""Time to accuracy: training seconds until the std model reaches a test accuracy on
real Fashion-MNIST (evaluation after each epoch, not counted)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .timing import QUIET, OtherWork
from .workloads import DATASET, Workload


def _result(
    target: float, curve: list[float], seconds: list[float], other: list[float | None]
) -> dict[str, Any]:
    reached = next((i for i, acc in enumerate(curve) if acc >= target), None)
    out: dict[str, Any] = {
        "target": target,
        "accuracy_curve": curve,
        "epoch_seconds": seconds,
        "other_work": other,
        "contended": any(o is not None and o > QUIET for o in other),
        "reached": reached is not None,
    }
    if reached is not None:
        out["epochs"] = reached + 1
        out["seconds"] = float(sum(seconds[: reached + 1]))
    return out


def time_to_accuracy_ours(
    workload: Workload, device: str, target: float, max_epochs: int
) -> dict[str, Any]:
    """Our ``fit``, one epoch per call (same optimizer, so training simply goes on).

    The images stay uint8, as ``mlp-train`` passes them (the library scales per batch).
    Seconds are each epoch's ``fit`` record (steps plus the device sync that ends the epoch).
    """
    from mlp import MLP
    from mlp.data import load_dataset

    from .ours import make_optimizer

    data = load_dataset(DATASET)
    model = MLP(list(workload.sizes), activation=workload.activation, device=device, seed=0)
    optimizer = make_optimizer(workload)
    curve: list[float] = []
    seconds: list[float] = []
    other: list[float | None] = []
    watch = OtherWork()
    for epoch in range(max_epochs):
        watch.start()
        (record,) = model.fit(
            data.X_train,
            data.y_train,
            epochs=epoch + 1,
            initial_epoch=epoch,
            batch_size=workload.batch_size,
            optimizer=optimizer,
            seed=0,
        )
        seconds.append(record["seconds"])
        other.append(watch.stop())
        curve.append(model.evaluate(data.X_test, data.y_test)["accuracy"])
        if curve[-1] >= target:
            break
    return _result(target, curve, seconds, other)


def time_to_accuracy_torch(
    workload: Workload, device: str, target: float, max_epochs: int, impl: str = "torch"
) -> dict[str, Any]:
    """PyTorch's ``impl``: the eager loop, or a variant of ``torch_peers`` with the same step
    its speed row times (TF32 off); test accuracy under ``no_grad`` after each epoch.
    Compilation or capture comes before the first epoch and is reported apart."""
    import torch

    from mlp.data import load_dataset

    from .peers import set_precision, torch_device, torch_epoch, torch_synchronizer
    from .torch_peers import compile_record, ready_trainer, variant_problem

    dev = torch_device(device)
    settings = set_precision(False)
    if why := variant_problem(impl, workload, dev):
        return {"status": "skipped", "reason": why}
    data = load_dataset(DATASET)

    def tensors(images: np.ndarray, labels: np.ndarray) -> tuple[Any, Any]:
        X = torch.from_numpy(np.multiply(images, np.float32(1 / 255), dtype=np.float32))
        return X.to(dev), torch.from_numpy(labels.astype(np.int64)).to(dev)

    X_train, y_train = tensors(data.X_train, data.y_train)
    X_test, y_test = tensors(data.X_test, data.y_test)
    trainer, compile_seconds = ready_trainer(impl, workload, dev, X_train, y_train)
    model = trainer.model
    synchronize = torch_synchronizer(dev)
    curve: list[float] = []
    seconds: list[float] = []
    other: list[float | None] = []
    watch = OtherWork()
    for _ in range(max_epochs):
        watch.start()
        synchronize()
        start = time.perf_counter()
        model.train()
        torch_epoch(trainer.step, X_train, y_train, workload.batch_size)
        synchronize()
        seconds.append(time.perf_counter() - start)
        other.append(watch.stop())
        model.eval()
        with torch.no_grad():
            correct = (model(X_test).argmax(dim=1) == y_test).sum()
        curve.append(float(correct) / X_test.shape[0])
        if curve[-1] >= target:
            break
    return {
        **_result(target, curve, seconds, other),
        **settings,
        **compile_record(impl, compile_seconds),
    }
