"""Reduced-precision matmuls (``precision="tf32"`` / ``"bf16"``) on every backend.

The CPU emulates the tensor cores' rounding (operands rounded, float32 accumulation); the
CUDA backend runs the real thing (cuBLAS TF32, and a bf16 GemmEx with a float32 result).
Each is checked against float64 products of independently rounded operands.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends import PRECISIONS, NumpyBackend, get_backend
from backends.cuda import cublas
from mlp import MLP, Adam
from mlp.data.synthetic import make_images


def op(x, transpose):
    return x.T if transpose else x


def rounded(x: np.ndarray, bits: int) -> np.ndarray:
    """Round float32 normal numbers to ``bits`` mantissa bits in float64: the reference."""
    mantissa, exponent = np.frexp(x.astype(np.float64))
    scale = 2.0 ** (bits + 1)
    return np.ldexp(np.rint(mantissa * scale) / scale, exponent)  # rint: ties to even


def test_round_mantissa_bf16_is_ml_dtypes_bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes")  # in the test extra: an independent bfloat16
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=500_000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)  # normals, subnormals, infinities, NaNs, both signs
    got = NumpyBackend(use_numba=False).round_mantissa(x, 7)
    with np.errstate(invalid="ignore"):  # NaN payloads
        want = x.astype(ml_dtypes.bfloat16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False),
        min_size=1,
        max_size=50,
    ),
    st.integers(1, 22),
)
def test_round_mantissa_any_width_rounds_to_nearest_even(values, bits):
    x = np.array(values, np.float32)
    x = x[np.abs(x) >= np.finfo(np.float32).tiny]  # normal numbers: frexp's reference holds
    got = NumpyBackend(use_numba=False).round_mantissa(x, bits).astype(np.float64)
    want = rounded(x, bits)
    overflow = np.abs(want) > np.finfo(np.float32).max
    want[overflow] = np.inf * np.sign(want[overflow])
    np.testing.assert_array_equal(got, want)


def test_round_mantissa_rejects_other_dtypes():
    with pytest.raises(ValueError, match="float32"):
        NumpyBackend().round_mantissa(np.ones(3), 7)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize(
    ("transpose_a", "transpose_b"), [(False, False), (True, False), (False, True)]
)
def test_reduced_matmul(backend_kind, make_backend, precision, transpose_a, transpose_b):
    kind = backend_kind
    be = make_backend(kind, precision)
    assert be.precision == precision
    rng = np.random.default_rng(1)
    m, k, n = 40, 304, 24  # multiples of 8: shapes cuBLAS gives to its tensor-core kernels
    a = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if transpose_b else (k, n)).astype(np.float32)
    exact = op(a, transpose_a).astype(np.float64) @ op(b, transpose_b)
    bits = PRECISIONS[precision]
    expected = op(rounded(a, bits), transpose_a) @ op(rounded(b, bits), transpose_b)

    da, db = be.asarray(a), be.asarray(b)
    out = be.empty((m, n), np.float32)
    returned = be.matmul(da, db, out=out, transpose_a=transpose_a, transpose_b=transpose_b)
    assert returned is out and be.is_array(out)
    got = be.to_numpy(out).astype(np.float64)
    np.testing.assert_array_equal(be.to_numpy(da), a)  # operands untouched
    np.testing.assert_array_equal(be.to_numpy(db), b)

    scale = np.abs(op(a, transpose_a)) @ np.abs(op(b, transpose_b))  # error bounds scale so
    error = np.max(np.abs(got - exact) / scale)
    unit = 2.0**-bits
    assert error < unit
    if precision == "tf32" and kind == "cuda":
        # cuBLAS's TF32 mode allows tensor cores but may pick a float32 kernel, and rounds
        # its own way: only the bound holds for certain.
        return
    assert error > 0.01 * unit  # rounded: far above float32's ~1e-7
    assert np.max(np.abs(got - expected) / scale) < 1e-6  # the same rounding exactly


def test_reduced_matmul_outputs_and_float64(backend_kind, make_backend):
    be = make_backend(backend_kind, "bf16")
    rng = np.random.default_rng(2)
    a = rng.standard_normal((8, 5)).astype(np.float32)
    b = rng.standard_normal((5, 6)).astype(np.float32)
    fresh = be.to_numpy(be.matmul(be.asarray(a), be.asarray(b)))
    assert fresh.dtype == np.float32 and fresh.shape == (8, 6)
    flat = be.zeros((8 * 6 * 2,), np.float32)  # a strided view: written through, not replaced
    view = flat.reshape(8, 12)[:, ::2]
    be.matmul(be.asarray(a), be.asarray(b), out=view)
    np.testing.assert_array_equal(be.to_numpy(flat).reshape(8, 12)[:, ::2], fresh)
    np.testing.assert_array_equal(be.to_numpy(flat).reshape(8, 12)[:, 1::2], 0.0)
    # float64 products are never reduced
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    exact = be.to_numpy(be.matmul(be.asarray(a64), be.asarray(b64)))
    np.testing.assert_allclose(exact, a64 @ b64, rtol=1e-12)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="choose one of float32, tf32, bf16"):
        get_backend("cpu", precision="fp8")


def test_bf16_training_tracks_float32(backend_kind, make_backend):
    images, labels = make_images(1200, seed=7)
    X = images.reshape(len(images), -1)
    results = {}
    for precision in ("float32", "bf16"):
        model = MLP([784, 64, 10], device=make_backend(backend_kind, precision), seed=0)
        history = model.fit(X, labels, epochs=3, batch_size=64, optimizer=Adam(lr=1e-3), seed=0)
        results[precision] = (history[-1]["loss"], model.evaluate(X, labels)["accuracy"])
    (loss32, acc32), (loss16, acc16) = results["float32"], results["bf16"]
    assert loss16 != loss32  # the rounding is in effect
    assert loss16 == pytest.approx(loss32, rel=0.05)
    assert acc16 == pytest.approx(acc32, abs=0.03)


@pytest.mark.cuda
def test_bf16_first_epoch_cpu_and_gpu_agree(make_backend):
    images, labels = make_images(512, seed=5)
    X = images.reshape(len(images), -1)
    histories = []
    for kind in ("cpu", "cuda"):
        model = MLP([784, 32, 10], device=make_backend(kind, "bf16"), seed=0)
        histories.append(
            model.fit(X, labels, epochs=1, batch_size=32, optimizer=Adam(lr=1e-3), seed=0)
        )
    (cpu,), (cuda,) = histories
    assert cuda["loss"] == pytest.approx(cpu["loss"], rel=2e-3)


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
