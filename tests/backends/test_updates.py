"""The optimizer updates (SGD, momentum, Adam, AdamW) against float64 references over several
blocks, their update count, and the flush of subnormal state to zero."""

from __future__ import annotations

import numpy as np
import pytest

from backends import NumpyBackend
from backends.xp_backend import OPTIMIZER_BLOCK
from tests.backends.arrays import DTYPES, dev, host

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


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("size,stride", [(300, 1), (600_001, 1), (300, 2)])
def test_adam_step_count_may_live_on_the_device(backend, decoupled, size, stride):
    """A one-element int64 array as the step count (a recorded step advances it on the
    device) gives the same update as the count passed as an int: over more elements than a
    GPU's Adam grid has threads (600,001), and over strided views (another kernel there)."""
    rng = np.random.default_rng(17)
    p, g = rng.standard_normal((2, size * stride)).astype(np.float32)
    m = rng.standard_normal(size * stride).astype(np.float32) * 0.1
    v = rng.random(size * stride).astype(np.float32)
    results = []
    for step in (7, dev(backend, np.array([7], np.int64))):
        arrays = [dev(backend, a.copy())[::stride] for a in (p, g, m, v)]
        backend.adam_update(*arrays, step, 1e-3, weight_decay=0.01, decoupled=decoupled)
        results.append([backend.to_numpy(a) for a in arrays])
    for name, a, b in zip("pgmv", *results, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert not np.array_equal(results[0][0], p[::stride])


def test_adam_step_counts_from_one(backend):
    param, grad, m, v = (backend.asarray(np.ones(4, np.float32)) for _ in range(4))
    with pytest.raises(ValueError, match="starts at 1"):
        backend.adam_update(param, grad, m, v, 0, 0.1)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_numba_optimizers_flush_subnormal_state_to_zero(optimizer):
    """A dead unit's moments must not decay into subnormals (x86 runs those ~100x slower)."""

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


UPDATES = {
    "sgd": lambda be, p, g, s1, s2: be.sgd_update(p, g, None, 0.1, weight_decay=0.01),
    "momentum": lambda be, p, g, s1, s2: be.sgd_update(p, g, s1, 0.1, momentum=0.9),
    "nesterov": lambda be, p, g, s1, s2: be.sgd_update(p, g, s1, 0.1, 0.9, nesterov=True),
    "adam": lambda be, p, g, s1, s2: be.adam_update(p, g, s1, s2, 3, 0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("update", list(UPDATES))
@pytest.mark.parametrize("transposed", [False, True])
def test_an_update_of_a_matrix_is_that_of_its_elements(backend, update, transposed):
    """A 2-D parameter (contiguous, or a transposed view) and its state take the update
    their elements take as flat buffers, and nothing past them is written: each is the first
    quarter of a buffer, so a kernel that ran its flat index over the rows would write the rest."""
    rng = np.random.default_rng(19)
    arrays = [*rng.standard_normal((3, 3, 4)), rng.random((3, 4))]  # param, grad, state
    flat = [dev(backend, a.reshape(-1), np.float32) for a in arrays]
    UPDATES[update](backend, *flat)

    laid = [a.T if transposed else a for a in arrays]  # the memory's order
    padded = [np.concatenate([a.reshape(-1), np.full(36, 7.0)]) for a in laid]
    buffers = [dev(backend, a, np.float32) for a in padded]
    matrices = [b[:12].reshape(a.shape) for a, b in zip(laid, buffers, strict=True)]
    if transposed:  # (3, 4) views of the first quarter, not contiguous
        matrices = [m.T for m in matrices]
    UPDATES[update](backend, *matrices)
    for name, want, got in zip(["param", "grad", "state", "state 2"], flat, matrices, strict=True):
        got, want = host(backend, got).reshape(-1), host(backend, want)
        np.testing.assert_allclose(got, want, **opt_tol(np.float32), err_msg=name)
    for buffer in buffers:
        np.testing.assert_array_equal(host(backend, buffer)[12:], 7.0)
