"""pickle, copy.deepcopy and copy.copy of a model: with or without an optimizer, trained or not, its
next fit as it would have been; a model pickled on a GPU loads on the CPU where there is none."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from mlp import MLP, SGD
from tests.mlp.problems import blobs


@pytest.mark.parametrize(
    "copier", [lambda m: pickle.loads(pickle.dumps(m)), copy.deepcopy, copy.copy]
)
@pytest.mark.parametrize("trained", [False, True])
def test_a_copy_predicts_and_trains_on_as_the_original(device, copier, trained):
    X, y = blobs(120)
    model = MLP([10, 8, 4], device=device, dropout=0.1, seed=3)
    if trained:
        model.fit(X, y, epochs=2, batch_size=16, optimizer=SGD(lr=0.1, momentum=0.9))
    twin = copier(model)
    assert twin.device == model.device and twin.epochs_trained == model.epochs_trained
    assert twin.config() == model.config()
    np.testing.assert_array_equal(twin.predict_proba(X), model.predict_proba(X))
    if trained:
        assert twin.optimizer is not model.optimizer and twin.optimizer.steps == 16
        assert twin.optimizer.hyperparameters() == model.optimizer.hyperparameters()
    else:
        assert twin.optimizer is None
    later = [m.fit(X, y, epochs=1, batch_size=16) for m in (model, twin)]
    assert later[0][0]["loss"] == later[1][0]["loss"] and later[1][0]["epoch"] == (
        3 if trained else 1
    )
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(twin.state_dict()[key], value)


def test_a_regression_model_pickles():
    X = np.random.default_rng(0).standard_normal((50, 3))
    model = MLP([3, 4, 2], loss="squared_error")
    model.fit(X, X[:, :2], epochs=1)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).predict(X), model.predict(X))


def test_a_model_pickled_on_a_gpu_loads_on_the_cpu_without_one(monkeypatch):
    """The pickle names its device; where that device is missing the model comes up on the
    CPU, with a warning that says so (here: a pickle that names cuda:0)."""
    import backends

    X, y = blobs(40)
    model = MLP([10, 4])
    model.fit(X, y, epochs=1)
    state = pickle.loads(pickle.dumps(model.__getstate__()))  # as pickle hands it over
    state["device"] = "cuda:0"

    def unavailable(spec="cpu", precision=None):
        if isinstance(spec, str) and spec.startswith("cuda"):
            raise backends.BackendUnavailable("cuda unavailable: no GPU here")
        return backends.get_backend(spec, precision=precision)

    monkeypatch.setattr("mlp.model.get_backend", unavailable)
    loaded = MLP.__new__(MLP)
    with pytest.warns(RuntimeWarning, match="pickled on cuda:0, which is not available"):
        loaded.__setstate__(state)
    assert loaded.device == "cpu" and loaded.optimizer.steps == model.optimizer.steps
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
