"""Pluggable array backends: NumPy on the CPU, CuPy on CUDA GPUs.

``get_backend("cpu" | "numpy" | "cuda" | "cuda:N" | "cupy")`` parses a device spec and
returns the backend for it. CuPy is imported only when a CUDA backend is asked for.
"""

from __future__ import annotations

from .base import ACTIVATIONS, Backend
from .errors import BackendUnavailable
from .numpy_backend import NumpyBackend

__all__ = [
    "ACTIVATIONS",
    "Backend",
    "BackendUnavailable",
    "NumpyBackend",
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


def get_backend(spec: str | Backend = "cpu", tf32: bool = False) -> Backend:
    """The backend for a device spec; a ``Backend`` passes through unchanged.

    ``tf32=True`` lets a CUDA backend run float32 matmuls on TF32 tensor cores (the CPU
    has no such mode and ignores it).
    """
    if isinstance(spec, Backend):
        return spec
    kind, index = parse_device(spec)
    if kind == "cpu":
        return NumpyBackend()
    from .cupy_backend import CupyBackend  # lazy: CPU users never import CuPy

    return CupyBackend(index, tf32=tf32)
