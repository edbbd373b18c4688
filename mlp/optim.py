"""Optimizers over the model's flat parameter buffer: one backend call per step.

Because every parameter is a view into one flat buffer, an update is a single pass over
memory (one fused kernel on the GPU) instead of a loop over layers.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np

from backends import Backend


def real_number(name: str, value: Any) -> float:
    """``value`` as a finite float; a string, a bool, NaN or infinity is a mistake."""
    numeric = isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, (bool, np.bool_)) or not numeric or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: hyperparameters, flat state buffers, and moving that state between devices."""

    #: names of the flat state buffers, each shaped like the parameters
    state_names: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        self.lr = real_number("learning rate", lr)
        if not self.lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.steps = 0
        self.state: dict[str, Any] = {}
        self.backend: Backend | None = None
        self._model: Any = None  # weak reference to the model it trains

    def bind(self, backend: Backend, size: int, dtype: Any, model: Any = None) -> None:
        """Allocate zeroed state for ``size`` parameters (kept if it already matches).

        ``model`` is the model this optimizer trains: its moments belong to that model's
        weights, so another model is refused rather than handed them (or reset silently).
        """
        if model is not None:
            self.check_model(model)
            self._model = weakref.ref(model)
        if self.backend is backend and all(
            self.state.get(n) is not None and self.state[n].size == size for n in self.state_names
        ):
            return
        self.backend = backend
        self.state = {name: backend.zeros((size,), dtype) for name in self.state_names}
        self.steps = 0

    def check_model(self, model: Any) -> None:
        """Raise ``ValueError`` when this optimizer's moments belong to another model."""
        owner = self._model() if self._model is not None else None
        if owner is not None and owner is not model:
            raise ValueError(
                f"this {type(self).__name__} already trains another model: give each model "
                f"its own optimizer, e.g. {type(self).__name__}(lr={self.lr:g})"
            )

    def to(self, backend: Backend) -> None:
        """Move the state buffers to another backend, values kept."""
        self.state = {k: backend.asarray(self.backend.to_numpy(v)) for k, v in self.state.items()}
        self.backend = backend

    def step(self, params: Any, grads: Any) -> None:
        """One update; the step count goes up first (Adam's bias corrections start at 1)."""
        self.steps += 1
        self.update(params, grads, self.steps)

    def update(self, params: Any, grads: Any, step: Any) -> None:
        """One update as step number ``step``: an int, or a one-element int64 array on the
        device that the caller advances (a recorded training step counts on by itself, with
        no host value to pass). The caller keeps ``steps`` up to date."""
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Host copies of the state, plus the step count and hyperparameters."""
        out: dict[str, Any] = {k: self.backend.to_numpy(v).copy() for k, v in self.state.items()}
        out["steps"] = self.steps
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore buffers saved by ``state_dict`` (after ``bind``); shapes are checked."""
        values = {name: np.asarray(state[name]) for name in self.state_names}
        for name, value in values.items():
            if value.shape != self.state[name].shape:
                raise ValueError(
                    f"optimizer state {name!r} has shape {value.shape}, "
                    f"expected {self.state[name].shape}"
                )
        with self.backend.activated():  # the copies run on the state's GPU, even a second one
            for name, value in values.items():
                self.state[name][...] = self.backend.asarray(value, dtype=self.state[name].dtype)
        self.steps = int(state["steps"])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def _non_negative(name: str, value: float) -> float:
    if not real_number(name, value) >= 0.0:
        raise ValueError(f"{name} must be a non-negative number, got {value}")
    return float(value)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        if not 0.0 <= real_number("momentum", momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and not momentum:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        self.state_names = ("velocity",) if momentum else ()

    def update(self, params: Any, grads: Any, step: Any) -> None:
        self.backend.sgd_step(
            params,
            grads,
            self.state.get("velocity"),
            self.lr,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }


class Adam(Optimizer):
    """Adam (Kingma & Ba); ``weight_decay`` is L2 added to the gradient, as in PyTorch's Adam."""

    state_names = ("m", "v")
    decoupled = False

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        try:
            beta1, beta2 = (real_number("betas", b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}") from None
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.betas = (beta1, beta2)
        self.eps = _non_negative("eps", eps)
        self.weight_decay = _non_negative("weight_decay", weight_decay)

    def update(self, params: Any, grads: Any, step: Any) -> None:
        self.backend.adam_step(
            params,
            grads,
            self.state["m"],
            self.state["v"],
            step,
            self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            eps=self.eps,
            weight_decay=self.weight_decay,
            decoupled=self.decoupled,
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr * wd`` each step."""

    decoupled = True

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay)


OPTIMIZERS = {"sgd": SGD, "momentum": SGD, "adam": Adam, "adamw": AdamW}


def make_optimizer(name: str, lr: float | None = None, **kwargs: Any) -> Optimizer:
    """Build an optimizer by CLI name; ``momentum`` is SGD with Nesterov momentum 0.9."""
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
    if key == "momentum":
        kwargs = {"momentum": 0.9, "nesterov": True, **kwargs}
    if lr is not None:
        kwargs["lr"] = lr
    return OPTIMIZERS[key](**kwargs)
