"""Every backend op against an independent float64 NumPy reference, forward and backward, on
every backend (NumPy with and without Numba, and CuPy where a GPU exists)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from backends import ACTIVATIONS
from tests.backends.arrays import DTYPES, dev, flat_layer, host, layer_problem

TOL = {
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-6},
    np.dtype(np.float64): {"rtol": 1e-11, "atol": 1e-13},
}


def tol(dtype):
    return TOL[np.dtype(dtype)]


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


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_is_the_product_then_bias_and_activation(backend, name, dtype):
    """A dense layer's forward, its weight and bias views into one flat buffer."""
    x, w, b = layer_problem(4, 33, 70, 19)
    weight, bias = flat_layer(backend, w, b, dtype)
    X = dev(backend, x, dtype)
    expected = ref_forward(name, x @ w + b)
    close = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else tol(dtype)
    out = backend.empty((x.shape[0], w.shape[1]), dtype)
    assert backend.linear(X, weight, bias, name, out=out) is out
    np.testing.assert_allclose(host(backend, out), expected, **close)
    np.testing.assert_allclose(
        host(backend, backend.linear(X, weight, bias, name)), expected, **close
    )
    np.testing.assert_array_equal(host(backend, X), x.astype(dtype))  # the input is left alone


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backprop_linear_gives_dz_and_both_gradients(backend, name, dtype):
    """dz = dy·f'(z) from the layer's output, xᵀ·dz and dz's column sums, written into views
    of one flat buffer (the bias gradient's unaligned), over stale values."""
    x, w, b = layer_problem(5, 33, 70, 19)
    y = FORWARD[name](x @ w + b).astype(dtype)
    dy = np.random.default_rng(6).standard_normal(y.shape)
    dz = dy * DERIVATIVE_FROM_OUTPUT[name](y.astype(np.float64))
    grad_weight, grad_bias = flat_layer(
        backend, np.full(w.shape, 7.0), np.full(b.shape, 7.0), dtype
    )
    DY = dev(backend, dy, dtype)
    got = backend.backprop_linear(
        name, DY, dev(backend, y), dev(backend, x, dtype), grad_weight, grad_bias, out=DY
    )
    assert got is DY
    close = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else tol(dtype)
    np.testing.assert_allclose(host(backend, got), dz, **close)
    np.testing.assert_allclose(host(backend, grad_weight), x.T @ dz, **close)
    np.testing.assert_allclose(host(backend, grad_bias), dz.sum(axis=0), **close)


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


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_a_nan_goes_through_every_activation(backend, name):
    """A NaN stays a NaN, as in NumPy and PyTorch, with the bias fused in or not: a run
    gone wrong must show, not turn into plausible numbers."""
    x = np.array([[np.nan, -1.0, 2.0, np.inf]])
    bias = backend.zeros((4,), np.float32)
    z = dev(backend, x, np.float32)
    for y in (
        backend.activation(name, z),
        backend.bias_activation(z, bias, name),
        backend.bias_activation(z, bias, name, out=backend.empty(z.shape, np.float32)),
        backend.bias_activation(z, bias, name, out=z),  # in place
    ):
        got = host(backend, y)[0]
        assert np.isnan(got[0]) and not np.isnan(got[1:]).any()


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_a_nan_goes_through_a_layer(backend, name):
    """As through the activation alone, through ``linear``: on CUDA a cuBLASLt epilogue (its
    ReLU, which cuBLASLt documents as max(x, 0), must not make a NaN bias's 0)."""
    x = dev(backend, np.array([[-1.0, -1.0, 2.0, 3.0]] * 8), np.float32)
    weight = dev(backend, np.eye(4), np.float32)
    bias = dev(backend, np.array([np.nan, 0.0, 0.0, 0.0]), np.float32)
    got = host(
        backend, backend.linear(x, weight, bias, name, out=backend.empty((8, 4), np.float32))
    )
    assert np.isnan(got[:, 0]).all() and not np.isnan(got[:, 1:]).any()
    np.testing.assert_allclose(
        got[:, 1:], ref_forward(name, np.array([[-1.0, 2.0, 3.0]] * 8)), rtol=1e-6
    )


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

    d_y = dev(backend, y, dtype)  # the output, read for f', may take the gradient too
    assert direct(dev(backend, dy, dtype), d_y, out=d_y) is d_y
    np.testing.assert_allclose(host(backend, d_y), expected, **tol(dtype))


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

    dx = dev(backend, x, dtype)  # a bias in the memory written: each row reads it as it was
    assert backend.bias_activation(dx, dx[0], name, out=dx) is dx
    np.testing.assert_allclose(host(backend, dx), ref_forward(name, x + x[0]), **tol(dtype))


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

    loss, grad = backend.mean_loss("softmax_cross_entropy", dz, dlabels)
    assert backend.is_array(loss) and loss.shape == ()  # stays on the device: no sync
    assert backend.is_array(grad)
    assert grad.shape == z.shape and grad.dtype == np.dtype(dtype)
    assert float(backend.to_numpy(loss)) == pytest.approx(
        loss_ref, rel=1e-5 if dtype == np.float32 else 1e-11
    )
    np.testing.assert_allclose(host(backend, grad), grad_ref, **tol(dtype))
    np.testing.assert_array_equal(host(backend, dz), z.astype(dtype))  # logits kept

    out = backend.empty(z.shape, dtype)
    loss2, grad2 = backend.mean_loss("softmax_cross_entropy", dz, dlabels, grad=out)
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
        returned = backend.accumulate_loss(
            "softmax_cross_entropy", dz, dev(backend, labels.astype(label_dtype)), dz, totals
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
    loss, grad = backend.mean_loss(
        "softmax_cross_entropy", dev(backend, z), dev(backend, labels, np.int32)
    )
    loss = float(backend.to_numpy(loss))
    assert np.isfinite(loss)
    assert loss == pytest.approx(ref_cross_entropy(z, labels)[0], rel=1e-5)
    assert np.all(np.isfinite(host(backend, grad)))


def ref_loss(name, z, targets, weights=None):
    """float64 reference: per-row losses, the (weighted) mean's gradient, per-row hits."""
    z = np.asarray(z, dtype=np.float64)
    rows = z.shape[0]
    w = np.ones(rows) if weights is None else np.asarray(weights, dtype=np.float64)
    if name == "softmax_cross_entropy":
        shifted = z - z.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        row_loss = -log_p[np.arange(rows), targets]
        grad = np.exp(log_p)
        grad[np.arange(rows), targets] -= 1.0
        hits = z.argmax(axis=1) == targets
    elif name == "sigmoid_cross_entropy":
        p = 1 / (1 + np.exp(-z[:, 0]))
        row_loss = -(targets * np.log(p) + (1 - targets) * np.log1p(-p))
        grad = (p - targets)[:, None]
        hits = (p > 0.5) == (targets == 1)
    else:
        row_loss = 0.5 * ((z - targets) ** 2).sum(axis=1)
        grad = z - targets
        hits = np.zeros(rows, bool)
    return row_loss, grad * (w / w.sum())[:, None], hits


def loss_problem(name, rng, rows, width):
    z = rng.standard_normal((rows, width)) * 2
    if name == "squared_error":
        return z, rng.standard_normal((rows, width))
    classes = 2 if name == "sigmoid_cross_entropy" else width
    return z, rng.integers(0, classes, size=rows)


LOSS_SHAPES = [("softmax_cross_entropy", 7), ("sigmoid_cross_entropy", 1), ("squared_error", 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,width", LOSS_SHAPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_accumulate_loss_against_float64(backend, dtype, name, width, weighted):
    """Each loss, weighted or not: totals are (weighted) sums of per-row losses and hits,
    the gradient that of the (weighted) mean, written over the outputs."""
    rng = np.random.default_rng(14)
    totals = backend.zeros((2,), np.float64)
    expected = np.zeros(2)
    for rows in (33, 130, 1):
        z, targets = loss_problem(name, rng, rows, width)
        weights = rng.uniform(0, 3, size=rows) if weighted else None
        if weighted and rows > 2:
            weights[:2] = 0  # a zero weight is a row left out
        row_loss, grad_ref, hits = ref_loss(name, z, targets, weights)
        w = np.ones(rows) if weights is None else weights.astype(dtype).astype(np.float64)
        expected += [np.dot(w, row_loss), np.dot(w, hits)]

        dz = dev(backend, z, dtype)
        dt = dev(backend, targets, dtype if name == "squared_error" else np.int32)
        args = ()
        if weighted:
            dw = dev(backend, weights, dtype)
            args = (dw, backend.sum_rows(dw.reshape(-1, 1)))
        returned = backend.accumulate_loss(name, dz, dt, dz, totals, *args)
        assert returned is dz
        np.testing.assert_allclose(host(backend, dz), grad_ref, **tol(dtype))
        np.testing.assert_allclose(
            backend.to_numpy(totals), expected, rtol=1e-5 if dtype == np.float32 else 1e-11
        )


@pytest.mark.parametrize("name,width", LOSS_SHAPES)
def test_a_loss_writes_its_gradient_whatever_the_memory_order(backend, name, width):
    """A column-major ``grad`` (here the outputs themselves) gets the whole gradient."""
    rng = np.random.default_rng(16)
    z, targets = loss_problem(name, rng, 9, width)
    row_loss, grad_ref, _ = ref_loss(name, z, targets, None)
    dz = dev(backend, np.asfortranarray(z), np.float64)
    assert dz.flags.f_contiguous
    dt = dev(backend, targets, np.float64 if name == "squared_error" else np.int32)
    totals = backend.zeros((2,), np.float64)
    backend.accumulate_loss(name, dz, dt, dz, totals)
    np.testing.assert_allclose(host(backend, dz), grad_ref, rtol=1e-10, atol=1e-12)
    assert float(backend.to_numpy(totals)[0]) == pytest.approx(row_loss.sum())


@pytest.mark.parametrize("name,width", LOSS_SHAPES)
def test_mean_loss_weighted(backend, name, width):
    """``mean_loss`` with weights is the weighted mean; doubling every weight changes nothing."""
    rng = np.random.default_rng(15)
    z, targets = loss_problem(name, rng, 50, width)
    weights = rng.uniform(0.5, 2, size=50)
    row_loss, grad_ref, _ = ref_loss(name, z, targets, weights)
    dz = dev(backend, z, np.float64)
    dt = dev(backend, targets, np.float64 if name == "squared_error" else np.int64)
    for scale in (1.0, 2.0):
        loss, grad = backend.mean_loss(name, dz, dt, weights=dev(backend, weights * scale))
        assert float(backend.to_numpy(loss)) == pytest.approx(np.average(row_loss, weights=weights))
        np.testing.assert_allclose(host(backend, grad), grad_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,width", LOSS_SHAPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_a_loss_of_no_rows_is_refused(backend, name, width, weighted):
    """A mean over no rows has no value: a ValueError that says so (not ZeroDivisionError)."""
    z, targets = loss_problem(name, np.random.default_rng(16), 0, width)
    dz = dev(backend, z, np.float32)
    dt = dev(backend, targets, np.float32 if name == "squared_error" else np.int32)
    weights = dev(backend, np.ones(0), np.float32) if weighted else None
    with pytest.raises(ValueError, match=f"{name}: outputs have no rows"):
        backend.mean_loss(name, dz, dt, weights=weights)
    totals = backend.zeros((2,), np.float64)
    with pytest.raises(ValueError, match=f"{name}: outputs have no rows"):
        backend.accumulate_loss(name, dz, dt, backend.empty(dz.shape, np.float32), totals)


def test_zero_weights_give_no_gradient(backend):
    """A batch whose weights are all zero adds nothing and has a zero gradient, not 0/0."""
    z = dev(backend, np.array([[0.5, -1.0], [2.0, 0.0]]), np.float32)
    labels = dev(backend, np.array([0, 1]), np.int32)
    weights = backend.zeros((2,), np.float32)
    totals = backend.zeros((2,), np.float64)
    grad = backend.accumulate_loss(
        "softmax_cross_entropy", z, labels, z, totals, weights, backend.zeros((1,), np.float32)
    )
    np.testing.assert_array_equal(host(backend, grad), 0)
    np.testing.assert_array_equal(backend.to_numpy(totals), 0)


def test_sigmoid_cross_entropy_huge_logits(backend):
    z = np.array([[80.0], [-90.0], [1000.0]], dtype=np.float32)
    labels = np.array([0, 1, 1])
    loss, grad = backend.mean_loss(
        "sigmoid_cross_entropy", dev(backend, z), dev(backend, labels, np.int32)
    )
    assert float(backend.to_numpy(loss)) == pytest.approx((80 + 90 + 0) / 3, rel=1e-5)
    np.testing.assert_allclose(host(backend, grad), [[1 / 3], [-1 / 3], [0]], atol=1e-6)


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


@pytest.mark.parametrize("count", [1, 3, 4, 5, 38, 129])
def test_gather_rows_any_count(backend, count):
    """Every row lands where it belongs whatever the count: the CPU kernel copies four rows
    at a time, a quarter of the batch apart, and the rest one by one."""
    rng = np.random.default_rng(count)
    source = rng.integers(0, 256, size=(300, 9), dtype=np.uint8)
    rows = rng.integers(0, 300, size=count)
    out = backend.empty((count, 9), np.float32)
    backend.gather_rows(dev(backend, source), dev(backend, rows), out, scale=0.5)
    np.testing.assert_array_equal(host(backend, out), source[rows] * np.float32(0.5))


def test_gather_rows_refused_leaves_out_as_it_was(backend):
    if backend.name == "cupy":
        pytest.skip("the GPU does not check row values: MLP passes only rows it made")
    source = np.ones((10, 3), np.float32)
    out = np.full((9, 3), 7.0, np.float32)
    with pytest.raises(ValueError, match="row"):
        backend.gather_rows(source, np.array([0, 1, 2, 3, 4, 5, 6, 10, 8]), out)
    np.testing.assert_array_equal(out, 7.0)


@pytest.mark.parametrize("source_dtype,scale", [(np.float32, 1.0), (np.uint8, 0.5)])
def test_gather_rows_into_integers_refuses_what_it_would_cut(backend, source_dtype, scale):
    """Floats or a scale into an integer ``out`` would be cut (0.5 to 0) without a word."""
    source = dev(backend, np.full((10, 3), 3.7).astype(source_dtype))
    out = backend.empty((4, 3), np.int32)
    with pytest.raises(ValueError, match="int32 out takes integers unscaled"):
        backend.gather_rows(source, dev(backend, np.arange(4)), out, scale=scale)


@pytest.mark.parametrize(
    "source_dtype,out_dtype", [(np.int64, np.uint8), (np.int64, np.int32), (np.int32, np.uint32)]
)
def test_gather_rows_into_integers_refuses_a_narrower_type(backend, source_dtype, out_dtype):
    """An integer ``out`` that cannot hold every value of the source's type would wrap them
    around (900 into uint8 as 132, -1 as 255): refused, as NumPy refuses some of these."""
    source = dev(backend, np.array([[900], [300], [-1]], source_dtype))
    out = backend.zeros((3, 1), out_dtype)
    with pytest.raises(ValueError, match="takes integers unscaled that it holds every value"):
        backend.gather_rows(source, dev(backend, np.arange(3)), out)
    np.testing.assert_array_equal(backend.to_numpy(out), 0)
    wide = backend.empty((3, 1), np.int64)  # a type as wide takes them as they are
    backend.gather_rows(
        dev(backend, np.array([[7], [8], [-1]], np.int32)), dev(backend, np.arange(3)), wide
    )
    np.testing.assert_array_equal(backend.to_numpy(wide).ravel(), [7, 8, -1])


def test_gather_rows_refuses_rows_that_are_not_integers(backend):
    """Float row numbers: a GPU's kernel cut 2.7 to row 2 where NumPy and Numba failed
    each in their own words."""
    source = dev(backend, np.arange(12, dtype=np.float32).reshape(4, 3))
    with pytest.raises(ValueError, match="gather_rows: rows must be integers, got float64"):
        backend.gather_rows(
            source, dev(backend, np.array([2.7, 0.0])), backend.empty((2, 3), np.float32)
        )


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


@pytest.mark.parametrize(
    "target_dtype,target_cols", [(np.int32, 1), (np.float32, 3), (np.float32, 7)]
)
def test_gather_batch_takes_both_from_one_start(backend, target_dtype, target_cols):
    """A training batch's inputs (scaled) and targets come from the same rows of the order,
    from the same place in it: on a GPU in one launch (targets wider than the inputs, 7
    against 5 columns, take two)."""
    rng = np.random.default_rng(21)
    inputs_host = rng.integers(0, 256, size=(40, 5), dtype=np.uint8)
    targets_host = rng.integers(0, 10, size=(40, target_cols)).astype(target_dtype)
    order_host = rng.permutation(40).astype(np.int64)
    inputs, targets = dev(backend, inputs_host), dev(backend, targets_host)
    order = dev(backend, order_host)
    x, y = backend.empty((8, 5), np.float32), backend.empty((8, target_cols), target_dtype)
    for first in (0, 8, 32):
        start = dev(backend, np.array([first], np.int64))
        assert backend.gather_batch(inputs, targets, order, x, y, 0.25, start) is None
        rows = order_host[first : first + 8]
        want_x = inputs_host[rows].astype(np.float32) * np.float32(0.25)
        np.testing.assert_array_equal(host(backend, x), want_x)
        np.testing.assert_array_equal(host(backend, y), targets_host[rows])
    with pytest.raises(ValueError, match="x has 8 rows but y has 7"):
        backend.gather_batch(inputs, targets, order, x, y[:7], 0.25, start)


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


def test_add_in_place(backend):
    counter = dev(backend, np.array([0, 5], np.int64))
    by = dev(backend, np.array([128, 1], np.int64))
    assert backend.add(counter, by, out=counter) is counter
    backend.add(counter, by, out=counter)
    np.testing.assert_array_equal(backend.to_numpy(counter), [256, 7])


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
@pytest.mark.parametrize("into", ["dy", "y", "new"])
def test_backprop_bias_activation_gives_dz_and_bias_gradient(backend, name, dtype, into):
    """dz may go into dy, or into y (which f' is read from), as well as into new memory."""
    z, _, dy = _data(dtype, seed=1)
    y = FORWARD[name](z).astype(dtype)
    expected_dz = dy.astype(np.float64) * DERIVATIVE_FROM_OUTPUT[name](y.astype(np.float64))
    DY, Y = backend.asarray(dy.copy()), backend.asarray(y.copy())
    grad_bias = backend.asarray(np.full(y.shape[1], 123.0, dtype))  # stale values must go
    out = {"dy": DY, "y": Y, "new": backend.empty(y.shape, dtype)}[into]
    dz = backend.backprop_bias_activation(name, DY, Y, grad_bias, out=out)
    assert dz is out and backend.is_array(dz)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(backend.to_numpy(dz), expected_dz, rtol=tol, atol=tol)
    np.testing.assert_allclose(
        backend.to_numpy(grad_bias), expected_dz.sum(axis=0), rtol=tol, atol=10 * tol
    )
