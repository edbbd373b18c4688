"""The backend interface: every array operation the layers and optimizers need.

Each public op states its contract, checks its operands once (``backends/operands.py``:
which device they live on, that their shapes fit, and that what it writes holds no memory
of what it reads, ``check_apart``) and then calls its body, ``_op``.
The default bodies, written against the array module ``self.xp`` (NumPy or CuPy), are in
``backends/xp_backend.py``; a backend overrides only the bodies it can fuse or run faster,
and those only compute. Ops come in forward/backward pairs whose backward needs only the
forward's output, and every op that makes an array takes ``out=``, so a training step runs
without allocating.

Arrays of other libraries (PyTorch, JAX, CuPy, anything that speaks DLPack or the CUDA array
interface) come in through one method, ``Backend.adopt``: it asks the array where it lives
(``__dlpack_device__``, before importing anything) and uses its memory in place where that is
this backend's device, or says where it is and how to fix that.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .buffers import BufferCache
from .operands import (
    check_activation,
    check_bias,
    check_count,
    check_gather,
    check_loss,
    check_matmul,
    check_precision,
    check_same_shape,
    check_shape,
)

#: DLPack's device types (the first of ``__dlpack_device__()``), named for messages.
DLPACK_DEVICES = {
    1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal", 9: "vpi",
    10: "rocm", 11: "rocm_host", 12: "ext_dev", 13: "cuda_managed", 14: "oneapi", 15: "webgpu",
    16: "hexagon", 17: "maia",
}  # fmt: skip
KDLCPU, KDLCUDA, KDLCUDA_MANAGED = 1, 2, 13
#: Device types whose memory the host reads in place (those ``np.from_dlpack`` takes).
HOST_READABLE = frozenset({KDLCPU, 3, 11, KDLCUDA_MANAGED})  # 3, 11: pinned CUDA, ROCm host


def array_location(a: Any) -> tuple[int, int | None] | None:
    """Where ``a``'s memory is, as DLPack numbers it: ``(device type, index)`` from
    ``__dlpack_device__()`` (kDLCPU = 1, kDLCUDA = 2, …); ``(kDLCUDA, None)`` for an object
    with only ``__cuda_array_interface__`` (its pointer knows which GPU); ``None`` for one with
    neither (a list, an object with ``__array__`` or a buffer: host memory). Asking costs no
    import, so a CUDA tensor can be refused on a machine without CuPy."""
    probe = getattr(a, "__dlpack_device__", None)
    if probe is not None:
        kind, index = probe()
        return int(kind), int(index)
    if hasattr(a, "__cuda_array_interface__"):
        return KDLCUDA, None
    return None


def host_view(a: Any) -> np.ndarray:
    """``a``, in host memory, as a NumPy array sharing that memory where its library lets it:
    DLPack first (PyTorch, JAX), else ``np.asarray`` (``__array__``, the buffer protocol; a
    list is copied, a ragged one raises ``ValueError``)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "__dlpack__"):
        try:
            return np.from_dlpack(a)
        except (BufferError, RuntimeError, TypeError):  # a dtype NumPy's DLPack lacks, say
            if not hasattr(a, "__array__"):
                raise
            try:
                return np.asarray(a)
            except (TypeError, ValueError, RuntimeError) as exc:  # bfloat16, which NumPy lacks
                dtype = getattr(a, "dtype", "its dtype")
                raise TypeError(
                    f"a {_type_name(a)} of {dtype} has no NumPy form ({exc}): pass it as "
                    "float32 (x.float() in PyTorch)"
                ) from None
    return np.asarray(a)


def _type_name(a: Any) -> str:
    """``a``'s type as its user writes it: ``torch.Tensor``, ``cupy.ndarray``."""
    return f"{type(a).__module__.partition('.')[0]}.{type(a).__qualname__}"


def _refuse_grad(a: Any) -> None:
    if getattr(a, "requires_grad", False) is True:
        raise TypeError(
            f"a {_type_name(a)} that requires grad: pass x.detach() (the model reads its values; "
            "it does not backpropagate into them)"
        )


def _move_hint(a: Any, device: str) -> str:
    """How to move ``a`` to ``device`` in its own library, where we know it."""
    library = type(a).__module__.partition(".")[0]
    if device == "cpu":
        to_host = {"torch": "x.cpu()", "cupy": "x.get()", "jax": "jax.device_get(x)"}
        how = to_host.get("jax" if library == "jaxlib" else library)
    else:
        how = f"x.to('{device}')" if library == "torch" else None
    return f"move it to {device} first" + (f" ({how})" if how else "")


class Backend:
    """The interface. Subclasses set ``name``, ``device``, ``xp`` and ``array_type`` and
    inherit the bodies from ``XpBackend``."""

    name: str = "abstract"
    device: str = "none"
    xp: Any = None
    array_type: type = object

    def __init__(self, precision: str = "float32") -> None:
        self._thread = threading.local()  # what each thread computes with alone
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

    # ------------------------------------------------------------------ memory and devices
    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``a`` as an array of this backend (no copy when it already is one)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        """Copy an array of this backend to a host NumPy array."""
        return np.asarray(a)

    def empty(self, shape: Any, dtype: Any = np.float32) -> Any:
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: Any, dtype: Any = np.float32) -> Any:
        return self.xp.zeros(shape, dtype=dtype)

    def scratch(self, key: str, shape: tuple, dtype: Any) -> Any:
        """A reusable work buffer for an op body, allocated once per (key, shape, dtype) and
        thread: threads that share a backend (inference from many at once) never share one."""
        return self._scratch_cache().get(key, shape, dtype)

    def scratch_arrays(self) -> tuple:
        """The calling thread's work buffers (a recorded step keeps those it uses alive)."""
        return self._scratch_cache().arrays()

    def _scratch_cache(self) -> BufferCache:
        cache = getattr(self._thread, "scratch", None)
        if cache is None:
            cache = self._thread.scratch = BufferCache(self, limit=256)
        return cache

    def random_generator(self, seed: Any) -> Any:
        """A seeded generator on this device (``seed`` may be an int or a sequence of ints)."""
        return self.xp.random.default_rng(seed)

    def synchronize(self) -> None:
        """Wait until all queued work on the device has finished (a no-op on the CPU)."""

    #: Why the last ``capture`` made no recording (``None``: it made one, or was not asked).
    capture_failure: str | None = None

    def capture(self, step: Callable[[], Any], keep: Any = ()) -> Callable[[], None] | None:
        """A recording of ``step``'s device work that replays with one launch, or ``None``.

        A small training step on a GPU is bound by the host's cost of launching each op, so
        the CUDA backend records the step once as a CUDA graph. Every replay repeats exactly
        the recorded work on the same memory: ``step`` must read whatever changes between
        steps from device arrays (see ``mlp/training.py``), and ``keep`` holds the arrays
        the recording uses so that none is freed while it lives. Here, with no graphs,
        ``None``: the caller runs ``step`` itself.
        """
        return None

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        """Make this backend's device current for the enclosed work."""
        yield

    def threads_for(
        self, product: tuple[int, int, int], dtype: Any
    ) -> contextlib.AbstractContextManager:
        """The enclosed work's largest product is ``product`` (rows × inner × columns) of
        ``dtype``: a backend may pick its threads for it (the CPU's: ``backends/threads.py``)."""
        return contextlib.nullcontext()

    def is_array(self, a: Any) -> bool:
        return isinstance(a, self.array_type)

    def adopt(self, a: Any) -> Any:
        """``a``, an array of any library, in place: where its memory is on this backend's
        device (a CUDA tensor or CuPy array on this GPU) an array of this backend sharing it,
        strides and dtype as they are; where it is host memory (a NumPy array, a CPU tensor,
        a list) a NumPy view of it, which on the CPU is this backend's array and for a GPU
        is uploaded by ``asarray``, its dtype converted on the host first as ever. Anything
        elsewhere (another GPU, a CUDA tensor for the CPU) raises a one-line ``TypeError``
        that names where it is and the fix; so does a tensor that requires grad.
        """
        _refuse_grad(a)
        location = array_location(a)
        if location is None or location[0] in HOST_READABLE:
            return host_view(a)
        return self._adopt(a, location)

    def adopt_on_host(self, a: Any) -> np.ndarray:
        """``a`` as a host NumPy array, for values checked on the host (labels, sample
        weights): host memory in place, this backend's device memory copied back, memory
        anywhere else refused as ``adopt`` refuses it."""
        adopted = self.adopt(a)
        return adopted if isinstance(adopted, np.ndarray) else self.to_numpy(adopted)

    def _adopt(self, a: Any, location: tuple[int, int | None]) -> Any:
        """``adopt``'s body for memory off the host: a backend whose device is elsewhere
        adopts what lives there; this one, none."""
        raise self._refusal(a, location)

    def _refusal(self, a: Any, location: tuple[int, int | None]) -> TypeError:
        """The error for an array this backend cannot use where it is: where, and the fix."""
        device_type, index = location
        where = DLPACK_DEVICES.get(device_type, f"DLPack device type {device_type}")
        where = where if index is None else f"{where}:{index}"
        refused = f"a {_type_name(a)} on {where} cannot be used on {self.device}"
        if device_type not in (KDLCUDA, KDLCUDA_MANAGED):
            return TypeError(
                f"{refused} (models compute on the CPU or CUDA GPUs): {_move_hint(a, self.device)}"
            )
        gpu = "cuda" if index is None else f"cuda:{index}"
        return TypeError(
            f"{refused}: use a model on {gpu} (MLP(..., device='{gpu}')) or "
            f"{_move_hint(a, self.device)}"
        )

    def check_device(self, *arrays: Any) -> None:
        """Raise a ``TypeError`` that names the fix when an array (``None`` is skipped)
        belongs to another device or library."""
        for a in arrays:
            if a is not None and not isinstance(a, self.array_type):
                raise TypeError(
                    f"{self.name} backend ({self.device}) got a {type(a).__module__}."
                    f"{type(a).__name__}; move it first with backend.asarray(x)"
                )

    def check_apart(self, op: str, written: dict[str, Any], **read: Any) -> None:
        """Raise ``ValueError`` where an array ``op`` writes (``written``, by name) shares
        memory with another of its operands (``None`` is skipped): its bodies read and write
        them in their own order, a GPU's all at once, so they would read what they had
        written. (An elementwise op's ``out`` may be one of its inputs: those ops support it.)
        O(1): it compares the arrays' bounds, so two interleaved views count as sharing."""
        outs = [(name, a) for name, a in written.items() if a is not None]
        ins = [(name, a) for name, a in read.items() if a is not None]
        for i, (name, a) in enumerate(outs):
            for other, b in outs[i + 1 :] + ins:  # each written array against all the rest
                if self.xp.may_share_memory(a, b):
                    raise ValueError(
                        f"{op}: {name} shares memory with {other}, and {op} writes {name}: "
                        f"give {name} memory of its own"
                    )

    # ------------------------------------------------------------------ linear algebra
    def matmul(
        self, a: Any, b: Any, out: Any = None, transpose_a: bool = False, transpose_b: bool = False
    ) -> Any:
        """``op(a) @ op(b)`` of two matrices; transposes are views, read without copies.

        A float32 product runs at the backend's ``precision`` (see ``_matmul_reduced``).
        """
        self.check_device(a, b, out)
        check_matmul(a, b, out, transpose_a, transpose_b)
        self.check_apart("matmul", {"out": out}, a=a, b=b)  # NumPy copies; cuBLAS would not
        return self._product(a, b, out, transpose_a, transpose_b)

    def _product(self, a: Any, b: Any, out: Any, transpose_a: bool, transpose_b: bool) -> Any:
        """The body a checked product ends in: ``_matmul_reduced`` for float32 at a reduced
        ``precision``, else ``_matmul``."""
        if self.precision != "float32" and a.dtype == b.dtype == np.float32:
            return self._matmul_reduced(a, b, out, transpose_a, transpose_b)
        return self._matmul(a, b, out, transpose_a, transpose_b)

    def linear(self, x: Any, weight: Any, bias: Any, name: str, out: Any = None) -> Any:
        """``activation(x @ weight + bias)``, a dense layer's forward: ``matmul`` then
        ``bias_activation``, unless the backend folds the bias and the activation into the
        product itself (the CUDA backend: a cuBLASLt epilogue)."""
        self.check_device(x, weight, bias, out)
        check_matmul(x, weight, out, False, False)
        check_shape("linear", "bias", bias, (weight.shape[1],))
        self.check_apart("linear", {"out": out}, x=x, weight=weight, bias=bias)
        return self._linear(x, weight, bias, check_activation(name), out)

    def round_mantissa(self, x: Any, bits: int, out: Any = None) -> Any:
        """float32 ``x`` rounded to ``bits`` mantissa bits, to nearest, ties to even.

        Overflow rounds to infinity as the narrower format would; NaN stays NaN (the rounding
        carry alone could turn one into an infinity or a zero).
        """
        self.check_device(x, out)
        if x.dtype != np.float32 or not 0 < bits <= 23:
            raise ValueError(f"round_mantissa takes float32 and 1..23 bits, got {x.dtype}, {bits}")
        check_same_shape("round_mantissa", x=x, out=out)
        return self._round_mantissa(x, bits, self.xp.empty_like(x) if out is None else out)

    def bias_add(self, x: Any, bias: Any, out: Any = None) -> Any:
        """``x + bias`` with a bias per column; pass ``out=x`` to add in place."""
        self.check_device(x, bias, out)
        check_bias("bias_add", x, bias, out)
        return self._bias_add(x, bias, out)

    def add(self, a: Any, b: Any, out: Any = None) -> Any:
        """Elementwise ``a + b`` (broadcasting); ``out=a`` adds in place."""
        self.check_device(a, b, out)
        return self._add(a, b, out)

    def multiply(self, a: Any, b: Any, out: Any = None) -> Any:
        """Elementwise ``a * b`` (broadcasting); ``out=a`` multiplies in place."""
        self.check_device(a, b, out)
        return self._multiply(a, b, out)

    def sum_rows(self, x: Any, out: Any = None) -> Any:
        """Column sums of a 2-D array: the bias gradient."""
        self.check_device(x, out)
        if x.ndim != 2:
            raise ValueError(f"sum_rows: x must be 2-D, got {x.ndim}-D")
        check_shape("sum_rows", "out", out, (x.shape[1],))
        self.check_apart("sum_rows", {"out": out}, x=x)  # a GPU's is a product: it would race
        return self._sum_rows(x, out)

    # ------------------------------------------------------------------ activations
    def activation(self, name: str, x: Any, out: Any = None) -> Any:
        """The activation called ``name`` (see ``ACTIVATIONS``), applied elementwise."""
        self.check_device(x, out)
        check_same_shape("activation", x=x, out=out)
        return self._activation(check_activation(name), x, out)

    def backprop_activation(self, name: str, dy: Any, y: Any, out: Any = None) -> Any:
        """Gradient through activation ``name``, from its output ``y``: ``dy * f'``."""
        self.check_device(dy, y, out)
        check_same_shape("backprop_" + name, dy=dy, y=y, out=out)
        return self._backprop_activation(check_activation(name), dy, y, out)

    def bias_activation(self, x: Any, bias: Any, name: str, out: Any = None) -> Any:
        """``activation(x + bias)``: one pass over memory where the backend can fuse it."""
        self.check_device(x, bias, out)
        check_bias("bias_activation", x, bias, out)
        return self._bias_activation(x, bias, check_activation(name), out)

    def backprop_bias_activation(
        self, name: str, dy: Any, y: Any, grad_bias: Any, out: Any = None
    ) -> Any:
        """Backward of ``bias_activation``: returns dL/dz and writes the bias gradient.

        The bias gradient is the column sum of dL/dz; a backend may compute both in one pass.
        """
        self.check_device(dy, y, grad_bias, out)
        check_same_shape("backprop_bias_activation", dy=dy, y=y, out=out)
        check_bias("backprop_bias_activation", dy, grad_bias, out)
        self.check_apart("backprop_bias_activation", {"grad_bias": grad_bias}, dy=dy, y=y, out=out)
        return self._backprop_bias_activation(check_activation(name), dy, y, grad_bias, out)

    def backprop_linear(
        self,
        name: str,
        dy: Any,
        y: Any,
        x: Any,
        grad_weight: Any,
        grad_bias: Any,
        out: Any = None,
    ) -> Any:
        """Backward of ``linear`` as far as its product: returns dL/dz, writes the weight
        gradient ``xᵀ·dz`` and the bias gradient (dz's column sums). A backend may take the
        bias gradient in the product's epilogue (the CUDA backend: cuBLASLt's BGRADA)."""
        if grad_weight is None or grad_bias is None:
            raise ValueError("backprop_linear: grad_weight and grad_bias are written: pass both")
        self.check_device(dy, y, x, grad_weight, grad_bias, out)
        check_same_shape("backprop_linear", dy=dy, y=y, out=out)
        check_bias("backprop_linear", dy, grad_bias, out)
        check_matmul(x, dy, grad_weight, True, False)
        written = {"grad_weight": grad_weight, "grad_bias": grad_bias}
        self.check_apart("backprop_linear", written, dy=dy, y=y, x=x, out=out)
        # dz goes into out (dy's memory, say) before the product reads x
        self.check_apart("backprop_linear", {"out": out}, x=x)
        return self._backprop_linear(check_activation(name), dy, y, x, grad_weight, grad_bias, out)

    def softmax(self, x: Any, out: Any = None) -> Any:
        """Row-wise softmax, shifted by the row maximum so ``exp`` cannot overflow."""
        self.check_device(x, out)
        if x.ndim != 2:
            raise ValueError(f"softmax: x must be 2-D, got {x.ndim}-D")
        check_same_shape("softmax", x=x, out=out)
        return self._softmax(x, out)

    def argmax(self, x: Any) -> Any:
        """Index of the largest value in each row."""
        self.check_device(x)
        if x.ndim != 2:
            raise ValueError(f"argmax: x must be 2-D, got {x.ndim}-D")
        return self._argmax(x)

    def all_finite(self, x: Any) -> bool:
        """Whether ``x`` holds no NaN or infinity (reads one flag back per chunk).

        Chunked, so checking a training set never makes a mask as large as the set itself.
        """
        self.check_device(x)
        return self._all_finite(x)

    # ------------------------------------------------------------------ data and dropout
    def gather_rows(
        self, source: Any, rows: Any, out: Any, scale: float = 1.0, start: Any = None
    ) -> Any:
        """``out = source[rows] * scale`` converted to ``out.dtype``: batches from a compact set.

        ``source`` may be uint8 (images kept compact on the device); the conversion happens
        per batch into the preallocated ``out``. With ``start``, a one-element int64 array,
        ``out`` takes ``len(out)`` rows of ``rows`` from position ``start[0]``: a training
        step reads its batch's place from the device, so one recorded step serves them all.
        """
        self.check_device(source, rows, out, start)
        check_gather(source, rows, out, scale, start)
        self.check_apart("gather_rows", {"out": out}, source=source, rows=rows, start=start)
        return self._gather_rows(source, rows, out, scale, start)

    def gather_batch(
        self,
        inputs: Any,
        targets: Any,
        rows: Any,
        x: Any,
        y: Any,
        scale: float = 1.0,
        start: Any = None,
    ) -> None:
        """``gather_rows`` of ``inputs`` (times ``scale``) into ``x`` and of ``targets`` into
        ``y``, from the same rows: a training batch, which a backend may gather in one pass."""
        self.check_device(inputs, targets, rows, x, y, start)
        check_gather(inputs, rows, x, scale, start)
        check_gather(targets, rows, y, 1.0, start)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"gather_batch: x has {x.shape[0]} rows but y has {y.shape[0]}: they must match"
            )
        written = {"x": x, "y": y}
        self.check_apart(
            "gather_batch", written, inputs=inputs, targets=targets, rows=rows, start=start
        )
        self._gather_batch(inputs, targets, rows, x, y, scale, start)

    def _gather_batch(
        self, inputs: Any, targets: Any, rows: Any, x: Any, y: Any, scale: float, start: Any
    ) -> None:
        self._gather_rows(inputs, rows, x, scale, start)
        self._gather_rows(targets, rows, y, 1.0, start)

    def dropout_mask(self, generator: Any, p: float, out: Any) -> Any:
        """Fill ``out`` with ``1/(1-p)`` where a unit is kept (probability ``1 - p``), else 0."""
        self.check_device(out)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout_mask: p must be in [0, 1), got {p}")
        return self._dropout_mask(generator, p, out)

    # ------------------------------------------------------------------ loss
    def accumulate_loss(
        self,
        name: str,
        outputs: Any,
        targets: Any,
        grad: Any,
        totals: Any,
        weights: Any = None,
        weight_sum: Any = None,
    ) -> Any:
        """The loss ``name`` (see ``LOSSES``) of a batch: writes its gradient w.r.t.
        ``outputs`` into ``grad`` (which may be ``outputs`` itself), and adds the batch's
        summed loss to ``totals[0]`` and its correct predictions to ``totals[1]`` (none for
        ``squared_error``), on the device, so metrics are read back once per epoch.

        The gradient is that of the batch's mean loss; with ``weights`` (one per row, and
        ``weight_sum``, their sum, a one-element array the step computes on the device),
        of their weighted mean, and the totals are weighted sums.
        """
        self.check_device(outputs, targets, grad, totals, weights, weight_sum)
        check_loss(name, outputs, targets, grad, totals, weights, weight_sum)
        return self._loss(name, outputs, targets, grad, totals, weights, weight_sum)

    def _loss(
        self,
        name: str,
        outputs: Any,
        targets: Any,
        grad: Any,
        totals: Any,
        weights: Any,
        weight_sum: Any,
    ) -> Any:
        """Loss ``name``'s body: by default ``_<name>``; a backend with fused kernels runs
        ``LOSSES[name]`` where it can."""
        body = getattr(self, "_" + name)
        return body(outputs, targets, grad, totals, weights, weight_sum)

    def mean_loss(
        self, name: str, outputs: Any, targets: Any, grad: Any = None, weights: Any = None
    ) -> tuple[Any, Any]:
        """``(mean loss, its gradient)`` of ``outputs`` against ``targets``, the loss a 0-d
        array on the device (so nothing synchronizes)."""
        if grad is None:
            grad = self.empty(outputs.shape, outputs.dtype)
        totals = self.zeros((2,), np.float64)
        weight_sum = None if weights is None else self.sum_rows(weights.reshape(-1, 1))
        self.accumulate_loss(name, outputs, targets, grad, totals, weights, weight_sum)
        total = outputs.shape[0] if weights is None else weight_sum[0]
        return self.xp.asarray(totals[0] / total), grad  # 0-d array, not a scalar

    # ------------------------------------------------------------------ optimizer updates
    def sgd_update(
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
        velocity = velocity if momentum else None
        self.check_device(param, grad, velocity)
        check_same_shape("sgd_update", param=param, grad=grad, velocity=velocity)
        self.check_apart("sgd_update", {"param": param, "velocity": velocity}, grad=grad)
        self._sgd_update(param, grad, velocity, lr, momentum, nesterov, weight_decay)

    def adam_update(
        self,
        param: Any,
        grad: Any,
        m: Any,
        v: Any,
        count: Any,
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        """Adam (``decoupled=False``: L2 added to the gradient) or AdamW (decay on the weights).

        Same arithmetic as PyTorch: ``p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)``.
        ``count`` says which update this is, from 1 (the bias corrections' t): an int, or a
        one-element int64 array on the device, which a recorded training step advances
        itself. Updates ``param``, ``m`` and ``v`` in place.
        """
        count_array = count if hasattr(count, "shape") else None
        self.check_device(param, grad, m, v, count_array)
        check_same_shape("adam_update", param=param, grad=grad, m=m, v=v)
        check_count(count)
        written = {"param": param, "m": m, "v": v}
        self.check_apart("adam_update", written, grad=grad, count=count_array)
        self._adam_update(param, grad, m, v, count, lr, beta1, beta2, eps, weight_decay, decoupled)
