"""Reduced-precision matmuls (``precision="tf32"`` / ``"bf16"``): mantissa rounding against
ml_dtypes and a float64 reference, and the products on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends import PRECISIONS, NumpyBackend, get_backend


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


@pytest.mark.parametrize("bits", [7, 10])
def test_round_mantissa_into_its_own_memory(backend, bits):
    """``out=x`` (or a view of x's memory) gives what a separate ``out`` gets: the rounding
    reads x again after its first pass has written out."""
    x = np.array([1.0, 1.2345678, -3.3333333, 100.1, np.nan, -np.inf, 3e38, 1e-40], np.float32)
    want = backend.to_numpy(backend.round_mantissa(backend.asarray(x), bits))
    for view in (lambda a: a, lambda a: a[::-1]):
        x_there = backend.asarray(x.copy())
        out = view(x_there)
        assert backend.round_mantissa(x_there, bits, out=out) is out
        got = backend.to_numpy(out)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
