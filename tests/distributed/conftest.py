"""Tests that run inside an MPI world of two: ``mpiexec -n 2 python -m pytest tests/distributed``
(``tests/mlp/test_distributed.py`` starts it). Every process runs every test in the same
order, so their collectives meet; a test that fails on one process fails the run."""

from __future__ import annotations

import pytest

from mlp.distributed import Communicator


@pytest.fixture(scope="session")
def world() -> Communicator:
    world = Communicator()
    assert world.size == 2, "run these tests with mpiexec -n 2"
    return world
