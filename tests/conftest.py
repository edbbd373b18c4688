"""Shared fixtures: every backend test runs on NumPy and, where a GPU exists, on CuPy.

CUDA cases carry the ``cuda`` marker and skip without a GPU; with ``MLP_REQUIRE_GPU=1``
that skip becomes a failure, so a GPU run can never pass by skipping.
"""

from __future__ import annotations

import pytest

from backends import NumpyBackend, get_backend
from mlp.data.synthetic import write_dataset
from mlp.distributed import launched_size
from tests.helpers import backend_or_skip

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
#: Backends: the CPU with its Numba kernels (when installed), the CPU without them, and CUDA.
BACKENDS = ["cpu", "cpu-nonumba", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """A device spec whose backend is known to work here."""
    backend_or_skip(request.param)
    return request.param


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "cpu-nonumba":
        return NumpyBackend(use_numba=False)
    return backend_or_skip(request.param)


@pytest.fixture(params=BACKENDS)
def backend_kind(request) -> str:
    """A backend's name, for tests that build it themselves (see ``make_backend``)."""
    return request.param


@pytest.fixture
def make_backend():
    """``make_backend(kind, precision)``: a fresh backend, skipping CUDA as ``backend`` does."""

    def make(kind: str, precision: str = "float32"):
        if kind == "cpu-nonumba":
            return NumpyBackend(use_numba=False, precision=precision)
        backend_or_skip(kind)
        return get_backend(kind, precision=precision)

    return make


@pytest.fixture
def cuda_backend():
    return backend_or_skip("cuda")


@pytest.fixture
def idx_dataset(tmp_path):
    """A folder holding a small, learnable dataset in the MNIST file layout."""
    return write_dataset(tmp_path / "tiny-mnist", n_train=600, n_test=200)


#: The tests under tests/distributed run inside an MPI world (tests/mlp/test_distributed.py starts
#: one); collected outside a launcher, they are left out.
collect_ignore = [] if launched_size() else ["distributed"]
