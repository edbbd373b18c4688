"""The CPU backend: NumPy, with BLAS for the matrix products."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import OPTIMIZER_BLOCK, Backend


class NumpyBackend(Backend):
    """Runs every op on the host with NumPy; the base class's bodies are already NumPy code."""

    name = "numpy"
    device = "cpu"
    xp = np
    array_type = np.ndarray
    optimizer_block = OPTIMIZER_BLOCK

    def to_numpy(self, a: Any) -> np.ndarray:
        self.check(a)
        return a
