"""The CPU backend's BLAS threads: a small product timed once, one thread where it is clearly
faster, the count restored after."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from backends import get_backend, threads
from backends.base import Backend
from mlp import MLP

threadpoolctl = pytest.importorskip("threadpoolctl")  # the ``fast`` extra: CI installs it

SMALL = (64, 64, 8)


@pytest.fixture
def two_threads(monkeypatch):
    """NumPy's BLAS on two threads (even on a one-core machine), as it was after the test,
    and not pinned by the environment."""
    monkeypatch.delenv(threads.PINNED, raising=False)
    assert threads.numpy_blas(), "threadpoolctl finds no BLAS of NumPy's"
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield


@pytest.fixture
def one_faster(monkeypatch):
    """The timing's verdict, set by the test: whether one thread was clearly faster."""
    verdict = {"one": True}
    monkeypatch.setattr(threads, "_timed_faster", lambda *args: verdict["one"])
    return verdict


def _blas_threads() -> int:
    return threads.numpy_blas()[0].get_num_threads()


def test_one_thread_inside_where_it_is_faster_and_the_count_comes_back(two_threads, one_faster):
    with threads.threads_for(SMALL):
        assert _blas_threads() == 1
    assert _blas_threads() == 2


def test_the_threads_stay_where_one_is_not_faster(two_threads, one_faster):
    one_faster["one"] = False
    with threads.threads_for(SMALL):
        assert _blas_threads() == 2


def test_large_products_keep_the_threads_untimed(two_threads, monkeypatch):
    monkeypatch.setattr(threads, "_timed_faster", lambda *args: pytest.fail("timed"))
    with threads.threads_for((threads.SMALL_PRODUCT, 1, 1)):
        assert _blas_threads() == 2


def test_one_thread_already_is_not_timed(monkeypatch):
    monkeypatch.setattr(threads, "_timed_faster", lambda *args: pytest.fail("timed"))
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert not threads.one_is_faster(SMALL)


def test_a_count_pinned_in_the_environment_is_not_timed(two_threads, monkeypatch):
    monkeypatch.setenv(threads.PINNED, "2")
    monkeypatch.setattr(threads, "_timed_faster", lambda *args: pytest.fail("timed"))
    with threads.threads_for(SMALL):
        assert _blas_threads() == 2


def test_overlapping_blocks_share_one_thread_and_the_last_gives_the_count_back(
    two_threads, one_faster
):
    """Two fits in two threads, the second started while the first ran on one thread: it
    too chooses one, the first's end leaves it there, and the second's gives back two."""
    first, second = threads.threads_for(SMALL), threads.threads_for(SMALL)
    first.__enter__()
    second.__enter__()
    assert _blas_threads() == 1
    first.__exit__(None, None, None)
    assert _blas_threads() == 1  # the second fit still runs, on the thread it chose
    second.__exit__(None, None, None)
    assert _blas_threads() == 2


def test_the_count_comes_back_after_an_error(two_threads, one_faster):
    with pytest.raises(RuntimeError, match="inside"), threads.threads_for(SMALL):
        raise RuntimeError("inside")
    assert _blas_threads() == 2


def test_the_timing_runs_once_per_shape_and_leaves_the_count(two_threads, monkeypatch):
    """A real timing: a verdict either way, the count as it was, and the same shape asked
    again answered from the first timing (the product is not run again)."""
    threads._timed_faster.cache_clear()
    runs = []
    matmul = np.matmul
    monkeypatch.setattr(np, "matmul", lambda *a, **k: runs.append(1) or matmul(*a, **k))
    verdict = threads.one_is_faster((32, 48, 16), np.float64)
    assert isinstance(verdict, bool)
    assert len(runs) == threads.ROUNDS * 2 * (threads.REPEATS + 1)
    assert _blas_threads() == 2
    assert threads.one_is_faster((32, 48, 16), np.float64) is verdict
    assert len(runs) == threads.ROUNDS * 2 * (threads.REPEATS + 1)


@pytest.mark.parametrize(("width", "product"), [(8, (64, 64, 8)), (300, (64, 64, 300))])
def test_fit_asks_about_its_largest_product(two_threads, monkeypatch, width, product):
    """The largest product is a batch through the widest layer, in the model's dtype, and
    the fit runs on what the answer says."""
    asked = []
    monkeypatch.setattr(threads, "_timed_faster", lambda *args: asked.append(args) or True)
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 64), dtype=np.float32), rng.integers(0, 3, 64)
    seen = []
    MLP([64, width, 3]).fit(
        X, y, epochs=1, batch_size=64, callback=lambda record: seen.append(_blas_threads())
    )
    assert asked == [(product, "<f4", 2)]
    assert seen == [1]
    assert _blas_threads() == 2


def test_the_base_backend_leaves_the_threads_alone(two_threads, one_faster):
    """A backend that picks no host threads (a GPU's) inherits a context that does nothing."""
    with Backend.threads_for(get_backend("cpu"), SMALL, np.float32):
        assert _blas_threads() == 2


def test_pinned_holds_a_count_untimed_and_gives_it_back(two_threads, monkeypatch):
    """A resumed run's count: held through the block, no timing inside, restored after; a
    count no fit here could choose (another machine's), or a product no fit times (a large
    one: its threads are the process's, untimed), is not pinned."""
    monkeypatch.setattr(threads, "_timed_faster", lambda *args: pytest.fail("timed"))
    with threads.pinned(1, SMALL) as held:
        assert held and _blas_threads() == 1
        with threads.threads_for(SMALL):
            assert _blas_threads() == 1
    assert _blas_threads() == 2
    with threads.pinned(2, SMALL) as held, threads.threads_for(SMALL):
        assert held and _blas_threads() == 2
    for count, product in (
        (3, SMALL),
        (None, SMALL),
        ("1", SMALL),
        (1, (threads.SMALL_PRODUCT, 1, 1)),
    ):
        with threads.pinned(count, product) as held:
            assert not held and _blas_threads() == 2


def test_pinned_waits_for_no_open_block(two_threads, one_faster):
    """A fit in another thread on one thread: pinning two then would leave it on two, and
    its end would drop the pin; nothing is pinned while a block is open."""
    with threads.threads_for(SMALL), threads.pinned(2, SMALL) as held:
        assert not held and _blas_threads() == 1
    assert _blas_threads() == 2


def test_no_timing_while_a_block_is_open_and_the_count_comes_back(two_threads, monkeypatch):
    """A fit in another thread running on one thread when a second fit asks: timing then
    would set the first fit's count under it, and its restore (the count it found: one)
    would outlast the first fit's end, which gave two back meanwhile. It is not timed
    then, nor remembered: asked again with no block open, it is."""
    threads._timed_faster.cache_clear()
    monkeypatch.setattr(threads, "CLEARLY_FASTER", 1e9)  # one thread always "faster"
    block = threads._ONE_THREAD
    clock = threads.time.perf_counter
    ended = []

    def first_fit_ends_meanwhile() -> float:
        if not ended:
            ended.append(1)
            block.leave()
        return clock()

    monkeypatch.setattr(threads.time, "perf_counter", first_fit_ends_meanwhile)
    block.enter()
    assert not threads.one_is_faster(SMALL)
    if not ended:
        block.leave()
    assert _blas_threads() == 2
    monkeypatch.setattr(threads.time, "perf_counter", clock)
    assert threads.one_is_faster(SMALL)
    assert _blas_threads() == 2


def test_the_last_block_to_close_gives_the_count_back_from_any_thread(two_threads, one_faster):
    """threadpoolctl lets only the thread that first set a count set it again (the others'
    calls do nothing): a fit in the main thread and one in another thread, the main one
    ending first, left the process on one thread for good."""
    first, second = threads.threads_for(SMALL), threads.threads_for(SMALL)
    first.__enter__()
    in_thread = threading.Thread(target=second.__enter__)
    in_thread.start()
    in_thread.join()
    first.__exit__(None, None, None)
    assert _blas_threads() == 1
    in_thread = threading.Thread(target=second.__exit__, args=(None, None, None))
    in_thread.start()
    in_thread.join()
    assert _blas_threads() == 2
