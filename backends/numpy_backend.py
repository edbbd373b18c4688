"""The CPU backend: NumPy with BLAS for the matrix products, and fused Numba kernels when present.

Without Numba every op runs the NumPy body of ``backends.base``; with it (the ``fast``
extra) the ops that NumPy would run as many passes over memory — the optimizer updates,
bias + ReLU, the ReLU backward, softmax cross-entropy, batch gathering — run as one fused
loop each, exactly as the CUDA backend fuses them into kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import cpu_kernels
from .base import (
    OPTIMIZER_BLOCK,
    Backend,
    adam_scalars,
    check_cross_entropy,
    check_gather,
    host_int,
    require_same_shape,
    require_shape,
    rows_at,
)
from .errors import BackendUnavailable


def _tiny(scalar_type: Any) -> Any:
    """The smallest normal number of a float type: the optimizers' flush-to-zero bound."""
    return scalar_type(np.finfo(scalar_type).tiny)


def _check_indices(what: str, indices: Any, bound: int) -> None:
    """Indices in ``[0, bound)`` (on the host, cheap): else a ``ValueError``, not a wrong
    result (NumPy wraps -1 around) nor a read out of bounds."""
    if indices.size and (indices.min() < 0 or indices.max() >= bound):
        raise ValueError(
            f"{what} indices must be in [0, {bound}), got {indices.min()} to {indices.max()}"
        )


def _contiguous(*arrays: Any) -> bool:
    return all(a.flags.c_contiguous for a in arrays)


class NumpyBackend(Backend):
    """Runs every op on the host. ``use_numba=None`` uses Numba's kernels when installed."""

    name = "numpy"
    device = "cpu"
    xp = np
    array_type = np.ndarray
    optimizer_block = OPTIMIZER_BLOCK

    def __init__(self, use_numba: bool | None = None, precision: str = "float32") -> None:
        super().__init__(precision)
        self.kernels = None if use_numba is False else cpu_kernels.load()
        if use_numba and self.kernels is None:
            raise BackendUnavailable(
                "Numba is not available: pip install 'mlp[fast]' (or unset MLP_NO_NUMBA)"
            )

    def __repr__(self) -> str:
        numba = self.kernels is not None
        return f"<NumpyBackend device='cpu' numba={numba} precision={self.precision!r}>"

    def hardware(self) -> str:
        kernels = "Numba kernels" if self.kernels is not None else "no Numba kernels"
        return f"NumPy {np.__version__}, {kernels}"

    def to_numpy(self, a: Any) -> np.ndarray:
        self.check(a)
        return a

    # ------------------------------------------------------------------ fused ops (Numba)
    def bias_activation(self, x: Any, bias: Any, name: str, out: Any = None) -> Any:
        k = self.kernels
        if k is None or name != "relu" or out is None:
            return super().bias_activation(x, bias, name, out=out)
        self.check_bias(x, bias, out)
        if not _contiguous(x, bias, out):
            return super().bias_activation(x, bias, name, out=out)
        if out is not x:
            out[...] = x
        k.bias_relu_(out, bias)
        return out

    def backprop_relu(self, dy: Any, y: Any, out: Any = None) -> Any:
        k = self.kernels
        if k is None or out is None:
            return super().backprop_relu(dy, y, out=out)
        self.check(dy, y, out)
        require_same_shape("backprop_relu", dy=dy, y=y, out=out)
        if not _contiguous(dy, y, out):
            return super().backprop_relu(dy, y, out=out)
        if out is not dy:
            out[...] = dy
        k.relu_backward_(out.reshape(-1), y.reshape(-1))
        return out

    def backprop_bias_activation(
        self, name: str, dy: Any, y: Any, grad_bias: Any, out: Any = None
    ) -> Any:
        k = self.kernels
        if k is None or name != "relu" or out is None:
            return super().backprop_bias_activation(name, dy, y, grad_bias, out=out)
        self.check(dy, y, grad_bias, out)
        require_same_shape("backprop_bias_activation", dy=dy, y=y, out=out)
        require_shape("backprop_bias_activation", "grad_bias", grad_bias, (dy.shape[-1],))
        if not _contiguous(dy, y, out):
            return super().backprop_bias_activation(name, dy, y, grad_bias, out=out)
        if out is not dy:
            out[...] = dy
        k.relu_backward_bias_(out, y, grad_bias)
        return out

    def gather_rows(
        self, source: Any, rows: Any, out: Any, scale: float = 1.0, start: Any = None
    ) -> Any:
        self.check(source, rows, out)
        check_gather(source, rows, out, start)
        if start is not None:  # host memory: read the position here, and check it
            rows = rows_at(rows, start, out)
        k = self.kernels
        exact = out.dtype.kind in "iu" and scale == 1.0  # integer batches: the labels
        if k is None or not (out.dtype.kind == "f" or exact):
            _check_indices("gather_rows: row", rows, source.shape[0])  # -1 would wrap around
            return super().gather_rows(source, rows, out, scale)
        k.gather_rows(source, rows, out, out.dtype.type(scale))  # checks each row it reads
        return out

    def softmax_cross_entropy_accumulate(
        self, logits: Any, labels: Any, grad: Any, totals: Any
    ) -> Any:
        self.check(logits, labels, grad, totals)
        check_cross_entropy(logits, labels, grad, totals)
        k = self.kernels
        if k is None:
            _check_indices("softmax cross-entropy: label", labels, logits.shape[1])
            return super().softmax_cross_entropy_accumulate(logits, labels, grad, totals)
        k.softmax_xent(logits, labels, grad, totals, logits.dtype.type(1.0 / logits.shape[0]))
        return grad

    def sgd_step(
        self,
        param: Any,
        grad: Any,
        velocity: Any,
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        self.check(param, grad)
        require_same_shape(
            "sgd_step", param=param, grad=grad, velocity=velocity if momentum else None
        )
        k = self.kernels
        if k is None or not _contiguous(param, grad):
            return super().sgd_step(param, grad, velocity, lr, momentum, nesterov, weight_decay)
        t = param.dtype.type
        if momentum:
            self.check(velocity)
            d_coef, v_coef = (1.0, momentum) if nesterov else (0.0, 1.0)
            k.sgd_momentum(
                param,
                grad,
                velocity,
                t(lr),
                t(momentum),
                t(weight_decay),
                t(d_coef),
                t(v_coef),
                _tiny(t),
            )
        else:
            k.sgd(param, grad, t(lr), t(weight_decay))

    def adam_step(
        self,
        param: Any,
        grad: Any,
        m: Any,
        v: Any,
        step: Any,
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        self.check(param, grad, m, v)
        require_same_shape("adam_step", param=param, grad=grad, m=m, v=v)
        k = self.kernels
        if k is None or not _contiguous(param, grad, m, v):
            return super().adam_step(
                param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled
            )
        t = param.dtype.type
        step_size, inv_sqrt_bc2, l2, decay = adam_scalars(
            host_int(step), lr, beta1, beta2, weight_decay, decoupled
        )
        k.adam(
            param,
            grad,
            m,
            v,
            t(step_size),
            t(inv_sqrt_bc2),
            t(beta1),
            t(1.0 - beta1),
            t(beta2),
            t(1.0 - beta2),
            t(eps),
            t(l2),
            t(decay),
            _tiny(t),
        )
