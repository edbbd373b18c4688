"""Learning-rate schedules: each rate, and fit setting it on the optimizer per epoch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlp import MLP
from mlp.optim import SGD, Adam
from mlp.schedules import CosineDecay, ReduceOnPlateau, StepDecay, make_schedule
from tests.mlp.problems import blobs


def rates(schedule, epochs, lr=0.1, history=None):
    schedule.start(lr, epochs)
    out = []
    for epoch in range(epochs):
        lr = schedule.rate(epoch, lr, history[:epoch] if history else [])
        out.append(lr)
        if history and epoch < len(history):
            schedule.observe(history[epoch])
    return out


def test_step_decay():
    assert rates(StepDecay(step=2, factor=0.5), 5) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_cosine_decay_goes_from_the_rate_to_its_minimum():
    got = rates(CosineDecay(minimum=0.01), 4)
    want = [0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert got == pytest.approx(want)
    assert rates(CosineDecay(epochs=2), 4) == pytest.approx([0.1, 0.05, 0.0, 0.0])


def test_reduce_on_plateau_waits_its_patience():
    history = [{"loss": v} for v in (1.0, 0.5, 0.5, 0.5, 0.5, 0.5)]
    got = rates(ReduceOnPlateau(factor=0.5, patience=2), 7, history=history)
    # epochs 3 and 4 see no improvement after 0.5: the rate halves at epoch 5
    assert got == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025])


def test_reduce_on_plateau_watches_an_accuracy_rise():
    history = [{"accuracy": v} for v in (0.5, 0.6, 0.7, 0.8)]
    assert rates(ReduceOnPlateau(patience=1, monitor="accuracy"), 4, history=history) == (
        pytest.approx([0.1] * 4)
    )


def test_reduce_on_plateau_counts_across_one_epoch_fits():
    """Each fit's last epoch counts: one-epoch fits (partial_fit's) lower the rate too."""
    X, y = blobs(100)
    model, schedule = MLP([10, 8, 4]), ReduceOnPlateau(factor=0.5, patience=2, min_delta=10.0)
    model.fit(X, y, epochs=1, optimizer=Adam(lr=0.01), lr_schedule=schedule)
    rates = [model.fit(X, y, epochs=1, lr_schedule=schedule)[0]["lr"] for _ in range(5)]
    # after the first, no epoch improves by 10: the rate halves after every second one
    assert rates == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])


def test_reduce_on_plateau_resumes_from_the_records():
    """Judged again: a fall the last epoch asked for still comes, from the rate it ran at;
    one an earlier epoch asked for has been taken."""
    history = [{"epoch": e, "loss": 1.0, "lr": 0.1} for e in (1, 2, 3)]
    for records, want in (
        (history, 0.05),
        ([*history, {"epoch": 4, "loss": 1.0, "lr": 0.05}], 0.05),
    ):
        schedule = ReduceOnPlateau(factor=0.5, patience=2)
        schedule.start(0.1, 10)  # a resumed optimizer starts from the run's first rate
        schedule.resume(records)
        assert schedule.rate(len(records), 0.1, []) == pytest.approx(want)
    # the last epochs ran without a schedule, so without a rate in their records: ``last``
    unscheduled = [*history, {"epoch": 4, "loss": 0.5}]
    schedule = ReduceOnPlateau(factor=0.5, patience=2)
    schedule.resume(unscheduled, last=0.02)
    assert schedule.rate(4, 0.1, []) == pytest.approx(0.02)


def test_fit_sets_the_rate_each_epoch_and_records_it():
    X, y = blobs(100)
    model = MLP([10, 8, 4])
    optimizer = Adam(lr=0.01)
    history = model.fit(X, y, epochs=3, optimizer=optimizer, lr_schedule=StepDecay(1, 0.5))
    assert [r["lr"] for r in history] == pytest.approx([0.01, 0.005, 0.0025])
    assert optimizer.lr == pytest.approx(0.0025)
    calls = []
    model.fit(X, y, epochs=2, lr_schedule=lambda epoch, lr: calls.append(epoch) or 1e-3)
    assert calls == [3, 4] and model.optimizer.lr == 1e-3  # epochs counted over every fit


def test_a_recorded_step_takes_each_new_rate(device):
    """The GPU replays a recorded step whose rate is frozen in it: a new rate records it
    again, so the fit follows the CPU's (and the op-by-op one's) to float32 rounding."""
    X, y = blobs(256)
    runs = {}
    for where in ("cpu", device):
        model = MLP([10, 16, 4], seed=2, device=where)
        runs[where] = model.fit(X, y, epochs=4, batch_size=32, optimizer=Adam(lr=0.02),
                                lr_schedule=StepDecay(step=1, factor=0.25))  # fmt: skip
        runs[where] = ([r["loss"] for r in runs[where]], model.state_dict())
    np.testing.assert_allclose(runs[device][0], runs["cpu"][0], rtol=1e-4)
    for key, value in runs["cpu"][1].items():
        np.testing.assert_allclose(runs[device][1][key], value, rtol=1e-3, atol=1e-5)


def test_a_schedule_object_goes_on_across_fits():
    X, y = blobs(100)
    model, schedule = MLP([10, 8, 4]), StepDecay(step=2, factor=0.5)
    first = model.fit(X, y, epochs=2, optimizer=Adam(lr=0.01), lr_schedule=schedule)
    second = model.fit(X, y, epochs=2, lr_schedule=schedule)
    assert [r["lr"] for r in first + second] == pytest.approx([0.01, 0.01, 0.005, 0.005])


@pytest.mark.parametrize("name", ["step", "plateau"])
def test_a_schedule_by_name_goes_on_across_fits_and_pickles(name):
    """Two fits of a name train as one, bit for bit (the rate was lowered twice, from the
    lowered rate; a plateau's count started again), and so does a pickled model's next."""
    import pickle

    X, y = blobs(100)
    y[::3] = (y[::3] + 1) % 4  # noisy labels: the loss levels off, and a plateau lowers the rate
    one, two = MLP([10, 8, 4], seed=1), MLP([10, 8, 4], seed=1)
    options = {"batch_size": 50, "lr_schedule": name}
    whole = one.fit(X, y, epochs=30, optimizer=Adam(lr=0.5), **options)
    parts = two.fit(X, y, epochs=15, optimizer=Adam(lr=0.5), **options)
    parts += pickle.loads(pickle.dumps(two)).fit(X, y, epochs=15, **options)
    assert [r["lr"] for r in parts] == [r["lr"] for r in whole]
    assert len({r["lr"] for r in whole}) > 1  # it fell (step: at 10 and 20; plateau: at 20)
    assert [r["loss"] for r in parts] == [r["loss"] for r in whole]


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("linear", ValueError, "unknown learning-rate schedule 'linear'"),
        (3, TypeError, "lr_schedule must be a name"),
    ],
)
def test_unknown_schedules_are_refused(spec, error, message):
    with pytest.raises(error, match=message):
        make_schedule(spec)


def test_a_plateau_monitor_that_is_not_a_name_is_refused():
    """At once, as early stopping's is, not after the fit's first epoch."""
    with pytest.raises(TypeError, match="monitor must be the name of a metric"):
        ReduceOnPlateau(monitor=["val_loss"])


def test_a_function_giving_a_bad_rate_is_named():
    X, y = blobs(20)
    with pytest.raises(ValueError, match="the schedule's learning rate must be positive"):
        MLP([10, 4]).fit(X, y, epochs=1, lr_schedule=lambda epoch, lr: -1.0)


def test_a_cosine_started_on_a_trained_model_runs_its_whole_curve():
    """After 10 epochs, a cosine over the next 5 ran at its minimum (0) throughout, its
    curve counted from epoch 0; a resume at ``initial_epoch`` still counts from 0."""
    X, y = blobs(64, classes=3, features=4, seed=1)
    model = MLP([4, 8, 3], seed=0)
    model.fit(X, y, epochs=10, optimizer=SGD(lr=0.1))
    history = model.fit(X, y, epochs=5, lr_schedule=CosineDecay(epochs=5))
    want = [0.1 * 0.5 * (1 + math.cos(math.pi * e / 5)) for e in range(5)]
    assert [r["lr"] for r in history] == pytest.approx(want)
    named = MLP([4, 8, 3], seed=0)
    named.fit(X, y, epochs=10, optimizer=SGD(lr=0.1))
    assert [r["lr"] for r in named.fit(X, y, epochs=5, lr_schedule="cosine")] == pytest.approx(want)
    resumed = MLP([4, 8, 3], seed=0)
    resumed.fit(X, y, epochs=2, optimizer=SGD(lr=0.1))
    records = resumed.fit(X, y, epochs=4, initial_epoch=2, lr_schedule=CosineDecay())
    assert [r["lr"] for r in records] == pytest.approx(
        [0.1 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in (2, 3)]
    )


def test_a_step_decay_started_on_a_trained_model_counts_from_its_first_epoch():
    """After 25 epochs, steps of 10 ran the next fit at a hundredth of the rate from its
    first epoch (counted from epoch 0); they count from the fit's first epoch, as a
    cosine does, across the fits it goes on in; a resume at ``initial_epoch`` from 0."""
    X, y = blobs(64, classes=3, features=4, seed=1)
    model = MLP([4, 8, 3], seed=0)
    model.fit(X, y, epochs=25, optimizer=SGD(lr=0.1))
    schedule = StepDecay(step=3)
    assert [r["lr"] for r in model.fit(X, y, epochs=4, lr_schedule=schedule)] == pytest.approx(
        [0.1, 0.1, 0.1, 0.01]
    )
    assert [r["lr"] for r in model.fit(X, y, epochs=3, lr_schedule=schedule)] == pytest.approx(
        [0.01, 0.01, 0.001]
    )
    resumed = MLP([4, 8, 3], seed=0)
    resumed.fit(X, y, epochs=2, optimizer=SGD(lr=0.1))
    records = resumed.fit(X, y, epochs=4, initial_epoch=2, lr_schedule=StepDecay(step=3))
    assert [r["lr"] for r in records] == pytest.approx([0.1, 0.01])


def test_a_plateau_watches_a_metric_the_callback_adds():
    """As early stopping does: ``val_score`` added by the callback was not there yet when
    the plateau looked for it, and the fit failed after its first epoch."""
    X, y = blobs(64, classes=3, features=4, seed=1)
    model = MLP([4, 8, 3], seed=0)
    scores = iter([0.5, 0.4, 0.4, 0.4, 0.4])

    def score(record):
        record["val_score"] = next(scores)  # falls, then stays: a plateau of a loss-like value

    schedule = ReduceOnPlateau(factor=0.5, patience=2, monitor="val_score")
    history = model.fit(X, y, epochs=5, optimizer=SGD(lr=0.1), lr_schedule=schedule,
                        callback=score)  # fmt: skip
    assert [r["lr"] for r in history] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05])
