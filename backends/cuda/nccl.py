"""NCCL between GPUs, through CuPy: the gradient all-reduce of a data-parallel step.

One process per GPU; rank 0 makes NCCL's unique id and MPI hands it to the others (the
``pure_nccl`` way). Each call is enqueued on the stream current when it is made, so in a
training step recorded as a CUDA graph the all-reduce is recorded with the rest of the step
(NCCL 2.9 and later allow capture), and a step stays one launch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import BackendUnavailable, install_hint


def _nccl(cupy: Any) -> Any:
    try:
        from cupy.cuda import nccl
    except ImportError as exc:
        raise BackendUnavailable(
            f"NCCL is not available to CuPy here ({exc}): pip install nvidia-nccl-cu12 "
            f"(or cu13), or {install_hint('dist')} with your CUDA's NCCL on the library path"
        ) from None
    if not getattr(nccl, "available", True):
        raise BackendUnavailable(
            "CuPy was built without NCCL: pip install nvidia-nccl-cu12 (or cu13) beside it"
        )
    return nccl


class NcclGroup:
    """This process's NCCL rank among ``size``, on ``backend``'s GPU."""

    def __init__(self, backend: Any, size: int, rank: int, broadcast: Callable[[Any], Any]) -> None:
        """``broadcast(value)`` returns rank 0's ``value`` on every rank (MPI's ``bcast``)."""
        self.backend = backend
        self.nccl = _nccl(backend.xp)
        uid = broadcast(self.nccl.get_unique_id() if rank == 0 else None)
        with backend.activated():
            self.comm = self.nccl.NcclCommunicator(size, uid, rank)
        self._types = {
            np.dtype(np.float32): self.nccl.NCCL_FLOAT32,
            np.dtype(np.float64): self.nccl.NCCL_FLOAT64,
        }

    def _stream(self) -> int:
        return self.backend.xp.cuda.get_current_stream().ptr

    def allreduce(self, array: Any) -> None:
        """``array`` summed over the ranks, in place, on the current stream."""
        ptr = array.data.ptr
        dtype = self._types[array.dtype]
        self.comm.allReduce(ptr, ptr, array.size, dtype, self.nccl.NCCL_SUM, self._stream())

    def broadcast(self, array: Any) -> None:
        """Rank 0's ``array`` into every rank's, in place, on the current stream."""
        if array.dtype in self._types:
            kind, count = self._types[array.dtype], array.size
        else:  # integers (an optimizer's step count): as bytes
            kind, count = self.nccl.NCCL_UINT8, array.nbytes
        self.comm.bcast(array.data.ptr, count, kind, 0, self._stream())
