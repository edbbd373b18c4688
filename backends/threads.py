"""NumPy's BLAS threads: the CPU backend holds small products to one thread.

Why: OpenBLAS splits a product between its threads from about 0.26 M multiply-adds up, but
for products as small as the tiny model's (64 × 784 × 128: 6.4 M) waking its second thread
costs more than that thread gives. On a 2-core Xeon a tiny epoch took 0.41 s with one BLAS
thread against 0.52 s with two, while std (products up to 51 M) was faster on two (1.9 s
against 2.4 s). A fit whose largest product is below ``SMALL_PRODUCT`` runs on one thread.

The thread count is the process's: while such a fit runs, other BLAS work in the process
runs on one thread too (slower, never wrong). Without threadpoolctl nothing changes.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

#: Multiply-adds below which a product runs faster on one BLAS thread than on two.
SMALL_PRODUCT = 10_000_000


@functools.cache
def numpy_blas() -> tuple[Any, ...]:
    """threadpoolctl's controls of the BLAS NumPy calls (found once: the search is slow);
    empty where threadpoolctl is missing. SciPy's BLAS, which Numba loads, is not NumPy's."""
    try:
        import threadpoolctl
    except ImportError:
        return ()
    blas = [c for c in threadpoolctl.ThreadpoolController().lib_controllers if c.user_api == "blas"]
    return tuple(c for c in blas if "numpy" in c.filepath) or tuple(blas)


@contextlib.contextmanager
def threads_for(largest_product: int) -> Iterator[None]:
    """One BLAS thread inside the block where ``largest_product`` (multiply-adds) is small;
    the thread counts as they were after it."""
    if largest_product >= SMALL_PRODUCT or not numpy_blas():
        yield
        return
    before = [(c, c.get_num_threads()) for c in numpy_blas()]
    for c, _ in before:
        c.set_num_threads(1)
    try:
        yield
    finally:
        for c, threads in before:
            c.set_num_threads(threads)
