"""The CUDA kernels' arithmetic, run on the host: a check that needs no GPU.

Each elementwise kernel's operation (the C code CuPy compiles), and the softmax
cross-entropy kernel's row function, is wrapped in a plain C++ loop, built with the host
compiler and called through ctypes, then compared with the NumPy backend's body of the
same op. Compiling (``test_cuda_sources``) proves the code is valid CUDA; this
proves it computes the right numbers, before any GPU has run it."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from backends import NumpyBackend
from backends.cuda.kernels import ELEMENTWISE, SOFTMAX_XENT_ROW
from tests.backends.cuda.cuda_types import C_TYPES

CXX = shutil.which("g++") or shutil.which("c++")


pytestmark = pytest.mark.skipif(CXX is None, reason="no host C++ compiler (g++)")


_PRELUDE = """
#include <algorithm>
#include <cmath>
#include <cstring>
using std::exp; using std::log; using std::max; using std::min; using std::pow; using std::sqrt;
using std::tanh;
static inline unsigned int __float_as_uint(float x) {
    unsigned int u; std::memcpy(&u, &x, sizeof u); return u;
}
"""


def build_library(stem: Path, source: str) -> ctypes.CDLL:
    """``source`` (C++) built with the host compiler into ``stem.so`` and loaded."""
    src, lib = stem.with_suffix(".cpp"), stem.with_suffix(".so")
    src.write_text(source)
    result = subprocess.run(
        [CXX, "-O1", "-std=c++17", "-shared", "-fPIC", "-o", str(lib), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return ctypes.CDLL(str(lib))


def _host_function(name: str, ctype: str) -> tuple[str, list[tuple[str, str, bool]]]:
    """C++ for one kernel: every parameter a pointer, element ``i`` bound by reference.

    Returns the source and the parameters as ``(name, numpy dtype or "T", raw)``.
    """
    inputs, outputs, operation = ELEMENTWISE[name]
    args, binds, params = [], [], []
    for decl in [d.strip() for d in f"{inputs},{outputs}".split(",")]:
        words = decl.split()
        raw = words[0] == "raw"
        type_name, var = words[-2], words[-1]
        c = C_TYPES.get(type_name, type_name)
        if raw:
            args.append(f"const {c}* {var}")
        else:
            args.append(f"{c}* {var}_ptr")
            binds.append(f"{c}& {var} = {var}_ptr[i];")
        params.append((var, type_name, raw))
    source = (
        f"typedef {ctype} T; typedef unsigned char S; typedef long long I;\n"
        f'extern "C" void mlp_{name}({", ".join(args)}, long long n) {{\n'
        f"  for (long long i = 0; i < n; ++i) {{ {' '.join(binds)} {operation} }}\n}}\n"
    )
    return source, params


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """Every elementwise kernel for float and double, built into one shared library each."""
    folder = tmp_path_factory.mktemp("host_kernels")
    built = {}
    for ctype in ("float", "double"):
        sources, signatures = [_PRELUDE], {}
        for name in ELEMENTWISE:
            source, params = _host_function(name, ctype)
            sources.append(source)
            signatures[name] = params
        built[ctype] = (build_library(folder / f"kernels_{ctype}", "\n".join(sources)), signatures)
    return built


@pytest.fixture(scope="module")
def host_softmax(tmp_path_factory):
    """The softmax cross-entropy kernel's row function, looped over the rows on the host
    (the warp sum and atomics around it are CUDA-only), for float and double."""
    folder = tmp_path_factory.mktemp("host_softmax")
    built = {}
    for ctype, c_scalar in (("float", ctypes.c_float), ("double", ctypes.c_double)):
        source = (
            _PRELUDE
            + "#define __device__\n"
            + SOFTMAX_XENT_ROW.format(T=ctype)
            + f"""
extern "C" void mlp_softmax_xent_rows(const {ctype}* logits, const int* labels, {ctype}* grad,
                                      double* totals, int rows, int classes, {ctype} scale) {{
    for (int r = 0; r < rows; ++r) {{
        double loss = 0, hit = 0;
        const long long row_start = (long long)r * classes;
        mlp_softmax_xent_row(logits + row_start, grad + row_start, labels[r], classes, scale,
                             &loss, &hit);
        totals[0] += loss;
        totals[1] += hit;
    }}
}}
"""
        )
        function = build_library(folder / f"softmax_{ctype}", source).mlp_softmax_xent_rows
        function.restype = None
        function.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int, ctypes.c_int, c_scalar]
        built[ctype] = function
    return built


def run_kernel(host_kernels, name: str, dtype, n: int, **values):
    """Call kernel ``name`` over ``n`` elements; scalars are broadcast, as CuPy does.

    Returns every parameter's array after the call (outputs updated in place).
    """
    ctype = "float" if np.dtype(dtype) == np.float32 else "double"
    lib, signatures = host_kernels[ctype]
    arrays = {}
    for var, type_name, raw in signatures[name]:
        np_type = (
            np.dtype(dtype)
            if type_name == "T"
            else np.dtype({"S": np.uint8, "I": np.int64}.get(type_name, type_name))
        )
        value = values[var]
        if not raw:
            value = np.broadcast_to(np.asarray(value, np_type), (n,))
        arrays[var] = np.array(value, dtype=np_type, order="C")  # a copy: the caller's stays
    function = getattr(lib, f"mlp_{name}")
    function.restype = None
    pointers = [ctypes.c_void_p(a.ctypes.data) for a in arrays.values()]
    function(*pointers, ctypes.c_longlong(n))
    return arrays


def float32_bit_patterns(n: int, seed: int = 0) -> np.ndarray:
    """Every kind of float32: random bits (normals, subnormals, NaNs, infinities) and edges."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    edges = np.array(
        [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFFFFFFF,
         0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x3F808000, 0x3F818000, 0x3F808001,
         0x00008000, 0x00018000, 0x0000FFFF, 0x807FFFFF],
        dtype=np.uint32,
    )  # fmt: skip
    return np.concatenate([edges, bits]).view(np.float32)


def adam_on_host(host_kernels, dtype, decoupled, p, g, m, v):
    """One step of the CUDA Adam kernel, with the scalars ``CupyBackend.adam_step`` passes."""
    from backends.xp_backend import adam_scalars

    step_size, inv_sqrt_bc2, l2, decay = adam_scalars(3, 1e-3, 0.9, 0.999, 0.01, decoupled)
    return run_kernel(
        host_kernels, "adam", dtype, p.size, g=g, step_size=step_size,
        inv_sqrt_bc2=inv_sqrt_bc2, beta1=0.9, one_minus_beta1=1.0 - 0.9, beta2=0.999,
        one_minus_beta2=1.0 - 0.999, eps=1e-8, l2=l2, decay=decay, p=p, m=m, v=v,
    )  # fmt: skip


def test_to_bf16_rounds_like_the_cpu_emulation(host_kernels):
    x = float32_bit_patterns(200_000)
    bits = run_kernel(host_kernels, "to_bf16", np.float32, x.size, x=x, y=0)["y"]
    on_gpu = (bits.astype(np.uint32) << 16).view(np.float32)
    emulated = NumpyBackend(use_numba=False).round_mantissa(x, 7)
    nan = np.isnan(x)
    assert np.array_equal(np.isnan(on_gpu), nan)
    assert np.array_equal(on_gpu[~nan].view(np.uint32), emulated[~nan].view(np.uint32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["identity", "relu", "sigmoid", "tanh"])
def test_activation_kernels(host_kernels, dtype, activation):
    be = NumpyBackend(use_numba=False)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(4096) * 6).astype(dtype)
    bias = rng.standard_normal(4096).astype(dtype)
    dy = rng.standard_normal(4096).astype(dtype)
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    y = run_kernel(host_kernels, f"act_{activation}", dtype, x.size, x=x, y=0)["y"]
    np.testing.assert_allclose(y, be.activation(activation, x), rtol=rtol, atol=rtol)
    fused = run_kernel(host_kernels, f"bias_act_{activation}", dtype, x.size, z=x, b=bias, y=0)
    np.testing.assert_allclose(
        fused["y"], be.activation(activation, x + bias), rtol=rtol, atol=rtol
    )
    dx = run_kernel(host_kernels, f"backprop_{activation}", dtype, x.size, dy=dy, y=y, dx=0)
    np.testing.assert_allclose(
        dx["dx"], be.backprop_activation(activation, dy, y), rtol=rtol, atol=rtol
    )


@pytest.mark.parametrize("start", [0, 13])
def test_gather_rows_kernel(host_kernels, start):
    """Row r of the batch is rows[start + r]: a recorded step reads its batch's place."""
    rng = np.random.default_rng(2)
    source = rng.integers(0, 256, size=(50, 7), dtype=np.uint8)
    rows = rng.permutation(50).astype(np.int64)
    out = run_kernel(
        host_kernels, "gather_rows", np.float32, 20 * 7,
        source=source, rows=rows, start=np.array([start]), cols=7, scale=1 / 255, out=0,
    )["out"]  # fmt: skip
    expected = source[rows[start : start + 20]].astype(np.float32) * np.float32(1 / 255)
    np.testing.assert_allclose(out.reshape(20, 7), expected, rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_kernel(host_kernels, dtype, decoupled):
    be = NumpyBackend(use_numba=False)
    rng = np.random.default_rng(3)
    p, g = (rng.standard_normal(1000).astype(dtype) for _ in range(2))
    m, v = rng.standard_normal(1000).astype(dtype) * 0.1, rng.random(1000).astype(dtype) * 0.01
    want_p, want_m, want_v = p.copy(), m.copy(), v.copy()
    kw = dict(count=3, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    be.adam_update(want_p, g, want_m, want_v, decoupled=decoupled, **kw)
    got = adam_on_host(host_kernels, dtype, decoupled, p, g, m, v)
    # float32: m = 0.9 m + 0.1 g cancels to near zero in places, so compare on the inputs' scale
    tol = 1e-6 if dtype == np.float32 else 1e-13
    for name, want in (("p", want_p), ("m", want_m), ("v", want_v)):
        np.testing.assert_allclose(got[name], want, rtol=10 * tol, atol=tol, err_msg=name)
    assert not np.allclose(got["p"], p)  # the step moved the parameters


def test_adam_kernel_first_moments_are_exact_in_float32(host_kernels):
    """From zero state, m = (1-beta1)·g and v = (1-beta2)·g² to float32 rounding: the
    kernel's 1 - beta must be as exact as the host's (float32 arithmetic is 1.3e-5 off)."""
    rng = np.random.default_rng(5)
    p, g = (rng.standard_normal(1000).astype(np.float32) for _ in range(2))
    zeros = np.zeros(1000, np.float32)
    got = adam_on_host(host_kernels, np.float32, True, p, g, zeros, zeros)
    g64 = g.astype(np.float64)
    np.testing.assert_allclose(got["m"], (1.0 - 0.9) * g64, rtol=3e-7)
    np.testing.assert_allclose(got["v"], (1.0 - 0.999) * g64 * g64, rtol=3e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("step", [1, 3, 5000])
def test_adam_counted_kernel_matches_the_host_scalars(host_kernels, dtype, decoupled, step):
    """The kernel that reads the step count on the device works out the bias corrections
    as the host does: its update is the plain kernel's, bit for bit."""
    from backends.xp_backend import adam_scalars

    rng = np.random.default_rng(6)
    p, g = (rng.standard_normal(1000).astype(dtype) for _ in range(2))
    m, v = rng.standard_normal(1000).astype(dtype) * 0.1, rng.random(1000).astype(dtype) * 0.01
    lr, b1, b2, wd = 1e-3, 0.9, 0.999, 0.01
    step_size, inv_sqrt_bc2, l2, decay = adam_scalars(step, lr, b1, b2, wd, decoupled)
    common = dict(beta1=b1, one_minus_beta1=1.0 - b1, beta2=b2, one_minus_beta2=1.0 - b2,
                  eps=1e-8, l2=l2, decay=decay, g=g, p=p, m=m, v=v)  # fmt: skip
    plain = run_kernel(
        host_kernels, "adam", dtype, p.size, step_size=step_size, inv_sqrt_bc2=inv_sqrt_bc2,
        **common,
    )  # fmt: skip
    corrections = run_kernel(
        host_kernels, "adam_corrections", dtype, 1, count=np.array([step]), lr=lr, beta1=b1,
        beta2=b2, step_size=0, inv_sqrt_bc2=0,
    )  # fmt: skip
    assert corrections["step_size"][0] == dtype(step_size)
    assert corrections["inv_sqrt_bc2"][0] == dtype(inv_sqrt_bc2)
    pair = np.concatenate([corrections["step_size"], corrections["inv_sqrt_bc2"]])
    counted = run_kernel(
        host_kernels, "adam_counted", dtype, p.size, corrections=pair, **common
    )  # fmt: skip
    for name in ("p", "m", "v"):
        np.testing.assert_array_equal(counted[name], plain[name], err_msg=name)
    assert not np.array_equal(counted["p"], p)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_kernels(host_kernels, nesterov):
    be = NumpyBackend(use_numba=False)
    rng = np.random.default_rng(4)
    p, g, velocity = (rng.standard_normal(1000) for _ in range(3))
    want_p, want_v = p.copy(), velocity.copy()
    be.sgd_update(want_p, g, want_v, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    got = run_kernel(
        host_kernels, "sgd_momentum", np.float64, p.size, g=g, lr=0.1, momentum=0.9,
        weight_decay=0.01, nesterov=int(nesterov), p=p, velocity=velocity,
    )  # fmt: skip
    np.testing.assert_allclose(got["p"], want_p, rtol=1e-12)
    np.testing.assert_allclose(got["velocity"], want_v, rtol=1e-12)
    plain_p = p.copy()
    be.sgd_update(plain_p, g, None, lr=0.1, weight_decay=0.01)
    got = run_kernel(host_kernels, "sgd", np.float64, p.size, g=g, lr=0.1, weight_decay=0.01, p=p)
    np.testing.assert_allclose(got["p"], plain_p, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("classes", [2, 10, 47])
@pytest.mark.parametrize("in_place", [False, True])
def test_softmax_cross_entropy_row(host_softmax, dtype, classes, in_place):
    rng = np.random.default_rng(5)
    rows = 300
    logits = (rng.standard_normal((rows, classes)) * 4).astype(dtype)
    logits[:20] *= 40  # logits far apart: exp would overflow without the max shift
    logits[20:24] = 1.5  # ties: the first largest logit is the prediction
    labels = rng.integers(0, classes, rows).astype(np.int32)
    labels[20:22] = 0
    want_grad, want_totals = np.empty_like(logits), np.array([0.5, 2.0])
    NumpyBackend(use_numba=False).softmax_cross_entropy_accumulate(
        logits, labels, want_grad, want_totals
    )
    got_logits, got_totals = logits.copy(), np.array([0.5, 2.0])  # totals accumulate
    got_grad = got_logits if in_place else np.full_like(logits, np.nan)
    function = host_softmax["float" if dtype == np.float32 else "double"]
    function(
        got_logits.ctypes.data, labels.ctypes.data, got_grad.ctypes.data,
        got_totals.ctypes.data, rows, classes, dtype(1 / rows),
    )  # fmt: skip
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got_grad, want_grad, rtol=10 * tol, atol=tol / rows)
    np.testing.assert_allclose(got_totals[0], want_totals[0], rtol=10 * tol)
    assert got_totals[1] == want_totals[1]
    assert 2.0 < want_totals[1] < 2.0 + rows  # some rows right, some wrong: the count matters
    if not in_place:
        np.testing.assert_array_equal(got_logits, logits)  # the input is only read


def test_every_kernel_has_a_host_test():
    """A new kernel must get a test here too: this list names what the tests above run."""
    activations = ["identity", "relu", "sigmoid", "tanh"]
    tested = {"to_bf16", "gather_rows", "adam", "adam_corrections", "adam_counted"}
    tested |= {"sgd", "sgd_momentum"}
    tested |= {f"{kind}_{a}" for kind in ("act", "bias_act", "backprop") for a in activations}
    assert set(ELEMENTWISE) == tested
