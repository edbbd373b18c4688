"""Optimizers: their settings checked, their defaults, and state loaded whole or not at all."""

from __future__ import annotations

import numpy as np
import pytest

from mlp import MLP, SGD, Adam, AdamW
from mlp.errors import InvalidArgument


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
        lambda: SGD(momentum=0.9, nesterov="false"),  # it was Nesterov momentum, as "true"
        lambda: SGD(momentum=0.9, nesterov=0.5),
        lambda: SGD(weight_decay=-1e-4),
        lambda: Adam(lr=0),
        lambda: Adam(lr=-1e-3),
        lambda: Adam(betas=(1.0, 0.999)),
        lambda: Adam(betas=(0.9, 1.0)),
        lambda: Adam(betas=(-0.1, 0.999)),
        lambda: Adam(eps=-1e-8),
        lambda: Adam(eps=0.0),  # the kernels flush a subnormal v: m / (0 + 0)
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


@pytest.mark.parametrize("make", [Adam, SGD])
def test_state_loaded_before_a_fit_gave_the_optimizer_its_buffers_says_so(make):
    """Not Adam's "expected (0,)" nor SGD's AttributeError on ``None``."""
    model = MLP([6, 5, 3])
    model.fit(np.zeros((4, 6)), np.zeros(4, int), epochs=1, optimizer=make())
    with pytest.raises(InvalidArgument, match=f"this {make.__name__} has no state yet"):
        make().load_state_dict(model.optimizer.state_dict())


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


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("v", np.full(1, np.nan, np.float32), "'v' holds NaN or infinity"),
        ("v", np.full(1, -1.0, np.float32), "'v' holds -1, but it cannot be negative"),
        ("m", np.full(1, 1e39), "'m' holds values up to 1e\\+39, beyond float32's range"),
        ("m", np.ones(1, bool), "'m' must hold real numbers, got dtype bool"),
        ("m", np.ones(1, np.complex64), "'m' must hold real numbers, got dtype complex64"),
        ("m", np.array(["x"]), "'m' must hold real numbers, got dtype <U1"),
    ],
    ids=["nan-v", "negative-v", "overflowing-m", "bool-m", "complex-m", "string-m"],
)
def test_state_that_no_update_could_make_is_refused_whole(name, value, problem):
    """An all-NaN or negative second moment trained a run to nonsense; a bool moment to
    chance. Each buffer is checked for what it can hold, and a bad one loads nothing."""
    model = MLP([6, 5, 3], seed=1)
    optimizer = Adam()
    optimizer.bind(model.backend, model.num_parameters, np.float32)
    saved = optimizer.state_dict()
    bad = {**saved, "m": saved["m"] + 1.0, name: np.resize(value, saved[name].size)}
    with pytest.raises(ValueError, match=problem):
        optimizer.load_state_dict(bad)
    for key, kept in optimizer.state_dict().items():
        np.testing.assert_array_equal(kept, saved[key])


@pytest.mark.parametrize("steps", [-1, 2**63, True, 1.5, "3"])
def test_a_step_count_an_int64_cannot_hold_is_refused(steps):
    optimizer = SGD(momentum=0.9)
    optimizer.bind(MLP([3, 2]).backend, 8, np.float32)
    state = {**optimizer.state_dict(), "steps": steps}
    with pytest.raises(ValueError, match="step count"):
        optimizer.load_state_dict(state)
    assert optimizer.steps == 0


def test_a_learning_rate_beyond_any_float_is_a_value_error():
    """``10**400`` made float() overflow: an OverflowError, not the promised ValueError."""
    with pytest.raises(ValueError, match="learning rate must be a finite number"):
        Adam(lr=10**400)
    with pytest.raises(ValueError, match="momentum must be a finite number"):
        SGD(momentum=-(10**400))


def test_a_momentum_switched_on_later_starts_its_velocity_at_zero(device):
    """Between fits or inside one (a callback), as a new SGD with that momentum would; the
    update count goes on."""
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((60, 4)), rng.integers(0, 3, 60)

    def trained(switch):
        model, optimizer = MLP([4, 6, 3], device=device, seed=5), SGD(lr=0.1)
        switch(model, optimizer)
        return model.backend.to_numpy(model.params), optimizer.steps

    def between_fits(model, optimizer):
        model.fit(X, y, epochs=1, batch_size=16, optimizer=optimizer)
        optimizer.momentum = 0.9
        model.fit(X, y, epochs=1, batch_size=16, optimizer=optimizer)

    def inside_a_fit(model, optimizer):
        def switch(record):
            optimizer.momentum = 0.9

        model.fit(X, y, epochs=2, batch_size=16, optimizer=optimizer, callback=switch)

    def a_new_optimizer(model, optimizer):
        model.fit(X, y, epochs=1, batch_size=16, optimizer=optimizer)
        model.fit(X, y, epochs=1, batch_size=16, optimizer=SGD(lr=0.1, momentum=0.9))

    expected, _ = trained(a_new_optimizer)
    for switch in (between_fits, inside_a_fit):
        params, steps = trained(switch)
        np.testing.assert_allclose(params, expected, rtol=0, atol=1e-6)
        assert steps == 8
