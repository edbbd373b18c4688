"""Small problems the model and training tests learn: separable blobs, and a few random rows."""

from __future__ import annotations

import numpy as np


def blobs(n, classes=4, features=10, seed=0, spread=1.0):
    """A small separable problem: one Gaussian blob per class (centres fixed by ``seed=0``)."""
    centres = np.random.default_rng(0).normal(0.0, 3.0, size=(classes, features))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    X = centres[y] + rng.normal(0.0, spread, size=(n, features))
    return X, y


def small_problem(rows=20):
    rng = np.random.default_rng(0)
    return rng.standard_normal((rows, 6)).astype(np.float32), rng.integers(0, 3, rows)
