"""Layers: each forward sits next to its backward, and all arithmetic goes through the backend.

A layer keeps its output buffers per batch size, so a training step reuses the same memory
every time instead of allocating. ``forward`` returns a buffer the layer owns: it is valid
until the layer's next forward with the same batch size. A caller that must not share
those buffers (inference, from many threads at once) computes with a ``replica``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from backends import Backend
from backends.buffers import BufferCache

from . import checks


class Layer:
    """Base class: a layer holds a backend and reusable buffers keyed by batch size."""

    backend: Backend

    def bind(self, backend: Backend) -> None:
        """Attach the layer to a backend (dropping buffers that lived on the old one)."""
        self.backend = backend
        self._buffers = BufferCache(backend)

    def buffer(self, name: str, shape: tuple, dtype: Any) -> Any:
        return self._buffers.get(name, shape, dtype)

    def arrays(self) -> tuple:
        """The buffers it holds now (a recorded step keeps them alive)."""
        return self._buffers.arrays()

    def replica(self) -> Layer:
        """This layer with the same parameters, but buffers (and saved inputs) of its own."""
        twin = copy.copy(self)
        twin.bind(self.backend)
        return twin

    def forward(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        raise NotImplementedError


class Linear(Layer):
    """``y = activation(x·W + b)`` with ``W`` of shape (in, out), as the textbook writes it.

    The activation is fused into the layer (``"identity"`` for none), so the backend can add
    the bias and apply the activation in one pass (on a GPU, in the product's epilogue), and
    the backward needs only ``y``.
    ``weight``, ``bias`` and their gradients are views into the model's flat buffers.
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "identity") -> None:
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.activation = checks.activation(activation)
        self.weight: Any = None
        self.bias: Any = None
        self.grad_weight: Any = None
        self.grad_bias: Any = None
        self.grads: Any = None  # both gradients: the layer's slice of the flat buffer
        self._x: Any = None
        self._y: Any = None

    @property
    def size(self) -> int:
        """Number of parameters: weight then bias."""
        return self.in_features * self.out_features + self.out_features

    def attach(self, params: Any, grads: Any) -> None:
        """Point weight, bias and their gradients at this layer's slice of the flat buffers."""
        n_weight = self.in_features * self.out_features
        shape = (self.in_features, self.out_features)
        self.weight = params[:n_weight].reshape(shape)
        self.bias = params[n_weight:]
        self.grad_weight = grads[:n_weight].reshape(shape)
        self.grad_bias = grads[n_weight:]
        self.grads = grads

    def forward(self, x: Any, training: bool = False) -> Any:
        out = self.buffer("y", (x.shape[0], self.out_features), self.weight.dtype)
        self.backend.linear(x, self.weight, self.bias, self.activation, out=out)
        self._x, self._y = x, out
        return out

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """Fill ``grad_weight``/``grad_bias``; return dL/dx (or ``None``). ``dy`` is overwritten."""
        be = self.backend
        dz = be.backprop_linear(
            self.activation, dy, self._y, self._x, self.grad_weight, self.grad_bias, out=dy
        )  # dz = dy·f'(z); grad_weight = xᵀ·dz; grad_bias = dz summed over the batch
        if not need_dx:
            return None
        dx = self.buffer("dx", (dz.shape[0], self.in_features), dz.dtype)
        return be.matmul(dz, self.weight, out=dx, transpose_b=True)


class Activation(Layer):
    """A standalone activation, applied in place: ``ReLU()``, ``Sigmoid()``, ``Tanh()``."""

    name = "identity"

    def forward(self, x: Any, training: bool = False) -> Any:
        self._y = self.backend.activation(self.name, x, out=x)
        return self._y

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        return self.backend.backprop_activation(self.name, dy, self._y, out=dy)


class ReLU(Activation):
    name = "relu"


class Sigmoid(Activation):
    name = "sigmoid"


class Tanh(Activation):
    name = "tanh"


class Dropout(Layer):
    """Inverted dropout: zero each unit with probability ``p`` while training, scale the rest.

    The mask is drawn on the device into a preallocated buffer; at inference it is a no-op.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = checks.fraction("dropout probability", p)
        self.generator: Any = None
        self._mask: Any = None

    def forward(self, x: Any, training: bool = False) -> Any:
        if not training or self.p == 0.0:
            self._mask = None
            return x
        mask = self.buffer("mask", x.shape, x.dtype)
        self._mask = self.backend.dropout_mask(self.generator, self.p, out=mask)
        # Into a buffer of its own: the layer before may need its output intact for its
        # backward (sigmoid and tanh compute their derivative from it).
        out = self.buffer("y", x.shape, x.dtype)
        return self.backend.multiply(x, mask, out=out)

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        if self._mask is None:
            return dy
        return self.backend.multiply(dy, self._mask, out=dy)


def he_normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """He initialisation, for ReLU: normal with variance 2 / fan_in."""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


def xavier_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Xavier/Glorot initialisation, for sigmoid and tanh: uniform in ±sqrt(6 / (in + out))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


#: Initial weights by scheme, drawn on the host in float64 from a seeded NumPy generator, so
#: every device starts from exactly the same weights for the same seed.
INITIALIZERS = {"he": he_normal, "xavier": xavier_uniform}
