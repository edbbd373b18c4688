"""Early stopping: it stops after its patience and ends with the best epoch's weights."""

from __future__ import annotations

import numpy as np
import pytest

from mlp import MLP
from mlp.errors import WrongType
from mlp.optim import SGD
from mlp.stopping import EarlyStopping
from tests.mlp.problems import blobs


def test_stops_after_patience_and_restores_the_best_weights(device):
    """On a GPU the step is recorded (a CUDA graph): the best weights are still the ones of
    the best epoch."""
    X, y = blobs(200, seed=1)
    X_val, y_val = blobs(100, seed=2, spread=6.0)
    kept = {}
    model = MLP([10, 32, 4], seed=0, device=device)

    def remember(record):
        kept[record["epoch"]] = model.state_dict()

    stopping = EarlyStopping(patience=2)
    history = model.fit(X, y, epochs=200, optimizer=SGD(lr=0.5), early_stopping=stopping,
                        validation_data=(X_val, y_val), callback=remember)  # fmt: skip
    losses = [r["val_loss"] for r in history]
    best = int(np.argmin(losses)) + 1
    assert len(history) < 200 and len(history) == best + 2  # two epochs without a better one
    assert stopping.best_epoch == best
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, kept[best][key])
    assert model.evaluate(X_val, y_val)["loss"] == pytest.approx(min(losses), rel=1e-5)


def test_monitors_the_training_loss_without_validation_and_may_keep_the_last_weights():
    X, y = blobs(100)
    model = MLP([10, 8, 4])
    stopping = EarlyStopping(patience=1, min_delta=10.0, restore_best_weights=False)
    history = model.fit(X, y, epochs=5, early_stopping=stopping)
    assert len(history) == 2 and stopping.watched(history[0]) == "loss"
    assert model.evaluate(X, y)["loss"] < history[0]["loss"]  # the last epoch's weights


def test_true_means_the_defaults_and_a_wrong_monitor_is_named():
    X, y = blobs(50)
    assert len(MLP([10, 4]).fit(X, y, epochs=3, early_stopping=True)) == 3
    with pytest.raises(ValueError, match="'val_accuracy' is watched, but fit records only"):
        MLP([10, 4]).fit(X, y, epochs=3, early_stopping=EarlyStopping(monitor="val_accuracy"))
    with pytest.raises(TypeError, match="early_stopping must be True or an EarlyStopping"):
        MLP([10, 4]).fit(X, y, epochs=3, early_stopping="yes")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"restore_best_weights": "False"}, "restore_best_weights must be True or False"),
        ({"restore_best_weights": 0}, "restore_best_weights must be True or False"),
        ({"monitor": 5}, "monitor must be the name of a metric, such as 'val_loss'"),
    ],
)
def test_settings_of_the_wrong_type_are_refused(kwargs, message):
    """As SGD's ``nesterov`` is: the text "False" would restore the best weights."""
    with pytest.raises(WrongType, match=message):
        EarlyStopping(**kwargs)


def test_resume_judges_the_history_again_and_takes_the_best_weights():
    """As if never interrupted: the best epoch and the epochs waited come from the records,
    the best weights from where they were kept; a run that had stopped says so."""
    model = MLP([10, 4])
    history = [{"epoch": e, "loss": v} for e, v in ((1, 1.0), (2, 0.5), (3, 0.7))]
    kept = np.full(model.num_parameters, 0.25, np.float32)
    stopping = EarlyStopping(patience=2)
    assert stopping.resume(history, model, best=(2, kept)) is False
    assert (stopping.best_epoch, stopping.waited) == (2, 1)
    stopping.start()  # the fit that goes on keeps where it stands
    assert stopping.best_epoch == 2 and stopping.best_weights(model)[1].tolist() == kept.tolist()
    assert stopping.stop({"epoch": 4, "loss": 0.9}, model) and stopping.stopped_epoch == 4
    again = EarlyStopping(patience=2)
    assert again.resume([*history, {"epoch": 4, "loss": 0.9}], model, best=(2, kept))
    older = EarlyStopping(patience=2)  # a checkpoint without them: afresh from here
    assert older.resume(history, model) is False and older.best_epoch == 0


def test_a_pickled_rule_keeps_its_best_weights_on_the_host(device):
    """An estimator pickles its stopping rule: on a GPU the best weights were a CuPy array,
    which a machine without a GPU cannot unpickle. A host copy goes back onto the device."""
    import pickle

    X, y = blobs(200, seed=1)
    X_val, y_val = blobs(100, seed=2, spread=6.0)
    model = MLP([10, 32, 4], seed=0, device=device)
    stopping = EarlyStopping(patience=2)
    model.fit(X, y, epochs=200, optimizer=SGD(lr=0.5), early_stopping=stopping,
              validation_data=(X_val, y_val))  # fmt: skip
    best = model.state_dict()
    pickled = pickle.dumps(stopping)
    assert b"backends" not in pickled  # no device, its kernels or its memory in the pickle
    back = pickle.loads(pickled)
    assert type(back._best_params) is np.ndarray and back.best_epoch == stopping.best_epoch
    model.fit(X, y, epochs=1)  # the weights move on
    back.restore(model)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, best[key])
    back._keep(model)  # and it keeps the next best on the model's device again
    assert model.backend.is_array(back._best_params)
