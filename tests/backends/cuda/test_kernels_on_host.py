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
from backends.cuda.kernels import ADAM_SOURCE, ELEMENTWISE, LOSS_SOURCES
from backends.operands import LOSSES
from tests.backends.cuda.cuda_types import C_TYPES

CXX = shutil.which("g++") or shutil.which("c++")


pytestmark = pytest.mark.skipif(CXX is None, reason="no host C++ compiler (g++)")


_PRELUDE = """
#include <algorithm>
#include <cmath>
#include <cstring>
using std::exp; using std::log; using std::max; using std::min; using std::pow; using std::sqrt;
using std::tanh; using std::log1p; using std::fabs;
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


def _host_function(
    name: str, ctype: str, targets: str = "int"
) -> tuple[str, list[tuple[str, str, bool]]]:
    """C++ for one kernel: every parameter a pointer, element ``i`` bound by reference;
    ``targets`` is the C type of the batch gather's targets (``U``, ``V``).

    Returns the source and the parameters as ``(name, numpy dtype or "T", raw)``.
    """
    inputs, outputs, operation = ELEMENTWISE[name]
    args, binds, params = [], [], []
    declared = [(d.strip(), False) for d in inputs.split(",")]
    declared += [(d.strip(), True) for d in outputs.split(",")]
    for decl, output in declared:
        words = decl.split()
        raw = words[0] == "raw"
        type_name, var = words[-2], words[-1]
        c = C_TYPES.get(type_name, type_name)
        if raw:
            args.append(f"{'' if output else 'const '}{c}* {var}")
        else:
            args.append(f"{c}* {var}_ptr")
            binds.append(f"{c}& {var} = {var}_ptr[i];")
        params.append((var, type_name, raw))
    source = (
        f"typedef {ctype} T; typedef unsigned char S; typedef long long I;"
        f" typedef {targets} U; typedef {targets} V;\n"
        f'extern "C" void mlp_{name}({", ".join(args)}, long long n) {{\n'
        f"  for (long long i = 0; i < n; ++i) {{ {' '.join(binds)} {operation} }}\n}}\n"
    )
    return source, params


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """Every elementwise kernel for float and double, built into one shared library each
    (labels as targets), and the batch gather with float targets (values, as regression's)."""
    folder = tmp_path_factory.mktemp("host_kernels")
    built = {}
    for ctype in ("float", "double"):
        sources, signatures = [_PRELUDE], {}
        for name in ELEMENTWISE:
            source, params = _host_function(name, ctype)
            sources.append(source)
            signatures[name] = params
        built[ctype] = (build_library(folder / f"kernels_{ctype}", "\n".join(sources)), signatures)
    source, params = _host_function("gather_batch", "float", targets="float")
    library = build_library(folder / "gather_float_targets", _PRELUDE + source)
    built["float", "float"] = (library, {"gather_batch": params})
    return built


#: CUDA's launch grid and warp intrinsics on the host. The loss kernels run one thread per
#: block: each "warp" is one row, its sum that row's values, its lane 0 the row itself. A
#: block's threads run one after another, thread 0 first, so what thread 0 leaves in shared
#: memory is there for the others after ``__syncthreads``.
_HOST_GRID = """
#define __global__
#define __device__
struct mlp_dim { int x; };
static mlp_dim blockIdx, blockDim = {1}, threadIdx = {0}, gridDim = {1};
#define __shared__ static
static inline void __syncthreads() {}
static inline double __shfl_down_sync(unsigned, double, int) { return 0.0; }
static inline void atomicAdd(double* total, double value) { *total += value; }
"""


@pytest.fixture(scope="module")
def host_losses(tmp_path_factory):
    """Each loss kernel, whole (row function, weights, sums), launched once per row on the
    host, for float and double."""
    folder = tmp_path_factory.mktemp("host_losses")
    built = {}
    for name, source in LOSS_SOURCES.items():
        for ctype, c_scalar in (("float", ctypes.c_float), ("double", ctypes.c_double)):
            target = "int" if name != "squared_error" else ctype
            launcher = f"""
extern "C" void launch(const {ctype}* outputs, const {target}* targets, {ctype}* grad,
                       double* totals, const {ctype}* weights, const {ctype}* weight_sum,
                       int weighted, int rows, int width, {ctype} scale) {{
    for (int r = 0; r < rows; ++r) {{
        blockIdx.x = r;
        mlp_{name}_{ctype}(outputs, targets, grad, totals, weights, weight_sum, weighted,
                           rows, width, scale);
    }}
}}
"""
            library = build_library(
                folder / f"{name}_{ctype}",
                _PRELUDE + _HOST_GRID + source.format(T=ctype) + launcher,
            )
            function = library.launch
            function.restype = None
            function.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int] * 3 + [c_scalar]
            built[name, ctype] = function
    return built


#: The type parameters other than T and the targets' as the host builds fix them.
_HOST_TYPES = {"S": np.uint8, "I": np.int64}


@pytest.fixture(scope="module")
def host_adam(tmp_path_factory):
    """The one-launch Adam kernel for float and double, launched on a host grid of
    ``blocks`` × ``threads`` (every thread of a block in turn)."""
    folder = tmp_path_factory.mktemp("host_adam")
    built = {}
    for ctype in ("float", "double"):
        t = ctype
        launcher = f"""
extern "C" void launch(const {t}* g, {t}* p, {t}* m, {t}* v, const long long* count,
                       long long size, double lr, double b1, double b2, {t} beta1,
                       {t} one_minus_beta1, {t} beta2, {t} one_minus_beta2, {t} eps, {t} l2,
                       {t} decay, int blocks, int threads) {{
    gridDim.x = blocks;
    blockDim.x = threads;
    for (int b = 0; b < blocks; ++b) {{
        for (int x = 0; x < threads; ++x) {{
            blockIdx.x = b;
            threadIdx.x = x;
            mlp_adam_contiguous_{t}(g, p, m, v, count, size, lr, b1, b2, beta1, one_minus_beta1,
                                 beta2, one_minus_beta2, eps, l2, decay);
        }}
    }}
}}
"""
        library = build_library(
            folder / f"adam_{ctype}", _PRELUDE + _HOST_GRID + ADAM_SOURCE.format(T=ctype) + launcher
        )
        built[ctype] = library.launch
        built[ctype].restype = None
    return built


def run_kernel(host_kernels, name: str, dtype, n: int, target_type=np.int32, **values):
    """Call kernel ``name`` over ``n`` elements; scalars are broadcast, as CuPy does.
    ``target_type``: the batch gather's targets' (int32 labels, or float32 values).

    Returns every parameter's array after the call (outputs updated in place).
    """
    ctype = "float" if np.dtype(dtype) == np.float32 else "double"
    key = ctype if target_type == np.int32 else (ctype, "float")
    lib, signatures = host_kernels[key]
    types = {**_HOST_TYPES, "U": target_type, "V": target_type}
    arrays = {}
    for var, type_name, raw in signatures[name]:
        np_type = np.dtype(dtype) if type_name == "T" else np.dtype(types.get(type_name, type_name))
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
    x[:3] = np.nan, np.inf, -np.inf  # a NaN stays NaN, as on the CPU
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("step", [1, 3, 5000])
@pytest.mark.parametrize("blocks,threads", [(3, 8), (200, 8), (1, 1)])
def test_one_launch_adam_is_the_plain_kernel_bit_for_bit(
    host_kernels, host_adam, dtype, decoupled, step, blocks, threads
):
    """The kernel that reads the count on the device and works out the corrections once a
    block updates every element as the plain kernel with the host's scalars does, whether the
    grid strides over the elements (3 × 8 threads), has threads to spare (200 × 8), or is one
    thread. (Here both use the host's ``pow``; a GPU's double ``pow`` may differ from it by
    an ulp, as it did for the two kernels this one replaces. The host runs a block's threads
    in turn, thread 0 first: the barrier itself is for a GPU run to check.)"""
    from backends.xp_backend import adam_scalars

    rng = np.random.default_rng(7)
    p, g = (rng.standard_normal(1000).astype(dtype) for _ in range(2))
    m, v = rng.standard_normal(1000).astype(dtype) * 0.1, rng.random(1000).astype(dtype) * 0.01
    lr, b1, b2, eps, wd = 1e-3, 0.9, 0.999, 1e-8, 0.01
    step_size, inv_sqrt_bc2, l2, decay = adam_scalars(step, lr, b1, b2, wd, decoupled)
    plain = run_kernel(
        host_kernels, "adam", dtype, p.size, g=g, step_size=step_size,
        inv_sqrt_bc2=inv_sqrt_bc2, beta1=b1, one_minus_beta1=1.0 - b1, beta2=b2,
        one_minus_beta2=1.0 - b2, eps=eps, l2=l2, decay=decay, p=p, m=m, v=v,
    )  # fmt: skip
    got = {"p": p.copy(), "m": m.copy(), "v": v.copy()}
    count = np.array([step], np.int64)
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    host_adam["float" if dtype == np.float32 else "double"](
        ctypes.c_void_p(g.ctypes.data), *(ctypes.c_void_p(got[k].ctypes.data) for k in "pmv"),
        ctypes.c_void_p(count.ctypes.data), ctypes.c_longlong(p.size),
        *(ctypes.c_double(x) for x in (lr, b1, b2)),
        *(scalar(x) for x in (b1, 1.0 - b1, b2, 1.0 - b2, eps, l2, decay)),
        ctypes.c_int(blocks), ctypes.c_int(threads),
    )  # fmt: skip
    for name in "pmv":
        np.testing.assert_array_equal(got[name], plain[name], err_msg=name)
    assert not np.array_equal(got["p"], p)


@pytest.mark.parametrize("start", [0, 13])
@pytest.mark.parametrize(
    "target_type,target_cols", [(np.int32, 1), (np.int32, 3), (np.int32, 7), (np.float32, 3)]
)
def test_gather_batch_kernel(host_kernels, start, target_type, target_cols):
    """One pass gathers a batch's inputs and, beside them, its targets from the same rows:
    labels, or values (regression's)."""
    rng = np.random.default_rng(2)
    source = rng.integers(0, 256, size=(50, 7), dtype=np.uint8)
    targets = rng.standard_normal((50, target_cols)) * 5
    targets = targets.astype(target_type)
    rows = rng.permutation(50).astype(np.int64)
    got = run_kernel(
        host_kernels, "gather_batch", np.float32, 20 * 7, target_type=target_type,
        source=source, targets=targets, rows=rows, start=np.array([start]), cols=7,
        target_cols=target_cols, scale=1 / 255, out=0,
        target_out=np.full((20, target_cols), -1, target_type),
    )  # fmt: skip
    batch = rows[start : start + 20]
    expected = source[batch].astype(np.float32) * np.float32(1 / 255)
    np.testing.assert_allclose(got["out"].reshape(20, 7), expected, rtol=1e-7)
    np.testing.assert_array_equal(got["target_out"], targets[batch])


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


def loss_case(name, rng, rows, dtype, width):
    outputs = (rng.standard_normal((rows, width)) * 4).astype(dtype)
    if name == "squared_error":
        return outputs, rng.standard_normal((rows, width)).astype(dtype), "squared_error"
    outputs[:20] *= 40  # logits far apart: exp would overflow without the max shift
    outputs[20:24] = 1.5  # ties: the first largest logit is the prediction
    classes = 2 if width == 1 else width
    labels = rng.integers(0, classes, rows).astype(np.int32)
    labels[20:22] = 0
    return outputs, labels, "sigmoid_cross_entropy" if width == 1 else "softmax_cross_entropy"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kind,width", [("class", 2), ("class", 10), ("class", 47), ("class", 1), ("value", 3)]
)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
def test_loss_kernel(host_losses, dtype, kind, width, weighted, in_place):
    """The CUDA loss kernels against the NumPy backend's loss, weighted or not."""
    rng = np.random.default_rng(5)
    rows = 300
    name = "squared_error" if kind == "value" else None
    outputs, targets, loss = loss_case(name or "class", rng, rows, dtype, width)
    weights = weight_sum = None
    if weighted:
        weights = rng.uniform(0, 2, rows).astype(dtype)
        weights[:3] = 0
        weight_sum = np.array([weights.sum()], dtype)
    want_grad, want_totals = np.empty_like(outputs), np.array([0.5, 2.0])
    NumpyBackend(use_numba=False).accumulate_loss(
        loss, outputs, targets, want_grad, want_totals, weights, weight_sum
    )
    got_outputs, got_totals = outputs.copy(), np.array([0.5, 2.0])  # totals accumulate
    got_grad = got_outputs if in_place else np.full_like(outputs, np.nan)
    unused = got_outputs  # never read when unweighted, as the backend passes it
    function = host_losses[LOSSES[loss], "float" if dtype == np.float32 else "double"]
    function(
        got_outputs.ctypes.data, targets.ctypes.data, got_grad.ctypes.data, got_totals.ctypes.data,
        (unused if weights is None else weights).ctypes.data,
        (unused if weight_sum is None else weight_sum).ctypes.data,
        int(weighted), rows, width, dtype(1 / rows),
    )  # fmt: skip
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got_grad, want_grad, rtol=10 * tol, atol=tol / rows)
    np.testing.assert_allclose(got_totals[0], want_totals[0], rtol=10 * tol)
    np.testing.assert_allclose(got_totals[1], want_totals[1], rtol=10 * tol)
    if loss != "squared_error":
        assert 2.0 < want_totals[1] < 2.0 + 2 * rows  # some rows right, some wrong
    if not in_place:
        np.testing.assert_array_equal(got_outputs, outputs)  # the input is only read


def test_every_kernel_has_a_host_test():
    """A new kernel must get a test here too: this list names what the tests above run."""
    activations = ["identity", "relu", "sigmoid", "tanh"]
    tested = {"to_bf16", "gather_rows", "gather_batch", "adam", "adam_corrections", "adam_counted"}
    tested |= {"sgd", "sgd_momentum"}
    tested |= {f"{kind}_{a}" for kind in ("act", "bias_act", "backprop") for a in activations}
    assert set(ELEMENTWISE) == tested
