"""The CPU backend's BLAS threads: small products on one thread, the count restored after."""

from __future__ import annotations

import numpy as np
import pytest

from backends import get_backend, threads
from backends.base import Backend
from mlp import MLP

threadpoolctl = pytest.importorskip("threadpoolctl")  # the ``fast`` extra: CI installs it


@pytest.fixture
def two_threads():
    """NumPy's BLAS on two threads (even on a one-core machine), as it was after the test."""
    assert threads.numpy_blas(), "threadpoolctl finds no BLAS of NumPy's"
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield


def _blas_threads() -> int:
    return threads.numpy_blas()[0].get_num_threads()


def test_small_products_run_on_one_thread_and_the_count_comes_back(two_threads):
    with threads.threads_for(threads.SMALL_PRODUCT - 1):
        assert _blas_threads() == 1
    assert _blas_threads() == 2


def test_large_products_keep_the_threads(two_threads):
    with threads.threads_for(threads.SMALL_PRODUCT):
        assert _blas_threads() == 2


def test_the_count_comes_back_after_an_error(two_threads):
    with pytest.raises(RuntimeError, match="inside"), threads.threads_for(1):
        raise RuntimeError("inside")
    assert _blas_threads() == 2


@pytest.mark.parametrize(("width", "expected"), [(8, 1), (4096, 2)])
def test_fit_picks_the_threads_by_its_largest_product(two_threads, width, expected):
    """The largest product is a batch through the widest layer: 64 × 64 × 8 is small,
    64 × 64 × 4096 (16.8 M multiply-adds) is not."""
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 64), dtype=np.float32), rng.integers(0, 3, 64)
    seen = []
    MLP([64, width, 3]).fit(
        X, y, epochs=1, batch_size=64, callback=lambda record: seen.append(_blas_threads())
    )
    assert seen == [expected]
    assert _blas_threads() == 2


def test_the_base_backend_leaves_the_threads_alone(two_threads):
    """A backend that picks no host threads (a GPU's) inherits a context that does nothing."""
    with Backend.threads_for(get_backend("cpu"), 1):
        assert _blas_threads() == 2
