"""cuBLAS called directly: the GEMM arguments for row-major products (checked on the host
against the documented column-major GEMM), and the product itself on a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from backends.cuda import cublas


def op(x, transpose):
    return x.T if transpose else x


def column_major_gemm(op_a, op_b, m, n, k, a_flat, lda, b_flat, ldb, ldc):
    """What cuBLAS's GEMM computes, from its documentation: C = op(A)·op(B), all
    column-major, element (i, j) of a matrix with leading dimension ld at flat[i + j*ld]."""

    def matrix(flat, ld, rows, cols):
        return np.array([[flat[i + j * ld] for j in range(cols)] for i in range(rows)])

    A = matrix(a_flat, lda, *((m, k) if op_a == cublas.CUBLAS_OP_N else (k, m)))
    B = matrix(b_flat, ldb, *((k, n) if op_b == cublas.CUBLAS_OP_N else (n, k)))
    C = (A if op_a == cublas.CUBLAS_OP_N else A.T) @ (B if op_b == cublas.CUBLAS_OP_N else B.T)
    c_flat = np.zeros(ldc * n)
    for i in range(m):
        for j in range(n):
            c_flat[i + j * ldc] = C[i, j]
    return c_flat


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_gemm_arguments_compute_the_row_major_product(transpose_a, transpose_b):
    rng = np.random.default_rng(0)
    rows, inner, cols = 5, 4, 3
    a = rng.standard_normal((inner, rows) if transpose_a else (rows, inner))
    b = rng.standard_normal((cols, inner) if transpose_b else (inner, cols))
    op_b, op_a, m, n, k, ldb, lda, ldc = cublas.cublas_gemm_arguments(
        a.shape, b.shape, transpose_a, transpose_b
    )
    # cuBLAS gets B's buffer first, then A's: each a C-order (row-major) buffer
    c_flat = column_major_gemm(op_b, op_a, m, n, k, b.ravel(), ldb, a.ravel(), lda, ldc)
    expected = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
    np.testing.assert_allclose(c_flat.reshape(rows, cols), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="do not line up"):
        cublas.cublas_gemm_arguments((rows, inner), (inner + 1, cols), False, False)


@pytest.mark.cuda
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_direct_float32_gemm_on_the_gpu(cuda_backend, transpose_a, transpose_b):
    rng = np.random.default_rng(3)
    rows, inner, cols = 33, 70, 19
    a = rng.standard_normal((inner, rows) if transpose_a else (rows, inner)).astype(np.float32)
    b = rng.standard_normal((cols, inner) if transpose_b else (inner, cols)).astype(np.float32)
    expected = op(a, transpose_a).astype(np.float64) @ op(b, transpose_b)
    out = cuda_backend.empty((rows, cols), np.float32)
    got = cuda_backend.gemm(
        cuda_backend.asarray(a), cuda_backend.asarray(b), out, transpose_a, transpose_b
    )
    assert got is out
    np.testing.assert_allclose(cuda_backend.to_numpy(out), expected, rtol=1e-4, atol=1e-4)
