"""Peers: PyTorch (CPU and CUDA) and scikit-learn's MLPClassifier (CPU), written idiomatically.

Same architecture, optimizer, batch size and dtype as ours; the data is already float32
on the device before the clock starts, and each epoch is shuffled. PyTorch accumulates the
loss on the device and reads it once per epoch (no per-step ``.item()``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from backends import parse_device

from .machine import cpu_cores
from .timing import Schedule, run_epochs
from .workloads import CLASSES, Workload

PEERS = ("torch", "sklearn")
#: The precisions a PyTorch row runs at: float32 with TF32 off, as ours, and ``tf32`` with
#: it on. None at bf16: PyTorch's bfloat16 is autocast, another recipe than bf16 products
#: alone, so our bf16 row is held against our own float32 row instead.
TORCH_PRECISIONS = ("float32", "tf32")


def tf32_for(precision: str) -> bool:
    """Whether a PyTorch row at ``precision`` turns TF32 on; ``ValueError`` for one it has
    no row at (a planning mistake, not a row to time in float32 under another name)."""
    if precision not in TORCH_PRECISIONS:
        raise ValueError(f"PyTorch rows run at {' or '.join(TORCH_PRECISIONS)}, not {precision!r}")
    return precision == "tf32"


def set_precision(tf32: bool) -> dict[str, Any]:
    """TF32 on or off for matmuls and cuDNN (off: full float32, as ours); what was set."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    return {"tf32": tf32, "matmul_precision": torch.get_float32_matmul_precision()}


def torch_model(workload: Workload) -> Any:
    """``nn.Sequential`` of Linear + ReLU layers matching the workload's sizes, started as
    ours are (He normal weights, zero biases; ``nn.Linear``'s own start is 2.45× smaller),
    so that a race to an accuracy compares the training, not the starting points."""
    import torch
    from torch import nn

    layers: list[Any] = []
    pairs = list(itertools.pairwise(workload.sizes))
    for i, (m, n) in enumerate(pairs):
        linear = nn.Linear(m, n)
        with torch.no_grad():
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")  # std √(2 / fan_in)
            linear.bias.zero_()
        layers.append(linear)
        if i < len(pairs) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def torch_optimizer(workload: Workload, params: Any, **options: Any) -> Any:
    """The workload's optimizer (Adam or momentum SGD, its learning rate), with PyTorch's
    own ``options`` (``fused=True``, ``capturable=True``)."""
    import torch

    if workload.optimizer == "momentum":
        return torch.optim.SGD(params, lr=workload.lr, momentum=workload.momentum, **options)
    return torch.optim.Adam(params, lr=workload.lr, **options)


def torch_device(device: str) -> Any:
    """The ``torch.device`` for ``cpu``/``cuda[:N]``; ``RuntimeError`` if CUDA is missing."""
    import torch

    kind, index = parse_device(device)
    if kind == "cpu":
        torch.set_num_threads(cpu_cores())
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"this PyTorch build ({torch.__version__}) sees no CUDA device")
    return torch.device("cuda", index)


def eager_step(model: Any, optimizer: Any, loss_fn: Any) -> Callable[[Any, Any], Any]:
    """PyTorch's usual step, ``step(xb, yb) -> loss``: zero the gradients, forward, loss,
    backward, update."""

    def step(xb: Any, yb: Any) -> Any:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def torch_epoch(step: Callable[[Any, Any], Any], X: Any, y: Any, batch: int) -> float:
    """One shuffled epoch of ``step``; returns the mean training loss (read once, at the end)."""
    import torch

    n = X.shape[0]
    order = torch.randperm(n, device=X.device)
    total = torch.zeros((), device=X.device)
    for start in range(0, n, batch):
        idx = order[start : start + batch]
        total += step(X[idx], y[idx]) * idx.shape[0]
    return float(total) / n


def torch_memory(dev: Any) -> dict[str, Any]:
    """A CUDA row's device memory and GPU name (nothing on the CPU)."""
    import torch

    if dev.type != "cuda":
        return {}
    return {
        "device_memory_bytes": int(torch.cuda.max_memory_reserved(dev)),
        "device_memory_kind": "torch max_memory_reserved",
        "device_name": torch.cuda.get_device_name(dev),
    }


def torch_synchronizer(device: Any) -> Any:
    import torch

    if device.type != "cuda":
        return lambda: None
    return lambda: torch.cuda.synchronize(device)  # this GPU, not the current one


def train_torch(
    workload: Workload,
    device: str,
    X: np.ndarray,
    y: np.ndarray,
    schedule: Schedule,
    precision: str = "float32",
) -> dict[str, Any]:
    """PyTorch's usual training loop; each epoch timed with ``cuda.synchronize`` around it."""
    import torch

    dev = torch_device(device)
    settings = set_precision(tf32_for(precision))
    torch.manual_seed(0)
    model = torch_model(workload).to(dev)
    optimizer = torch_optimizer(workload, model.parameters())
    step = eager_step(model, optimizer, torch.nn.CrossEntropyLoss())
    Xt, yt = torch.from_numpy(X).to(dev), torch.from_numpy(y).to(dev)
    synchronize = torch_synchronizer(dev)
    losses: list[float] = []

    def run_epoch(_: int) -> float:
        synchronize()
        start = time.perf_counter()
        losses.append(torch_epoch(step, Xt, yt, workload.batch_size))
        synchronize()
        return time.perf_counter() - start

    out = run_epochs(run_epoch, schedule)
    out.update(final_loss=losses[-1], threads=torch.get_num_threads(), **settings)
    out.update(torch_memory(dev))
    return out


def sklearn_model(workload: Workload) -> Any:
    """``MLPClassifier`` set up like the workload: no L2 (alpha=0), constant learning rate."""
    from sklearn.neural_network import MLPClassifier

    solver = "sgd" if workload.optimizer == "momentum" else "adam"
    return MLPClassifier(
        hidden_layer_sizes=tuple(workload.sizes[1:-1]),
        activation=workload.activation,
        solver=solver,
        alpha=0.0,
        batch_size=workload.batch_size,
        learning_rate="constant",
        learning_rate_init=workload.lr,
        momentum=workload.momentum,
        nesterovs_momentum=False,
        shuffle=True,
        random_state=0,
        tol=0.0,
        n_iter_no_change=10**9,
    )


def train_sklearn(
    workload: Workload, device: str, X: np.ndarray, y: np.ndarray, schedule: Schedule
) -> dict[str, Any]:
    """One ``partial_fit`` per epoch (a shuffled pass over all of ``X``), timed on its own."""
    if device != "cpu":
        raise RuntimeError("scikit-learn runs on the CPU only")
    import warnings

    clf = sklearn_model(workload)
    classes = np.arange(CLASSES)

    def run_epoch(_: int) -> float:
        start = time.perf_counter()
        clf.partial_fit(X, y, classes=classes)
        return time.perf_counter() - start

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = run_epochs(run_epoch, schedule)
    return {**out, "final_loss": float(clf.loss_), "dtype": str(clf.coefs_[0].dtype)}
