"""Fused ops against their unfused definitions, on every backend (Numba, plain NumPy, CUDA)."""

from __future__ import annotations

import numpy as np
import pytest

from backends import ACTIVATIONS

DERIVATIVE_FROM_OUTPUT = {
    "identity": lambda y: np.ones_like(y),
    "relu": lambda y: (y > 0).astype(y.dtype),
    "sigmoid": lambda y: y * (1 - y),
    "tanh": lambda y: 1 - y * y,
}
FORWARD = {
    "identity": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
}


def _data(dtype, rows=33, cols=70, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((rows, cols)).astype(dtype),
        rng.standard_normal(cols).astype(dtype),
        rng.standard_normal((rows, cols)).astype(dtype),
    )


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_place", [True, False])
def test_bias_activation_matches_definition(backend, name, dtype, in_place):
    x, b, _ = _data(dtype)
    X, B = backend.asarray(x.copy()), backend.asarray(b)  # asarray may not copy
    out = X if in_place else backend.empty(x.shape, dtype)
    result = backend.bias_activation(X, B, name, out=out)
    assert result is out and backend.is_array(result)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(backend.to_numpy(result), FORWARD[name](x + b), rtol=tol, atol=tol)
    if not in_place:
        np.testing.assert_array_equal(backend.to_numpy(X), x)  # input untouched


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("in_place", [True, False])
def test_backprop_bias_activation_gives_dz_and_bias_gradient(backend, name, dtype, in_place):
    z, _, dy = _data(dtype, seed=1)
    y = FORWARD[name](z).astype(dtype)
    expected_dz = dy.astype(np.float64) * DERIVATIVE_FROM_OUTPUT[name](y.astype(np.float64))
    DY, Y = backend.asarray(dy.copy()), backend.asarray(y)
    grad_bias = backend.asarray(np.full(y.shape[1], 123.0, dtype))  # stale values must go
    out = DY if in_place else backend.empty(y.shape, dtype)
    dz = backend.backprop_bias_activation(name, DY, Y, grad_bias, out=out)
    assert dz is out and backend.is_array(dz)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(backend.to_numpy(dz), expected_dz, rtol=tol, atol=tol)
    np.testing.assert_allclose(
        backend.to_numpy(grad_bias), expected_dz.sum(axis=0), rtol=tol, atol=10 * tol
    )


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_numba_optimizers_flush_subnormal_state_to_zero(optimizer):
    """A dead unit's moments must not decay into subnormals (x86 runs those ~100x slower)."""
    from backends import NumpyBackend

    backend = NumpyBackend()
    if backend.kernels is None:
        pytest.skip("Numba not installed: the fused CPU kernels are off")
    tiny = np.finfo(np.float32).tiny
    p, g = np.ones(64, np.float32), np.zeros(64, np.float32)
    state = np.full(64, 1.0005 * tiny, np.float32)  # one more decay step: subnormal
    if optimizer == "adam":
        v = np.full(64, 1.0005 * tiny, np.float32)
        backend.adam_update(p, g, state, v, count=10, lr=1e-3)
        assert not np.any((v != 0) & (np.abs(v) < tiny))
    else:
        backend.sgd_update(p, g, state, lr=0.1, momentum=0.25)
    assert np.all(state == 0)
    assert np.all(np.isfinite(p))
