"""The model's losses: binary (one sigmoid output), regression (squared error, one output or
many) and sample weights, their gradients against float64 finite differences, and what each
loss predicts."""

from __future__ import annotations

import numpy as np
import pytest

from mlp import MLP
from tests.mlp.problems import numeric_gradients

# (outputs, loss, a target maker)
PROBLEMS = {
    "binary": (1, "cross_entropy", lambda rng, n: rng.integers(0, 2, n)),
    "multiclass": (3, "cross_entropy", lambda rng, n: rng.integers(0, 3, n)),
    "regression": (1, "squared_error", lambda rng, n: rng.standard_normal(n)),
    "multi-output": (2, "squared_error", lambda rng, n: rng.standard_normal((n, 2))),
}


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("weighted", [False, True])
def test_gradients_match_finite_differences(device, problem, weighted):
    outputs, loss, targets = PROBLEMS[problem]
    rng = np.random.default_rng(3)
    model = MLP([5, 4, outputs], activation="tanh", device=device, dtype="float64", loss=loss)
    state = {k: v + rng.normal(0, 0.3, v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    X, y = rng.standard_normal((9, 5)), targets(rng, 9)
    weights = rng.uniform(0, 2, 9) if weighted else None
    value, grads = model.loss_and_gradients(X, y, sample_weight=weights)
    assert value == pytest.approx(model.evaluate(X, y, sample_weight=weights)["loss"], rel=1e-12)
    numeric = numeric_gradients(model, state, X, y, weights)
    for key in state:
        assert np.abs(grads[key]).max() > 1e-4, f"{key}: gradient is all zeros"
        np.testing.assert_allclose(grads[key], numeric[key], rtol=1e-5, atol=1e-8, err_msg=key)


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_weights_are_repeated_rows(problem):
    """A whole-number weight counts its row that many times: the loss, the accuracy and the
    gradients of weights (2, 0, 1, ...) equal those of the rows so repeated."""
    outputs, loss, targets = PROBLEMS[problem]
    rng = np.random.default_rng(4)
    model = MLP([5, 4, outputs], dtype="float64", loss=loss, seed=2)
    X, y = rng.standard_normal((12, 5)), targets(rng, 12)
    weights = rng.integers(0, 3, 12).astype(float)
    weights[0] = 1
    repeated = np.repeat(np.arange(12), weights.astype(int))
    weighted = model.evaluate(X, y, sample_weight=weights)
    plain = model.evaluate(X[repeated], y[repeated])
    assert weighted.keys() == plain.keys()
    for key in plain:
        assert weighted[key] == pytest.approx(plain[key], rel=1e-12)
    _, grads = model.loss_and_gradients(X, y, sample_weight=weights)
    _, grads_repeated = model.loss_and_gradients(X[repeated], y[repeated])
    for key in grads:
        np.testing.assert_allclose(grads[key], grads_repeated[key], rtol=1e-10, atol=1e-14)


def test_regression_learns_and_predicts_values():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 3)).astype(np.float32)
    Y = np.stack([X[:, 0] - 2 * X[:, 1], X[:, 2] ** 2], axis=1)
    model = MLP([3, 32, 2], loss="squared_error", seed=1)
    history = model.fit(X, Y, epochs=40, batch_size=32)
    assert "accuracy" not in history[-1]
    assert history[-1]["loss"] < 0.05 * history[0]["loss"]
    predicted = model.predict(X)
    assert predicted.shape == (400, 2) and predicted.dtype == np.float32
    assert np.mean((predicted - Y) ** 2) < 0.02
    single = MLP([3, 8, 1], loss="squared_error").fit(X, Y[:, 0], epochs=1)
    assert single[0]["loss"] > 0
    assert MLP([3, 8, 1], loss="squared_error").predict(X).shape == (400, 1)
    with pytest.raises(ValueError, match="no class probabilities"):
        model.predict_proba(X)


@pytest.mark.parametrize(
    ("loss", "outputs", "y", "message"),
    [
        ("squared_error", 2, np.zeros(10), r"expected 10 targets of 2 value\(s\) each"),
        ("squared_error", 1, np.full(10, np.inf), "targets hold NaN or infinity"),
        ("squared_error", 1, np.full(10, 1e300), "up to 1e\\+300, beyond float32"),
        ("squared_error", 1, np.array(["a"] * 10), "targets must be numbers"),
        ("cross_entropy", 1, np.arange(10), r"labels must be in \[0, 1\]"),
        ("hinge", 1, np.zeros(10), "unknown loss 'hinge'"),
    ],
)
def test_wrong_targets_or_loss_are_refused(loss, outputs, y, message):
    X = np.zeros((10, 3), np.float32)
    with pytest.raises(ValueError, match=message):
        MLP([3, outputs], loss=loss).fit(X, y, epochs=1)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (np.ones(9), "expected 10 sample weights"),
        (np.full(10, -1.0), "none negative"),
        (np.zeros(10), "not all zero"),
        (np.full(10, np.nan), "must be finite"),
        (["a"] * 10, "sample weights must be numbers"),
        (["1.5"] * 10, "sample weights must be numbers, got dtype <U3"),  # text, as inputs
        (np.full(10, 1 + 2j), "sample weights must be numbers, got dtype complex128"),
        (np.arange(1, 11).astype("datetime64[s]"), "must be numbers, got dtype datetime64"),
        ([None] * 10, "sample weights must be numbers, got dtype object"),
        (np.full(10, 1e39), "summing to 1e\\+40 overflow float32: scale them down"),
        (np.full(10, 5e37), "summing to 5e\\+38 overflow float32"),  # each fits, not the sum
        (np.full(10, 1e-46), "all zero as float32"),
        (np.r_[np.ones(8), 0, 0], r"held-out sample weights are all zero \(validation_split"),
        (np.r_[0, 0, 0, 0, 0, 0, 0, 0, 1, 1], "the training sample weights are all zero"),
    ],
)
def test_wrong_sample_weights_are_refused(weights, message):
    """Before the model changes, each also as float32 holds it (which divides by the sum)."""
    model = MLP([3, 2])
    before = model.state_dict()
    with pytest.raises(ValueError, match=message):
        model.fit(
            np.zeros((10, 3)), np.zeros(10, int), epochs=1, sample_weight=weights,
            validation_split=0.2,
        )  # fmt: skip
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_labels_may_come_as_a_column_or_as_booleans():
    """Keras' (n, 1) column of labels and a binary problem's True/False were refused."""
    X = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    labels = np.array([0, 1] * 5)
    want = MLP([3, 2], seed=0).fit(X, labels, epochs=1)
    for y in (labels.reshape(-1, 1), labels.astype(bool)):
        assert MLP([3, 2], seed=0).fit(X, y, epochs=1)[0]["loss"] == want[0]["loss"]
    with pytest.raises(ValueError, match=r"expected 10 labels in a 1-D array, got shape \(10, 2\)"):
        MLP([3, 2]).fit(X, np.zeros((10, 2), int), epochs=1)
