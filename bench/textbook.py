"""The textbook baseline: a plain NumPy (or CuPy) training loop, as a tutorial writes it.

No preallocation, no fusion, no flat buffers: ``X[idx]`` per batch, ``a @ W + b``,
``np.maximum``, a softmax, the gradients by the chain rule and the optimizer's formula,
each expression allocating its result. It is the yardstick the library has to beat.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Any

import numpy as np

from backends import parse_device

from .timing import Schedule, run_epochs
from .workloads import Workload


class TextbookMLP:
    """Weights ``W`` of shape (in, out) and biases ``b``, He-initialised, in float32."""

    def __init__(self, sizes: tuple[int, ...], xp: Any = np, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.xp = xp
        self.W = [
            xp.asarray(rng.normal(0, np.sqrt(2 / m), (m, n)).astype(np.float32))
            for m, n in itertools.pairwise(sizes)
        ]
        self.b = [xp.zeros(n, dtype=np.float32) for n in sizes[1:]]

    def params(self) -> list[Any]:
        return self.W + self.b

    def loss_and_grads(self, x: Any, y: Any) -> tuple[Any, list[Any]]:
        """Mean cross-entropy of the batch (a device scalar) and the gradients of ``params()``."""
        xp = self.xp
        activations = [x]
        for i, (W, b) in enumerate(zip(self.W, self.b, strict=True)):
            z = activations[-1] @ W + b
            activations.append(xp.maximum(z, 0) if i < len(self.W) - 1 else z)
        logits = activations.pop()
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = xp.exp(shifted)
        probs = exp / exp.sum(axis=1, keepdims=True)
        n = x.shape[0]
        rows = xp.arange(n)
        loss = -xp.log(probs[rows, y]).mean()

        grad = probs
        grad[rows, y] -= 1
        grad /= n
        dW, db = [None] * len(self.W), [None] * len(self.W)
        for i in range(len(self.W) - 1, -1, -1):
            a = activations[i]
            dW[i] = a.T @ grad
            db[i] = grad.sum(axis=0)
            if i > 0:
                grad = (grad @ self.W[i].T) * (a > 0)
        return loss, dW + db


class SGDMomentum:
    """``v = mu*v + g``; ``p -= lr*v``."""

    def __init__(self, params: list[Any], lr: float, momentum: float, xp: Any) -> None:
        self.lr, self.momentum = lr, momentum
        self.v = [xp.zeros_like(p) for p in params]

    def step(self, params: list[Any], grads: list[Any]) -> None:
        for p, g, v in zip(params, grads, self.v, strict=True):
            v *= self.momentum
            v += g
            p -= self.lr * v


class Adam:
    """Kingma & Ba's update with bias correction, written as the paper writes it."""

    def __init__(
        self,
        params: list[Any],
        lr: float,
        xp: Any,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.xp, self.lr, self.eps = xp, lr, eps
        self.beta1, self.beta2 = betas
        self.m = [xp.zeros_like(p) for p in params]
        self.v = [xp.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params: list[Any], grads: list[Any]) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            m_hat = m / (1 - b1**self.t)
            v_hat = v / (1 - b2**self.t)
            p -= self.lr * m_hat / (self.xp.sqrt(v_hat) + self.eps)


def _array_module(device: str) -> tuple[Any, Any, Any]:
    """``(xp, synchronize, context)`` for a device: NumPy on the CPU, CuPy on CUDA, where
    ``context`` makes the named GPU the current one (``cuda:1`` is not the default GPU)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return np, lambda: None, contextlib.nullcontext()
    import cupy

    gpu = cupy.cuda.Device(index)
    return cupy, gpu.synchronize, gpu


def train_textbook(
    workload: Workload, device: str, X: np.ndarray, y: np.ndarray, schedule: Schedule
) -> dict[str, Any]:
    """Shuffled epochs, each timed with the device synchronised; loss read once per epoch."""
    xp, synchronize, on_device = _array_module(device)
    with on_device:
        return _train(workload, xp, synchronize, X, y, schedule)


def _train(
    workload: Workload, xp: Any, synchronize: Any, X: np.ndarray, y: np.ndarray, schedule: Schedule
) -> dict[str, Any]:
    X, y = xp.asarray(X), xp.asarray(y)
    model = TextbookMLP(workload.sizes, xp)
    params = model.params()
    if workload.optimizer == "momentum":
        optimizer: Any = SGDMomentum(params, workload.lr, workload.momentum, xp)
    else:
        optimizer = Adam(params, workload.lr, xp)
    n, batch = X.shape[0], workload.batch_size
    losses: list[float] = []

    def run_epoch(epoch: int) -> float:
        synchronize()
        start = time.perf_counter()
        order = xp.asarray(np.random.default_rng([0, epoch]).permutation(n))
        total = 0.0
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            batch_loss, grads = model.loss_and_grads(X[idx], y[idx])
            optimizer.step(params, grads)
            total = total + batch_loss * idx.shape[0]
        losses.append(float(total) / n)
        synchronize()
        return time.perf_counter() - start

    return {**run_epochs(run_epoch, schedule), "final_loss": losses[-1]}
