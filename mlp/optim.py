"""Optimizers over the model's flat parameter buffer: one backend call per update.

Because every parameter is a view into one flat buffer, an update is a single pass over
memory (one fused kernel on the GPU) instead of a loop over layers. An optimizer owns its
state: the moment buffers, and the count of updates it has applied (Adam's t), which lives
on the device so that a recorded training step advances it with no value from the host.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np

from backends import Backend
from backends.buffers import DeviceCounter

from . import checks
from .errors import InvalidArgument

#: What an optimizer holds on its device, or of its model: never pickled as such.
_DEVICE_SIDE = ("state", "backend", "_updates", "_model", "_pending")


class Optimizer:
    """Base class: hyperparameters, flat state buffers, the update count, moving between devices."""

    #: names of the flat state buffers, each shaped like the parameters
    state_names: tuple[str, ...] = ()
    #: the buffers among them that hold no negative value (Adam's second moment)
    non_negative: tuple[str, ...] = ()
    #: the name ``make_optimizer`` made it of (``None``: built by hand)
    made_of: str | None = None

    def __init__(self, lr: float) -> None:
        self.lr = checks.positive_number("learning rate", lr)
        self.state: dict[str, Any] = {}
        self.backend: Backend | None = None
        self.size, self.dtype = 0, np.dtype(np.float32)  # of the parameters, set by ``bind``
        self._updates: DeviceCounter | None = None
        self._model: Any = None  # weak reference to the model it trains
        self._pending: dict[str, Any] | None = None  # state unpickled, for the next bind

    @property
    def steps(self) -> int:
        """Updates applied so far, one per training step (read from the device: it waits)."""
        return 0 if self._updates is None else self._updates.read()

    def bind(self, backend: Backend, size: int, dtype: Any, model: Any = None) -> None:
        """Allocate zeroed state for ``size`` parameters (kept if it already matches).

        ``model`` is the model this optimizer trains: its moments belong to that model's
        weights, so another model is refused rather than handed them (or reset silently).
        """
        if model is not None:
            self.check_model(model)
            self._model = weakref.ref(model)
        if self.backend is backend and (self.size, self.dtype) == (size, np.dtype(dtype)):
            self.ready()
            return
        self.backend, self.size, self.dtype = backend, size, np.dtype(dtype)
        self.state = {name: backend.zeros((size,), dtype) for name in self.state_names}
        self._updates = DeviceCounter(backend)
        pending, self._pending = self._pending, None
        if pending is not None and pending["size"] == size:  # unpickled: its state goes on
            self.load_state_dict(pending["state"])

    def ready(self) -> None:
        """Zeroed buffers for the state that settings changed since ``bind`` need (SGD's
        momentum switched on): the update count goes on."""
        for name in self.state_names:
            if self.state.get(name) is None:
                self.state[name] = self.backend.zeros((self.size,), self.dtype)

    def __getstate__(self) -> dict[str, Any]:
        """Hyperparameters and host copies of the state: it pickles from any device, and
        unpickles unbound, its state loaded when ``bind`` gives it a device again."""
        kept = {k: v for k, v in self.__dict__.items() if k not in _DEVICE_SIDE}
        if self.backend is not None:
            kept["_pending"] = {"size": self.size, "state": self.state_dict()}
        return kept

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.state, self.backend, self._updates, self._model = {}, None, None, None
        self._pending = state.get("_pending")  # absent when it was pickled unbound

    def check_model(self, model: Any) -> None:
        """Raise ``ValueError`` when this optimizer's moments belong to another model."""
        owner = self._model() if self._model is not None else None
        if owner is not None and owner is not model:
            raise InvalidArgument(
                f"this {type(self).__name__} already trains another model: give each model "
                f"its own optimizer, e.g. {type(self).__name__}(lr={self.lr:g})"
            )

    def to(self, backend: Backend) -> None:
        """Move the state buffers and the count to another backend, values kept."""
        steps = self.steps
        self.state = {k: backend.asarray(self.backend.to_numpy(v)) for k, v in self.state.items()}
        self.backend = backend
        self._updates = DeviceCounter(backend, value=steps)

    def update(self, params: Any, grads: Any) -> None:
        """One update of ``params`` from ``grads`` (after ``bind``), counted on the device."""
        self._updates.advance()
        self._apply(params, grads, self._updates.array)

    def _apply(self, params: Any, grads: Any, count: Any) -> None:
        """The update rule; ``count`` (a one-element device array) says which update this is."""
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def arrays(self) -> tuple:
        """Every device array an update uses (a recorded step keeps them alive)."""
        counter = () if self._updates is None else self._updates.arrays()
        return (*self.state.values(), *counter)

    def state_dict(self) -> dict[str, Any]:
        """Host copies of the state, plus the update count as ``steps``."""
        out: dict[str, Any] = {k: self.backend.to_numpy(v).copy() for k, v in self.state.items()}
        out["steps"] = self.steps
        return out

    def checked_state(
        self, state: Mapping[str, Any], size: int, dtype: Any
    ) -> tuple[dict[str, np.ndarray], int]:
        """The buffers and count of ``state`` (as ``state_dict`` gives them), each checked
        before any is used: ``size`` real numbers, finite as ``dtype`` stores them, none
        negative where none can be; the count a whole number that an int64 holds. Returns the
        buffers as ``dtype`` and the count; raises ``InvalidArgument`` naming what is wrong."""
        if not isinstance(state, Mapping):
            raise TypeError(f"expected a dict of arrays (see state_dict()), got {type(state)}")
        missing = sorted(set(self.state_names) - set(state)) + (
            [] if "steps" in state else ["steps"]
        )
        if missing:
            raise InvalidArgument(f"optimizer state lacks {', '.join(missing)}")
        values = {}
        for name in self.state_names:
            value = np.asarray(state[name])
            if value.shape != (size,):
                raise InvalidArgument(
                    f"optimizer state {name!r} has shape {value.shape}, expected {(size,)}"
                )
            if value.dtype.kind not in "fiu":
                raise InvalidArgument(
                    f"optimizer state {name!r} must hold real numbers, got dtype {value.dtype}"
                )
            problem = checks.unrepresentable(value, dtype)  # 1e39 is inf in float32
            if problem:
                raise InvalidArgument(f"optimizer state {name!r} holds {problem}")
            value = value.astype(dtype)
            if name in self.non_negative and np.any(value < 0):
                raise InvalidArgument(
                    f"optimizer state {name!r} holds {value.min():g}, but it cannot be negative"
                )
            values[name] = value
        steps = checks.whole_number("optimizer step count", state["steps"])
        if steps >= 2**63:
            raise InvalidArgument(f"optimizer step count {steps} is beyond an int64")
        return values, steps

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` saved (after ``bind``): all of it is checked first, so
        a bad buffer changes nothing."""
        if self.backend is None:  # no size to check the buffers against, none to load into
            name = type(self).__name__
            raise InvalidArgument(
                f"this {name} has no state yet: fit gives it buffers for its model (as "
                "bind(backend, size, dtype) does); load the state after, into model.optimizer"
            )
        values, steps = self.checked_state(state, self.size, self.dtype)
        with self.backend.activated():  # the copies run on the state's GPU, even a second one
            for name, value in values.items():
                self.state[name][...] = self.backend.asarray(value)
        self._updates.set(steps)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


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
        self.momentum = checks.fraction("momentum", momentum)
        self.nesterov = checks.boolean("nesterov", nesterov)  # "false" would be true
        if self.nesterov and not momentum:
            raise InvalidArgument("Nesterov momentum needs momentum > 0")
        self.weight_decay = checks.non_negative_number("weight_decay", weight_decay)

    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]
        """A velocity where there is momentum (set now, or later)."""
        return ("velocity",) if self.momentum else ()

    def _apply(self, params: Any, grads: Any, count: Any) -> None:
        self.backend.sgd_update(
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
    non_negative = ("v",)
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
            beta1, beta2 = (checks.fraction("betas", b) for b in betas)
        except (TypeError, ValueError):
            raise InvalidArgument(
                f"betas must be a pair of numbers in [0, 1), got {betas!r}"
            ) from None
        self.betas = (beta1, beta2)
        # above zero: the kernels flush a subnormal v to zero, and m / (0 + 0) is no step
        self.eps = checks.positive_number("eps", eps)
        self.weight_decay = checks.non_negative_number("weight_decay", weight_decay)

    def _apply(self, params: Any, grads: Any, count: Any) -> None:
        self.backend.adam_update(
            params,
            grads,
            self.state["m"],
            self.state["v"],
            count,
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


#: Optimizers by name, as the command line and ``make_optimizer`` take them.
OPTIMIZERS = {"sgd": SGD, "momentum": SGD, "adam": Adam, "adamw": AdamW}


def make_optimizer(name: str, lr: float | None = None, **kwargs: Any) -> Optimizer:
    """An optimizer by name; ``momentum`` is SGD with Nesterov momentum 0.9."""
    key = name.lower()
    if key not in OPTIMIZERS:
        raise InvalidArgument(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
    if key == "momentum":
        kwargs = {"momentum": 0.9, "nesterov": True, **kwargs}
    if lr is not None:
        kwargs["lr"] = lr
    optimizer = OPTIMIZERS[key](**kwargs)
    optimizer.made_of = key
    return optimizer
