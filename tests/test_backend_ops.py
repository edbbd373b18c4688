"""Every backend op against an independent float64 NumPy reference, forward and backward.

Each test takes the ``backend`` fixture, so it runs on NumPy and, where a GPU exists, on
CuPy (whose fused kernels replace many of the base class's bodies).
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest

import backends
from backends import ACTIVATIONS, BackendUnavailable, NumpyBackend, get_backend, parse_device
from backends.xp_backend import OPTIMIZER_BLOCK

DTYPES = [np.float32, np.float64]
TOL = {
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-6},
    np.dtype(np.float64): {"rtol": 1e-11, "atol": 1e-13},
}


def tol(dtype):
    return TOL[np.dtype(dtype)]


def host(backend, a):
    """A backend array as float64 NumPy, checking on the way that it is the backend's type."""
    assert backend.is_array(a), f"expected a {backend.array_type}, got {type(a)}"
    return np.asarray(backend.to_numpy(a), dtype=np.float64)


def dev(backend, a, dtype=None):
    """A fresh device copy (never an alias of the host array the reference is computed from)."""
    return backend.asarray(np.array(a, copy=True), dtype=dtype)


# ---------------------------------------------------------------------- references (float64)
def ref_forward(name, x):
    x = np.asarray(x, dtype=np.float64)
    if name == "identity":
        return x.copy()
    if name == "relu":
        return np.where(x > 0, x, 0.0)
    if name == "sigmoid":
        return np.exp(-np.logaddexp(0.0, -x))  # 1 / (1 + exp(-x)) without overflow
    if name == "tanh":
        return np.tanh(x)
    raise AssertionError(name)


def ref_derivative(name, x):
    """The analytic derivative f'(x)."""
    x = np.asarray(x, dtype=np.float64)
    if name == "identity":
        return np.ones_like(x)
    if name == "relu":
        return (x > 0).astype(np.float64)
    if name == "sigmoid":
        s = np.exp(-np.logaddexp(0.0, -x))
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 - np.tanh(x) ** 2
    raise AssertionError(name)


def ref_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_cross_entropy(z, labels):
    """Mean loss, its gradient w.r.t. the logits, and the number of correct argmax rows."""
    z = np.asarray(z, dtype=np.float64)
    rows = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(rows), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(rows), labels] -= 1.0
    correct = int(np.sum(z.argmax(axis=1) == labels))
    return loss, grad / rows, correct


def away_from_zero(rng, shape, low=0.1, high=3.0):
    """Values with |x| in [low, high]: finite differences never straddle ReLU's kink."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, size=shape)


# ---------------------------------------------------------------------- linear algebra
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul(backend, dtype, transpose_a, transpose_b):
    rng = np.random.default_rng(1)
    m, k, n = 9, 7, 5
    a = rng.standard_normal((k, m) if transpose_a else (m, k))
    b = rng.standard_normal((n, k) if transpose_b else (k, n))
    expected = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
    da, db = dev(backend, a, dtype), dev(backend, b, dtype)

    result = backend.matmul(da, db, transpose_a=transpose_a, transpose_b=transpose_b)
    np.testing.assert_allclose(host(backend, result), expected, **tol(dtype))
    assert result.shape == (m, n)

    out = backend.empty((m, n), dtype)
    returned = backend.matmul(da, db, out=out, transpose_a=transpose_a, transpose_b=transpose_b)
    assert returned is out
    np.testing.assert_allclose(host(backend, out), expected, **tol(dtype))
    # the inputs are left alone
    np.testing.assert_array_equal(host(backend, da), a.astype(dtype))
    np.testing.assert_array_equal(host(backend, db), b.astype(dtype))


def test_matmul_into_view_of_flat_buffer(backend):
    """Layers write weight gradients into views of one flat buffer: the view must receive them."""
    rng = np.random.default_rng(2)
    x, dz = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    flat = backend.zeros((4 * 3 + 3 + 5,), np.float64)
    view = flat[: 4 * 3].reshape(4, 3)
    returned = backend.matmul(dev(backend, x), dev(backend, dz), out=view, transpose_a=True)
    np.testing.assert_allclose(host(backend, returned), x.T @ dz, rtol=1e-12)
    flat_host = host(backend, flat)
    np.testing.assert_allclose(flat_host[:12].reshape(4, 3), x.T @ dz, rtol=1e-12)
    np.testing.assert_array_equal(flat_host[12:], 0.0)

    bias_view = flat[12:15]
    backend.sum_rows(dev(backend, dz), out=bias_view)
    flat_host = host(backend, flat)
    np.testing.assert_allclose(flat_host[12:15], dz.sum(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(flat_host[15:], 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_add(backend, dtype):
    rng = np.random.default_rng(3)
    x, b = rng.standard_normal((8, 5)), rng.standard_normal(5)
    dx, db = dev(backend, x, dtype), dev(backend, b, dtype)

    result = backend.bias_add(dx, db)
    np.testing.assert_allclose(host(backend, result), x + b, **tol(dtype))
    np.testing.assert_array_equal(host(backend, dx), x.astype(dtype))  # not in place

    returned = backend.bias_add(dx, db, out=dx)
    assert returned is dx
    np.testing.assert_allclose(host(backend, dx), x + b, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_rows(backend, dtype):
    rng = np.random.default_rng(4)
    for rows in (1, 7, 300):
        x = rng.standard_normal((rows, 6))
        result = backend.sum_rows(dev(backend, x, dtype))
        assert result.shape == (6,)
        np.testing.assert_allclose(
            host(backend, result),
            x.sum(axis=0),
            rtol=1e-5 if dtype == np.float32 else 1e-11,
            atol=1e-4 if dtype == np.float32 else 1e-12,
        )
        out = backend.empty((6,), dtype)
        assert backend.sum_rows(dev(backend, x, dtype), out=out) is out
        np.testing.assert_allclose(
            host(backend, out),
            x.sum(axis=0),
            rtol=1e-5 if dtype == np.float32 else 1e-11,
            atol=1e-4 if dtype == np.float32 else 1e-12,
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_multiply(backend, dtype):
    rng = np.random.default_rng(5)
    a, b, row = rng.standard_normal((6, 4)), rng.standard_normal((6, 4)), rng.standard_normal(4)
    da = dev(backend, a, dtype)
    np.testing.assert_allclose(
        host(backend, backend.multiply(da, dev(backend, b, dtype))), a * b, **tol(dtype)
    )
    np.testing.assert_allclose(
        host(backend, backend.multiply(da, dev(backend, row, dtype))), a * row, **tol(dtype)
    )
    np.testing.assert_array_equal(host(backend, da), a.astype(dtype))
    returned = backend.multiply(da, dev(backend, b, dtype), out=da)
    assert returned is da
    np.testing.assert_allclose(host(backend, da), a * b, **tol(dtype))


# ---------------------------------------------------------------------- activations
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_forward(backend, name, dtype):
    rng = np.random.default_rng(6)
    x = rng.uniform(-6, 6, size=(11, 13))
    expected = ref_forward(name, x)
    direct = functools.partial(backend.activation, name)

    dx = dev(backend, x, dtype)
    np.testing.assert_allclose(host(backend, direct(dx)), expected, **tol(dtype))
    np.testing.assert_allclose(host(backend, backend.activation(name, dx)), expected, **tol(dtype))
    np.testing.assert_array_equal(host(backend, dx), x.astype(dtype))  # out=None: input kept

    other = backend.empty(x.shape, dtype)
    assert direct(dx, out=other) is other
    np.testing.assert_allclose(host(backend, other), expected, **tol(dtype))

    returned = direct(dx, out=dx)
    assert returned is dx
    np.testing.assert_allclose(host(backend, dx), expected, **tol(dtype))

    dx = dev(backend, x, dtype)
    assert backend.activation(name, dx, out=dx) is dx
    np.testing.assert_allclose(host(backend, dx), expected, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
def test_activation_extreme_inputs(backend, name, dtype):
    x = np.array([[-1e4, -1000.0, -88.0, 0.0, 88.0, 1000.0, 1e4]])
    y = host(backend, backend.activation(name, dev(backend, x, dtype)))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, ref_forward(name, x), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_analytic(backend, name, dtype):
    rng = np.random.default_rng(7)
    x = away_from_zero(rng, (9, 14))
    dy = rng.standard_normal(x.shape)
    y = ref_forward(name, x)
    expected = dy * ref_derivative(name, x)
    d_y = dev(backend, y, dtype)
    # the backward needs only the forward's output
    d_dy = dev(backend, dy, dtype)
    direct = functools.partial(backend.backprop_activation, name)
    np.testing.assert_allclose(host(backend, direct(d_dy, d_y)), expected, **tol(dtype))
    np.testing.assert_allclose(
        host(backend, backend.backprop_activation(name, d_dy, d_y)), expected, **tol(dtype)
    )
    np.testing.assert_array_equal(host(backend, d_dy), dy.astype(dtype))
    np.testing.assert_array_equal(host(backend, d_y), y.astype(dtype))

    other = backend.empty(x.shape, dtype)
    assert direct(d_dy, d_y, out=other) is other
    np.testing.assert_allclose(host(backend, other), expected, **tol(dtype))

    assert direct(d_dy, d_y, out=d_dy) is d_dy
    np.testing.assert_allclose(host(backend, d_dy), expected, **tol(dtype))

    d_dy = dev(backend, dy, dtype)
    assert backend.backprop_activation(name, d_dy, d_y, out=d_dy) is d_dy
    np.testing.assert_allclose(host(backend, d_dy), expected, **tol(dtype))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_finite_difference(backend, name):
    """backprop_f(dy, f(x)) == dy * (f(x+h) - f(x-h)) / 2h, f run in float64."""
    rng = np.random.default_rng(8)
    x = away_from_zero(rng, (7, 10))
    dy = rng.standard_normal(x.shape)
    h = 1e-5
    f = functools.partial(backend.activation, name)
    y = f(dev(backend, x, np.float64))
    plus = host(backend, f(dev(backend, x + h, np.float64)))
    minus = host(backend, f(dev(backend, x - h, np.float64)))
    numeric = dy * (plus - minus) / (2 * h)
    grad = backend.backprop_activation(name, dev(backend, dy, np.float64), y)
    np.testing.assert_allclose(host(backend, grad), numeric, rtol=1e-7, atol=1e-9)


def test_activation_dispatch_rejects_unknown_names(backend):
    x = dev(backend, np.ones((2, 3)), np.float32)
    for call in (
        lambda: backend.activation("softplus", x),
        lambda: backend.backprop_activation("softplus", x, x),
        lambda: backend.bias_activation(x, dev(backend, np.ones(3), np.float32), "softplus"),
    ):
        with pytest.raises(ValueError, match="softplus"):
            call()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_bias_activation(backend, name, dtype):
    rng = np.random.default_rng(9)
    x, b = rng.uniform(-4, 4, size=(10, 6)), rng.uniform(-1, 1, size=6)
    expected = ref_forward(name, x + b)
    dx, db = dev(backend, x, dtype), dev(backend, b, dtype)

    result = backend.bias_activation(dx, db, name)
    np.testing.assert_allclose(host(backend, result), expected, **tol(dtype))
    np.testing.assert_array_equal(host(backend, dx), x.astype(dtype))

    returned = backend.bias_activation(dx, db, name, out=dx)
    assert returned is dx
    np.testing.assert_allclose(host(backend, dx), expected, **tol(dtype))
    np.testing.assert_array_equal(host(backend, db), b.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax(backend, dtype):
    rng = np.random.default_rng(10)
    z = rng.standard_normal((12, 7)) * 4
    z[0] += 1000.0  # a huge shift must not overflow
    z[1] -= 1000.0
    z = z.astype(dtype)  # the reference sees exactly the rounded inputs
    expected = ref_softmax(z)
    dz = dev(backend, z, dtype)

    p = host(backend, backend.softmax(dz))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(
        p,
        expected,
        rtol=1e-5 if dtype == np.float32 else 1e-11,
        atol=1e-7 if dtype == np.float32 else 1e-14,
    )
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)

    returned = backend.softmax(dz, out=dz)
    assert returned is dz
    np.testing.assert_allclose(host(backend, dz), p, rtol=1e-6, atol=1e-9)


def test_argmax_and_all_finite(backend):
    rng = np.random.default_rng(11)
    z = rng.standard_normal((20, 5))
    np.testing.assert_array_equal(
        backend.to_numpy(backend.argmax(dev(backend, z))), z.argmax(axis=1)
    )
    assert backend.all_finite(dev(backend, z)) is True
    for bad in (np.nan, np.inf, -np.inf):
        w = z.copy()
        w[3, 2] = bad
        assert backend.all_finite(dev(backend, w)) is False


# ---------------------------------------------------------------------- loss
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("rows", [1, 37, 300])
def test_softmax_cross_entropy(backend, dtype, label_dtype, rows):
    rng = np.random.default_rng(12)
    classes = 10
    z = rng.standard_normal((rows, classes)) * 3
    labels = rng.integers(0, classes, size=rows)
    loss_ref, grad_ref, _ = ref_cross_entropy(z, labels)
    dz = dev(backend, z, dtype)
    dlabels = dev(backend, labels.astype(label_dtype))

    loss, grad = backend.softmax_cross_entropy(dz, dlabels)
    assert backend.is_array(loss) and loss.shape == ()  # stays on the device: no sync
    assert backend.is_array(grad)
    assert grad.shape == z.shape and grad.dtype == np.dtype(dtype)
    assert float(backend.to_numpy(loss)) == pytest.approx(
        loss_ref, rel=1e-5 if dtype == np.float32 else 1e-11
    )
    np.testing.assert_allclose(host(backend, grad), grad_ref, **tol(dtype))
    np.testing.assert_array_equal(host(backend, dz), z.astype(dtype))  # logits kept

    out = backend.empty(z.shape, dtype)
    loss2, grad2 = backend.softmax_cross_entropy(dz, dlabels, grad=out)
    assert grad2 is out
    np.testing.assert_allclose(host(backend, out), grad_ref, **tol(dtype))
    assert float(backend.to_numpy(loss2)) == pytest.approx(loss_ref, rel=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_softmax_cross_entropy_accumulate(backend, dtype, label_dtype):
    """totals[0] += summed loss, totals[1] += correct argmax count; grad may alias logits."""
    rng = np.random.default_rng(13)
    totals = backend.zeros((2,), np.float64)
    expected_loss, expected_correct = 0.0, 0
    for rows in (45, 130, 3):
        z = rng.standard_normal((rows, 6)) * 2
        labels = rng.integers(0, 6, size=rows)
        labels[: rows // 2] = z[: rows // 2].argmax(axis=1)  # make sure some rows are right
        loss_ref, grad_ref, correct = ref_cross_entropy(z, labels)
        expected_loss += loss_ref * rows
        expected_correct += correct

        dz = dev(backend, z, dtype)
        returned = backend.softmax_cross_entropy_accumulate(
            dz, dev(backend, labels.astype(label_dtype)), dz, totals
        )
        assert returned is dz  # the gradient overwrote the logits in place
        np.testing.assert_allclose(host(backend, dz), grad_ref, **tol(dtype))

        loss_sum, hits = backend.to_numpy(totals)
        assert hits == expected_correct
        assert loss_sum == pytest.approx(expected_loss, rel=1e-5 if dtype == np.float32 else 1e-11)
    assert expected_correct > 0


def test_softmax_cross_entropy_huge_logits(backend):
    z = np.array([[1000.0, 0.0, -1000.0], [0.0, 2000.0, 1.0]], dtype=np.float32)
    labels = np.array([0, 2])
    loss, grad = backend.softmax_cross_entropy(dev(backend, z), dev(backend, labels, np.int32))
    loss = float(backend.to_numpy(loss))
    assert np.isfinite(loss)
    assert loss == pytest.approx(ref_cross_entropy(z, labels)[0], rel=1e-5)
    assert np.all(np.isfinite(host(backend, grad)))


# ---------------------------------------------------------------------- data
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row_dtype", [np.int64, np.int32])
def test_gather_rows_uint8_scaled(backend, dtype, row_dtype):
    rng = np.random.default_rng(14)
    source = rng.integers(0, 256, size=(50, 12), dtype=np.uint8)
    source[0] = 255
    source[1] = 0
    rows = np.concatenate([[0, 1], rng.permutation(50)[:14]]).astype(row_dtype)
    out = backend.empty((rows.size, 12), dtype)
    returned = backend.gather_rows(dev(backend, source), dev(backend, rows), out, scale=1 / 255)
    assert returned is out
    expected = source[rows].astype(np.float64) / 255.0
    np.testing.assert_allclose(host(backend, out), expected, rtol=1e-6, atol=0)
    assert host(backend, out).max() == pytest.approx(1.0, rel=1e-6)
    # the compact source is not converted in place
    np.testing.assert_array_equal(backend.to_numpy(dev(backend, source)), source)


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_gather_rows_from_a_start_on_the_device(backend, dtype):
    """With ``start`` (how a training step reads its batch's place in the epoch's order),
    ``out`` takes len(out) rows of ``rows`` from position start[0] on."""
    rng = np.random.default_rng(16)
    source = rng.integers(0, 256, size=(40, 5)).astype(dtype)
    order = dev(backend, rng.permutation(40).astype(np.int64))
    out = backend.empty((8, 5), dtype)
    for first in (0, 8, 32):
        start = dev(backend, np.array([first], np.int64))
        assert backend.gather_rows(dev(backend, source), order, out, start=start) is out
        want = source[backend.to_numpy(order)[first : first + 8]]
        np.testing.assert_array_equal(backend.to_numpy(out), want)
    with pytest.raises(ValueError, match="at most 40 rows"):  # more rows than the order has
        backend.gather_rows(dev(backend, source), order, backend.empty((41, 5), dtype), start=start)


def test_gather_rows_start_past_the_end_is_an_error_on_the_cpu(backend):
    if backend.name == "cupy":
        pytest.skip("the GPU reads start on the device: MLP passes only positions it made")
    source, order = np.ones((10, 3), np.float32), np.arange(10, dtype=np.int64)
    with pytest.raises(ValueError, match="out has shape"):
        backend.gather_rows(source, order, np.empty((4, 3), np.float32), start=np.array([8]))
    with pytest.raises(ValueError, match="out has shape"):  # not rows[-8:-4]
        backend.gather_rows(source, order, np.empty((4, 3), np.float32), start=np.array([-8]))


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_gather_rows_same_dtype(backend, scale):
    rng = np.random.default_rng(15)
    source = rng.standard_normal((30, 7)).astype(np.float32)
    rows = rng.integers(0, 30, size=20)  # repeated rows are fine
    out = backend.empty((20, 7), np.float32)
    dsource = dev(backend, source)
    assert backend.gather_rows(dsource, dev(backend, rows), out, scale=scale) is out
    np.testing.assert_array_equal(backend.to_numpy(out), source[rows] * np.float32(scale))
    np.testing.assert_array_equal(backend.to_numpy(dsource), source)

    labels = rng.integers(0, 10, size=(30, 1)).astype(np.int32)  # how fit gathers labels
    lout = backend.empty((20, 1), np.int32)
    assert backend.gather_rows(dev(backend, labels), dev(backend, rows), lout) is lout
    np.testing.assert_array_equal(backend.to_numpy(lout), labels[rows])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.8])
def test_dropout_mask(backend, dtype, p):
    out = backend.empty((256, 200), dtype)
    returned = backend.dropout_mask(backend.random_generator(123), p, out=out)
    assert returned is out
    mask = backend.to_numpy(out)
    keep = np.dtype(dtype).type(1.0 / (1.0 - p))
    assert set(np.unique(mask).tolist()) <= {0.0, float(keep)}
    kept = np.mean(mask != 0)
    assert abs(kept - (1.0 - p)) < 0.02
    if p > 0:
        assert 0 < kept < 1

    again = backend.to_numpy(
        backend.dropout_mask(backend.random_generator(123), p, out=backend.empty((256, 200), dtype))
    )
    np.testing.assert_array_equal(again, mask)  # same seed, same mask
    if p:
        other = backend.to_numpy(
            backend.dropout_mask(
                backend.random_generator(124), p, out=backend.empty((256, 200), dtype)
            )
        )
        assert not np.array_equal(other, mask)


# ---------------------------------------------------------------------- optimizers
OPT_SIZE = 2 * OPTIMIZER_BLOCK + 1001  # several blocks and a partial one
OPT_STEPS = 4


def ref_sgd(p, grads, lr, momentum, nesterov, weight_decay):
    """torch.optim.SGD as documented (dampening 0)."""
    p = p.astype(np.float64).copy()
    b = None
    for g in grads:
        g = g.astype(np.float64)
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            b = g.copy() if b is None else momentum * b + g
            g = g + momentum * b if nesterov else b
        p = p - lr * g
    return p, b


def ref_adam(p, grads, lr, betas, eps, weight_decay, decoupled):
    """torch.optim.Adam (L2 added to the gradient) or AdamW (decoupled decay), as documented."""
    beta1, beta2 = betas
    p = p.astype(np.float64).copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if weight_decay and decoupled:
            p = p - lr * weight_decay * p
        elif weight_decay:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p, m, v


def opt_tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("momentum", "nesterov", "weight_decay"),
    [
        (0.0, False, 0.0),
        (0.0, False, 0.05),
        (0.9, False, 0.0),
        (0.9, True, 0.0),
        (0.5, True, 0.01),
        (0.7, False, 0.02),
    ],
)
def test_sgd_step(backend, dtype, momentum, nesterov, weight_decay):
    assert OPT_SIZE > OPTIMIZER_BLOCK and OPT_SIZE % OPTIMIZER_BLOCK
    rng = np.random.default_rng(16)
    p0 = rng.standard_normal(OPT_SIZE).astype(dtype)
    grads = [rng.standard_normal(OPT_SIZE).astype(dtype) for _ in range(OPT_STEPS)]
    lr = 0.1
    p_ref, b_ref = ref_sgd(p0, grads, lr, momentum, nesterov, weight_decay)

    param = dev(backend, p0)
    velocity = backend.zeros((OPT_SIZE,), dtype) if momentum else None
    for g in grads:
        backend.sgd_update(
            param,
            dev(backend, g),
            velocity,
            lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
        )
    assert backend.is_array(param) and param.dtype == np.dtype(dtype)
    np.testing.assert_allclose(host(backend, param), p_ref, **opt_tol(dtype))
    if momentum:
        np.testing.assert_allclose(host(backend, velocity), b_ref, **opt_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("weight_decay", "decoupled", "betas", "eps"),
    [
        (0.0, False, (0.9, 0.999), 1e-8),
        (0.1, False, (0.9, 0.999), 1e-8),
        (0.1, True, (0.9, 0.999), 1e-8),
        (0.05, True, (0.8, 0.99), 1e-6),
        (0.0, True, (0.5, 0.9), 1e-3),
    ],
)
def test_adam_step(backend, dtype, weight_decay, decoupled, betas, eps):
    rng = np.random.default_rng(17)
    p0 = rng.standard_normal(OPT_SIZE).astype(dtype)
    grads = [rng.standard_normal(OPT_SIZE).astype(dtype) for _ in range(OPT_STEPS)]
    lr = 0.01
    p_ref, m_ref, v_ref = ref_adam(p0, grads, lr, betas, eps, weight_decay, decoupled)

    param = dev(backend, p0)
    m, v = backend.zeros((OPT_SIZE,), dtype), backend.zeros((OPT_SIZE,), dtype)
    for step, g in enumerate(grads, start=1):
        backend.adam_update(
            param,
            dev(backend, g),
            m,
            v,
            step,
            lr,
            beta1=betas[0],
            beta2=betas[1],
            eps=eps,
            weight_decay=weight_decay,
            decoupled=decoupled,
        )
    np.testing.assert_allclose(host(backend, param), p_ref, **opt_tol(dtype))
    np.testing.assert_allclose(host(backend, m), m_ref, **opt_tol(dtype))
    np.testing.assert_allclose(host(backend, v), v_ref, **opt_tol(dtype))
    # the update really moved every block, including the partial last one
    moved = host(backend, param) != p0
    assert moved[:OPTIMIZER_BLOCK].all() and moved[-1000:].all()


def test_adam_l2_and_decoupled_decay_differ(backend):
    rng = np.random.default_rng(18)
    p0, g = rng.standard_normal(1000), rng.standard_normal(1000)
    results = []
    for decoupled in (False, True):
        p = dev(backend, p0)
        m, v = backend.zeros((1000,), np.float64), backend.zeros((1000,), np.float64)
        backend.adam_update(
            p, dev(backend, g), m, v, 1, 0.01, weight_decay=0.5, decoupled=decoupled
        )
        results.append(host(backend, p))
    assert not np.allclose(results[0], results[1])


# ---------------------------------------------------------------------- memory and transfer
def test_asarray_to_numpy_round_trip(backend):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    d = backend.asarray(x)
    assert backend.is_array(d)
    back = backend.to_numpy(d)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, x)
    again = backend.asarray(d)
    assert backend.is_array(again)
    np.testing.assert_array_equal(backend.to_numpy(again), x)
    assert backend.asarray(x, dtype=np.float64).dtype == np.float64
    z = backend.zeros((2, 3), np.float64)
    assert backend.is_array(z) and z.dtype == np.float64
    np.testing.assert_array_equal(backend.to_numpy(z), 0.0)
    assert backend.empty((4,), np.int32).shape == (4,)
    assert not backend.is_array([1, 2, 3])


# ---------------------------------------------------------------------- device specs
@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("cpu", ("cpu", 0)),
        ("numpy", ("cpu", 0)),
        ("CPU", ("cpu", 0)),
        (" cpu ", ("cpu", 0)),
        ("cuda", ("cuda", 0)),
        ("cuda:0", ("cuda", 0)),
        ("cuda:1", ("cuda", 1)),
        ("cupy", ("cuda", 0)),
        ("cupy:2", ("cuda", 2)),
        ("gpu", ("cuda", 0)),
        ("CUDA:3", ("cuda", 3)),
    ],
)
def test_parse_device(spec, parsed):
    assert parse_device(spec) == parsed


@pytest.mark.parametrize(
    "spec",
    [
        "tpu",
        "",
        "cuda:x",
        "cuda:-1",
        "cuda:1.5",
        "cuda:1:2",
        "cpu:0",
        "numpy:1",
        "cu da",
        "metal",
        "cuda1",
    ],
)
def test_bad_device_specs_raise_value_error(spec):
    with pytest.raises(ValueError, match="unknown device"):
        parse_device(spec)
    with pytest.raises(ValueError, match="unknown device"):
        get_backend(spec)


def test_get_backend_cpu():
    for spec in ("cpu", "numpy", "CPU"):
        be = get_backend(spec)
        assert isinstance(be, NumpyBackend)
        assert be.device == "cpu" and be.xp is np
    be = get_backend("cpu")
    assert get_backend(be) is be
    assert get_backend().device == "cpu"


@pytest.mark.parametrize("spec", ["cuda", "cuda:1", "cupy"])
def test_get_backend_cuda_gives_a_backend_or_says_why(spec):
    """A valid CUDA spec either works or raises BackendUnavailable: never a ValueError."""
    try:
        be = get_backend(spec)
    except BackendUnavailable as exc:
        assert str(exc)
        assert isinstance(exc, RuntimeError)
    else:
        assert be.device == ("cuda:1" if spec == "cuda:1" else "cuda:0")


def test_missing_cupy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    for spec in ("cuda", "cuda:1", "cupy"):
        with pytest.raises(BackendUnavailable) as info:
            get_backend(spec)
        message = str(info.value)
        assert "cuda12" in message and "cuda13" in message
        assert "CuPy" in message
    assert issubclass(backends.BackendUnavailable, RuntimeError)


# ---------------------------------------------------------------------- wrong-device arrays
def _ops_with_foreign(backend, foreign, own):
    """Calls that each hand ``foreign`` to an op along with arrays of the backend (``own``)."""
    return [
        lambda: backend.matmul(foreign, own),
        lambda: backend.matmul(own, foreign),
        lambda: backend.bias_add(foreign, own[0]),
        lambda: backend.multiply(own, foreign),
        lambda: backend.sum_rows(foreign),
        lambda: backend.activation("relu", foreign),
        lambda: backend.activation("tanh", foreign),
        lambda: backend.backprop_activation("sigmoid", foreign, own),
        lambda: backend.bias_activation(foreign, own[0], "relu"),
        lambda: backend.softmax(foreign),
        lambda: backend.sgd_update(own.reshape(-1), foreign, None, 0.1),
        lambda: backend.adam_update(
            own.reshape(-1), foreign, own.reshape(-1).copy(), own.reshape(-1).copy(), 1, 0.1
        ),
    ]


@pytest.mark.cuda
def test_cuda_backend_rejects_numpy_arrays(cuda_backend):
    own = cuda_backend.asarray(np.ones((3, 3), np.float32))
    host_array = np.ones((3, 3), np.float32)
    for call in _ops_with_foreign(cuda_backend, host_array, own):
        with pytest.raises(TypeError, match=r"backend\.asarray"):
            call()
    labels = np.zeros(3, np.int32)
    with pytest.raises(TypeError, match=r"backend\.asarray"):
        cuda_backend.softmax_cross_entropy_accumulate(
            own, labels, own, cuda_backend.zeros((2,), np.float64)
        )
    with pytest.raises(TypeError, match=r"backend\.asarray"):
        cuda_backend.gather_rows(
            host_array, cuda_backend.asarray(np.arange(2)), cuda_backend.empty((2, 3), np.float32)
        )


class FakeDeviceArray:
    """An array from some other library (a torch tensor, say): not a NumPy array."""

    shape = (3, 3)
    dtype = np.dtype(np.float32)
    ndim = 2
    size = 9


def test_numpy_backend_rejects_foreign_arrays():
    backend = NumpyBackend()
    own = np.ones((3, 3), np.float32)
    fake = FakeDeviceArray()
    for call in [*_ops_with_foreign(backend, fake, own), lambda: backend.to_numpy(fake)]:
        with pytest.raises(TypeError, match=r"backend\.asarray") as info:
            call()
        assert "FakeDeviceArray" in str(info.value)


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_describe_names_the_hardware_and_precision(make_backend, backend_kind, precision):
    """The line a run prints: device, what computes (library, GPU), reduced precision."""
    backend = make_backend(backend_kind, precision)
    text = backend.describe()
    assert text.startswith(f"{backend.device} (") and text.endswith(")")
    assert text.endswith(", bf16 matmuls)") == (precision == "bf16")
    if backend_kind == "cuda":
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(backend.index)["name"]
        name = name.decode() if isinstance(name, bytes) else name
        assert f"({name}, " in text and f" GiB, CuPy {cupy.__version__}" in text
    else:
        kernels = "no Numba kernels" if backend.kernels is None else "Numba kernels"
        assert text.startswith(f"cpu (NumPy {np.__version__}, {kernels}")


# ---------------------------------------------------------------------- operands that do not fit
def _mismatched_calls(be):
    """Calls whose operands do not fit: fused kernels would read or write past an array."""
    a = be.asarray(np.ones((4, 3), np.float32))
    flat = be.asarray(np.ones(12, np.float32))
    short = be.asarray(np.ones(5, np.float32))
    rows = be.asarray(np.array([0, 1], np.int64))
    labels = be.asarray(np.zeros(4, np.int32))
    totals = be.zeros((2,), np.float64)
    return {
        "bias of another width": lambda: be.bias_activation(
            a, be.asarray(np.ones(5, np.float32)), "relu", out=a
        ),
        "bias of width 1": lambda: be.bias_activation(
            a, be.asarray(np.ones(1, np.float32)), "relu", out=a
        ),
        "relu backward, y smaller": lambda: be.backprop_activation(
            "relu", a, be.asarray(np.ones((2, 3), np.float32)), out=a
        ),
        "bias gradient of another width": lambda: be.backprop_bias_activation(
            "relu", a, a, short, out=a
        ),
        "gather into a smaller out": lambda: be.gather_rows(
            a, be.asarray(np.arange(4)), be.empty((2, 3), np.float32)
        ),
        "gather into another width": lambda: be.gather_rows(a, rows, be.empty((2, 5), np.float32)),
        "a label column per row short": lambda: be.softmax_cross_entropy_accumulate(
            a, labels[:3], a, totals
        ),
        "sgd, gradient short": lambda: be.sgd_update(flat, short, None, 0.1),
        "momentum, velocity short": lambda: be.sgd_update(flat, flat, short, 0.1, momentum=0.9),
        "adam, v short": lambda: be.adam_update(flat, flat, flat, short, 1, 0.1),
    }


@pytest.mark.parametrize(
    "case",
    [
        "bias of another width",
        "bias of width 1",
        "relu backward, y smaller",
        "bias gradient of another width",
        "gather into a smaller out",
        "gather into another width",
        "a label column per row short",
        "sgd, gradient short",
        "momentum, velocity short",
        "adam, v short",
    ],
)
def test_operands_that_do_not_fit_are_refused(backend, case):
    with pytest.raises(ValueError, match="has shape"):
        _mismatched_calls(backend)[case]()


@pytest.mark.parametrize("kind", ["cpu", "cpu-nonumba"])
def test_cpu_checks_row_indices_and_labels(make_backend, kind):
    """On the host the values are checked too (free inside the Numba loops): no read out of
    bounds, no -1 wrapping around to the last row or class. (On a GPU that would need a
    sync; MLP checks its labels once, at upload.)"""
    be = make_backend(kind)
    source = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = np.empty((2, 3), np.float32)
    for bad_rows in ([0, 4], [-1, 0]):
        with pytest.raises(ValueError, match="row"):
            be.gather_rows(source, np.array(bad_rows, np.int64), out)
        with pytest.raises(ValueError, match="row"):  # integer batches (labels) too
            be.gather_rows(source.astype(np.int32), np.array(bad_rows), out.astype(np.int32))
    logits = np.zeros((3, 4), np.float32)
    for bad_labels in ([0, 1, 4], [0, -1, 2]):
        with pytest.raises(ValueError, match="label"):
            be.softmax_cross_entropy_accumulate(
                logits, np.array(bad_labels, np.int32), logits.copy(), np.zeros(2)
            )


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_step_count_may_live_on_the_device(backend, decoupled):
    """A one-element int64 array as the step count (a recorded step advances it on the
    device) gives the same update as the count passed as an int."""
    rng = np.random.default_rng(17)
    p, g = rng.standard_normal(300).astype(np.float32), rng.standard_normal(300).astype(np.float32)
    m, v = rng.standard_normal(300).astype(np.float32) * 0.1, rng.random(300).astype(np.float32)
    results = []
    for step in (7, dev(backend, np.array([7], np.int64))):
        arrays = [dev(backend, a.copy()) for a in (p, g, m, v)]
        backend.adam_update(*arrays, step, 1e-3, weight_decay=0.01, decoupled=decoupled)
        results.append([backend.to_numpy(a) for a in arrays])
    for name, a, b in zip("pgmv", *results, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert not np.array_equal(results[0][0], p)


def test_add_in_place(backend):
    counter = dev(backend, np.array([0, 5], np.int64))
    by = dev(backend, np.array([128, 1], np.int64))
    assert backend.add(counter, by, out=counter) is counter
    backend.add(counter, by, out=counter)
    np.testing.assert_array_equal(backend.to_numpy(counter), [256, 7])


def test_adam_step_counts_from_one(backend):
    flat = backend.asarray(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="starts at 1"):
        backend.adam_update(flat, flat, flat, flat, 0, 0.1)
