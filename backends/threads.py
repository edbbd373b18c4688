"""NumPy's BLAS threads: a fit of small products runs on one thread where one is faster here.

Why: OpenBLAS splits a product between its threads from about 0.26 M multiply-adds up, and
whether that pays for products as small as the tiny model's (64 × 784 × 128: 6.4 M) depends
on the machine. On a 2-core Xeon VM a tiny epoch took 0.36-0.39 s on one thread against
0.44-0.51 s on two; on a 2-core AMD EPYC VM, 0.29 s on one against 0.20 s on two. So no
size rule serves both: for a fit whose largest product is below ``SMALL_PRODUCT`` (above it,
every thread was faster on both), that product is timed on one thread and on the process's
count, once per process and shape, and one thread is kept only where it is clearly faster.

The thread count is the process's: while such a fit runs, other BLAS work in the process
runs on one thread too (slower, never wrong), and fits in other threads that choose one
share it until the last of them ends. A fit that starts while another holds one thread is
not timed (that would set the other's count under it): it takes what the process has, one
thread until that block ends. OpenBLAS rounds differently on one thread than on two, so a
fit's last digits follow the choice, which a new process makes afresh
(a resumed run is bit-exact where both chose alike: ``pinned`` makes it so).
``OPENBLAS_NUM_THREADS`` set pins it: then nothing is timed and the count stays as set.
Without threadpoolctl nothing changes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

#: The environment variable that sets OpenBLAS's threads: where set, the choice is the user's.
PINNED = "OPENBLAS_NUM_THREADS"
#: Multiply-adds from which a product ran faster on every thread than on one (Xeon, EPYC).
SMALL_PRODUCT = 10_000_000
#: One thread is kept where its time is below this fraction of the default count's: a near
#: tie keeps the default, so the choice (and its rounding) does not flip between runs.
CLEARLY_FASTER = 0.85
#: The timing: rounds alternate the two counts, each round this many products; the best
#: round of each count is compared (a few milliseconds for the tiny model's product).
ROUNDS, REPEATS = 5, 10


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


def largest_product(rows: int, sizes: Sequence[int]) -> tuple[int, int, int]:
    """The largest product of a batch of ``rows`` through layers of ``sizes``: rows × inner
    × columns of the widest layer (what ``threads_for`` is asked about)."""
    inner, columns = max(itertools.pairwise(sizes), key=lambda pair: pair[0] * pair[1])
    return rows, inner, columns


@contextlib.contextmanager
def threads_for(product: tuple[int, int, int], dtype: Any = np.float32) -> Iterator[None]:
    """One BLAS thread inside the block where ``product`` (the enclosed work's largest:
    rows × inner × columns) runs clearly faster on one; the thread counts as they were
    after it."""
    if not one_is_faster(product, dtype):
        yield
        return
    _ONE_THREAD.enter()
    try:
        yield
    finally:
        _ONE_THREAD.leave()


class _Sections:
    """The one-thread blocks open in the process (fits in several threads at once): the
    first to open sets one thread, the last to close gives back the counts it found."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._outside: list[tuple[Any, int]] = []
        self.pinned: list[tuple[Any, int]] | None = None  # the counts ``pin`` found

    def pin(self, count: int) -> bool:
        """``count`` threads, held (``one_is_faster`` times nothing), where no block is
        open and it is a count a fit could choose here: one, or the process's own."""
        with self._lock:
            own = numpy_blas()[0].get_num_threads()
            if self._open or self.pinned is not None or count not in (1, own):
                return False
            self.pinned = _set_threads(count)
            return True

    def unpin(self) -> None:
        with self._lock:
            _apply(self.pinned or ())
            self.pinned = None

    def enter(self) -> None:
        with self._lock:
            if self._open == 0:
                self._outside = _set_threads(1)
            self._open += 1

    def leave(self) -> None:
        with self._lock:
            self._open -= 1
            if self._open == 0:
                _apply(self._outside)

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """The counts to change freely inside (a timing's): no block opens, closes or pins
        meanwhile. ``Busy`` where one is open or a count is pinned: a fit in another thread
        trains on that count, and setting it under the fit would change its rounding."""
        with self._lock:
            if self._open or self.pinned is not None:
                raise Busy
            yield

    def process_threads(self) -> int:
        """NumPy's BLAS threads outside any open block."""
        with self._lock:
            return self._outside[0][1] if self._open else numpy_blas()[0].get_num_threads()


class Busy(Exception):
    """Another fit holds the process's BLAS threads: nothing may be timed now."""


_ONE_THREAD = _Sections()


def in_use() -> int | None:
    """NumPy's BLAS threads now (inside a fit, those it trains on); None without threadpoolctl."""
    blas = numpy_blas()
    return blas[0].get_num_threads() if blas else None


@contextlib.contextmanager
def pinned(count: Any, product: tuple[int, int, int]) -> Iterator[bool]:
    """NumPy's BLAS held at ``count`` threads inside the block, untimed, where a fit whose
    largest product is ``product`` would otherwise time its choice (a small product, no
    ``OPENBLAS_NUM_THREADS``) and ``count`` is one it could choose (one, or the process's
    own: another machine's rounding cannot be had here anyway): a resumed run takes the
    count its first process trained on, so its last digits are the unbroken run's. Yields
    whether it pinned."""
    timed = math.prod(product) < SMALL_PRODUCT and PINNED not in os.environ and numpy_blas()
    held = bool(timed) and isinstance(count, int) and _ONE_THREAD.pin(count)
    try:
        yield held
    finally:
        if held:
            _ONE_THREAD.unpin()


def one_is_faster(product: tuple[int, int, int], dtype: Any = np.float32) -> bool:
    """Whether a ``product`` of ``dtype`` runs clearly faster on one BLAS thread than on
    the process's count: timed the first time a small product is asked about, here."""
    held = PINNED in os.environ or _ONE_THREAD.pinned is not None
    if math.prod(product) >= SMALL_PRODUCT or held or not numpy_blas():
        return False
    threads = _ONE_THREAD.process_threads()
    try:
        return threads > 1 and _timed_faster(tuple(product), np.dtype(dtype).str, threads)
    except Busy:  # not remembered: asked again when no other fit holds the count, it is timed
        return False


@functools.cache
def _timed_faster(product: tuple[int, int, int], dtype: str, threads: int) -> bool:
    with _ONE_THREAD.quiet():
        return _time(product, dtype, threads)


def _time(product: tuple[int, int, int], dtype: str, threads: int) -> bool:
    rows, inner, columns = product
    rng = np.random.default_rng(0)
    a = rng.random((rows, inner), dtype=np.float64).astype(dtype)
    b = rng.random((inner, columns), dtype=np.float64).astype(dtype)
    out = np.empty((rows, columns), dtype)
    best = dict.fromkeys((1, threads), math.inf)
    before = _set_threads(threads)
    try:
        for _ in range(ROUNDS):
            for count in best:
                _set_threads(count)
                np.matmul(a, b, out=out)  # the threads awake, the operands in cache
                start = time.perf_counter()
                for _ in range(REPEATS):
                    np.matmul(a, b, out=out)
                best[count] = min(best[count], time.perf_counter() - start)
    finally:
        _apply(before)
    return best[1] < CLEARLY_FASTER * best[threads]


def _set_threads(count: int) -> list[tuple[Any, int]]:
    """Set NumPy's BLAS to ``count`` threads; the counts it had."""
    before = [(c, c.get_num_threads()) for c in numpy_blas()]
    _apply([(c, count) for c, _ in before])
    return before


def _apply(counts: Sequence[tuple[Any, int]]) -> None:
    """Set each control's count, from whichever thread: threadpoolctl (3.8) lets only the
    thread that first set an OpenBLAS count set it again, and ignores the others' calls,
    so a fit in another thread closing the last block would leave one thread for good.
    The blocks' lock already keeps this module's changes from fighting."""
    for c, count in counts:
        getattr(c, "_real_set_num_threads", c.set_num_threads)(count)
