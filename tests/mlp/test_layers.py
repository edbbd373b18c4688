"""Layers on their own: dropout forward and backward (gradients through it against finite
differences), and its probability checked."""

from __future__ import annotations

import numpy as np
import pytest

from backends import NumpyBackend
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


def test_dropout_layer_forward_and_backward():
    backend = NumpyBackend()
    layer = Dropout(0.5)
    layer.bind(backend)
    layer.generator = backend.random_generator(0)
    x = np.random.default_rng(1).uniform(1.0, 2.0, size=(200, 100)).astype(np.float32)
    original = x.copy()
    y = layer.forward(x.copy(), training=True)
    kept = y != 0
    assert 0.45 < kept.mean() < 0.55
    np.testing.assert_allclose(y[kept], 2.0 * original[kept], rtol=1e-6)
    dy = np.ones_like(x)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx != 0, kept)  # the same units are dropped going back
    np.testing.assert_allclose(dx[kept], 2.0)

    z = original.copy()
    assert layer.forward(z, training=False) is z
    np.testing.assert_array_equal(z, original)
    g = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(g), 1.0)  # no mask after an eval forward


@pytest.mark.parametrize("p", [1.0, -0.5, 1.5])
def test_dropout_probability_checked(p):
    with pytest.raises(ValueError):
        Dropout(p)


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
