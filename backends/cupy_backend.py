"""The CUDA backend: CuPy arrays, cuBLAS matrix products and fused elementwise kernels.

CuPy is imported when a ``CupyBackend`` is created, never when this module is imported,
so the module is safe to import on a machine without CUDA. Kernels are built once per
process (``functools.cache``) and compiled by CuPy on first use, then cached on disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .base import (
    Backend,
    adam_scalars,
    check_activation,
    check_cross_entropy,
    check_gather,
    require_same_shape,
    require_shape,
)
from .errors import BackendUnavailable

# Each activation as CUDA code: forward from its input ``x``, backward from its output ``y``.
_FORWARD = {
    "identity": "x",
    "relu": "max(x, (T)0)",
    "sigmoid": "(T)1 / ((T)1 + exp(-x))",
    "tanh": "tanh(x)",
}
_BACKWARD = {
    "identity": "dy",
    "relu": "y > (T)0 ? dy : (T)0",
    "sigmoid": "dy * y * ((T)1 - y)",
    "tanh": "dy * ((T)1 - y * y)",
}

# One row of softmax cross-entropy: a function of its own, so that the tests can build and
# run its arithmetic on the host (tests/test_cuda_kernels_on_host.py).
SOFTMAX_XENT_ROW = r"""
__device__ void mlp_softmax_xent_row(
    const {T}* z, {T}* g, const int label, const int classes, const {T} scale,
    double* loss, double* hit)
{{
    // g = (softmax(z) - onehot(label)) * scale, where g may alias z; the row's loss and
    // whether its first largest logit is the label.
    const {T} z_label = z[label];
    {T} z_max = z[0];
    int arg = 0;
    for (int j = 1; j < classes; ++j) {{
        if (z[j] > z_max) {{ z_max = z[j]; arg = j; }}
    }}
    {T} total = 0;
    for (int j = 0; j < classes; ++j) {{
        const {T} e = exp(z[j] - z_max);
        g[j] = e;
        total += e;
    }}
    const {T} inv = ({T})1 / total;
    for (int j = 0; j < classes; ++j) {{
        g[j] = (g[j] * inv - (j == label ? ({T})1 : ({T})0)) * scale;
    }}
    *loss = log((double)total) - (double)(z_label - z_max);
    *hit = (arg == label) ? 1.0 : 0.0;
}}
"""

SOFTMAX_XENT = (
    SOFTMAX_XENT_ROW
    + r"""
extern "C" __global__ void mlp_softmax_xent_{T}(
    const {T}* logits, const int* labels, {T}* grad, double* totals,
    const int rows, const int classes, const {T} scale)
{{
    // One thread per row (classes are few); grad may alias logits.
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    double loss = 0.0, hit = 0.0;
    if (r < rows) {{
        const long long row_start = (long long)r * classes;
        mlp_softmax_xent_row(
            logits + row_start, grad + row_start, labels[r], classes, scale, &loss, &hit);
    }}
    // Sum over the warp, then one atomic per warp: cheap, and no host round trip.
    for (int offset = 16; offset > 0; offset >>= 1) {{
        loss += __shfl_down_sync(0xffffffff, loss, offset);
        hit += __shfl_down_sync(0xffffffff, hit, offset);
    }}
    if ((threadIdx.x & 31) == 0) {{
        atomicAdd(&totals[0], loss);
        atomicAdd(&totals[1], hit);
    }}
}}
"""
)

_THREADS = 128  # threads per block of the softmax kernel: a multiple of the warp size


def _import_cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailable(
            "CuPy is not installed: install the extra that matches your CUDA version, "
            "pip install 'mlp[cuda12]' or 'mlp[cuda13]' (or use --device cpu)"
        ) from exc
    return cupy


def _elementwise_specs() -> dict[str, tuple[str, str, str]]:
    """Every elementwise kernel as CuPy's (inputs, outputs, operation) strings, by name."""
    specs: dict[str, tuple[str, str, str]] = {}
    for name, expr in _FORWARD.items():
        specs["act_" + name] = ("T x", "T y", f"y = {expr};")
        specs["bias_act_" + name] = ("T z, T b", "T y", f"const T x = z + b; y = {expr};")
    for name, expr in _BACKWARD.items():
        specs["backprop_" + name] = ("T dy, T y", "T dx", f"dx = {expr};")
    # Row r of the batch is rows[start[0] + r]: a recorded step reads its place on the device.
    specs["gather_rows"] = (
        "raw S source, raw I rows, raw int64 start, int64 cols, T scale",
        "T out",
        "const long long r = i / cols;"
        " out = (T)source[(long long)rows[start[0] + r] * cols + (i - r * cols)] * scale;",
    )
    # float32 -> bfloat16 bits, rounded to nearest even; NaN stays a (quiet) NaN.
    specs["to_bf16"] = (
        "float32 x",
        "uint16 y",
        "const unsigned int u = __float_as_uint(x);"
        " y = (unsigned short)((u & 0x7fffffffu) > 0x7f800000u"
        " ? (u >> 16) | 0x40u : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);",
    )
    # 1 - beta comes from the host, worked out in double: (T)1 - beta in float32 is 1.3e-5
    # off for beta2 = 0.999, a bias in v that the CPU and PyTorch do not have.
    adam_update = (
        "const T grad = g + l2 * p;"
        " m = beta1 * m + one_minus_beta1 * grad;"
        " v = beta2 * v + one_minus_beta2 * grad * grad;"
        " p = p * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps);"
    )
    adam_constants = "T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T eps, T l2, T decay"
    specs["adam"] = (
        f"T g, T step_size, T inv_sqrt_bc2, {adam_constants}",
        "T p, T m, T v",
        adam_update,
    )
    # With the step count on the device (a recorded step advances it), one thread works out
    # the bias corrections from it, in double as ``adam_scalars`` does on the host, and the
    # update reads them: two pow() per element cost big's 5.8M-parameter step 50 µs.
    specs["adam_corrections"] = (
        "raw int64 step, float64 lr, float64 beta1, float64 beta2",
        "T step_size, T inv_sqrt_bc2",
        "const double t = (double)step[0];"
        " step_size = (T)(lr / (1.0 - pow(beta1, t)));"
        " inv_sqrt_bc2 = (T)(1.0 / sqrt(1.0 - pow(beta2, t)));",
    )
    specs["adam_counted"] = (
        f"T g, raw T corrections, {adam_constants}",
        "T p, T m, T v",
        f"const T step_size = corrections[0]; const T inv_sqrt_bc2 = corrections[1]; {adam_update}",
    )
    specs["sgd"] = ("T g, T lr, T weight_decay", "T p", "p -= lr * (g + weight_decay * p);")
    specs["sgd_momentum"] = (
        "T g, T lr, T momentum, T weight_decay, int32 nesterov",
        "T p, T velocity",
        "T d = g + weight_decay * p;"
        " velocity = momentum * velocity + d;"
        " d = nesterov ? d + momentum * velocity : velocity;"
        " p -= lr * d;",
    )
    return specs


#: Elementwise kernels as source strings: built into CuPy kernels by ``_kernels`` and
#: compiled with nvcc by the tests, so a typo shows up even on a machine without a GPU.
ELEMENTWISE = _elementwise_specs()


@functools.cache
def _kernels() -> dict[str, Any]:
    """Build every fused kernel once per process (CuPy compiles each on first use)."""
    cupy = _import_cupy()
    kernels: dict[str, Any] = {
        name: cupy.ElementwiseKernel(inputs, outputs, operation, f"mlp_{name}")
        for name, (inputs, outputs, operation) in ELEMENTWISE.items()
    }
    for ctype in ("float", "double"):
        kernels["softmax_xent_" + ctype] = cupy.RawKernel(
            SOFTMAX_XENT.format(T=ctype), f"mlp_softmax_xent_{ctype}"
        )
    return kernels


# cuBLAS's enum values (library_types.h, cublas_api.h): a stable ABI, checked by the tests.
CUDA_R_32F = 0
CUDA_R_16BF = 14
CUBLAS_COMPUTE_32F = 68
CUBLAS_COMPUTE_32F_FAST_TF32 = 77
CUBLAS_GEMM_DEFAULT = -1
CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUBLAS_POINTER_MODE_HOST = 0


def cublas_gemm_arguments(
    a_shape: tuple[int, int], b_shape: tuple[int, int], transpose_a: bool, transpose_b: bool
) -> tuple[int, int, int, int, int, int, int, int]:
    """``(op_b, op_a, m, n, k, ld_b, ld_a, ld_c)``: cuBLAS's GEMM for row-major op(A)·op(B).

    cuBLAS is column-major: a row-major C = op(A)·op(B) is the column-major
    Cᵀ = op(B)ᵀ·op(A)ᵀ, and a stored row-major matrix, read column-major, is its transpose.
    So B comes first, each operand keeps its own transpose flag, and every leading
    dimension is a stored row's length. Raises ``ValueError`` when the shapes do not fit.
    """
    rows, inner = a_shape[::-1] if transpose_a else a_shape
    inner_b, cols = b_shape[::-1] if transpose_b else b_shape
    if inner != inner_b:
        raise ValueError(f"matmul: shapes {a_shape} and {b_shape} do not line up")
    op_b = CUBLAS_OP_T if transpose_b else CUBLAS_OP_N
    op_a = CUBLAS_OP_T if transpose_a else CUBLAS_OP_N
    return op_b, op_a, cols, rows, inner, b_shape[1], a_shape[1], cols


@functools.cache
def _cublas() -> Any:
    """CuPy's cuBLAS bindings (their module moved between CuPy versions); looked up once,
    not on every bf16 product."""
    try:
        from cupy_backends.cuda.libs import cublas
    except ImportError:
        from cupy.cuda import cublas
    return cublas


@functools.cache
def _cublas_library() -> Any:
    """cuBLAS itself, the copy CuPy loaded, called through ctypes; None where not found.

    CuPy's cuBLAS bindings refuse to run while a stream is captured into a CUDA graph (its
    issue #6290), although cuBLAS's GEMM can be captured. Calling the library directly lets
    a whole training step be recorded. Look it up only once CuPy has made a cuBLAS handle.
    """
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libcublas.so" in line}
    except OSError:  # not Linux
        return None
    if len(paths) != 1:
        return None
    try:
        library = ctypes.CDLL(paths.pop())
    except OSError:
        return None
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    signatures = {
        "cublasSetStream_v2": [pointer, pointer],
        "cublasSetPointerMode_v2": [pointer, integer],
        # handle, op_a, op_b, m, n, k, alpha, A, A type, lda, B, B type, ldb, beta, C, C type,
        # ldc, compute type, algorithm
        "cublasGemmEx": [pointer] + [integer] * 5 + [pointer, pointer, integer, integer]
        + [pointer, integer, integer, pointer, pointer, integer, integer, integer, integer],
    }  # fmt: skip
    for name, argtypes in signatures.items():
        function = getattr(library, name, None)
        if function is None:
            return None
        function.argtypes, function.restype = argtypes, ctypes.c_int
    return library


def _check_cublas(what: str, status: int) -> None:
    if status != 0:
        raise RuntimeError(f"cuBLAS {what} failed with status {status}")


def _refuse_allocation(size: int) -> Any:
    """The allocator while a step is recorded: memory taken then would be handed back to
    the pool when the step ends, and reused while the recording still writes to it."""
    raise MemoryError(f"an op allocated {size} bytes while a training step was recorded")


def _gemm_fits(a: Any, b: Any, out: Any) -> bool:
    """Whether ``gemm`` takes these operands as they are: non-empty float32 C-contiguous
    matrices (and a float32 C-contiguous ``out`` where one is given)."""
    return (
        a.ndim == b.ndim == 2
        and a.dtype == b.dtype == np.float32
        and a.size > 0
        and b.size > 0
        and a.flags.c_contiguous
        and b.flags.c_contiguous
        and (out is None or (out.dtype == np.float32 and out.flags.c_contiguous))
    )


class _Recording:
    """A captured training step: each call replays it on the current stream. It holds the
    arrays the step uses, so that none is freed (and reused) while the graph can run."""

    def __init__(self, graph: Any, held: tuple) -> None:
        self._graph = graph
        self._held = held

    def __call__(self) -> None:
        self._graph.launch()


def _linalg_settings(cupy: Any) -> Any:
    """CuPy's module holding the float32 matmul compute type, or None where it has none."""
    linalg = getattr(getattr(cupy, "_core", None), "_routines_linalg", None)
    needed = ("set_compute_type", "get_compute_type", "COMPUTE_TYPE_TF32")
    return linalg if linalg is not None and all(hasattr(linalg, n) for n in needed) else None


class CupyBackend(Backend):
    """Runs every op on one CUDA GPU; fused kernels replace the base class's multi-pass bodies."""

    name = "cupy"

    def __init__(self, index: int = 0, precision: str = "float32") -> None:
        super().__init__(precision)
        cupy = _import_cupy()
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # no driver, no GPU: CuPy raises CUDARuntimeError or RuntimeError
            raise BackendUnavailable(
                f"no CUDA GPU is available here ({exc}); use --device cpu"
            ) from exc
        if count == 0:
            raise BackendUnavailable("no CUDA GPU is available here; use --device cpu")
        if not 0 <= index < count:
            raise BackendUnavailable(
                f"cuda:{index} does not exist: this machine has {count} GPU(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
        self.xp = cupy
        self.array_type = cupy.ndarray
        self.index = index
        self.device = f"cuda:{index}"
        self._device = cupy.cuda.Device(index)
        self._kernels = _kernels()
        self._ones: dict[tuple, Any] = {}
        self._linalg = _linalg_settings(cupy)
        self._bf16: dict[str, Any] = {}  # grow-only bfloat16 copies of matmul operands
        self._one_zero = np.array([1.0, 0.0], np.float32)  # host alpha and beta for cuBLAS
        with self._device:
            self._zero_index = cupy.zeros(1, np.int64)  # gather_rows' start when none is given
        self._capture_stream: Any = None
        #: Why the last ``capture`` gave no recording (None after one that did).
        self.capture_failure: str | None = None

    def hardware(self) -> str:
        properties = self.xp.cuda.runtime.getDeviceProperties(self.index)
        name = properties["name"]
        name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        memory = properties["totalGlobalMem"] / 2**30
        return f"{name}, {memory:.0f} GiB, CuPy {self.xp.__version__}"

    # ------------------------------------------------------------------ memory and transfer
    def asarray(self, a: Any, dtype: Any = None) -> Any:
        with self._device:
            return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return self.xp.asnumpy(a)

    def empty(self, shape: Any, dtype: Any = np.float32) -> Any:
        with self._device:
            return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: Any, dtype: Any = np.float32) -> Any:
        with self._device:
            return self.xp.zeros(shape, dtype=dtype)

    def random_generator(self, seed: Any) -> Any:
        # CuPy's generator takes one integer: fold a seed sequence into one, as NumPy would.
        state = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
        with self._device:
            return self.xp.random.default_rng(state)

    def uniform_(self, generator: Any, out: Any) -> Any:
        # size must be given: without it CuPy's Generator.random draws ONE sample (a 0-d
        # array) and broadcasts it into ``out``, unlike NumPy, which fills ``out`` elementwise.
        generator.random(size=out.shape, dtype=out.dtype, out=out)
        return out

    def synchronize(self) -> None:
        self._device.synchronize()

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        with self._device:
            yield

    def capture(self, step: Callable[[], Any], keep: Any = ()) -> Callable[[], None] | None:
        """``step`` recorded as a CUDA graph, replayed by one launch on the current stream.

        Recording runs nothing: it takes place on a stream of its own, with an allocator
        that refuses (an op that allocates cannot be replayed safely), and cuBLAS called
        directly. Where anything refuses, the reason is kept in ``capture_failure`` and the
        answer is ``None``: the caller runs its steps one op at a time, as before.
        ``MLP_NO_CUDA_GRAPH=1`` turns recording off.
        """
        self.capture_failure = None
        if os.environ.get("MLP_NO_CUDA_GRAPH", "") not in ("", "0"):
            self.capture_failure = "MLP_NO_CUDA_GRAPH is set"
            return None
        cupy = self.xp
        failure: BaseException | None = None
        graph = None
        with self._device:
            if self._capture_stream is None:
                self._capture_stream = cupy.cuda.Stream(non_blocking=True)
            stream = self._capture_stream
            with stream:
                stream.begin_capture()
                try:
                    with cupy.cuda.using_allocator(_refuse_allocation):
                        step()
                except Exception as exc:  # anything that cannot be recorded: run eagerly
                    failure = exc
                try:
                    graph = stream.end_capture()
                except Exception as exc:  # the capture was invalidated
                    failure = failure or exc
        if failure is not None or graph is None:
            self.capture_failure = f"{type(failure).__name__}: {failure}"
            return None
        owned = (
            self._zero_index,
            self._scratch.arrays(),
            tuple(self._bf16.values()),
            tuple(self._ones.values()),
        )
        return _Recording(graph, (keep, owned))

    # ------------------------------------------------------------------ reduced-precision matmul
    def matmul_reduced(self, a: Any, b: Any, out: Any, transpose_a: bool, transpose_b: bool) -> Any:
        """TF32 or bf16 tensor-core products; the base class's emulation where neither fits."""
        if self.precision == "bf16" and a.ndim == b.ndim == 2 and a.size and b.size:
            return self._matmul_bf16(a, b, out, transpose_a, transpose_b)
        if self.precision == "tf32" and _gemm_fits(a, b, out):
            return self.gemm(
                a, b, out, transpose_a, transpose_b, compute_type=CUBLAS_COMPUTE_32F_FAST_TF32
            )
        if self.precision == "tf32" and self._linalg is not None:
            with self._float32_compute_type(self._linalg.COMPUTE_TYPE_TF32):
                return self.xp_matmul(a, b, out, transpose_a, transpose_b)
        return super().matmul_reduced(a, b, out, transpose_a, transpose_b)

    @contextlib.contextmanager
    def _float32_compute_type(self, compute_type: Any) -> Iterator[None]:
        """Switch CuPy's float32 matmul compute type for one product: it is process-wide
        in CuPy, and another backend in this process may want exact float32."""
        linalg = self._linalg
        before = linalg.get_compute_type(np.float32)
        linalg.set_compute_type(np.float32, compute_type)
        try:
            yield
        finally:
            linalg.set_compute_type(np.float32, before)

    def _to_bf16(self, x: Any, role: str) -> Any:
        """``x`` as bfloat16 bits (uint16, C-contiguous) in a buffer reused across steps."""
        buffer = self._bf16.get(role)
        if buffer is None or buffer.size < x.size:
            with self._device:
                buffer = self._bf16[role] = self.xp.empty(x.size, np.uint16)
        bits = buffer[: x.size].reshape(x.shape)
        self._kernels["to_bf16"](x, bits)
        return bits

    def _matmul_bf16(self, a: Any, b: Any, out: Any, transpose_a: bool, transpose_b: bool) -> Any:
        """bfloat16 operands, float32 accumulation and a float32 result, in one cuBLAS GEMM."""
        a16, b16 = self._to_bf16(a, "a"), self._to_bf16(b, "b")
        return self.gemm(a16, b16, out, transpose_a, transpose_b, CUDA_R_16BF)

    def xp_matmul(self, a: Any, b: Any, out: Any, transpose_a: bool, transpose_b: bool) -> Any:
        """float32 products through ``gemm`` (cuBLAS called directly, so that a training step
        can be recorded as a CUDA graph); any other through ``cupy.matmul``."""
        if _gemm_fits(a, b, out):
            return self.gemm(a, b, out, transpose_a, transpose_b)
        return super().xp_matmul(a, b, out, transpose_a, transpose_b)

    def gemm(
        self,
        a: Any,
        b: Any,
        out: Any = None,
        transpose_a: bool = False,
        transpose_b: bool = False,
        input_type: int = CUDA_R_32F,
        compute_type: int = CUBLAS_COMPUTE_32F,
    ) -> Any:
        """float32 ``op(a)·op(b)`` straight through cuBLAS's GemmEx (C-contiguous 2-D operands
        of ``input_type``: float32 or bfloat16 bits), float32 accumulation and result.

        Every float32 product takes this path. It calls the cuBLAS that CuPy loaded through
        ctypes, on the current stream, which also works while a stream is being captured;
        where that library cannot be found, CuPy's own binding (which cannot be captured).
        """
        # m, n are cuBLAS's (column-major) sizes: the row-major result is n × m
        op_b, op_a, m, n, k, ld_b, ld_a, ld_c = cublas_gemm_arguments(
            a.shape, b.shape, transpose_a, transpose_b
        )
        if not (a.flags.c_contiguous and b.flags.c_contiguous):
            raise ValueError("gemm takes C-contiguous operands")
        if out is not None and out.shape != (n, m):
            raise ValueError(f"matmul: out has shape {out.shape}, the product is {(n, m)}")
        direct = out is not None and out.dtype == np.float32 and out.flags.c_contiguous
        result = out if direct else self.empty((n, m), np.float32)
        alpha = self._one_zero.ctypes.data
        arguments = (
            op_b,
            op_a,
            m,
            n,
            k,
            alpha,
            b.data.ptr,
            input_type,
            ld_b,
            a.data.ptr,
            input_type,
            ld_a,
            alpha + 4,  # beta = 0: the second float
            result.data.ptr,
            CUDA_R_32F,
            ld_c,
            compute_type,
            CUBLAS_GEMM_DEFAULT,
        )
        with self._device:
            handle = self.xp.cuda.device.get_cublas_handle()
            library = _cublas_library()
            if library is None:
                cublas = _cublas()
                cublas.setPointerMode(handle, CUBLAS_POINTER_MODE_HOST)
                cublas.gemmEx(handle, *arguments)
            else:
                stream = self.xp.cuda.get_current_stream().ptr
                _check_cublas("SetStream", library.cublasSetStream_v2(handle, stream))
                _check_cublas(
                    "SetPointerMode",
                    library.cublasSetPointerMode_v2(handle, CUBLAS_POINTER_MODE_HOST),
                )
                _check_cublas("GemmEx", library.cublasGemmEx(handle, *arguments))
        if out is None or result is out:
            return result
        out[...] = result
        return out

    # ------------------------------------------------------------------ fused ops
    def sum_rows(self, x: Any, out: Any = None) -> Any:
        """Column sums as a product with a row of ones: cuBLAS beats a generic reduction."""
        self.check(x)
        key = (x.shape[0], x.dtype.str)
        ones = self._ones.get(key)
        if ones is None:
            with self._device:
                ones = self._ones[key] = self.xp.ones(x.shape[0], dtype=x.dtype)
        row = None if out is None or out.ndim != 1 else out.reshape(1, -1)  # a view of out
        if x.ndim == 2 and (out is None or row is not None) and _gemm_fits(ones[None], x, row):
            product = self.gemm(ones[None], x, row)
            return product.reshape(-1) if out is None else out
        return self.xp.matmul(ones, x, out=out)

    def activation(self, name: str, x: Any, out: Any = None) -> Any:
        self.check(x)
        if check_activation(name) == "identity":
            return super().identity(x, out=out)
        kernel = self._kernels["act_" + name]
        return kernel(x) if out is None else kernel(x, out)

    def backprop_activation(self, name: str, dy: Any, y: Any, out: Any = None) -> Any:
        self.check(dy, y)
        require_same_shape("backprop_" + name, dy=dy, y=y, out=out)
        if check_activation(name) == "identity":
            return super().identity(dy, out=out)
        kernel = self._kernels["backprop_" + name]
        return kernel(dy, y) if out is None else kernel(dy, y, out)

    def relu(self, x: Any, out: Any = None) -> Any:
        return self.activation("relu", x, out)

    def sigmoid(self, x: Any, out: Any = None) -> Any:
        return self.activation("sigmoid", x, out)

    def tanh(self, x: Any, out: Any = None) -> Any:
        return self.activation("tanh", x, out)

    def backprop_relu(self, dy: Any, y: Any, out: Any = None) -> Any:
        return self.backprop_activation("relu", dy, y, out)

    def backprop_sigmoid(self, dy: Any, y: Any, out: Any = None) -> Any:
        return self.backprop_activation("sigmoid", dy, y, out)

    def backprop_tanh(self, dy: Any, y: Any, out: Any = None) -> Any:
        return self.backprop_activation("tanh", dy, y, out)

    def bias_activation(self, x: Any, bias: Any, name: str, out: Any = None) -> Any:
        self.check_bias(x, bias, out)
        kernel = self._kernels["bias_act_" + check_activation(name)]
        return kernel(x, bias) if out is None else kernel(x, bias, out)

    def gather_rows(
        self, source: Any, rows: Any, out: Any, scale: float = 1.0, start: Any = None
    ) -> Any:
        """As the base class says; row indices and ``start`` are not checked on the device
        (that would wait for the GPU): ``MLP`` only gathers rows it made itself."""
        self.check(source, rows, out)
        check_gather(source, rows, out, start)
        if start is None:
            start = self._zero_index
        elif not self.is_array(start) or start.dtype != np.int64:
            raise ValueError("gather_rows: start must be a one-element int64 array on the GPU")
        return self._kernels["gather_rows"](
            source, rows, start, np.int64(source.shape[1]), out.dtype.type(scale), out
        )

    def softmax_cross_entropy_accumulate(
        self, logits: Any, labels: Any, grad: Any, totals: Any
    ) -> Any:
        self.check(logits, labels, grad, totals)
        check_cross_entropy(logits, labels, grad, totals)  # label values: MLP checks them once
        rows, classes = logits.shape
        ctype = {"float32": "float", "float64": "double"}.get(logits.dtype.name)
        # The kernel gets bare pointers (unit strides, T*, int*, double*): anything else, e.g.
        # a label column of a wider array, takes the general path instead of being misread.
        if (
            ctype is None
            or labels.dtype != np.int32
            or grad.dtype != logits.dtype
            or totals.dtype != np.float64
            or not all(a.flags.c_contiguous for a in (logits, labels, grad, totals))
        ):
            return super().softmax_cross_entropy_accumulate(logits, labels, grad, totals)
        kernel = self._kernels["softmax_xent_" + ctype]
        blocks = (rows + _THREADS - 1) // _THREADS
        scale = logits.dtype.type(1.0 / rows)
        kernel(
            (blocks,),
            (_THREADS,),
            (logits, labels, grad, totals, np.int32(rows), np.int32(classes), scale),
        )
        return grad

    def sgd_step(
        self,
        param: Any,
        grad: Any,
        velocity: Any,
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        self.check(param, grad)
        require_same_shape(
            "sgd_step", param=param, grad=grad, velocity=velocity if momentum else None
        )
        t = param.dtype.type  # scalars typed like the buffers: float32 math stays float32
        if momentum:
            self.check(velocity)
            self._kernels["sgd_momentum"](
                grad, t(lr), t(momentum), t(weight_decay), np.int32(nesterov), param, velocity
            )
        else:
            self._kernels["sgd"](grad, t(lr), t(weight_decay), param)

    def adam_step(
        self,
        param: Any,
        grad: Any,
        m: Any,
        v: Any,
        step: Any,
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        self.check(param, grad, m, v)
        require_same_shape("adam_step", param=param, grad=grad, m=m, v=v)
        counted = hasattr(step, "shape")  # a count on the device: read there, not here
        if counted:
            self.check(step)
            require_shape("adam_step", "step", step, (1,))
            if step.dtype != np.int64:
                raise ValueError("adam_step: a step count on the GPU must be int64")
        step_size, inv_sqrt_bc2, l2, decay = adam_scalars(
            1 if counted else step, lr, beta1, beta2, weight_decay, decoupled
        )
        t = param.dtype.type
        constants = (t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(eps), t(l2), t(decay))
        if counted:
            corrections = self.scratch("adam_corrections", (2,), param.dtype)
            d = np.float64
            self._kernels["adam_corrections"](
                step, d(lr), d(beta1), d(beta2), corrections[0:1], corrections[1:2]
            )
            self._kernels["adam_counted"](grad, corrections, *constants, param, m, v)
        else:
            self._kernels["adam"](grad, t(step_size), t(inv_sqrt_bc2), *constants, param, m, v)
