"""One epoch of the default model on the real Fashion-MNIST (skipped where it is not installed)."""

from __future__ import annotations

import pytest

from mlp import MLP, Adam
from mlp.data import DatasetNotFound, find_dataset, load_dataset


@pytest.fixture(scope="module")
def fashion_mnist():
    try:
        folder = find_dataset("fashion-mnist")
    except DatasetNotFound as exc:
        pytest.skip(f"Fashion-MNIST is not installed here ({exc})")
    return load_dataset("fashion-mnist", folder)


@pytest.mark.slow
def test_default_model_one_epoch_on_fashion_mnist(fashion_mnist):
    data = fashion_mnist
    assert data.X_train.shape == (60000, 784) and data.X_test.shape == (10000, 784)
    assert sorted(set(data.y_train.tolist())) == list(range(10))
    model = MLP([784, 512, 256, 10], activation="relu", device="cpu", seed=0)
    history = model.fit(
        data.X_train,
        data.y_train,
        epochs=1,
        batch_size=128,
        optimizer=Adam(lr=1e-3),
        validation_data=(data.X_test, data.y_test),
    )
    result = model.evaluate(data.X_test, data.y_test)
    assert result["accuracy"] >= 0.80, result
    assert history[0]["val_accuracy"] == pytest.approx(result["accuracy"])
    assert history[0]["accuracy"] > 0.70  # the training batches, while it learned
