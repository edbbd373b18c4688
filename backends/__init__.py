"""Pluggable array backends: NumPy on the CPU, CuPy on CUDA GPUs.

``get_backend("cpu" | "numpy" | "cuda" | "cuda:N" | "cupy")`` parses a device spec and
returns the backend for it. CuPy is imported only when a CUDA backend is asked for.
"""

from __future__ import annotations

from .base import Backend
from .errors import BackendUnavailable
from .numpy_backend import NumpyBackend
from .operands import ACTIVATIONS, PRECISIONS, check_precision

__all__ = [
    "ACTIVATIONS",
    "PRECISIONS",
    "Backend",
    "BackendUnavailable",
    "NumpyBackend",
    "cuda_available",
    "get_backend",
    "parse_device",
]

_CPU_NAMES = ("cpu", "numpy")
_CUDA_NAMES = ("cuda", "cupy", "gpu")


def parse_device(spec: str) -> tuple[str, int]:
    """``"cuda:1"`` → ``("cuda", 1)``; ``"cpu"`` → ``("cpu", 0)``. Raises ``ValueError``."""
    text = str(spec).strip().lower()
    kind, _, index = text.partition(":")
    if kind in _CPU_NAMES and not index:
        return "cpu", 0
    if kind in _CUDA_NAMES:
        if not index:
            return "cuda", 0
        if index.isdigit():
            return "cuda", int(index)
    raise ValueError(f"unknown device {spec!r}: use cpu, cuda or cuda:N (N = GPU index)")


def get_backend(spec: str | Backend = "cpu", precision: str | None = None) -> Backend:
    """The backend for a device spec; a ``Backend`` passes through unchanged.

    ``precision`` sets how float32 matmuls run: ``float32`` (exact, the default), ``tf32``
    (TF32 tensor cores) or ``bf16`` (bfloat16 operands, float32 accumulation). A CUDA GPU
    runs them on its tensor cores; the CPU emulates their rounding, to reproduce a GPU's
    numerics. With a ``Backend``, a precision other than its own is an error, not ignored.
    """
    if isinstance(spec, Backend):
        if precision is not None and check_precision(precision) != spec.precision:
            raise ValueError(
                f"this backend computes matmuls in {spec.precision}, not {precision}: "
                f"make another with get_backend({spec.device!r}, precision={precision!r})"
            )
        return spec
    precision = check_precision("float32" if precision is None else precision)
    kind, index = parse_device(spec)
    if kind == "cpu":
        return NumpyBackend(precision=precision)
    from .cuda import CupyBackend  # lazy: CPU users never import CuPy

    return CupyBackend(index, precision=precision)


def cuda_available() -> bool:
    """Whether ``get_backend("cuda")`` works here: CuPy installed and a GPU it can use."""
    try:
        get_backend("cuda")
    except BackendUnavailable:
        return False
    return True
