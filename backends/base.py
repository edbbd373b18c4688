"""The backend interface: every array operation the layers and optimizers need.

Each default body is written against ``self.xp`` (the array module: NumPy or CuPy), so a
backend is mostly "set ``xp``"; a backend overrides only the operations it can fuse or
run faster. Operations come in forward/backward pairs, and every op that produces an
array accepts ``out=`` so a training step can run without allocating.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

#: Activations every backend implements, each with a backward that needs only the output.
ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")

#: Elements per block of the blocked optimizer update (see ``_blocks``).
OPTIMIZER_BLOCK = 1 << 15


def require_shape(op: str, name: str, array: Any, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``array`` (when given) has ``shape``.

    Fused kernels index raw memory: a wrong shape would read or write past an array (or
    broadcast a wrong-sized bias silently), so each op checks its operands first; O(1).
    """
    if array is not None and tuple(array.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} has shape {tuple(array.shape)}, expected {tuple(shape)}")


def require_same_shape(op: str, **arrays: Any) -> None:
    """Raise ``ValueError`` unless every given array has the first one's shape."""
    given = [(name, a) for name, a in arrays.items() if a is not None]
    first_name, first = given[0]
    for name, array in given[1:]:
        if tuple(array.shape) != tuple(first.shape):
            raise ValueError(
                f"{op}: {name} has shape {tuple(array.shape)}, but {first_name} has "
                f"{tuple(first.shape)}"
            )


def check_gather(source: Any, rows: Any, out: Any, start: Any = None) -> None:
    """``gather_rows``' operands: a 2-D source, a 1-D row list, an ``out`` to match.

    With ``start`` (a one-element index on the device) ``out`` takes the rows from there on,
    so the row list only has to be long enough (its reading position is checked where the
    backend can read ``start`` without waiting for a GPU).
    """
    if source.ndim != 2 or rows.ndim != 1:
        raise ValueError(
            f"gather_rows: needs a 2-D source and 1-D rows, got {source.ndim}-D and {rows.ndim}-D"
        )
    if start is None:
        require_shape("gather_rows", "out", out, (rows.shape[0], source.shape[1]))
        return
    require_shape("gather_rows", "start", start, (1,))
    if out.ndim != 2 or out.shape[1] != source.shape[1] or out.shape[0] > rows.shape[0]:
        raise ValueError(
            f"gather_rows: out has shape {tuple(out.shape)}, expected at most "
            f"{rows.shape[0]} rows of {source.shape[1]}"
        )


def check_cross_entropy(logits: Any, labels: Any, grad: Any, totals: Any) -> None:
    """``softmax_cross_entropy_accumulate``'s operands: 2-D logits, a label per row."""
    if logits.ndim != 2:
        raise ValueError(f"softmax cross-entropy: logits must be 2-D, got {logits.ndim}-D")
    require_shape("softmax cross-entropy", "labels", labels, (logits.shape[0],))
    require_shape("softmax cross-entropy", "grad", grad, logits.shape)
    require_shape("softmax cross-entropy", "totals", totals, (2,))


class BufferCache:
    """Named work buffers on one backend, allocated on first use for each shape and reused."""

    def __init__(self, backend: Backend, limit: int = 16) -> None:
        self.backend = backend
        self.limit = limit
        self._buffers: dict[tuple, Any] = {}

    def get(self, name: str, shape: tuple, dtype: Any) -> Any:
        key = (name, tuple(shape), np.dtype(dtype).str)
        out = self._buffers.get(key)
        if out is None:
            if len(self._buffers) >= self.limit:
                self._buffers.clear()  # shapes keep changing: start afresh, never grow unbounded
            out = self._buffers[key] = self.backend.empty(shape, dtype)
        return out

    def arrays(self) -> tuple:
        """Every buffer held now (a recorded step keeps them alive: see ``Backend.capture``)."""
        return tuple(self._buffers.values())


def host_int(value: Any) -> int:
    """A count or position given as an int or as a one-element array, read on the host (a
    GPU backend reads such arrays on the device instead: here it would wait for the GPU)."""
    return int(value[0]) if hasattr(value, "shape") else value


def rows_at(rows: Any, start: Any, out: Any) -> Any:
    """The ``len(out)`` entries of ``rows`` from position ``start[0]``, read on the host; a
    position that leaves too few (or a negative one) is a ``ValueError``, not a short slice."""
    first, count = host_int(start), out.shape[0]
    available = rows.shape[0] - first if 0 <= first <= rows.shape[0] else 0
    if available < count:
        raise ValueError(
            f"gather_rows: out has shape {tuple(out.shape)}, but {available} rows follow "
            f"position {first}"
        )
    return rows[first : first + count]


def adam_scalars(
    step: int, lr: float, beta1: float, beta2: float, weight_decay: float, decoupled: bool
) -> tuple[float, float, float, float]:
    """Per-step constants of Adam/AdamW: ``(step_size, inv_sqrt_bc2, l2, decay)``.

    The update is ``g += l2*p; p *= decay; p -= step_size * m / (sqrt(v)*inv_sqrt_bc2 + eps)``,
    PyTorch's arithmetic; Adam has ``decay = 1``, AdamW ``l2 = 0``.
    """
    if step < 1:  # the bias corrections divide by 1 - beta**step
        raise ValueError(f"Adam's step count starts at 1, got {step}")
    step_size = lr / (1.0 - beta1**step)
    inv_sqrt_bc2 = 1.0 / float(np.sqrt(1.0 - beta2**step))
    if decoupled:
        return step_size, inv_sqrt_bc2, 0.0, 1.0 - lr * weight_decay
    return step_size, inv_sqrt_bc2, weight_decay, 1.0


#: Matmul precisions, each as the mantissa bits a float32 operand keeps: ``float32`` exact,
#: ``tf32`` (TF32 tensor cores) and ``bf16`` (bfloat16 operands); products accumulate in
#: float32 in every case, and float64 matmuls are never reduced.
PRECISIONS = {"float32": 23, "tf32": 10, "bf16": 7}


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    return name


def check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")
    return name


class Backend:
    """An array backend. Subclasses set ``name``, ``device``, ``xp`` and ``array_type``."""

    name: str = "abstract"
    device: str = "none"
    xp: Any = None
    array_type: type = object
    #: Block size of the optimizer update; ``None`` updates the whole buffer at once.
    optimizer_block: int | None = None

    def __init__(self, precision: str = "float32") -> None:
        self._scratch = BufferCache(self, limit=256)
        #: Precision of float32 matmuls (see ``PRECISIONS``); everything else stays float32.
        self.precision = check_precision(precision)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} device={self.device!r} precision={self.precision!r}>"

    def hardware(self) -> str:
        """What does the work, in words: the array library, and the GPU where there is one."""
        return f"{self.xp.__name__} {self.xp.__version__}"

    def describe(self) -> str:
        """``device (hardware[, precision])``: the line a run prints, so that its log says
        which GPU (or library) and which matmul precision produced its numbers."""
        details = [self.hardware()]
        if self.precision != "float32":
            details.append(f"{self.precision} matmuls")
        return f"{self.device} ({', '.join(details)})"

    # ------------------------------------------------------------------ memory and transfer
    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Return ``a`` as an array of this backend (no copy when it already is one)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        """Copy an array of this backend to a host NumPy array."""
        return np.asarray(a)

    def empty(self, shape: Any, dtype: Any = np.float32) -> Any:
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: Any, dtype: Any = np.float32) -> Any:
        return self.xp.zeros(shape, dtype=dtype)

    def scratch(self, key: str, shape: tuple, dtype: Any) -> Any:
        """A reusable work buffer for an op, allocated once per (key, shape, dtype)."""
        return self._scratch.get(key, shape, dtype)

    def random_generator(self, seed: Any) -> Any:
        """A seeded generator on this device (``seed`` may be an int or a sequence of ints)."""
        return self.xp.random.default_rng(seed)

    def uniform_(self, generator: Any, out: Any) -> Any:
        """Fill ``out`` with uniform [0, 1) samples, in place."""
        generator.random(out=out, dtype=out.dtype)
        return out

    def dropout_mask(self, generator: Any, p: float, out: Any) -> Any:
        """Fill ``out`` with ``1/(1-p)`` where a unit is kept (probability ``1 - p``), else 0."""
        self.uniform_(generator, out)
        self.xp.greater_equal(out, p, out=out)
        return self.xp.multiply(out, 1.0 / (1.0 - p), out=out)

    def synchronize(self) -> None:
        """Wait until all queued work on the device has finished (a no-op on the CPU)."""

    def capture(self, step: Callable[[], Any], keep: Any = ()) -> Callable[[], None] | None:
        """A recording of ``step``'s device work that replays with one launch, or ``None``.

        A small training step on a GPU is bound by the host's cost of launching each op, so
        the CUDA backend records the step once as a CUDA graph. Every replay repeats exactly
        the recorded work on the same memory: ``step`` must read whatever changes between
        steps from device arrays (see ``MLP.fit``), and ``keep`` holds the arrays the
        recording uses so that none is freed while it lives. Here, with no graphs, ``None``:
        the caller runs ``step`` itself.
        """
        return None

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        """Make this backend's device current for the enclosed work."""
        yield

    def check_bias(self, x: Any, bias: Any, out: Any) -> None:
        """``bias_activation``'s operands: a bias per column of ``x``, ``out`` shaped like it."""
        self.check(x, bias)
        require_shape("bias_activation", "bias", bias, (x.shape[-1],))
        require_shape("bias_activation", "out", out, x.shape)

    def is_array(self, a: Any) -> bool:
        return isinstance(a, self.array_type)

    def check(self, *arrays: Any) -> None:
        """Raise a ``TypeError`` that names the fix when an array belongs to another device."""
        for a in arrays:
            if not isinstance(a, self.array_type):
                raise TypeError(
                    f"{self.name} backend ({self.device}) got a {type(a).__module__}."
                    f"{type(a).__name__}; move it first with backend.asarray(x)"
                )

    # ------------------------------------------------------------------ linear algebra
    def matmul(
        self, a: Any, b: Any, out: Any = None, transpose_a: bool = False, transpose_b: bool = False
    ) -> Any:
        """``op(a) @ op(b)``; transposes are views, so BLAS reads them without copies.

        A float32 product runs at the backend's ``precision``: see ``matmul_reduced``.
        """
        self.check(a, b)
        if self.precision != "float32" and a.dtype == b.dtype == np.float32:
            return self.matmul_reduced(a, b, out, transpose_a, transpose_b)
        return self.xp_matmul(a, b, out, transpose_a, transpose_b)

    def xp_matmul(self, a: Any, b: Any, out: Any, transpose_a: bool, transpose_b: bool) -> Any:
        """The array library's own product, transposes passed as views."""
        return self.xp.matmul(a.T if transpose_a else a, b.T if transpose_b else b, out=out)

    def matmul_reduced(self, a: Any, b: Any, out: Any, transpose_a: bool, transpose_b: bool) -> Any:
        """A float32 product with operands rounded to the precision's mantissa bits.

        This body emulates what tensor cores do (round the inputs, accumulate in float32), so
        a CPU run reproduces a GPU's reduced-precision numerics; the CUDA backend overrides it
        with the real thing.
        """
        bits = PRECISIONS[self.precision]
        a = self.round_mantissa(a, bits, out=self.scratch("matmul_a", a.shape, a.dtype))
        b = self.round_mantissa(b, bits, out=self.scratch("matmul_b", b.shape, b.dtype))
        return self.xp_matmul(a, b, out, transpose_a, transpose_b)

    def round_mantissa(self, x: Any, bits: int, out: Any = None) -> Any:
        """float32 ``x`` rounded to ``bits`` mantissa bits, to nearest, ties to even.

        Overflow rounds to infinity as the narrower format would; NaN stays NaN (the rounding
        carry alone could turn one into an infinity or a zero).
        """
        self.check(x)
        if x.dtype != np.float32 or not 0 < bits <= 23:
            raise ValueError(f"round_mantissa takes float32 and 1..23 bits, got {x.dtype}, {bits}")
        xp = self.xp
        out = xp.empty_like(x) if out is None else out
        drop = 23 - bits
        if drop == 0:
            xp.copyto(out, x)
            return out
        u = x.view(np.uint32)
        r = out.view(np.uint32)
        xp.right_shift(u, np.uint32(drop), out=r)  # the lowest kept bit decides ties
        xp.bitwise_and(r, np.uint32(1), out=r)
        xp.add(r, np.uint32((1 << drop) - 1 >> 1), out=r)
        xp.add(r, u, out=r)
        xp.bitwise_and(r, np.uint32((0xFFFFFFFF >> drop) << drop), out=r)
        nan = self.scratch("round_nan", x.shape, bool)
        xp.isnan(x, out=nan)
        xp.copyto(r, u, where=nan)
        return out

    def bias_add(self, x: Any, bias: Any, out: Any = None) -> Any:
        """``x + bias`` broadcast over rows; pass ``out=x`` to add in place."""
        self.check(x, bias)
        return self.xp.add(x, bias, out=out)

    def add(self, a: Any, b: Any, out: Any = None) -> Any:
        """Elementwise ``a + b`` (broadcasting); ``out=a`` adds in place."""
        self.check(a, b)
        return self.xp.add(a, b, out=out)

    def multiply(self, a: Any, b: Any, out: Any = None) -> Any:
        """Elementwise ``a * b`` (broadcasting); ``out=a`` multiplies in place."""
        self.check(a, b)
        return self.xp.multiply(a, b, out=out)

    def sum_rows(self, x: Any, out: Any = None) -> Any:
        """Column sums of a 2-D array: the bias gradient."""
        self.check(x)
        return self.xp.sum(x, axis=0, out=out)

    # ------------------------------------------------------------------ activations
    def relu(self, x: Any, out: Any = None) -> Any:
        self.check(x)
        return self.xp.maximum(x, 0, out=out)

    def backprop_relu(self, dy: Any, y: Any, out: Any = None) -> Any:
        """``dy * (y > 0)``: the ReLU output is all the backward needs."""
        self.check(dy, y)
        require_same_shape("backprop_relu", dy=dy, y=y, out=out)
        mask = self.scratch("relu_mask", y.shape, bool)
        self.xp.greater(y, 0, out=mask)
        return self.xp.multiply(dy, mask, out=out)

    def sigmoid(self, x: Any, out: Any = None) -> Any:
        """``1 / (1 + exp(-x))`` computed as ``(1 + tanh(x / 2)) / 2``: no overflow anywhere."""
        self.check(x)
        xp = self.xp
        out = xp.multiply(x, 0.5, out=out)
        xp.tanh(out, out=out)
        xp.multiply(out, 0.5, out=out)
        return xp.add(out, 0.5, out=out)

    def backprop_sigmoid(self, dy: Any, y: Any, out: Any = None) -> Any:
        """``dy * y * (1 - y)``."""
        self.check(dy, y)
        require_same_shape("backprop_sigmoid", dy=dy, y=y, out=out)
        xp = self.xp
        tmp = self.scratch("act_tmp", y.shape, y.dtype)
        xp.subtract(1, y, out=tmp)
        xp.multiply(tmp, y, out=tmp)
        return xp.multiply(dy, tmp, out=out)

    def tanh(self, x: Any, out: Any = None) -> Any:
        self.check(x)
        return self.xp.tanh(x, out=out)

    def backprop_tanh(self, dy: Any, y: Any, out: Any = None) -> Any:
        """``dy * (1 - y**2)``."""
        self.check(dy, y)
        require_same_shape("backprop_tanh", dy=dy, y=y, out=out)
        xp = self.xp
        tmp = self.scratch("act_tmp", y.shape, y.dtype)
        xp.multiply(y, y, out=tmp)
        xp.subtract(1, tmp, out=tmp)
        return xp.multiply(dy, tmp, out=out)

    def identity(self, x: Any, out: Any = None) -> Any:
        self.check(x)
        if out is None or out is x:
            return x
        out[...] = x
        return out

    def backprop_identity(self, dy: Any, y: Any, out: Any = None) -> Any:
        return self.identity(dy, out=out)

    def activation(self, name: str, x: Any, out: Any = None) -> Any:
        """Apply the activation called ``name`` (see ``ACTIVATIONS``)."""
        return getattr(self, check_activation(name))(x, out=out)

    def backprop_activation(self, name: str, dy: Any, y: Any, out: Any = None) -> Any:
        """Gradient through activation ``name``, from its output ``y``."""
        return getattr(self, "backprop_" + check_activation(name))(dy, y, out=out)

    def bias_activation(self, x: Any, bias: Any, name: str, out: Any = None) -> Any:
        """``activation(x + bias)``: one pass over memory where the backend can fuse it."""
        self.check_bias(x, bias, out)
        out = self.bias_add(x, bias, out=out)
        return self.activation(name, out, out=out)

    def softmax(self, x: Any, out: Any = None) -> Any:
        """Row-wise softmax, shifted by the row maximum so ``exp`` cannot overflow."""
        self.check(x)
        xp = self.xp
        out = xp.subtract(x, xp.max(x, axis=1, keepdims=True), out=out)
        xp.exp(out, out=out)
        return xp.divide(out, xp.sum(out, axis=1, keepdims=True), out=out)

    def argmax(self, x: Any) -> Any:
        """Index of the largest value in each row."""
        self.check(x)
        return self.xp.argmax(x, axis=1)

    def all_finite(self, x: Any) -> bool:
        """Whether ``x`` holds no NaN or infinity (reads one flag back per chunk).

        Chunked, so checking a training set never makes a mask as large as the set itself.
        """
        self.check(x)
        flat = x.reshape(-1)
        step = 1 << 20
        return all(
            bool(self.xp.isfinite(flat[i : i + step]).all()) for i in range(0, flat.size, step)
        )

    def backprop_bias_activation(
        self, name: str, dy: Any, y: Any, grad_bias: Any, out: Any = None
    ) -> Any:
        """Backward of ``bias_activation``: returns dL/dz and writes the bias gradient.

        The bias gradient is the column sum of dL/dz; a backend may compute both in one pass.
        """
        require_shape("backprop_bias_activation", "grad_bias", grad_bias, (dy.shape[-1],))
        dz = self.backprop_activation(name, dy, y, out=out)
        self.sum_rows(dz, out=grad_bias)
        return dz

    # ------------------------------------------------------------------ data
    def gather_rows(
        self, source: Any, rows: Any, out: Any, scale: float = 1.0, start: Any = None
    ) -> Any:
        """``out = source[rows] * scale`` converted to ``out.dtype``: batches from a compact set.

        ``source`` may be uint8 (images kept compact on the device); the conversion happens
        per batch into the preallocated ``out``. With ``start``, a one-element integer array,
        ``out`` takes ``len(out)`` rows of ``rows`` from position ``start[0]``: a training
        step reads its batch's place from the device, so one recorded step serves them all.
        """
        self.check(source, rows, out)
        check_gather(source, rows, out, start)
        if start is not None:
            rows = rows_at(rows, start, out)
        xp = self.xp
        if source.dtype == out.dtype:
            xp.take(source, rows, axis=0, out=out)
            if scale != 1.0:
                xp.multiply(out, scale, out=out)
            return out
        staged = self.scratch("gather", out.shape, source.dtype)
        xp.take(source, rows, axis=0, out=staged)
        return xp.multiply(staged, out.dtype.type(scale), out=out)

    # ------------------------------------------------------------------ loss
    def softmax_cross_entropy_accumulate(
        self, logits: Any, labels: Any, grad: Any, totals: Any
    ) -> Any:
        """Mean softmax cross-entropy: writes its gradient w.r.t. ``logits`` into ``grad``.

        Adds the batch's summed loss to ``totals[0]`` and its count of correct predictions
        to ``totals[1]``, on the device, so metrics are read back once per epoch.
        ``grad`` may be ``logits`` itself.
        """
        self.check(logits, labels, grad, totals)
        check_cross_entropy(logits, labels, grad, totals)
        xp = self.xp
        rows, classes = logits.shape
        row_max = self.scratch("ce_max", (rows, 1), logits.dtype)
        row_sum = self.scratch("ce_sum", (rows, 1), logits.dtype)
        flat_index = self.scratch("ce_index", (rows,), np.int64)
        picked = self.scratch("ce_picked", (rows,), logits.dtype)
        predicted = self.scratch("ce_argmax", (rows,), np.int64)
        hits = self.scratch("ce_hits", (rows,), bool)

        xp.argmax(logits, axis=1, out=predicted)
        xp.equal(predicted, labels, out=hits)
        totals[1] += xp.count_nonzero(hits)

        xp.max(logits, axis=1, keepdims=True, out=row_max)
        xp.subtract(logits, row_max, out=grad)  # shifted logits: z - max
        xp.multiply(xp.arange(rows), classes, out=flat_index)
        xp.add(flat_index, labels, out=flat_index)
        xp.take(grad.reshape(-1), flat_index, out=picked)  # z_y - max
        xp.exp(grad, out=grad)
        xp.sum(grad, axis=1, keepdims=True, out=row_sum)
        # loss_i = log(sum_j exp(z_j - max)) - (z_y - max)
        totals[0] += xp.sum(xp.log(row_sum)) - xp.sum(picked)
        xp.divide(grad, row_sum, out=grad)  # softmax
        grad.reshape(-1)[flat_index] -= 1
        return xp.multiply(grad, 1.0 / rows, out=grad)

    def softmax_cross_entropy(self, logits: Any, labels: Any, grad: Any = None) -> tuple[Any, Any]:
        """Mean softmax cross-entropy of integer ``labels``: ``(loss, dloss/dlogits)``.

        The loss is a 0-d array on the device, so nothing synchronizes.
        """
        if grad is None:
            grad = self.empty(logits.shape, logits.dtype)
        totals = self.zeros((2,), np.float64)
        self.softmax_cross_entropy_accumulate(logits, labels, grad, totals)
        return self.xp.asarray(totals[0] / logits.shape[0]), grad  # 0-d array, not a scalar

    # ------------------------------------------------------------------ optimizers
    def _blocks(self, size: int) -> Iterator[slice]:
        """Slices that cover a flat buffer; small blocks keep each pass in cache."""
        step = self.optimizer_block or size
        for start in range(0, size, step):
            yield slice(start, min(start + step, size))

    def sgd_step(
        self,
        param: Any,
        grad: Any,
        velocity: Any,
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        """SGD (PyTorch's convention): ``v = mu*v + g``; step ``g + mu*v`` (Nesterov) or ``v``.

        ``velocity`` is ignored when ``momentum`` is 0; updates ``param`` in place.
        """
        self.check(param, grad)
        require_same_shape(
            "sgd_step", param=param, grad=grad, velocity=velocity if momentum else None
        )
        xp = self.xp
        for block in self._blocks(param.size):
            p, g = param[block], grad[block]
            tmp = self.scratch("opt_tmp", p.shape, p.dtype)
            if weight_decay:  # g + wd * p
                xp.multiply(p, weight_decay, out=tmp)
                g = xp.add(tmp, g, out=tmp)
            if momentum:
                vb = velocity[block]
                xp.multiply(vb, momentum, out=vb)
                xp.add(vb, g, out=vb)
                if nesterov:  # g + mu * v
                    tmp2 = self.scratch("opt_tmp2", p.shape, p.dtype)
                    xp.multiply(vb, momentum, out=tmp2)
                    g = xp.add(g, tmp2, out=tmp)
                else:
                    g = vb
            xp.multiply(g, lr, out=tmp)
            xp.subtract(p, tmp, out=p)

    def adam_step(
        self,
        param: Any,
        grad: Any,
        m: Any,
        v: Any,
        step: Any,
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        """Adam (``decoupled=False``: L2 added to the gradient) or AdamW (decay on the weights).

        Same arithmetic as PyTorch: ``p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)``.
        ``step`` (from 1) is an int or a one-element integer array on the device, which a
        recorded training step advances itself. Updates ``param``, ``m`` and ``v`` in place,
        block by block so that each block's several passes stay in cache.
        """
        self.check(param, grad, m, v)
        require_same_shape("adam_step", param=param, grad=grad, m=m, v=v)
        xp = self.xp
        step_size, inv_sqrt_bc2, l2, decay = adam_scalars(
            host_int(step), lr, beta1, beta2, weight_decay, decoupled
        )
        for block in self._blocks(param.size):
            p, g, mb, vb = param[block], grad[block], m[block], v[block]
            tmp = self.scratch("opt_tmp", p.shape, p.dtype)
            tmp2 = self.scratch("opt_tmp2", p.shape, p.dtype)
            if l2:  # Adam's L2: g + wd * p
                xp.multiply(p, l2, out=tmp2)
                g = xp.add(tmp2, g, out=tmp2)
            if decay != 1.0:  # AdamW: decay the weights themselves
                xp.multiply(p, decay, out=p)
            # m = b1*m + (1-b1)*g ; v = b2*v + (1-b2)*g*g
            xp.multiply(mb, beta1, out=mb)
            xp.multiply(g, 1.0 - beta1, out=tmp)
            xp.add(mb, tmp, out=mb)
            xp.multiply(vb, beta2, out=vb)
            xp.multiply(g, g, out=tmp)
            xp.multiply(tmp, 1.0 - beta2, out=tmp)
            xp.add(vb, tmp, out=vb)
            # p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
            xp.sqrt(vb, out=tmp)
            xp.multiply(tmp, inv_sqrt_bc2, out=tmp)
            xp.add(tmp, eps, out=tmp)
            xp.divide(mb, tmp, out=tmp)
            xp.multiply(tmp, step_size, out=tmp)
            xp.subtract(p, tmp, out=p)
