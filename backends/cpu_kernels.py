"""Fused CPU kernels compiled by Numba: the CPU counterpart of the CuPy backend's CUDA kernels.

Why: NumPy runs one pass over memory per ufunc. An Adam step is a dozen ufuncs, so at the
size of the standard model (535,818 parameters) it took as long as all of the step's matrix
products (1.24 ms vs 1.3 ms per step on a 2-core Xeon); the fused, vectorized kernel below
streams the buffers once (0.31 ms, one thread). Numba is optional (the ``fast`` extra):
without it the NumPy backend falls back to the blocked NumPy bodies of ``backends.base``.
"""

from __future__ import annotations

import functools
import os
from types import SimpleNamespace
from typing import Any

# Fast-math without "nnan"/"ninf": a NaN must still propagate so a diverging run is caught.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def disabled() -> bool:
    """``MLP_NO_NUMBA=1`` forces the pure NumPy path (for comparison and for tests)."""
    return os.environ.get("MLP_NO_NUMBA", "") not in ("", "0")


@functools.cache
def load() -> Any:
    """The compiled kernels as a namespace, or ``None`` when Numba is absent or disabled."""
    if disabled():
        return None
    try:
        import numba
    except ImportError:
        return None
    return _build(numba)


def _build(numba: Any) -> Any:
    """Define the kernels (compiled on first call, cached on disk beside this module)."""
    import numpy as np

    # error_model="numpy": no ZeroDivisionError branch, so LLVM can vectorize divisions.
    # Serial on purpose: a second thread pool next to BLAS's spinning threads slows both.
    jit = functools.partial(
        numba.njit, fastmath=_FASTMATH, error_model="numpy", cache=True, nogil=True
    )

    # Scalars arrive already in the arrays' dtype (see NumpyBackend), so float32 stays float32.
    # ``tiny`` is the dtype's smallest normal number: optimizer state below it is flushed to
    # zero. A dead unit's moments decay geometrically into subnormal numbers, which x86 CPUs
    # handle up to 100x slower; without the flush, std epochs slowed from 1.05 s to 1.56 s
    # over six epochs. GPUs and PyTorch's CPU kernels behave the same way (flush to zero).
    @jit
    def adam(
        p,
        g,
        m,
        v,
        step_size,
        inv_sqrt_bc2,
        beta1,
        one_m_beta1,
        beta2,
        one_m_beta2,
        eps,
        l2,
        decay,
        tiny,
    ):
        zero = tiny - tiny
        for i in range(p.size):
            pi = p[i]
            gi = g[i] + l2 * pi
            mi = beta1 * m[i] + one_m_beta1 * gi
            vi = beta2 * v[i] + one_m_beta2 * (gi * gi)
            mi = mi if abs(mi) >= tiny else zero
            vi = vi if vi >= tiny else zero
            m[i] = mi
            v[i] = vi
            p[i] = pi * decay - step_size * mi / (np.sqrt(vi) * inv_sqrt_bc2 + eps)

    @jit
    def sgd(p, g, lr, weight_decay):
        for i in range(p.size):
            p[i] -= lr * (g[i] + weight_decay * p[i])

    @jit
    def sgd_momentum(p, g, velocity, lr, momentum, weight_decay, d_coef, v_coef, tiny):
        """Step ``d_coef * d + v_coef * v``: (1, mu) for Nesterov, (0, 1) for plain momentum.

        Coefficients rather than a branch on ``nesterov``, so the loop vectorizes.
        """
        zero = tiny - tiny
        for i in range(p.size):
            d = g[i] + weight_decay * p[i]
            vi = momentum * velocity[i] + d
            vi = vi if abs(vi) >= tiny else zero
            velocity[i] = vi
            p[i] -= lr * (d_coef * d + v_coef * vi)

    # In-place kernels write where they read: LLVM only vectorizes a loop whose output cannot
    # overlap its other inputs, so an out= that aliases an input would run scalar.
    @jit
    def bias_relu_(x, b):
        rows, cols = x.shape
        for r in range(rows):
            for c in range(cols):
                z = x[r, c] + b[c]
                x[r, c] = 0 if z <= 0 else z  # a NaN stays NaN

    @jit
    def relu_backward_(dy, y):
        for i in range(y.size):
            dy[i] = dy[i] if y[i] > 0 else 0

    @jit
    def relu_backward_bias_(dy, y, grad_bias):
        """dz = dy * (y > 0) in place, and grad_bias = column sums of dz, in one pass."""
        rows, cols = dy.shape
        grad_bias[:] = 0
        for r in range(rows):
            for c in range(cols):
                d = dy[r, c] if y[r, c] > 0 else 0
                dy[r, c] = d
                grad_bias[c] += d

    # The losses: ``weights`` is None (each row's gradient scaled by ``scale``, 1/rows) or a
    # weight per row, the gradient then scaled by weight/weight_sum[0] and the totals
    # weighted. Numba compiles the two apart, so the unweighted loop is the one it was.
    # A batch of zero weights has no gradient, not 0/0: its sum counts as 1. Written out in
    # each loss, not a jitted helper: a kernel that closes over another kernel gets a new
    # cache key in every process (Numba hashes the pickled closure, and a dispatcher
    # pickles with a fresh id), so it would be compiled again at every start.
    @jit
    def softmax_xent(logits, labels, grad, totals, scale, weights, weight_sum):
        rows, classes = logits.shape
        loss = 0.0
        hits = 0.0
        norm = 1.0
        if weight_sum is not None and weight_sum[0] > 0:
            norm = weight_sum[0]
        for r in range(rows):
            label = labels[r]
            if label < 0 or label >= classes:
                raise ValueError("softmax cross-entropy: a label is outside [0, classes)")
            z_label = logits[r, label]
            z_max = logits[r, 0]
            arg = 0
            for j in range(1, classes):
                if logits[r, j] > z_max:
                    z_max = logits[r, j]
                    arg = j
            total = 0.0
            for j in range(classes):
                e = np.exp(logits[r, j] - z_max)
                grad[r, j] = e
                total += e
            inv = 1.0 / total
            row_scale = scale if weights is None else weights[r] / norm
            for j in range(classes):
                grad[r, j] = (grad[r, j] * inv - (1.0 if j == label else 0.0)) * row_scale
            if weights is None:
                loss += np.log(total) - (z_label - z_max)
                hits += arg == label
            else:
                loss += weights[r] * (np.log(total) - (z_label - z_max))
                hits += weights[r] * (arg == label)
        totals[0] += loss
        totals[1] += hits

    @jit
    def sigmoid_xent(logits, labels, grad, totals, scale, weights, weight_sum):
        rows = logits.shape[0]
        loss = 0.0
        hits = 0.0
        norm = 1.0
        if weight_sum is not None and weight_sum[0] > 0:
            norm = weight_sum[0]
        for r in range(rows):
            label = labels[r]
            if label < 0 or label > 1:
                raise ValueError("sigmoid cross-entropy: a label is not 0 or 1")
            z = logits[r, 0]
            y = 1.0 if label == 1 else 0.0
            row_loss = max(z, 0.0) - z * y + np.log1p(np.exp(-abs(z)))
            p = 0.5 * np.tanh(0.5 * z) + 0.5
            row_scale = scale if weights is None else weights[r] / norm
            grad[r, 0] = (p - y) * row_scale
            w = 1.0 if weights is None else weights[r]
            loss += w * row_loss
            hits += w * ((z > 0) == (label == 1))
        totals[0] += loss
        totals[1] += hits

    @jit
    def squared_error(outputs, targets, grad, totals, scale, weights, weight_sum):
        rows, width = outputs.shape
        loss = 0.0
        norm = 1.0
        if weight_sum is not None and weight_sum[0] > 0:
            norm = weight_sum[0]
        for r in range(rows):
            row_scale = scale if weights is None else weights[r] / norm
            row_loss = 0.0
            for j in range(width):
                d = outputs[r, j] - targets[r, j]
                row_loss += d * d
                grad[r, j] = d * row_scale
            loss += 0.5 * row_loss if weights is None else 0.5 * weights[r] * row_loss
        totals[0] += loss

    # Four rows at a time, a quarter of the batch apart: a batch's rows lie anywhere in a
    # training set larger than the caches, and one row at a time waits on each row's first
    # lines from memory, while four streams keep four rows in flight (128 rows of 784 on a
    # 2-core EPYC: float32 34 µs against 48-50, uint8 19 against 28). Written out, as a loop
    # over the four would not vectorize (and eight streams vectorized for float32 alone).
    # Every index is checked before any row is written.
    @jit
    def gather_rows(source, rows, out, scale):
        n, cols = source.shape
        for r in range(rows.size):
            if rows[r] < 0 or rows[r] >= n:
                raise ValueError("gather_rows: a row index is outside the source")
        q = rows.size // 4
        for r in range(q):
            a, b, c, d = rows[r], rows[r + q], rows[r + 2 * q], rows[r + 3 * q]
            for j in range(cols):
                out[r, j] = source[a, j] * scale
                out[r + q, j] = source[b, j] * scale
                out[r + 2 * q, j] = source[c, j] * scale
                out[r + 3 * q, j] = source[d, j] * scale
        for r in range(4 * q, rows.size):
            a = rows[r]
            for j in range(cols):
                out[r, j] = source[a, j] * scale

    return SimpleNamespace(
        adam=adam,
        sgd=sgd,
        sgd_momentum=sgd_momentum,
        bias_relu_=bias_relu_,
        relu_backward_=relu_backward_,
        relu_backward_bias_=relu_backward_bias_,
        softmax_xent=softmax_xent,
        sigmoid_xent=sigmoid_xent,
        squared_error=squared_error,
        gather_rows=gather_rows,
    )
