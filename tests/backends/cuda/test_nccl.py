"""NCCL between GPUs (``backends/cuda/nccl.py``): a world of one, the most a single-GPU
machine can hold (one GPU hosts one NCCL rank). It still runs the whole path: the unique id
over MPI, NCCL's all-reduce enqueued on the step's stream and recorded in the CUDA graph,
the broadcast of rank 0's weights, the sharded evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from backends import get_backend
from mlp import MLP
from tests.backends.cuda.test_graphs import assert_same_training, data
from tests.helpers import backend_or_skip, require_gpu

pytestmark = pytest.mark.cuda


@pytest.fixture
def world():
    backend_or_skip("cuda")
    try:
        from mlp.distributed import Communicator

        return Communicator()  # MPI's singleton world: no launcher needed for one process
    except Exception as exc:  # no mpi4py, no MPI library, no NCCL: say which
        if require_gpu():
            pytest.fail(f"MLP_REQUIRE_GPU=1 but MPI is unavailable: {exc}")
        pytest.skip(f"MPI unavailable: {exc}")


def train(monkeypatch, communicator, recorded=True):
    monkeypatch.setenv("MLP_NO_CUDA_GRAPH", "0" if recorded else "1")
    backend = get_backend("cuda")
    X, y = data()
    model = MLP([30, 32, 16, 7], device=backend, seed=3)
    history = model.fit(X, y, epochs=3, batch_size=64, communicator=communicator,
                        validation_data=(X[:300], y[:300]))  # fmt: skip
    return model, model.optimizer, history


def test_a_world_of_one_records_its_all_reduce_in_the_step(monkeypatch, world):
    together = train(monkeypatch, world)
    assert world._device is not None  # the gradients went through NCCL
    assert together[0].backend.capture_failure is None  # and the step was still recorded
    alone = train(monkeypatch, None)
    assert_same_training(together, alone)
    assert together[2][-1]["val_loss"] == pytest.approx(alone[2][-1]["val_loss"], rel=1e-6)


def test_recorded_and_op_by_op_agree_with_nccl(monkeypatch, world):
    assert_same_training(train(monkeypatch, world), train(monkeypatch, world, recorded=False))


def test_the_gradient_through_nccl_is_the_whole_batch_gradient(world):
    backend = get_backend("cuda")
    X, y = data(rows=257)
    model = MLP([30, 16, 7], device=backend, dtype="float64", seed=1)
    loss, grads = model.loss_and_gradients(X, y, communicator=world)
    expected_loss, expected = model.loss_and_gradients(X, y)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for key in expected:
        np.testing.assert_allclose(grads[key], expected[key], rtol=1e-12, atol=1e-15)
