"""Small problems the model and training tests learn (separable blobs, a few random rows), and
the finite-difference gradients they check backprop against."""

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


def numeric_gradients(model, state, X, y, weights=None, h=1e-6):
    """Central differences of the (weighted) loss w.r.t. every parameter entry, through the
    public API; the model's parameters are restored afterwards."""
    out = {}
    for key, value in state.items():
        grad = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            losses = []
            for sign in (1.0, -1.0):
                probe = {k: v.copy() for k, v in state.items()}
                probe[key][idx] += sign * h
                model.load_state_dict(probe)
                losses.append(model.evaluate(X, y, sample_weight=weights)["loss"])
            grad[idx] = (losses[0] - losses[1]) / (2 * h)
        out[key] = grad
    model.load_state_dict(state)
    return out
