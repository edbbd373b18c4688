"""cuBLASLt's epilogue products: their layouts (checked on the host against the documented
column-major matmul, its bias and bias gradient one per row of D), and on a GPU, that they
serve a model's layers and compute what the separate kernels did."""

from __future__ import annotations

import numpy as np
import pytest

from backends.cuda import cublas, cublaslt
from tests.backends.arrays import flat_layer, layer_problem


def column_major(flat, rows, cols, ld):
    """The column-major matrix at ``flat``: element (i, j) at ``flat[i + j * ld]``."""
    return np.array([[flat[i + j * ld] for j in range(cols)] for i in range(rows)])


def lt_product(a, b, transpose_a):
    """What cuBLASLt computes over a's and b's buffers as ``product`` describes them, from
    its documentation: D = op(A)·op(B), column-major, its A being b's buffer and its B a's.
    Returns A (as op applies it), D, and D's buffer read back row-major."""
    op_a, op_b, ((ar, ac, lda), (br, bc, ldb), (dr, dc, ldd)) = cublaslt.product(
        a.shape, b.shape, transpose_a, False
    )
    lt_a = column_major(b.ravel(), ar, ac, lda)
    lt_b = column_major(a.ravel(), br, bc, ldb)
    lt_a = lt_a if op_a == cublas.CUBLAS_OP_N else lt_a.T
    lt_b = lt_b if op_b == cublas.CUBLAS_OP_N else lt_b.T
    d = lt_a @ lt_b
    assert d.shape == (dr, dc)

    def row_major(d):
        flat = np.zeros(ldd * dc)
        for i in range(dr):
            for j in range(dc):
                flat[i + j * ldd] = d[i, j]
        return flat.reshape(dc, dr)

    return lt_a, d, row_major


@pytest.mark.parametrize("name", ["identity", "relu"])
def test_the_forward_epilogue_computes_the_row_major_layer(name):
    """D = epilogue(A·B + bias), the bias one per row of D (cublasLt.h), is the row-major
    ``activation(x·W + b)``."""
    x, w, b = layer_problem(0, 5, 4, 3)
    _, d, row_major = lt_product(x, w, False)
    d = d + b[:, None]
    if name == "relu":
        d = np.maximum(d, 0.0)
    z = x @ w + b
    np.testing.assert_allclose(row_major(d), z if name == "identity" else np.maximum(z, 0))
    assert cublaslt.EPILOGUES[name] == {"identity": 4, "relu": 6}[name]  # cublasLt.h's values


def test_bgrada_gives_the_bias_gradient_beside_the_weight_gradient():
    """For the weight gradient xᵀ·dz, BGRADA's sums of A over the inner dimension (one per
    row of D, cublasLt.h) are dz's column sums: the bias gradient."""
    x, dz = layer_problem(1, 6, 4, 3)[0], np.random.default_rng(2).standard_normal((6, 3))
    lt_a, d, row_major = lt_product(x, dz, True)
    np.testing.assert_allclose(row_major(d), x.T @ dz)
    np.testing.assert_allclose(lt_a.sum(axis=1), dz.sum(axis=0))
    assert cublaslt.CUBLASLT_EPILOGUE_BGRADA == 256


def test_alignment_is_the_largest_power_of_two_dividing_the_address():
    assert cublaslt.alignment(0x1000) == 256  # at most 256: cuBLASLt's own default
    assert cublaslt.alignment(0x1010) == 16
    assert cublaslt.alignment(0x1004) == 4


def test_fits_takes_float32_contiguous_operands_with_an_out():
    x, w = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)
    b, out = np.ones(2, np.float32), np.empty((4, 2), np.float32)
    assert cublaslt.fits(x, w, b, out)
    assert not cublaslt.fits(x, w, b, None)  # nothing to write into: the general body
    assert not cublaslt.fits(x.astype(np.float64), w, b, out)
    assert not cublaslt.fits(np.ones((3, 4), np.float32).T, w, b, out)  # a transposed view
    assert not cublaslt.fits(x[:0], w, b, out[:0])


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["identity", "relu"])
@pytest.mark.parametrize("precision", ["float32", "tf32"])
@pytest.mark.parametrize("bias_aligned", [True, False])
def test_the_epilogue_serves_a_layer_and_matches_the_two_kernels(
    name, precision, bias_aligned, make_backend, monkeypatch
):
    """cuBLASLt must be found and be what ran (a plan it could use) where the bias is on 16
    bytes, and its answer must be what the GEMM then the bias kernel give
    (``MLP_NO_CUBLASLT=1``), on odd sizes with the weights off the flat buffer's start; a
    bias off 16 bytes is never handed to it (``VECTOR_ALIGNMENT``)."""
    backend = make_backend("cuda", precision)
    x, w, b = layer_problem(1, 33, 70, 19)
    weight, bias = flat_layer(backend, w, b, np.float32, bias_aligned)
    X = backend.asarray(x.astype(np.float32))
    fused = backend.linear(X, weight, bias, name, out=backend.empty((33, 19), np.float32))
    lt = backend._lt()
    assert lt is not None, "cuBLASLt was not found beside CuPy's cuBLAS"
    usable = [plan for plan in lt.plans.values() if plan and plan.usable]
    assert bool(usable) == bias_aligned, "no cuBLASLt algorithm for the layer"
    monkeypatch.setenv("MLP_NO_CUBLASLT", "1")
    plain = make_backend("cuda", precision)
    apart = plain.linear(X, weight, bias, name, out=plain.empty((33, 19), np.float32))
    close = {"rtol": 1e-5, "atol": 1e-5} if precision == "float32" else {"rtol": 1e-2, "atol": 1e-2}
    np.testing.assert_allclose(backend.to_numpy(fused), backend.to_numpy(apart), **close)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["identity", "relu"])
@pytest.mark.parametrize("precision", ["float32", "tf32"])
def test_backprop_linear_matches_the_separate_kernels(name, precision, make_backend, monkeypatch):
    """dz and both gradients through cuBLASLt's BGRADA (where it has an algorithm) are what
    the activation's backward, the GEMM and the row of ones give."""
    x, w, b = layer_problem(3, 33, 70, 19)
    dy = np.random.default_rng(4).standard_normal((33, 19))

    def gradients(backend):
        layer = flat_layer(backend, w, b, np.float32, bias_aligned=True)
        y = backend.linear(backend.asarray(x.astype(np.float32)), *layer, name)
        stale = np.full_like(w, 7.0), np.full_like(b, 7.0)  # to be overwritten, not added to
        grad_weight, grad_bias = flat_layer(backend, *stale, np.float32, bias_aligned=True)
        DY = backend.asarray(dy.astype(np.float32))
        dz = backend.backprop_linear(
            name, DY, y, backend.asarray(x.astype(np.float32)), grad_weight, grad_bias, out=DY
        )
        return [backend.to_numpy(a) for a in (dz, grad_weight, grad_bias)]

    fused = gradients(make_backend("cuda", precision))
    dz, _, grad_bias = fused  # an exact float32 sum at every precision
    np.testing.assert_allclose(grad_bias, dz.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-5)
    monkeypatch.setenv("MLP_NO_CUBLASLT", "1")
    close = {"rtol": 1e-5, "atol": 1e-4} if precision == "float32" else {"rtol": 1e-2, "atol": 1e-2}
    for got, expected in zip(fused, gradients(make_backend("cuda", precision)), strict=True):
        np.testing.assert_allclose(got, expected, **close)


@pytest.mark.cuda
def test_threads_get_their_own_cublaslt(cuda_backend):
    """A plan's descriptor is rewritten with each call's bias: threads never share one."""
    import threading

    x = cuda_backend.asarray(np.ones((8, 16), np.float32))
    w = cuda_backend.asarray(np.ones((16, 4), np.float32))
    b = cuda_backend.asarray(np.ones(4, np.float32))
    mine = cuda_backend.linear(x, w, b, "relu", out=cuda_backend.empty((8, 4), np.float32))
    seen = []

    def other() -> None:
        out = cuda_backend.linear(x, w, b, "relu", out=cuda_backend.empty((8, 4), np.float32))
        seen.append((cuda_backend._lt(), cuda_backend.to_numpy(out)))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    ((theirs, result),) = seen
    assert theirs is not None and theirs is not cuda_backend._lt()
    np.testing.assert_array_equal(result, cuda_backend.to_numpy(mine))
    np.testing.assert_array_equal(result, 17.0)


@pytest.mark.cuda
def test_a_recorded_fit_runs_its_layers_through_cublaslt(make_backend, monkeypatch):
    """Each hidden layer's forward is a cuBLASLt product inside the recorded step (a CUDA
    graph); the 3-wide output layer's and the backward's are where cuBLASLt has an algorithm
    for them; and the fit's losses are those of the separate kernels, to rounding."""
    from mlp import MLP

    rng = np.random.default_rng(2)
    X, y = rng.random((256, 20), dtype=np.float32), rng.integers(0, 3, 256)

    def fit(backend):
        model = MLP([20, 32, 16, 3], device=backend, seed=0)
        losses = [record["loss"] for record in model.fit(X, y, epochs=3, batch_size=64)]
        assert backend.capture_failure is None  # the step was recorded
        return losses

    backend = make_backend("cuda")
    fused = fit(backend)
    hidden = [
        plan
        for (_, epilogue, *_), plan in backend._lt().plans.items()
        if epilogue == cublaslt.EPILOGUES["relu"]
    ]
    assert len(hidden) >= 2 and all(plan and plan.usable for plan in hidden)
    monkeypatch.setenv("MLP_NO_CUBLASLT", "1")
    np.testing.assert_allclose(fused, fit(make_backend("cuda")), rtol=1e-4)
