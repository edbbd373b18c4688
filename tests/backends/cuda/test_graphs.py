"""Recorded training steps (CUDA graphs): the same training as op by op, and no quiet fallback.

On a GPU, ``fit`` records its step once and replays it for every full batch. Each test here
trains the same seeded model twice, recorded and with ``MLP_NO_CUDA_GRAPH=1``, and compares:
a replay that read a stale batch, a stale step count or an old learning rate would drift
from the op-by-op run at once. Each also checks that a recording was made, so that a run
which silently fell back to op by op cannot pass."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from backends import get_backend
from mlp import MLP
from mlp.optim import SGD, Adam, AdamW
from tests.helpers import backend_or_skip

pytestmark = pytest.mark.cuda


OPTIMIZERS = {
    "adam": lambda: Adam(lr=2e-3, weight_decay=1e-4),
    "adamw": lambda: AdamW(lr=2e-3),
    "sgd": lambda: SGD(lr=0.05),
    "nesterov": lambda: SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
}


def data(rows: int = 1000, features: int = 30, classes: int = 7):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (rows, features)).astype(np.uint8), rng.integers(0, classes, rows)


def train(monkeypatch, recorded: bool, precision: str = "float32", optimizer: str = "adam",
          callback=None, batch_size: int = 64):  # fmt: skip
    """A seeded 3-epoch fit on the GPU (1000 rows: 15 full batches and one of 40)."""
    monkeypatch.setenv("MLP_NO_CUDA_GRAPH", "0" if recorded else "1")
    backend = get_backend("cuda", precision=precision)
    X, y = data()
    model = MLP([30, 32, 16, 7], device=backend, seed=3)
    opt = OPTIMIZERS[optimizer]()
    history = model.fit(X, y, epochs=3, batch_size=batch_size, optimizer=opt, callback=callback)
    return model, opt, history


def assert_same_training(a, b) -> None:
    (model_a, opt_a, history_a), (model_b, opt_b, history_b) = a, b
    assert opt_a.steps == opt_b.steps == 3 * 16
    for ra, rb in zip(history_a, history_b, strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-6)  # summed with atomics
        assert ra["accuracy"] == rb["accuracy"]
    np.testing.assert_allclose(
        model_a.backend.to_numpy(model_a.params),
        model_b.backend.to_numpy(model_b.params),
        rtol=1e-6,
        atol=1e-7,
    )
    for name, state in opt_a.state.items():
        np.testing.assert_allclose(
            opt_a.backend.to_numpy(state), opt_b.backend.to_numpy(opt_b.state[name]),
            rtol=1e-6, atol=1e-9, err_msg=name,
        )  # fmt: skip


@pytest.fixture(autouse=True)
def gpu():
    backend_or_skip("cuda")


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_recorded_steps_train_as_op_by_op(monkeypatch, optimizer):
    recorded = train(monkeypatch, True, optimizer=optimizer)
    assert recorded[0].backend.capture_failure is None  # a recording was made and used
    assert_same_training(recorded, train(monkeypatch, False, optimizer=optimizer))


def test_a_step_gathers_and_updates_in_one_kernel_each(monkeypatch):
    """A fit's batch gather and its Adam update (the count on the device) each launch one
    kernel; the two-kernel forms (the corrections, then the update) serve only strided
    buffers. Kernels are counted as the host launches them: op by op, and once while the
    step is recorded."""
    import cupy

    from backends.cuda import kernels

    built = kernels.build(cupy)  # the dict every CupyBackend launches from
    launched: collections.Counter = collections.Counter()

    def counted(name: str):
        kernel = built[name]

        def launch(*args, **kwargs):
            launched[name] += 1
            return kernel(*args, **kwargs)

        return launch

    for name in ("gather_batch", "adam_contiguous_float", "adam_corrections", "adam_counted"):
        monkeypatch.setitem(built, name, counted(name))
    model, _, _ = train(monkeypatch, True)
    assert model.backend.capture_failure is None
    assert launched["gather_batch"] >= 2 and launched["adam_contiguous_float"] >= 2
    assert launched["adam_corrections"] == launched["adam_counted"] == 0


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_recorded_steps_with_reduced_precision(monkeypatch, precision):
    recorded = train(monkeypatch, True, precision=precision)
    assert recorded[0].backend.capture_failure is None
    assert_same_training(recorded, train(monkeypatch, False, precision=precision))


def test_a_learning_rate_changed_between_epochs_is_used(monkeypatch):
    """A schedule in a callback changes a setting the recording holds: it records afresh."""

    def halve(record):
        optimizers[-1].lr /= 2

    optimizers = []

    def run(recorded):
        monkeypatch.setenv("MLP_NO_CUDA_GRAPH", "0" if recorded else "1")
        X, y = data()
        model = MLP([30, 32, 16, 7], device="cuda", seed=3)
        optimizers.append(Adam(lr=4e-3))
        history = model.fit(X, y, epochs=3, batch_size=64, optimizer=optimizers[-1],
                            callback=halve)  # fmt: skip
        return model, optimizers[-1], history

    assert_same_training(run(True), run(False))
    assert optimizers[0].lr == pytest.approx(4e-3 / 8)


def test_a_batch_size_that_divides_the_data(monkeypatch):
    """No short last batch: every step but the first of the fit is a replay."""
    recorded = train(monkeypatch, True, batch_size=100)
    plain = train(monkeypatch, False, batch_size=100)
    assert recorded[1].steps == plain[1].steps == 30
    np.testing.assert_allclose(
        recorded[0].backend.to_numpy(recorded[0].params),
        plain[0].backend.to_numpy(plain[0].params),
        rtol=1e-6,
        atol=1e-7,
    )


def test_recording_refuses_an_op_that_allocates():
    """Memory taken during a recording would go back to the pool at once and be reused
    while replays still write it: such a step is refused, and the backend still works."""
    be = get_backend("cuda")
    x = be.asarray(np.ones((4, 4), np.float32))
    assert be.capture(lambda: x + x) is None  # no out=: it allocates its result
    assert "allocated" in be.capture_failure
    np.testing.assert_array_equal(be.to_numpy(be.matmul(x, x)), np.full((4, 4), 4.0))
    np.testing.assert_array_equal(be.to_numpy(x + x), np.full((4, 4), 2.0))


def test_a_recording_replays_its_ops_each_time():
    be = get_backend("cuda")
    counter = be.asarray(np.zeros(2, np.int64))
    by = be.asarray(np.array([3, 1], np.int64))
    recording = be.capture(lambda: be.add(counter, by, out=counter))
    assert recording is not None, be.capture_failure
    assert be.to_numpy(counter).tolist() == [0, 0]  # recording runs nothing
    for _ in range(5):
        recording()
    assert be.to_numpy(counter).tolist() == [15, 5]


def test_dropout_trains_op_by_op(monkeypatch):
    """A dropout step draws from the epoch's generator: it is never recorded."""
    monkeypatch.setenv("MLP_NO_CUDA_GRAPH", "0")
    be = get_backend("cuda")
    be.capture_failure = "untouched"
    X, y = data()
    model = MLP([30, 32, 7], device=be, dropout=0.2, seed=1)
    history = model.fit(X, y, epochs=2, batch_size=64)
    assert be.capture_failure == "untouched"  # capture was never asked for
    assert np.isfinite(history[-1]["loss"])
