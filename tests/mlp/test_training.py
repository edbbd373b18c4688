"""``fit``: deterministic, learning, resumable bit for bit at ``initial_epoch``; its mistakes
refused before the model changes; divergence stopped; bf16 tracking float32."""

from __future__ import annotations

import numpy as np
import pytest

from mlp import MLP, SGD, Adam, AdamW, Dropout
from mlp.data.synthetic import make_images
from mlp.errors import WrongType
from mlp.schedules import ReduceOnPlateau
from mlp.stopping import EarlyStopping
from tests.mlp.problems import blobs, small_problem


# ---------------------------------------------------------------------- training
def _fit_losses(problem, seed, **kwargs):
    X, y, _, _ = problem
    model = MLP([10, 16, 4], seed=seed, **kwargs)
    history = model.fit(X, y, epochs=3, batch_size=32, optimizer=Adam(lr=1e-2))
    return [r["loss"] for r in history], model.state_dict()


# ---------------------------------------------------------------------- a library user's mistakes
def test_fit_is_deterministic(problem):
    losses_a, state_a = _fit_losses(problem, seed=7)
    losses_b, state_b = _fit_losses(problem, seed=7)
    assert losses_a == losses_b
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key])
    losses_c, _ = _fit_losses(problem, seed=8)
    assert losses_c != losses_a


def test_fit_is_deterministic_with_dropout(problem):
    losses_a, state_a = _fit_losses(problem, seed=7, dropout=0.3)
    losses_b, state_b = _fit_losses(problem, seed=7, dropout=0.3)
    assert losses_a == losses_b
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key])


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: Adam(lr=1e-2),
        lambda: SGD(lr=0.05, momentum=0.9, nesterov=True),
        lambda: AdamW(lr=1e-2),
        lambda: SGD(lr=0.1),
    ],
    ids=["adam", "nesterov", "adamw", "sgd"],
)
def test_fit_learns_a_small_problem(device, problem, make_optimizer):
    X, y, X_test, y_test = problem
    optimizer = make_optimizer()
    model = MLP([10, 32, 4], device=device, seed=0)
    before = model.evaluate(X_test, y_test)
    history = model.fit(
        X, y, epochs=8, batch_size=32, optimizer=optimizer, validation_data=(X_test, y_test)
    )
    after = model.evaluate(X_test, y_test)
    assert history[-1]["loss"] < history[0]["loss"]
    assert after["loss"] < before["loss"]
    assert after["accuracy"] > 0.9  # chance is 0.25
    assert history[-1]["val_accuracy"] == pytest.approx(after["accuracy"])
    assert history[-1]["val_loss"] == pytest.approx(after["loss"], rel=1e-6)
    assert model.optimizer is optimizer


def test_fit_history_records(problem):
    X, y, X_test, y_test = problem
    model = MLP([10, 8, 4])
    seen, batches = [], []
    history = model.fit(
        X,
        y,
        epochs=3,
        batch_size=64,
        validation_data=(X_test, y_test),
        callback=seen.append,
        on_batch=batches.append,
    )
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert seen == history
    assert batches == list(range(7)) * 3  # ceil(400 / 64) batches per epoch
    for record in history:
        assert {"epoch", "loss", "accuracy", "seconds", "val_loss", "val_accuracy"} <= set(record)
        for key in ("loss", "accuracy", "seconds", "val_loss", "val_accuracy"):
            assert isinstance(record[key], float), key
        assert record["loss"] > 0 and record["val_loss"] > 0 and record["seconds"] >= 0
        assert 0.0 <= record["accuracy"] <= 1.0 and 0.0 <= record["val_accuracy"] <= 1.0

    plain = MLP([10, 8, 4]).fit(X, y, epochs=1)
    assert {"epoch", "loss", "accuracy", "seconds"} <= set(plain[0])
    assert not any(k.startswith("val_") for k in plain[0])


def test_fit_accuracy_counts_correct_training_predictions(problem):
    """With lr tiny the weights barely move, so the epoch's accuracy is the initial model's."""
    X, y, _, _ = problem
    model = MLP([10, 8, 4], seed=3)
    initial = model.evaluate(X, y)
    record = model.fit(X, y, epochs=1, batch_size=50, optimizer=SGD(lr=1e-9))[0]
    assert record["accuracy"] == pytest.approx(initial["accuracy"], abs=1e-9)
    assert record["loss"] == pytest.approx(initial["loss"], rel=1e-5)


@pytest.mark.parametrize("dropout", [0.0, 0.25])
@pytest.mark.parametrize(
    "make_optimizer",
    [lambda: Adam(lr=5e-3), lambda: SGD(lr=0.05, momentum=0.9)],
    ids=["adam", "momentum"],
)
def test_resume_with_initial_epoch_is_bitwise_identical(problem, dropout, make_optimizer):
    X, y, _, _ = problem
    unbroken = MLP([10, 16, 4], seed=5, dropout=dropout)
    full = unbroken.fit(X, y, epochs=3, batch_size=32, optimizer=make_optimizer(), seed=11)

    first = MLP([10, 16, 4], seed=5, dropout=dropout)
    opt = make_optimizer()
    first.fit(X, y, epochs=2, batch_size=32, optimizer=opt, seed=11)
    weights, opt_state = first.state_dict(), opt.state_dict()

    resumed = MLP([10, 16, 4], seed=99, dropout=dropout)  # other initial weights: all loaded
    resumed.load_state_dict(weights)
    opt2 = make_optimizer()
    opt2.bind(resumed.backend, resumed.num_parameters, resumed.dtype)
    opt2.load_state_dict(opt_state)
    rest = resumed.fit(X, y, epochs=3, batch_size=32, optimizer=opt2, seed=11, initial_epoch=2)

    assert [r["epoch"] for r in rest] == [3]
    assert rest[0]["loss"] == full[2]["loss"]
    final, expected = resumed.state_dict(), unbroken.state_dict()
    for key in expected:
        np.testing.assert_array_equal(final[key], expected[key], err_msg=key)
    assert opt2.steps == unbroken.optimizer.steps == 3 * 13


@pytest.mark.parametrize("dropout", [0.0, 0.25])
@pytest.mark.parametrize("loss", ["cross_entropy", "squared_error"])
def test_fit_again_continues_bit_for_bit(problem, dropout, loss):
    """Two fit(epochs=1) train exactly as one fit(epochs=2): the model counts its epochs, so
    the second call shuffles as epoch 2 and numbers its record 2."""
    X, y, _, _ = problem
    if loss == "squared_error":
        y = np.eye(4)[y] * 3.0
    one = MLP([10, 16, 4], seed=5, dropout=dropout, loss=loss)
    whole = one.fit(X, y, epochs=2, batch_size=32, optimizer="momentum")
    two = MLP([10, 16, 4], seed=5, dropout=dropout, loss=loss)
    first = two.fit(X, y, epochs=1, batch_size=32, optimizer="momentum")
    second = two.fit(X, y, epochs=1, batch_size=32)  # the optimizer it had goes on
    assert [r["epoch"] for r in first + second] == [1, 2] and two.epochs_trained == 2
    assert [r["loss"] for r in first + second] == [r["loss"] for r in whole]
    for key, value in one.state_dict().items():
        np.testing.assert_array_equal(two.state_dict()[key], value, err_msg=key)


def test_validation_split_holds_out_the_last_rows(problem):
    """validation_split=0.25 trains on the first 300 rows and validates on the last 100, as
    validation_data with those rows would."""
    X, y, _, _ = problem
    split = MLP([10, 16, 4], seed=1).fit(X, y, epochs=2, batch_size=32, validation_split=0.25)
    data = (X[300:], y[300:])
    given = MLP([10, 16, 4], seed=1).fit(X[:300], y[:300], epochs=2, batch_size=32,
                                          validation_data=data)  # fmt: skip
    for a, b in zip(split, given, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"
        }
    with pytest.raises(ValueError, match="not both"):
        MLP([10, 4]).fit(X, y, validation_split=0.1, validation_data=data)
    with pytest.raises(ValueError, match="leaves no rows"):
        MLP([10, 4]).fit(X[:3], y[:3], validation_split=0.9)


@pytest.mark.parametrize(
    ("rows", "fraction", "held"),
    [(100, 0.07, 7), (90, 0.3, 28), (1000, 0.33, 331), (400, 0.25, 100)],
)
def test_validation_split_counts_as_keras_does(rows, fraction, held):
    """All but floor(rows * (1 - fraction)): ceil(100 * 0.07) held out 8 rows, as
    100 * 0.07 is 7.000000000000001 in floating point."""
    from mlp.training import held_out

    assert held_out(rows, fraction) == held == rows - int(rows * (1.0 - fraction))


def test_validation_data_may_carry_weights(problem):
    X, y, X_test, y_test = problem
    weights = np.where(y_test == 0, 1.0, 0.0)
    model = MLP([10, 16, 4], seed=1)
    record = model.fit(X, y, epochs=1, validation_data=(X_test, y_test, weights))[0]
    only_zeros = model.evaluate(X_test[y_test == 0], y_test[y_test == 0])
    assert record["val_loss"] == pytest.approx(only_zeros["loss"], rel=1e-6)
    assert record["val_accuracy"] == pytest.approx(only_zeros["accuracy"], rel=1e-6)


def test_sample_weight_in_fit_is_repeated_rows():
    """Full-batch SGD on rows weighted (2, 1, 0, ...) takes the steps of the rows repeated."""
    X, y = small_problem(rows=12)
    weights = np.array([2, 1, 0] * 4, dtype=float)
    repeated = np.repeat(np.arange(12), weights.astype(int))
    a = MLP([6, 5, 3], dtype="float64", seed=3)
    a.fit(X, y, epochs=5, batch_size=12, optimizer=SGD(lr=0.5), sample_weight=weights)
    b = MLP([6, 5, 3], dtype="float64", seed=3)
    b.fit(X[repeated], y[repeated], epochs=5, batch_size=12, optimizer=SGD(lr=0.5))
    for key, value in b.state_dict().items():
        np.testing.assert_allclose(a.state_dict()[key], value, rtol=1e-10, err_msg=key)


def test_verbose_shows_a_line_per_epoch(problem, capsys):
    X, y, X_test, y_test = problem
    MLP([10, 8, 4]).fit(X, y, epochs=2, validation_data=(X_test, y_test), verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch   2/2  loss ")
    assert "val accuracy" in lines[1] and lines[1].endswith(" s")
    MLP([10, 8, 4]).fit(X, y, epochs=1)
    assert capsys.readouterr().out == ""  # silent unless asked


def test_non_finite_validation_data():
    X = np.ones((4, 6))
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        MLP([6, 5, 3]).fit(X, np.zeros(4, dtype=int), validation_data=(bad, np.zeros(4, int)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": 0},
        {"epochs": -1},
        {"epochs": 2.5},
        {"epochs": "3"},
        {"epochs": True},
        {"epochs": None},
        {"batch_size": 0},
        {"batch_size": -5},
        {"batch_size": 1.5},
        {"batch_size": "32"},
        {"initial_epoch": 3, "epochs": 2},
        {"initial_epoch": -1},
    ],
)
def test_bad_fit_arguments(kwargs):
    model = MLP([6, 5, 3])
    before = model.state_dict()
    with pytest.raises(ValueError):
        model.fit(np.zeros((4, 6)), np.zeros(4, dtype=int), **kwargs)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


# ---------------------------------------------------------------------- dropout
def test_dropout_only_in_training(device, problem):
    X, y, X_test, _ = problem
    with_dropout = MLP([10, 32, 32, 4], dropout=0.5, device=device, seed=0)
    without = MLP([10, 32, 32, 4], dropout=0.0, device=device, seed=0)
    assert any(isinstance(layer, Dropout) for layer in with_dropout.layers)
    # evaluation is deterministic and identical to the same weights without dropout
    first = with_dropout.predict_proba(X_test)
    np.testing.assert_array_equal(with_dropout.predict_proba(X_test), first)
    np.testing.assert_array_equal(without.predict_proba(X_test), first)
    # the GPU sums the loss with one atomic add per warp, in no fixed order: the last bit may vary
    assert with_dropout.evaluate(X, y) == pytest.approx(without.evaluate(X, y), rel=1e-12)
    loss_d, grads_d = with_dropout.loss_and_gradients(X, y)
    loss_n, grads_n = without.loss_and_gradients(X, y)
    assert loss_d == pytest.approx(loss_n, rel=1e-12)
    for key in grads_n:
        np.testing.assert_array_equal(grads_d[key], grads_n[key])
    # in training the units are dropped: the same step from the same weights goes elsewhere
    record_d = with_dropout.fit(X, y, epochs=1, batch_size=400, optimizer=SGD(lr=1e-9))[0]
    record_n = without.fit(X, y, epochs=1, batch_size=400, optimizer=SGD(lr=1e-9))[0]
    assert record_d["loss"] != pytest.approx(record_n["loss"], rel=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"initial_epoch": 0.5}, ValueError, "initial_epoch must be a non-negative integer"),
        ({"initial_epoch": True}, ValueError, "initial_epoch must be a non-negative integer"),
        ({"seed": -1}, ValueError, "seed must be a non-negative integer"),
        ({"seed": 1.5}, ValueError, "seed must be a non-negative integer"),
        ({"optimizer": "adagrad"}, ValueError, "unknown optimizer 'adagrad'"),
        ({"optimizer": Adam}, TypeError, "optimizer must be a name such as 'adam' or an"),
        ({"validation_data": ()}, ValueError, r"validation_data must be a pair"),
        ({"shuffle": "no"}, WrongType, "shuffle must be True or False"),
        ({"callback": 5}, WrongType, "callback must be a function"),
        ({"X": np.zeros((20, 5))}, ValueError, r"expected inputs of shape \(n, 6\)"),
        # a monitor no record holds (no callback to add it): refused before an epoch
        (
            {"early_stopping": EarlyStopping(monitor="val_loss")},
            ValueError,
            "'val_loss' is watched, but fit records only accuracy, epoch, loss, seconds",
        ),
        ({"lr_schedule": ReduceOnPlateau(monitor="los")}, ValueError, "'los' is watched"),
    ],
)
def test_a_fit_that_fails_its_checks_changes_nothing(kwargs, error, message):
    """Checked before any work: weights, the optimizer and its state stay as they were."""
    X, y = small_problem()
    model = MLP([6, 5, 3], seed=1)
    first = Adam()
    model.fit(X, y, epochs=1, batch_size=8, optimizer=first)
    before, moments = model.state_dict(), first.state_dict()
    call = {"X": X, "y": y, "epochs": 2, "batch_size": 8, "optimizer": SGD(lr=0.1), **kwargs}
    with pytest.raises(error, match=message):
        model.fit(**call)
    assert model.optimizer is first
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    for key, value in first.state_dict().items():
        np.testing.assert_array_equal(value, moments[key])


def test_one_optimizer_cannot_train_two_models():
    X, y = small_problem()
    a, b = MLP([6, 5, 3], seed=1), MLP([6, 4, 3], seed=2)
    optimizer = Adam()
    a.fit(X, y, epochs=1, batch_size=8, optimizer=optimizer)
    steps = optimizer.steps
    with pytest.raises(ValueError, match="already trains another model: give each model its own"):
        b.fit(X, y, epochs=1, batch_size=8, optimizer=optimizer)
    assert optimizer.steps == steps and b.optimizer is None
    a.fit(X, y, epochs=2, initial_epoch=1, batch_size=8, optimizer=optimizer)  # its own model
    assert optimizer.steps == 2 * steps


def test_weights_that_overflow_on_the_last_step_stop_the_fit():
    """One step per epoch: the epoch's loss comes from the weights before the update, so
    only a look at the weights catches an update that overflowed them."""
    from mlp import TrainingDiverged

    X, y = small_problem()
    model = MLP([6, 5, 3], seed=1)
    with pytest.raises(TrainingDiverged, match="a weight became NaN or infinite in epoch 1"):
        model.fit(X * 1e10, y, epochs=3, batch_size=32, optimizer=SGD(lr=1e30))


def test_bf16_training_tracks_float32(backend_kind, make_backend):
    images, labels = make_images(1200, seed=7)
    X = images.reshape(len(images), -1)
    results = {}
    for precision in ("float32", "bf16"):
        model = MLP([784, 64, 10], device=make_backend(backend_kind, precision), seed=0)
        history = model.fit(X, labels, epochs=3, batch_size=64, optimizer=Adam(lr=1e-3), seed=0)
        results[precision] = (history[-1]["loss"], model.evaluate(X, labels)["accuracy"])
    (loss32, acc32), (loss16, acc16) = results["float32"], results["bf16"]
    assert loss16 != loss32  # the rounding is in effect
    assert loss16 == pytest.approx(loss32, rel=0.05)
    assert acc16 == pytest.approx(acc32, abs=0.03)


@pytest.mark.parametrize(("name", "schedule"), [("adam", None), ("momentum", "plateau")])
def test_an_optimizer_named_again_goes_on(name, schedule):
    """fit(optimizer="adam") twice trains as one fit: the second made a fresh Adam (its
    moments and step count gone), and a plateau's lowered rate went back up."""
    X, y = blobs(90, classes=3, features=5, seed=4)
    options = {"optimizer": name, "lr_schedule": schedule, "batch_size": 30}
    once, twice = MLP([5, 8, 3], seed=1), MLP([5, 8, 3], seed=1)
    once.fit(X, y, epochs=8, **options)
    for _ in range(2):
        twice.fit(X, y, epochs=4, **options)
    assert twice.optimizer.steps == once.optimizer.steps
    np.testing.assert_array_equal(twice.backend.to_numpy(twice.params),
                                  once.backend.to_numpy(once.params))  # fmt: skip
    fresh = MLP([5, 8, 3], seed=1)
    fresh.fit(X, y, epochs=1, optimizer="adam")
    kept = fresh.optimizer
    fresh.fit(X, y, epochs=1, optimizer="sgd")  # another name: another optimizer
    assert fresh.optimizer is not kept and fresh.optimizer.made_of == "sgd"
