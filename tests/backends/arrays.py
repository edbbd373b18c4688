"""Moving test arrays to a backend and back, checked on the way, for the backend tests."""

from __future__ import annotations

import numpy as np

DTYPES = [np.float32, np.float64]


def host(backend, a):
    """A backend array as float64 NumPy, checking on the way that it is the backend's type."""
    assert backend.is_array(a), f"expected a {backend.array_type}, got {type(a)}"
    return np.asarray(backend.to_numpy(a), dtype=np.float64)


def dev(backend, a, dtype=None):
    """A fresh device copy (never an alias of the host array the reference is computed from)."""
    return backend.asarray(np.array(a, copy=True), dtype=dtype)


def layer_problem(seed, rows, inner, cols):
    """A dense layer's input, weight and bias, float64 standard normals."""
    rng = np.random.default_rng(seed)
    shapes = ((rows, inner), (inner, cols), (cols,))
    return tuple(rng.standard_normal(shape) for shape in shapes)


def flat_layer(backend, w, b, dtype, bias_aligned=False):
    """``w`` and ``b`` as views into one flat buffer on ``backend``, as a model's layers are,
    starting an element or more in: the weights off the buffer's alignment, and the bias
    off 16 bytes, or (``bias_aligned``) on them, as a layer of sizes in fours has it."""
    itemsize = np.dtype(dtype).itemsize
    start = next(n for n in range(1, 17) if (((n + w.size) * itemsize) % 16 == 0) == bias_aligned)
    flat = dev(backend, np.concatenate([np.zeros(start), w.ravel(), b]), dtype)
    return flat[start : start + w.size].reshape(w.shape), flat[start + w.size :]
