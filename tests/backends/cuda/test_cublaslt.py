"""cuBLASLt's epilogue product: its layouts (checked on the host against the documented
column-major matmul with a bias per row of D), and on a GPU, that it serves a model's layers
and computes what the GEMM and the bias kernel did."""

from __future__ import annotations

import numpy as np
import pytest

from backends.cuda import cublaslt
from tests.backends.arrays import flat_layer, layer_problem


def column_major(flat, rows, cols, ld):
    """The column-major matrix at ``flat``: element (i, j) at ``flat[i + j * ld]``."""
    return np.array([[flat[i + j * ld] for j in range(cols)] for i in range(rows)])


@pytest.mark.parametrize("name", ["identity", "relu"])
def test_layouts_make_the_epilogue_compute_the_row_major_layer(name):
    """D = epilogue(A·B + bias), bias one per row of D (cublasLt.h), over the buffers as
    ``layouts`` describes them, is the row-major ``activation(x·W + b)``."""
    rows, inner, cols = 5, 4, 3
    x, w, b = layer_problem(0, rows, inner, cols)
    (a_rows, a_cols, lda), (b_rows, b_cols, ldb), (d_rows, d_cols, ldd) = cublaslt.layouts(
        x.shape, w.shape
    )
    d = column_major(w.ravel(), a_rows, a_cols, lda) @ column_major(x.ravel(), b_rows, b_cols, ldb)
    d += b[:, None]  # the bias vector's length is D's row count
    if name == "relu":
        d = np.maximum(d, 0.0)
    flat = np.zeros(ldd * d_cols)
    for i in range(d_rows):
        for j in range(d_cols):
            flat[i + j * ldd] = d[i, j]
    z = x @ w + b
    np.testing.assert_allclose(
        flat.reshape(rows, cols), z if name == "identity" else np.maximum(z, 0)
    )
    assert cublaslt.EPILOGUES[name] == {"identity": 4, "relu": 6}[name]  # cublasLt.h's values


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
def test_the_epilogue_serves_a_layer_and_matches_the_two_kernels(
    name, precision, make_backend, monkeypatch
):
    """cuBLASLt must be found and be what ran (a plan it could use), and its answer must be
    what the GEMM then the bias kernel give (``MLP_NO_CUBLASLT=1``), on odd sizes and a bias
    one element off the flat buffer's start."""
    backend = make_backend("cuda", precision)
    x, w, b = layer_problem(1, 33, 70, 19)
    weight, bias = flat_layer(backend, w, b, np.float32)
    X = backend.asarray(x.astype(np.float32))
    fused = backend.linear(X, weight, bias, name, out=backend.empty((33, 19), np.float32))
    lt = backend._lt()
    assert lt is not None, "cuBLASLt was not found beside CuPy's cuBLAS"
    usable = [plan for plan in lt.plans.values() if plan and plan.usable]
    assert usable, "no cuBLASLt algorithm for the layer"
    monkeypatch.setenv("MLP_NO_CUBLASLT", "1")
    plain = make_backend("cuda", precision)
    apart = plain.linear(X, weight, bias, name, out=plain.empty((33, 19), np.float32))
    close = {"rtol": 1e-5, "atol": 1e-5} if precision == "float32" else {"rtol": 1e-2, "atol": 1e-2}
    np.testing.assert_allclose(backend.to_numpy(fused), backend.to_numpy(apart), **close)


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
    """Each layer's forward is a cuBLASLt product inside the recorded step (a CUDA graph),
    and the fit's losses are those of the GEMM and the bias kernel, to rounding."""
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
    plans = backend._lt().plans
    assert len(plans) >= 3 and all(plan and plan.usable for plan in plans.values())
    monkeypatch.setenv("MLP_NO_CUBLASLT", "1")
    np.testing.assert_allclose(fused, fit(make_backend("cuda")), rtol=1e-4)
