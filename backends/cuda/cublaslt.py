"""A dense layer's products through cuBLASLt, with the bias work in their epilogues.

Why: a layer's forward was a GEMM, then a kernel that read its result back to add the bias
and apply the activation; its backward took the bias gradient as a second GEMM (dz's column
sums, a product with a row of ones) beside the weight gradient's. cuBLASLt's epilogues do
that work as a product's tiles are written: ``CUBLASLT_EPILOGUE_BIAS`` and ``_RELU_BIAS`` in
the forward, ``_BGRADA`` (the sums of its A over the inner dimension: dz's columns) with the
weight gradient. A launch and a pass over memory go each time. The library ships beside
cuBLAS (which links it), and is called, like cuBLAS's GEMM in ``cublas.py``, through ctypes
on the copy CuPy loaded, so a step with it can be recorded as a CUDA graph. Where it is not
found, a product finds no algorithm or has a bias off 16 bytes (in a model whose layer sizes
are not multiples of 4), or ``MLP_NO_CUBLASLT=1``, the caller runs the separate kernels as
before.

Each calling thread has its own handle, workspace and plans (a plan's descriptor is
rewritten with each call's bias pointer), so concurrent inference never shares one. A
thread's products share its workspace, as cuBLAS's share their handle's: one thread's work
(and the steps it recorded) runs on one stream at a time.
"""

from __future__ import annotations

import ctypes
import functools
import os
import weakref
from typing import Any

import numpy as np

from .cublas import CUBLAS_OP_N, CUDA_R_32F, check, cublas_gemm_arguments, loaded_library

# cublasLt.h's enum values: a stable ABI.
CUBLASLT_MATMUL_DESC_TRANSA = 3
CUBLASLT_MATMUL_DESC_TRANSB = 4
CUBLASLT_MATMUL_DESC_EPILOGUE = 7
CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8
CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1
#: The preference attributes for the least alignment of A, B, C and D, in bytes.
CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_BYTES = (5, 6, 7, 8)
CUBLASLT_EPILOGUE_BIAS = 4
CUBLASLT_EPILOGUE_RELU_BIAS = 6
CUBLASLT_EPILOGUE_BGRADA = 256
#: The epilogue for each activation cuBLASLt applies itself.
EPILOGUES = {"identity": CUBLASLT_EPILOGUE_BIAS, "relu": CUBLASLT_EPILOGUE_RELU_BIAS}
#: Each thread's workspace (cuBLAS's own default before Hopper): room for split-K products.
WORKSPACE_BYTES = 4 << 20
#: Plans a thread keeps (inference over many batch sizes makes one each), the oldest dropped.
PLANS = 256
#: The least alignment, in bytes, of an epilogue's vector: the heuristics are told A's, B's,
#: C's and D's, never the bias's, and may choose a kernel that reads it 16 bytes at a time
#: (a misaligned address, which ends the process's CUDA context; PyTorch asks the same).
VECTOR_ALIGNMENT = 16
#: cublasLtMatmul's answers that say this product cannot run so (invalid value, architecture
#: mismatch, not supported): the separate kernels serve it. Any other failure is raised.
REFUSALS = frozenset({7, 8, 15})


def disabled() -> bool:
    """``MLP_NO_CUBLASLT=1``: a layer's products run as before, the bias work in kernels of
    its own (to compare)."""
    return os.environ.get("MLP_NO_CUBLASLT", "") not in ("", "0")


class _Algo(ctypes.Structure):  # cublasLtMatmulAlgo_t
    _fields_ = [("data", ctypes.c_uint64 * 8)]


class _Heuristic(ctypes.Structure):  # cublasLtMatmulHeuristicResult_t
    _fields_ = [
        ("algo", _Algo),
        ("workspace_size", ctypes.c_size_t),
        ("state", ctypes.c_int),
        ("waves_count", ctypes.c_float),
        ("reserved", ctypes.c_int * 4),
    ]


_P, _I, _U64, _I64, _SIZE = (
    ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int64, ctypes.c_size_t
)  # fmt: skip
_SIGNATURES = {
    "cublasLtCreate": [_P],
    "cublasLtDestroy": [_P],
    "cublasLtMatmulDescCreate": [_P, _I, _I],
    "cublasLtMatmulDescDestroy": [_P],
    "cublasLtMatmulDescSetAttribute": [_P, _I, _P, _SIZE],
    "cublasLtMatrixLayoutCreate": [_P, _I, _U64, _U64, _I64],
    "cublasLtMatrixLayoutDestroy": [_P],
    "cublasLtMatmulPreferenceCreate": [_P],
    "cublasLtMatmulPreferenceDestroy": [_P],
    "cublasLtMatmulPreferenceSetAttribute": [_P, _I, _P, _SIZE],
    "cublasLtMatmulAlgoGetHeuristic": [_P] * 7 + [_I, _P, _P],
    # handle, desc, alpha, A, A layout, B, B layout, beta, C, C layout, D, D layout, algo,
    # workspace, its size, stream
    "cublasLtMatmul": [_P] * 14 + [_SIZE, _P],
}


@functools.cache
def _library() -> Any:
    """cuBLASLt, the copy loaded beside CuPy's cuBLAS, with its signatures; None where not.
    Look it up only once CuPy has made a cuBLAS handle (which loads both)."""
    return loaded_library("/libcublasLt.so", _SIGNATURES)


_check = functools.partial(check, library="cuBLASLt")


def alignment(pointer: int) -> int:
    """The largest power of two, up to 256, that divides ``pointer`` (bytes)."""
    return min(pointer & -pointer, 256) if pointer else 256


def fits(a: Any, b: Any, vector: Any, out: Any) -> bool:
    """Whether ``Lt.product`` takes these operands: non-empty float32 C-contiguous matrices
    (transposes are flags, not views), a float32 vector of unit stride, an ``out``."""
    return (
        out is not None
        and a.ndim == b.ndim == 2
        and a.dtype == b.dtype == vector.dtype == out.dtype == np.float32
        and a.size > 0
        and b.size > 0
        and a.flags.c_contiguous
        and b.flags.c_contiguous
        and out.flags.c_contiguous
        and vector.flags.c_contiguous
    )


def product(
    a_shape: tuple[int, int], b_shape: tuple[int, int], transpose_a: bool, transpose_b: bool
) -> tuple[int, int, tuple[tuple[int, int, int], ...]]:
    """cuBLASLt's view of the row-major ``op(a)·op(b)``: ``(op of its A, op of its B,
    ((rows, cols, ld) of its A, of its B, of its D))``, column-major. As for cuBLAS's GEMM
    (``cublas.cublas_gemm_arguments``) its A is b's buffer, its B a's, and D is the output's:
    D's rows are the product's columns, so an epilogue's vector (a bias added to each row of
    D, or BGRADA's sums of A over the inner dimension) has one entry per output column."""
    op_b, op_a, m, n, k, ld_b, ld_a, ld_c = cublas_gemm_arguments(
        a_shape, b_shape, transpose_a, transpose_b
    )
    lt_a = (m, k, ld_b) if op_b == CUBLAS_OP_N else (k, m, ld_b)
    lt_b = (k, n, ld_a) if op_a == CUBLAS_OP_N else (n, k, ld_a)
    return op_b, op_a, (lt_a, lt_b, (m, n, ld_c))


class _Plan:
    """One product's descriptors and the algorithm cuBLASLt's heuristics chose for it."""

    def __init__(
        self,
        library: Any,
        handle: Any,
        shape: tuple,
        epilogue: int,
        compute_type: int,
        aligned: tuple[int, ...],
        vector: int,
    ) -> None:
        """``shape``: ``product``'s arguments; ``aligned``: A's, B's, C's and D's alignment;
        ``vector``: the epilogue's bias or bias gradient (its alignment counts too)."""
        self.library = library
        self.desc = ctypes.c_void_p()
        self.layouts = [ctypes.c_void_p() for _ in range(3)]
        self.algo = _Algo()
        self.workspace_size = 0
        self._finalizer = weakref.finalize(self, _destroy_plan, library, self.desc, self.layouts)
        _check("MatmulDescCreate", library.cublasLtMatmulDescCreate(
            ctypes.byref(self.desc), compute_type, CUDA_R_32F
        ))  # fmt: skip
        op_a, op_b, layouts = product(*shape)
        self._set(CUBLASLT_MATMUL_DESC_TRANSA, ctypes.c_int32(op_a))
        self._set(CUBLASLT_MATMUL_DESC_TRANSB, ctypes.c_int32(op_b))
        self._set(CUBLASLT_MATMUL_DESC_EPILOGUE, ctypes.c_uint32(epilogue))
        self.set_vector(vector)
        for layout, (rows, cols, ld) in zip(self.layouts, layouts, strict=True):
            _check("MatrixLayoutCreate", library.cublasLtMatrixLayoutCreate(
                ctypes.byref(layout), CUDA_R_32F, rows, cols, ld
            ))  # fmt: skip
        self.usable = self._choose(handle, aligned)

    def _set(self, attribute: int, value: Any) -> None:
        _check("MatmulDescSetAttribute", self.library.cublasLtMatmulDescSetAttribute(
            self.desc, attribute, ctypes.byref(value), ctypes.sizeof(value)
        ))  # fmt: skip

    def set_vector(self, pointer: int) -> None:
        """The epilogue's vector: the bias it adds, or the bias gradient it writes."""
        self._set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, ctypes.c_void_p(pointer))

    def _choose(self, handle: Any, aligned: tuple[int, ...]) -> bool:
        """Ask the heuristics for one algorithm within the workspace and these alignments;
        False where there is none."""
        library = self.library
        preference = ctypes.c_void_p()
        _check("MatmulPreferenceCreate", library.cublasLtMatmulPreferenceCreate(
            ctypes.byref(preference)
        ))  # fmt: skip
        try:
            room = ctypes.c_uint64(WORKSPACE_BYTES)
            settings = [(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, room)] + [
                (attribute, ctypes.c_uint32(value))
                for attribute, value in zip(
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_BYTES, aligned, strict=True
                )
            ]
            for attribute, value in settings:
                _check("MatmulPreferenceSetAttribute", library.cublasLtMatmulPreferenceSetAttribute(
                    preference, attribute, ctypes.byref(value), ctypes.sizeof(value)
                ))  # fmt: skip
            result, found = _Heuristic(), ctypes.c_int(0)
            a, b, d = self.layouts
            status = library.cublasLtMatmulAlgoGetHeuristic(
                handle, self.desc, a, b, d, d, preference, 1,
                ctypes.byref(result), ctypes.byref(found),
            )  # fmt: skip
        finally:
            library.cublasLtMatmulPreferenceDestroy(preference)
        if status != 0 or found.value < 1 or result.state != 0:
            return False
        self.algo, self.workspace_size = result.algo, result.workspace_size
        return True


def _destroy_plan(library: Any, desc: Any, layouts: list) -> None:
    for layout in layouts:
        if layout.value:
            library.cublasLtMatrixLayoutDestroy(layout)
    if desc.value:
        library.cublasLtMatmulDescDestroy(desc)


class Lt:
    """One thread's cuBLASLt on one GPU: a handle, a workspace and the plans by product.
    Make it with the GPU current; ``None`` from ``Lt.make`` where cuBLASLt cannot serve."""

    def __init__(self, cupy: Any, library: Any) -> None:
        self.library = library
        self.workspace = cupy.empty(WORKSPACE_BYTES, np.uint8)  # first: no handle to leak
        self.handle = ctypes.c_void_p()
        _check("Create", library.cublasLtCreate(ctypes.byref(self.handle)))
        self._finalizer = weakref.finalize(self, library.cublasLtDestroy, self.handle)
        self.plans: dict[tuple, _Plan | None] = {}

    @classmethod
    def make(cls, cupy: Any) -> Lt | None:
        """A MemoryError (no room for the workspace, or an allocation inside a recording)
        is the caller's: it may ask again later."""
        if disabled():
            return None
        cupy.cuda.device.get_cublas_handle()  # loads cuBLAS, and so cuBLASLt
        library = _library()
        if library is None:
            return None
        try:
            return cls(cupy, library)
        except RuntimeError:  # no handle on this GPU: the GEMM and the bias kernel serve
            return None

    def product(
        self,
        cupy: Any,
        a: Any,
        b: Any,
        out: Any,
        transpose_a: bool,
        transpose_b: bool,
        epilogue: int,
        vector: Any,
        compute_type: int,
    ) -> bool:
        """``op(a)·op(b)`` into ``out`` with ``epilogue`` on ``vector``, on the current stream
        (operands that ``fits`` took); False where the vector is not aligned to
        ``VECTOR_ALIGNMENT``, no algorithm serves this product or cuBLASLt refused it
        (nothing is written: the caller computes it apart)."""
        if alignment(vector.data.ptr) < VECTOR_ALIGNMENT:
            return False
        shape = (a.shape, b.shape, transpose_a, transpose_b)
        aligned = tuple(alignment(p) for p in (b.data.ptr, a.data.ptr, out.data.ptr))
        aligned += aligned[-1:]  # C is D
        key = (shape, epilogue, compute_type, aligned, alignment(vector.data.ptr))
        if key not in self.plans:  # a refused product keeps its None: asked once
            if len(self.plans) >= PLANS:  # a recorded step has read its plan's descriptors
                del self.plans[next(iter(self.plans))]
            self.plans[key] = self._plan(shape, epilogue, compute_type, aligned, vector)
        plan = self.plans[key]
        if plan is None or not plan.usable:
            return False
        plan.set_vector(vector.data.ptr)
        lt_a, lt_b, d = plan.layouts
        one_zero = _ONE_ZERO.ctypes.data
        status = self.library.cublasLtMatmul(
            self.handle, plan.desc, one_zero, b.data.ptr, lt_a, a.data.ptr, lt_b,
            one_zero + 4, out.data.ptr, d, out.data.ptr, d, ctypes.byref(plan.algo),
            self.workspace.data.ptr, plan.workspace_size, cupy.cuda.get_current_stream().ptr,
        )  # fmt: skip
        if status in REFUSALS:  # not supported after all: not tried again
            plan.usable = False
            return False
        _check("Matmul", status)
        return True

    def _plan(
        self, shape: tuple, epilogue: int, compute_type: int, aligned: tuple[int, ...], vector: Any
    ) -> _Plan | None:
        """A new plan; ``None`` where cuBLASLt refused to describe the product."""
        try:
            return _Plan(
                self.library, self.handle, shape, epilogue, compute_type, aligned, vector.data.ptr
            )
        except RuntimeError:
            return None


#: Host alpha and beta, 1 and 0, read by cuBLASLt when a product is enqueued.
_ONE_ZERO = np.array([1.0, 0.0], np.float32)
