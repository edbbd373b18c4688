"""The CPU backend: NumPy with BLAS for the matrix products, and fused Numba kernels when present.

Without Numba every op runs the NumPy body of ``backends.xp_backend``; with it (the ``fast``
extra) the ops that NumPy would run as many passes over memory — the optimizer updates,
bias + ReLU, the ReLU backward, softmax cross-entropy, batch gathering — run as one fused
loop each (``backends/cpu_kernels.py``), exactly as the CUDA backend fuses them into kernels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from . import cpu_kernels, recording, threads
from .errors import BackendUnavailable, install_hint
from .operands import LOSSES
from .xp_backend import OPTIMIZER_BLOCK, XpBackend, adam_scalars, flat_views, host_int, rows_at


def _tiny(scalar_type: Any) -> Any:
    """The smallest normal number of a float type: the optimizers' flush-to-zero bound."""
    return scalar_type(np.finfo(scalar_type).tiny)


def _check_indices(what: str, indices: Any, bound: int) -> None:
    """Indices in ``[0, bound)``: else a ``ValueError``, not a wrong result (NumPy wraps -1
    around). The Numba kernels check each index as they read it; this is for NumPy's path."""
    if indices.size and (indices.min() < 0 or indices.max() >= bound):
        raise ValueError(
            f"{what} indices must be in [0, {bound}), got {indices.min()} to {indices.max()}"
        )


def _contiguous(*arrays: Any) -> bool:
    """Whether every array given (``None`` is skipped) is C-contiguous, as the kernels need."""
    return all(a.flags.c_contiguous for a in arrays if a is not None)


def _apart(written: Any, *read: Any) -> bool:
    """Whether ``written`` shares no memory with any of ``read``: a fused kernel below updates
    ``written`` in place while it reads the others, so where it would read what it has
    already written, NumPy's body (which reads each input before it writes) runs instead."""
    return not any(np.may_share_memory(written, a) for a in read)


class NumpyBackend(XpBackend):
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
                f"Numba is not available: {install_hint('fast')} (or unset MLP_NO_NUMBA)"
            )

    def __repr__(self) -> str:
        numba = self.kernels is not None
        return f"<NumpyBackend device='cpu' numba={numba} precision={self.precision!r}>"

    def hardware(self) -> str:
        kernels = "Numba kernels" if self.kernels is not None else "no Numba kernels"
        return f"NumPy {np.__version__}, {kernels}"

    def to_numpy(self, a: Any) -> np.ndarray:
        self.check_device(a)
        return a

    def threads_for(
        self, product: tuple[int, int, int], dtype: Any
    ) -> contextlib.AbstractContextManager:
        return threads.threads_for(product, dtype)

    def capture(self, step: Callable[[], Any], keep: Any = ()) -> Callable[[], None] | None:
        """``step`` recorded as the op bodies it calls, replayed without its Python and
        checks (``backends/recording.py``); ``None``, the reason in ``capture_failure``,
        where it does what a replay could not repeat."""
        calls, self.capture_failure = recording.record(self, step)
        return None if calls is None else recording.Recording(calls, keep)

    # ------------------------------------------------------------------ fused bodies (Numba)
    def _bias_activation(self, x: Any, bias: Any, name: str, out: Any) -> Any:
        fused = name == "relu" and out is not None and _contiguous(x, bias, out)
        if self.kernels is None or not (fused and _apart(out, bias)):
            return super()._bias_activation(x, bias, name, out)
        if out is not x:
            out[...] = x
        self.kernels.bias_relu_(out, bias)
        return out

    def _backprop_relu(self, dy: Any, y: Any, out: Any) -> Any:
        fused = out is not None and _contiguous(dy, y, out)
        if self.kernels is None or not (fused and _apart(out, y)):
            return super()._backprop_relu(dy, y, out)
        if out is not dy:
            out[...] = dy
        self.kernels.relu_backward_(out.reshape(-1), y.reshape(-1))
        return out

    def _backprop_bias_activation(
        self, name: str, dy: Any, y: Any, grad_bias: Any, out: Any
    ) -> Any:
        fused = name == "relu" and out is not None and _contiguous(dy, y, out)
        if self.kernels is None or not (fused and _apart(out, y)):
            return super()._backprop_bias_activation(name, dy, y, grad_bias, out)
        if out is not dy:
            out[...] = dy
        self.kernels.relu_backward_bias_(out, y, grad_bias)
        return out

    def _gather_rows(self, source: Any, rows: Any, out: Any, scale: float, start: Any) -> Any:
        if start is not None:  # host memory: read the position here, and check it
            rows = rows_at(rows, start, out)
        exact = out.dtype.kind in "iu" and scale == 1.0  # integer batches: the labels
        if self.kernels is None or not (out.dtype.kind == "f" or exact):
            _check_indices("gather_rows: row", rows, source.shape[0])
            return super()._gather_rows(source, rows, out, scale, None)
        self.kernels.gather_rows(source, rows, out, out.dtype.type(scale))  # checks each row
        return out

    def _loss(
        self,
        name: str,
        outputs: Any,
        targets: Any,
        grad: Any,
        totals: Any,
        weights: Any,
        weight_sum: Any,
    ) -> Any:
        if self.kernels is None:
            if name != "squared_error":  # class labels index the outputs: in range, or refused
                classes = 2 if name == "sigmoid_cross_entropy" else outputs.shape[1]
                _check_indices(f"{name.replace('_', ' ')}: label", targets, classes)
            return super()._loss(name, outputs, targets, grad, totals, weights, weight_sum)
        scale = outputs.dtype.type(1.0 / outputs.shape[0])
        kernel = getattr(self.kernels, LOSSES[name])  # it checks each label as it reads it
        kernel(outputs, targets, grad, totals, scale, weights, weight_sum)
        return grad

    def _sgd_update(
        self,
        param: Any,
        grad: Any,
        velocity: Any,
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
    ) -> None:
        k = self.kernels
        if k is None or not _contiguous(param, grad, velocity):
            return super()._sgd_update(param, grad, velocity, lr, momentum, nesterov, weight_decay)
        param, grad, velocity = flat_views(param, grad, velocity)  # the kernels index p[i]
        t = param.dtype.type
        if momentum:
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

    def _adam_update(
        self,
        param: Any,
        grad: Any,
        m: Any,
        v: Any,
        count: Any,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        decoupled: bool,
    ) -> None:
        k = self.kernels
        if k is None or not _contiguous(param, grad, m, v):
            return super()._adam_update(
                param, grad, m, v, count, lr, beta1, beta2, eps, weight_decay, decoupled
            )
        param, grad, m, v = flat_views(param, grad, m, v)  # the kernels index p[i]
        t = param.dtype.type
        step_size, inv_sqrt_bc2, l2, decay = adam_scalars(
            host_int(count), lr, beta1, beta2, weight_decay, decoupled
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
