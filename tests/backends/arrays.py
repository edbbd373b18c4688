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
