"""cuBLAS's GEMM called directly, through ctypes on the library CuPy loaded.

CuPy's cuBLAS bindings refuse to run while a stream is captured into a CUDA graph (its
issue #6290), although cuBLAS's GEMM can be captured. Calling the library itself lets a
whole training step be recorded (``backends/cuda/graphs.py``). Where that library cannot be
found, CuPy's own binding serves (and the step runs op by op).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

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
def _cupy_binding() -> Any:
    """CuPy's cuBLAS bindings (their module moved between CuPy versions); looked up once,
    not on every bf16 product."""
    try:
        from cupy_backends.cuda.libs import cublas
    except ImportError:
        from cupy.cuda import cublas
    return cublas


def loaded_library(fragment: str, signatures: dict[str, list]) -> Any:
    """The one library this process has loaded whose path holds ``fragment``, through
    ctypes with ``signatures`` (name: argument types; each returns a status, an int); None
    where it is not loaded once, or lacks one of them (not Linux: no ``/proc/self/maps``)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if fragment in line}
    except OSError:
        return None
    if len(paths) != 1:
        return None
    try:
        library = ctypes.CDLL(paths.pop())
    except OSError:
        return None
    for name, argtypes in signatures.items():
        function = getattr(library, name, None)
        if function is None:
            return None
        function.argtypes, function.restype = argtypes, ctypes.c_int
    return library


@functools.cache
def _library() -> Any:
    """cuBLAS itself, the copy CuPy loaded, through ctypes; None where it is not found.
    Look it up only once CuPy has made a cuBLAS handle (so that the library is loaded)."""
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    return loaded_library("/libcublas.so", {
        "cublasSetStream_v2": [pointer, pointer],
        "cublasSetPointerMode_v2": [pointer, integer],
        # handle, op_a, op_b, m, n, k, alpha, A, A type, lda, B, B type, ldb, beta, C, C type,
        # ldc, compute type, algorithm
        "cublasGemmEx": [pointer] + [integer] * 5 + [pointer, pointer, integer, integer]
        + [pointer, integer, integer, pointer, pointer, integer, integer, integer, integer],
    })  # fmt: skip


def check(what: str, status: int, library: str = "cuBLAS") -> None:
    """A RuntimeError naming the call where a cuBLAS (or cuBLASLt) status is not success."""
    if status != 0:
        raise RuntimeError(f"{library} {what} failed with status {status}")


def fits(a: Any, b: Any, out: Any) -> bool:
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


#: Host alpha and beta, 1 and 0, read by cuBLAS when a GEMM is enqueued.
_ONE_ZERO = np.array([1.0, 0.0], np.float32)


def gemm(
    cupy: Any,
    a: Any,
    b: Any,
    out: Any = None,
    transpose_a: bool = False,
    transpose_b: bool = False,
    input_type: int = CUDA_R_32F,
    compute_type: int = CUBLAS_COMPUTE_32F,
) -> Any:
    """float32 ``op(a)·op(b)`` through cuBLAS's GemmEx (C-contiguous 2-D operands of
    ``input_type``: float32 or bfloat16 bits), float32 accumulation and result, on the
    current stream of the current device (call it with the operands' device current).
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
    result = out if direct else cupy.empty((n, m), np.float32)
    alpha = _ONE_ZERO.ctypes.data
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
    handle = cupy.cuda.device.get_cublas_handle()
    library = _library()
    if library is None:
        binding = _cupy_binding()
        binding.setPointerMode(handle, CUBLAS_POINTER_MODE_HOST)
        binding.gemmEx(handle, *arguments)
    else:
        stream = cupy.cuda.get_current_stream().ptr
        check("SetStream", library.cublasSetStream_v2(handle, stream))
        check("SetPointerMode", library.cublasSetPointerMode_v2(handle, CUBLAS_POINTER_MODE_HOST))
        check("GemmEx", library.cublasGemmEx(handle, *arguments))
    if out is None or result is out:
        return result
    out[...] = result
    return out
