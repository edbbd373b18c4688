"""The CUDA backend, one job per file: ``kernels.py`` (the fused kernels' sources and their
builds), ``cublas.py`` (cuBLAS's GEMM through ctypes), ``graphs.py`` (recording a step as a
CUDA graph) and ``backend.py`` (``CupyBackend``, whose bodies use the three)."""

from .backend import CupyBackend

__all__ = ["CupyBackend"]
