"""``mlp.distributed`` outside a world (the launcher's environment, the shares of a batch,
what is refused), and the tests that run inside one: tests/distributed under ``mpiexec -n 2``."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

from backends import get_backend
from mlp import MLP, distributed
from mlp.distributed import DistributedError, from_environment, launched_size, shares
from mlp.errors import MissingExtra
from tests.helpers import backend_or_skip, mpiexec, mpiexec_or_skip


@pytest.fixture
def no_launcher(monkeypatch):
    for name in distributed.SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("environ", "size"),
    [
        ({}, None),
        ({"PMI_SIZE": "4"}, 4),
        ({"OMPI_COMM_WORLD_SIZE": "2"}, 2),
        ({"SLURM_STEP_NUM_TASKS": "8"}, 8),
        ({"PMI_SIZE": "1"}, 1),
        ({"PMI_SIZE": "many"}, None),
    ],
)
def test_the_launchers_world_is_read_from_its_environment(environ, size):
    assert launched_size(environ) == size


@pytest.mark.parametrize(("rows", "size"), [(128, 2), (97, 3), (1, 2), (5, 8), (60000, 7)])
def test_shares_cover_every_row_once_in_rank_order(rows, size):
    parts = shares(rows, size)
    assert parts[0][0] == 0 and parts[-1][1] == rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    sizes = [stop - start for start, stop in parts]
    assert max(sizes) - min(sizes) <= 1


def test_one_process_outside_a_launcher_is_not_a_world(no_launcher):
    assert from_environment() is None


def test_insisting_without_a_launcher_says_how_to_start_one(no_launcher):
    with pytest.raises(DistributedError, match="mpiexec -n N"):
        from_environment(insist=True)


def test_a_missing_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    with pytest.raises(MissingExtra, match=r"mlp-backprop\[dist\]"):
        distributed.Communicator()


def test_fit_refuses_what_is_not_a_communicator():
    X, y = np.zeros((4, 3)), np.zeros(4, np.int64)
    with pytest.raises(TypeError, match="Communicator"):
        MLP([3, 2]).fit(X, y, communicator="world")


def test_processes_sharing_a_gpu_are_refused_before_nccl_starts():
    distributed.check_own_gpus(
        [("a", "0000:01:00.0"), ("a", "0000:02:00.0"), ("b", "0000:01:00.0")]
    )
    with pytest.raises(
        DistributedError, match=r"ranks 0 and 2 would share the GPU 0000:01:00.0 on a"
    ):
        distributed.check_own_gpus([("a", "0000:01:00.0"), ("b", "x"), ("a", "0000:01:00.0")])


def test_two_processes_pass_the_distributed_tests():
    """tests/distributed under ``mpiexec -n 2``: gradients, fits, refusals, each on both ranks."""
    launcher = mpiexec_or_skip()
    suite = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/distributed"]
    done = mpiexec(launcher, suite, suite, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert done.stdout.count(" passed") == 2, done.stdout[-2000:]


def test_an_mpi4py_without_an_mpi_library_says_what_to_install(monkeypatch):
    def unloadable(*args, **kwargs):
        raise RuntimeError("cannot load MPI library")

    monkeypatch.setattr(distributed, "require", unloadable)
    with pytest.raises(DistributedError, match=r"cannot start MPI.*pip install mpich"):
        distributed.Communicator()


def test_the_digest_is_the_same_on_any_number_of_blas_threads():
    """Two ranks with the same data but other BLAS thread counts were told they disagreed
    (a float sum through BLAS changed its last bits above 10,000 rows): the digest is an
    integer sum, the same in any order; and it tells apart what keeps every row's sum."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    backend = get_backend("cpu")
    X = np.random.default_rng(0).standard_normal((60_000, 8))
    digests = set()
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            digests.add(distributed._digest(backend, X))
    digests.add(distributed._digest(backend, np.asfortranarray(X)))  # read in chunks of rows
    assert len(digests) == 1
    swapped = X[:, [1, 0, *range(2, 8)]]
    balanced = X.copy()
    balanced[7, :2] += [0.5, -0.5]
    others = {distributed._digest(backend, Y) for Y in (swapped, balanced, X.astype(np.float32))}
    assert len(others | digests) == 4


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_the_digest_is_the_same_on_a_gpu(dtype):
    """The same bits give the same digest on the device as on the host (and a chunk of
    2**24 elements there, of 2**16 here: more than one of each)."""
    gpu, cpu = backend_or_skip("cuda"), get_backend("cpu")
    X = np.abs(np.random.default_rng(1).standard_normal((70_000, 300)) * 50).astype(dtype)
    assert distributed._digest(gpu, gpu.asarray(X)) == distributed._digest(cpu, X)
