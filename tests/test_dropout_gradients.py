"""Backprop through Linear(activation) + Dropout, with the mask held fixed, vs finite differences.

Sigmoid and tanh compute their derivative from their output, so dropout must leave that
output intact: scaling it in place gave wrong hidden-layer gradients.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlp import Dropout, Linear


def _layers(backend, activation, W, b):
    linear, dropout = Linear(4, 6, activation), Dropout(0.5)
    for layer in (linear, dropout):
        layer.bind(backend)
    params = backend.asarray(np.concatenate([W.ravel(), b]))
    linear.attach(params, backend.zeros(params.shape, np.float64))
    return linear, dropout


def _loss(backend, activation, W, b, x, r, seed=3):
    """sum(r * dropout(linear(x))) with the same dropout mask every call."""
    linear, dropout = _layers(backend, activation, W, b)
    dropout.generator = backend.random_generator(seed)
    out = dropout.forward(linear.forward(backend.asarray(x), training=True), training=True)
    return float(np.sum(backend.to_numpy(out) * r)), linear, dropout


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_gradients_through_dropout_match_finite_differences(backend, activation):
    rng = np.random.default_rng(0)
    x, r = rng.standard_normal((5, 4)), rng.standard_normal((5, 6))
    W, b = rng.standard_normal((4, 6)), rng.standard_normal(6)
    _, linear, dropout = _loss(backend, activation, W, b, x, r)
    assert 0 < float(np.mean(backend.to_numpy(dropout._mask) > 0)) < 1  # some units dropped
    linear.backward(dropout.backward(backend.asarray(r.copy())), need_dx=False)
    analytic = backend.to_numpy(linear.grad_weight)

    numeric = np.zeros_like(W)
    h = 1e-6
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += h
        Wm[idx] -= h
        up = _loss(backend, activation, Wp, b, x, r)[0]
        down = _loss(backend, activation, Wm, b, x, r)[0]
        numeric[idx] = (up - down) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
