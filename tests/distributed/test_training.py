"""Two processes train one model as one process would: the same gradient, the same weights,
the same records, on every process; and they refuse to start when they disagree."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mlp import MLP
from mlp.distributed import DistributedError
from mlp.errors import InvalidArgument
from mlp.optim import SGD
from mlp.schedules import StepDecay
from mlp.stopping import EarlyStopping
from tests.mlp.problems import blobs

FLOAT64 = {"dtype": "float64", "seed": 3}


def weights_of(model):
    return model.backend.to_numpy(model.params).copy()


@pytest.mark.parametrize("rows", [101, 256, 1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("loss", ["cross_entropy", "squared_error"])
def test_summed_gradient_is_the_whole_batch_gradient(world, rows, weighted, loss):
    X, y = blobs(rows, classes=3, features=7, seed=1)
    w = np.random.default_rng(2).uniform(0.1, 3.0, rows) if weighted else None
    outputs = 3 if loss == "cross_entropy" else 2
    if loss == "squared_error":
        y = np.stack([X[:, 0], X[:, 1] * X[:, 2]], axis=1)
    model = MLP([7, 9, outputs], loss=loss, **FLOAT64)
    together, grads = model.loss_and_gradients(X, y, w, communicator=world)
    alone, expected = model.loss_and_gradients(X, y, w)
    assert together == pytest.approx(alone, rel=1e-12, abs=1e-14)
    for key in expected:
        np.testing.assert_allclose(grads[key], expected[key], rtol=1e-12, atol=1e-14)
    assert np.any(expected["0.weight"] != 0)  # a gradient worth comparing


@pytest.mark.parametrize(
    ("rows", "options"),
    [
        (250, {"batch_size": 64}),  # a short last batch, split
        (129, {"batch_size": 128}),  # a last batch of one row: rank 1 has none of it
        (300, {"batch_size": 50, "validation_split": 0.2, "optimizer": "momentum"}),
        (200, {"batch_size": 33, "sample_weight": "uniform", "lr_schedule": "cosine"}),
    ],
)
def test_two_processes_train_as_one(world, rows, options):
    X, y = blobs(rows, classes=4, features=6, seed=4)
    if options.get("sample_weight") == "uniform":
        options = {**options, "sample_weight": np.random.default_rng(5).uniform(0.2, 2, rows)}
    together = MLP([6, 12, 8, 4], **FLOAT64)
    history = together.fit(X, y, epochs=2, communicator=world, **options)
    alone = MLP([6, 12, 8, 4], **FLOAT64)
    expected = alone.fit(X, y, epochs=2, **options)
    np.testing.assert_allclose(weights_of(together), weights_of(alone), rtol=0, atol=1e-9)
    for mine, theirs in zip(history, expected, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in theirs:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-9)
    records = world.comm.allgather(
        [{k: v for k, v in r.items() if k != "seconds"} for r in history]
    )
    assert records[0] == records[1]  # every process has the same records, but for the clock
    assert together.optimizer.steps == alone.optimizer.steps


def test_the_processes_start_from_rank_0s_weights(world):
    X, y = blobs(120, classes=3, features=5, seed=6)
    model = MLP([5, 8, 3], **FLOAT64)
    reference = MLP([5, 8, 3], **FLOAT64)
    if world.rank == 1:  # the same configuration, other weights: rank 0's are taken
        model.params[...] += 0.5
    model.fit(X, y, epochs=1, batch_size=40, communicator=world, optimizer=SGD(lr=0.1))
    reference.fit(X, y, epochs=1, batch_size=40, optimizer=SGD(lr=0.1))
    np.testing.assert_allclose(weights_of(model), weights_of(reference), rtol=0, atol=1e-12)


def test_dropout_draws_its_own_masks_and_the_replicas_agree(world):
    X, y = blobs(200, classes=3, features=5, seed=7)
    model = MLP([5, 16, 3], dropout=0.5, seed=1)
    model.fit(X, y, epochs=2, batch_size=32, communicator=world)
    gathered = world.comm.allgather(weights_of(model))
    np.testing.assert_array_equal(gathered[0], gathered[1])


def test_evaluation_is_shared_and_the_same_everywhere(world):
    X, y = blobs(333, classes=3, features=5, seed=8)
    model = MLP([5, 8, 3], **FLOAT64)
    weights = np.linspace(0.5, 1.5, 333)
    shared = model.evaluate(X, y, weights, communicator=world)
    assert shared == pytest.approx(model.evaluate(X, y, weights), rel=1e-12)


def meddled(X, y, how):
    """Rank 1's data, changed ``how`` (None: not at all)."""
    X, y = X.copy(), y.copy()
    if how == "changed":
        X[50, 2] += 1e-3
    elif how == "columns":
        X[:, [0, 1]] = X[:, [1, 0]]
    elif how == "balanced":
        X[50, 0] += 0.5
        X[50, 1] -= 0.5
    elif how == "labels":  # +1, -2, +1 in a row: the sum, and the sum weighted by place, kept
        k = next(k for k in range(len(y) - 2) if y[k] < 2 and y[k + 1] == 2 and y[k + 2] < 2)
        y[k : k + 3] += np.array([1, -2, 1])
    return X, y


@pytest.mark.parametrize(
    ("rank_1", "named"),
    [
        ({"batch_size": 64}, "batch_size"),
        ({"batch_size": 1}, "batch_size"),  # below the world on one: the other waited for ever
        ({"epochs": 3}, "epochs"),
        ({"seed": 9}, "seed"),
        ({"data": "changed"}, "the training data's inputs"),
        ({"data": "columns"}, "the training data's inputs"),  # each row's sum kept
        ({"data": "balanced"}, "the training data's inputs"),
        ({"data": "labels"}, "the training data's targets"),
        ({"optimizer": "sgd"}, "the optimizer's name"),
        ({"model_seed": 5}, "the model's seed"),
        ({"lr_schedule": StepDecay(step=5)}, "the lr schedule"),
        ({"early_stopping": EarlyStopping(restore_best_weights=False)}, "early stopping"),
        ({"seed": 9, "epochs": 3, "batch_size": 64}, "batch_size"),  # the first, on both
    ],
)
def test_processes_that_disagree_are_refused_at_the_start(world, rank_1, named):
    X, y = blobs(100, classes=3, features=5, seed=9)
    options = {
        "batch_size": 32,
        "epochs": 1,
        "seed": 0,
        "optimizer": "adam",
        "lr_schedule": StepDecay(step=1),
        "early_stopping": EarlyStopping(),
        "validation_split": 0.2,
    }
    if world.rank == 1:
        options.update({k: v for k, v in rank_1.items() if k not in ("data", "model_seed")})
        X, y = meddled(X, y, rank_1.get("data"))
    seed = rank_1.get("model_seed", FLOAT64["seed"]) if world.rank == 1 else FLOAT64["seed"]
    model = MLP([5, 8, 3], **{**FLOAT64, "seed": seed})
    before = weights_of(model)
    with pytest.raises(DistributedError, match=f"disagree on {named}:"):
        model.fit(X, y, communicator=world, **options)
    np.testing.assert_array_equal(weights_of(model), before)  # refused before it changed
    assert model.epochs_trained == 0


def test_a_batch_smaller_than_the_world_is_refused(world):
    X, y = blobs(10, classes=2, features=3)
    with pytest.raises(InvalidArgument, match="at least 2"):
        MLP([3, 2]).fit(X, y, batch_size=1, communicator=world)


@pytest.mark.parametrize("epoch", [1, 2])  # 2: the last, after which no epoch trains
def test_a_model_changed_on_one_process_alone_is_caught(world, epoch):
    X, y = blobs(90, classes=3, features=5, seed=10)
    model = MLP([5, 8, 3], **FLOAT64)

    def meddle(record):
        if world.rank == 1 and record["epoch"] == epoch:
            model.params[0] += 1.0

    with pytest.raises(DistributedError, match="differ from rank 0"):
        model.fit(X, y, epochs=2, batch_size=30, communicator=world, callback=meddle)


@pytest.mark.parametrize("how", ["half", "rows", "weights"])
def test_evaluation_on_other_data_or_weights_is_refused(world, how):
    """Each process measures its share of the rows it holds: shares of different data
    summed to neither's answer (half a test set on each measured neither half nor whole)."""
    X, y = blobs(300, classes=3, features=5, seed=12)
    model = MLP([5, 8, 3], **FLOAT64)
    if how == "half":
        X, y = (X[:150], y[:150]) if world.rank == 0 else (X[150:], y[150:])
    elif how == "rows" and world.rank == 1:
        X, y = X[:-1], y[:-1]
    elif how == "weights" and world.rank == 1:
        model.params[0] += 1.0
    named = "the model's weights" if how == "weights" else "the data's"
    with pytest.raises(DistributedError, match=f"disagree on {named}"):
        model.evaluate(X, y, communicator=world)
    with pytest.raises(DistributedError, match=f"disagree on {named}"):
        model.loss_and_gradients(X, y, communicator=world)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"early_stopping": True},
        {"solver": "sgd", "learning_rate": "invscaling", "learning_rate_init": 0.5},
        {"solver": "sgd", "learning_rate": "adaptive", "n_iter_no_change": 1, "tol": 10.0},
    ],
)
def test_a_scikit_learn_estimator_fits_on_two_processes_as_on_one(world, settings):
    pytest.importorskip("sklearn")
    from mlp.sklearn import MLPClassifier

    X, y = blobs(240, classes=3, features=5, seed=11)
    options = {"hidden_layer_sizes": (8,), "max_iter": 3, "batch_size": 48, "random_state": 0,
               "n_iter_no_change": 50, "dtype": "float64", **settings}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # three epochs do not converge
        together = MLPClassifier(**options).fit(X, y, communicator=world)
        alone = MLPClassifier(**options).fit(X, y)
    np.testing.assert_allclose(
        together.predict_proba(X), alone.predict_proba(X), rtol=1e-9, atol=1e-12
    )
    assert together.loss_curve_ == pytest.approx(alone.loss_curve_, rel=1e-10)
    assert together.model_.optimizer.lr == pytest.approx(alone.model_.optimizer.lr, rel=1e-12)
    if "learning_rate" in settings:  # the rate changed along the way
        assert alone.model_.optimizer.lr < alone.learning_rate_init
