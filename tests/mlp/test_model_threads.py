"""Threads: inference from many at once gives the answers of serial calls, on every backend
and precision; a call that changes the model while another does is refused, not mixed in."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mlp import MLP, Adam
from mlp.errors import ModelBusy

THREADS = 8


def concurrently(calls):
    """Run every call at once (a barrier lines the threads up), and return their results."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def inputs(rows, seed):
    """Different inputs per thread: a thread that read another's buffers would be wrong."""
    return np.random.default_rng(seed).integers(0, 256, (rows, 64)).astype(np.uint8)


@pytest.mark.parametrize("rows", [500, 5000], ids=["one chunk", "several chunks"])
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_inference_from_many_threads_gives_serial_answers(
    make_backend, backend_kind, rows, precision
):
    """The chunked path (over 4,096 rows), uint8 inputs gathered through work buffers, and
    bf16 matmuls (rounded through work buffers too): every buffer is the thread's own."""
    model = MLP([64, 48, 32, 10], device=make_backend(backend_kind, precision), seed=1)
    datasets = [inputs(rows, seed) for seed in range(THREADS)]
    labels = [np.random.default_rng(seed).integers(0, 10, rows) for seed in range(THREADS)]
    serial = [
        (model.predict(X), model.predict_proba(X), model.evaluate(X, y))
        for X, y in zip(datasets, labels, strict=True)
    ]
    for _ in range(3):
        together = concurrently(
            [
                lambda X=X, y=y: (model.predict(X), model.predict_proba(X), model.evaluate(X, y))
                for X, y in zip(datasets, labels, strict=True)
            ]
        )
        for (want_labels, want_proba, want_eval), (got_labels, got_proba, got_eval) in zip(
            serial, together, strict=True
        ):
            np.testing.assert_array_equal(got_labels, want_labels)
            np.testing.assert_allclose(got_proba, want_proba, rtol=1e-6, atol=1e-7)
            assert got_eval == pytest.approx(want_eval, rel=1e-6)


def test_float_inputs_from_many_threads_give_serial_answers(backend):
    model = MLP([64, 32, 10], device=backend, dtype="float64", seed=2)
    datasets = [inputs(600, seed) / 255.0 for seed in range(THREADS)]
    serial = [model.forward(X) for X in datasets]
    together = concurrently([lambda X=X: model.forward(X) for X in datasets])
    for want, got in zip(serial, together, strict=True):
        np.testing.assert_array_equal(backend.to_numpy(got), backend.to_numpy(want))


def fitting(model, started, release):
    """A fit that waits in its first batch until ``release`` is set."""

    def on_batch(batch):
        started.set()
        release.wait(timeout=30)

    X, y = inputs(256, 0), np.random.default_rng(0).integers(0, 10, 256)
    return lambda: model.fit(X, y, epochs=1, batch_size=64, optimizer=Adam(), on_batch=on_batch)


def test_a_call_that_changes_the_model_while_fit_runs_is_refused():
    model = MLP([64, 16, 10], seed=3)
    started, release = threading.Event(), threading.Event()
    worker = threading.Thread(target=fitting(model, started, release))
    worker.start()
    try:
        assert started.wait(timeout=30)
        before = model.state_dict()
        X, y = inputs(32, 1), np.zeros(32, np.int64)
        for call in (
            lambda: model.fit(X, y, epochs=1),
            lambda: model.loss_and_gradients(X, y),
            lambda: model.to("cpu"),
            lambda: model.load_state_dict(before),
        ):
            with pytest.raises(ModelBusy, match="another thread is changing this model"):
                call()
        assert model.predict(X).shape == (32,)  # inference is never refused
    finally:
        release.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    model.fit(inputs(64, 2), np.zeros(64, np.int64), epochs=1)  # free again once it ends


def test_the_refusal_is_a_runtime_error_of_the_library():
    assert issubclass(ModelBusy, RuntimeError)
    from mlp import MLPError

    assert issubclass(ModelBusy, MLPError)


def test_a_fit_callback_may_restore_weights_but_not_move_the_model():
    """Restoring the best weights from a callback worked before the lock came: it still does
    (same thread, inside the fit); moving the model or fitting it again from there does not."""
    model = MLP([64, 16, 10], seed=4)
    best = model.state_dict()
    refusals = []

    def callback(record):
        model.load_state_dict(best)
        model.loss_and_gradients(inputs(8, 5), np.zeros(8, np.int64))
        for call in (lambda: model.to("cpu"), lambda: model.fit(inputs(8, 5), np.zeros(8))):
            with pytest.raises(ModelBusy, match="cannot run inside this model's own fit"):
                call()
            refusals.append(call)

    X, y = inputs(128, 6), np.random.default_rng(6).integers(0, 10, 128)
    model.fit(X, y, epochs=1, batch_size=32, callback=callback)
    assert len(refusals) == 2
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, best[key])


@pytest.mark.cuda
def test_inference_while_the_model_moves_between_devices(cuda_backend):
    """A call snapshots the backend and its layers together: moving the model meanwhile
    never hands one device's arrays to the other's backend."""
    model = MLP([64, 16, 10], seed=5)
    X = inputs(300, 7)
    wants = [model.predict(X), model.to(cuda_backend).predict(X)]  # each device's own answer
    model.to("cpu")
    stop = threading.Event()
    failures = []

    def predicting():
        while not stop.is_set():
            try:
                got = model.predict(X)
                assert any(np.array_equal(got, want) for want in wants)
            except Exception as exc:  # any: the test reports it
                failures.append(exc)
                return

    workers = [threading.Thread(target=predicting) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(20):
            model.to(cuda_backend)
            model.to("cpu")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    assert failures == []


def test_inference_while_weights_are_loaded_gives_the_old_or_the_new_answer(backend):
    """A hot reload while serving: load_state_dict swaps a whole new buffer in, so a call
    made meanwhile computes with one set of weights, never half of each."""
    model = MLP([64, *[64] * 8, 10], device=backend, seed=0)
    states = [model.state_dict(), MLP([64, *[64] * 8, 10], seed=1).state_dict()]
    X = inputs(400, 3)
    wants = []
    for state in states:
        model.load_state_dict(state)
        wants.append(model.predict_proba(X))
    stop = threading.Event()

    def loading():
        while not stop.is_set():
            for state in states:
                model.load_state_dict(state)

    loader = threading.Thread(target=loading)
    loader.start()
    try:
        answers = [model.predict_proba(X) for _ in range(300)]
    finally:
        stop.set()
        loader.join(timeout=60)
    mixed = [a for a in answers if not any(np.array_equal(a, want) for want in wants)]
    assert mixed == [], f"{len(mixed)} of {len(answers)} answers mixed two sets of weights"
