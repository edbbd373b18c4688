"""Optimizers: their settings checked, their defaults, and state loaded whole or not at all."""

from __future__ import annotations

import numpy as np
import pytest

from mlp import MLP, SGD, Adam, AdamW


def test_optimizer_state_with_a_wrong_shape_changes_nothing(device):
    """Adam's m fits but v does not: neither is loaded, so no half-restored optimizer."""
    model = MLP([6, 5, 3], device=device, seed=1)
    optimizer = Adam()
    optimizer.bind(model.backend, model.num_parameters, np.float32)
    saved = optimizer.state_dict()
    bad = {**saved, "m": saved["m"] + 1.0, "v": np.zeros(saved["v"].size + 1, np.float32)}
    with pytest.raises(ValueError, match="optimizer state 'v' has shape"):
        optimizer.load_state_dict(bad)
    for name, value in optimizer.state_dict().items():
        np.testing.assert_array_equal(value, saved[name])


# ---------------------------------------------------------------------- optimizers
@pytest.mark.parametrize(
    "make",
    [
        lambda: SGD(lr=0),
        lambda: SGD(lr=-0.1),
        lambda: SGD(lr=float("nan")),
        lambda: SGD(momentum=1.0),
        lambda: SGD(momentum=-0.1),
        lambda: SGD(nesterov=True),
        lambda: SGD(weight_decay=-1e-4),
        lambda: Adam(lr=0),
        lambda: Adam(lr=-1e-3),
        lambda: Adam(betas=(1.0, 0.999)),
        lambda: Adam(betas=(0.9, 1.0)),
        lambda: Adam(betas=(-0.1, 0.999)),
        lambda: Adam(eps=-1e-8),
        lambda: Adam(weight_decay=-0.1),
        lambda: AdamW(lr=0),
        lambda: AdamW(betas=(0.9, 1.5)),
        lambda: AdamW(weight_decay=-0.01),
    ],
)
def test_optimizers_validate_arguments(make):
    with pytest.raises(ValueError):
        make()


def test_optimizer_defaults_and_repr():
    assert SGD(lr=0.1, momentum=0.9, nesterov=True).hyperparameters() == {
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.0,
    }
    assert AdamW().weight_decay == 0.01 and Adam().weight_decay == 0.0
    assert AdamW().decoupled and not Adam().decoupled
    assert repr(Adam(lr=0.5)).startswith("Adam(lr=0.5")


def test_optimizer_load_state_dict_checks_shapes():
    model = MLP([6, 5, 3])
    opt = Adam()
    opt.bind(model.backend, model.num_parameters, model.dtype)
    state = opt.state_dict()
    state["m"] = np.zeros(model.num_parameters + 1)
    with pytest.raises(ValueError, match="'m'"):
        opt.load_state_dict(state)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Adam(lr=float("inf")),
        lambda: SGD(lr=float("nan")),
        lambda: Adam(lr="0.1"),
        lambda: SGD(lr=0.1, momentum="0.9"),
        lambda: Adam(betas=0.9),
        lambda: Adam(betas=(0.9,)),
        lambda: AdamW(weight_decay=float("inf")),
    ],
)
def test_optimizer_settings_that_are_not_finite_numbers(make):
    with pytest.raises(ValueError, match=r"finite number|betas must be a pair"):
        make()
