"""The CUDA backend: CuPy arrays, cuBLAS products, fused kernels, and recorded steps.

CuPy is imported when a ``CupyBackend`` is created, never when this module is imported,
so the module is safe to import on a machine without CUDA. Each body here replaces the
default one (``backends/xp_backend.py``) with a kernel (``kernels.py``) or a cuBLAS call
(``cublas.py``); ``capture`` records a whole step (``graphs.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..base import KDLCUDA, KDLCUDA_MANAGED
from ..errors import BackendUnavailable, install_hint
from ..operands import LOSSES
from ..xp_backend import XpBackend, adam_scalars
from . import cublas, cublaslt, graphs, kernels


def import_cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailable(
            "CuPy is not installed: install the extra that matches your CUDA version, "
            f"{install_hint('cuda12', 'cuda13')} (or use --device cpu)"
        ) from exc
    return cupy


#: The dtypes the raw kernels (loss, Adam) are built for, as their C types (``kernels.build``).
_RAW_KERNEL_TYPES = {"float32": "float", "float64": "double"}

#: cuBLAS's compute type for a float32 product at each precision cuBLASLt's epilogues take.
_LT_COMPUTE = {
    "float32": cublas.CUBLAS_COMPUTE_32F,
    "tf32": cublas.CUBLAS_COMPUTE_32F_FAST_TF32,
}


def _linalg_settings(cupy: Any) -> Any:
    """CuPy's module holding the float32 matmul compute type, or None where it has none."""
    linalg = getattr(getattr(cupy, "_core", None), "_routines_linalg", None)
    needed = ("set_compute_type", "get_compute_type", "COMPUTE_TYPE_TF32")
    return linalg if linalg is not None and all(hasattr(linalg, n) for n in needed) else None


class CupyBackend(XpBackend):
    """Runs every op on one CUDA GPU; fused kernels replace the multi-pass default bodies."""

    name = "cupy"

    def __init__(self, index: int = 0, precision: str = "float32") -> None:
        super().__init__(precision)
        cupy = import_cupy()
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # no driver, no GPU: CuPy raises CUDARuntimeError or RuntimeError
            raise BackendUnavailable(
                f"no CUDA GPU is available here ({exc}); use --device cpu"
            ) from exc
        if count == 0:
            raise BackendUnavailable("no CUDA GPU is available here; use --device cpu")
        if not 0 <= index < count:
            raise BackendUnavailable(
                f"cuda:{index} does not exist: this machine has {count} GPU(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
        self.xp = cupy
        self.array_type = cupy.ndarray
        self.index = index
        self.device = f"cuda:{index}"
        self._device = cupy.cuda.Device(index)
        self._kernels = kernels.build(cupy)
        self._ones: dict[tuple, Any] = {}
        self._linalg = _linalg_settings(cupy)
        with self._device:
            self._zero_index = cupy.zeros(1, np.int64)  # gather_rows' start when none is given
        # The Adam kernel's grid: as many of its blocks as the multiprocessors hold at once
        attributes = self._device.attributes
        per_multiprocessor = attributes["MaxThreadsPerMultiProcessor"] // kernels.ADAM_THREADS
        self._adam_blocks = max(1, per_multiprocessor) * attributes["MultiProcessorCount"]
        self._capture_stream: Any = None
        #: Why the last ``capture`` gave no recording (None after one that did).
        self.capture_failure: str | None = None

    @property
    def bus_id(self) -> str:
        """The GPU's PCI bus id: which GPU it is, however ``CUDA_VISIBLE_DEVICES`` numbers it."""
        return self._device.pci_bus_id

    def hardware(self) -> str:
        properties = self.xp.cuda.runtime.getDeviceProperties(self.index)
        name = properties["name"]
        name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        memory = properties["totalGlobalMem"] / 2**30
        return f"{name}, {memory:.0f} GiB, CuPy {self.xp.__version__}"

    # ------------------------------------------------------------------ memory and devices
    def asarray(self, a: Any, dtype: Any = None) -> Any:
        with self._device:
            return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return self.xp.asnumpy(a)

    def _adopt(self, a: Any, location: tuple[int, int | None]) -> Any:
        """GPU memory on this device in place: a CuPy array as it is, anything speaking DLPack
        through ``cupy.from_dlpack``, the CUDA array interface through ``cupy.asarray``
        (views, no copy)."""
        if location[0] not in (KDLCUDA, KDLCUDA_MANAGED):
            return super()._adopt(a, location)
        if location[1] not in (None, self.index):
            raise self._refusal(a, location)
        cupy = self.xp
        with self._device:
            if isinstance(a, cupy.ndarray):
                adopted = a
            elif hasattr(a, "__dlpack__"):
                adopted = cupy.from_dlpack(a)
            else:
                adopted = cupy.asarray(a)
        if adopted.data.device_id != self.index:  # an interface's pointer knows its GPU
            raise self._refusal(a, (KDLCUDA, adopted.data.device_id))
        return adopted

    def empty(self, shape: Any, dtype: Any = np.float32) -> Any:
        with self._device:
            return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: Any, dtype: Any = np.float32) -> Any:
        with self._device:
            return self.xp.zeros(shape, dtype=dtype)

    def random_generator(self, seed: Any) -> Any:
        # CuPy's generator takes one integer: fold a seed sequence into one, as NumPy would.
        state = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
        with self._device:
            return self.xp.random.default_rng(state)

    def synchronize(self) -> None:
        self._device.synchronize()

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        with self._device:
            yield

    def capture(self, step: Callable[[], Any], keep: Any = ()) -> Callable[[], None] | None:
        """``step`` recorded as a CUDA graph, replayed by one launch on the current stream.

        Where anything refuses to be recorded, the reason is kept in ``capture_failure`` and
        the answer is ``None``: the caller runs its steps one op at a time, as before.
        ``MLP_NO_CUDA_GRAPH=1`` turns recording off.
        """
        if graphs.disabled():
            self.capture_failure = "MLP_NO_CUDA_GRAPH is set"
            return None
        with self._device:
            if self._capture_stream is None:
                self._capture_stream = self.xp.cuda.Stream(non_blocking=True)
            graph, self.capture_failure = graphs.record(self.xp, self._capture_stream, step)
        if graph is None:
            return None
        owned = (
            self._zero_index,
            self.scratch_arrays(),
            tuple(self._bf16_buffers().values()),
            tuple(self._ones.values()),
            getattr(self._thread, "lt", None),  # its workspace
        )
        return graphs.Recording(graph, (keep, owned))

    # ------------------------------------------------------------------ products
    def gemm(
        self,
        a: Any,
        b: Any,
        out: Any = None,
        transpose_a: bool = False,
        transpose_b: bool = False,
        input_type: int = cublas.CUDA_R_32F,
        compute_type: int = cublas.CUBLAS_COMPUTE_32F,
    ) -> Any:
        """``op(a)·op(b)`` through cuBLAS called directly, on this GPU (see ``cublas.gemm``)."""
        with self._device:
            return cublas.gemm(
                self.xp, a, b, out, transpose_a, transpose_b, input_type, compute_type
            )

    def _matmul(self, a: Any, b: Any, out: Any, transpose_a: bool, transpose_b: bool) -> Any:
        """float32 products through ``gemm`` (so that a training step can be recorded as a
        CUDA graph); any other through ``cupy.matmul``."""
        if cublas.fits(a, b, out):
            return self.gemm(a, b, out, transpose_a, transpose_b)
        return super()._matmul(a, b, out, transpose_a, transpose_b)

    def _linear(self, x: Any, weight: Any, bias: Any, name: str, out: Any) -> Any:
        """The bias and the activation in the product's epilogue (``cublaslt.py``); the GEMM
        and the bias kernel where cuBLASLt does not take the product."""
        epilogue = cublaslt.EPILOGUES.get(name)
        if epilogue and self._lt_product(x, weight, out, False, epilogue, bias):
            return out
        return super()._linear(x, weight, bias, name, out)

    def _backprop_linear(
        self, name: str, dy: Any, y: Any, x: Any, grad_weight: Any, grad_bias: Any, out: Any
    ) -> Any:
        """The bias gradient in the weight gradient's epilogue (cuBLASLt's BGRADA: dz's
        column sums); the product with a row of ones beside it where cuBLASLt does not."""
        dz = self._backprop_activation(name, dy, y, out)
        bgrad = cublaslt.CUBLASLT_EPILOGUE_BGRADA
        # The row of ones for a batch of one row (a product with k = 1, which cuBLASLt before
        # 12.3.4 refused for BGRADA: nvmath-python's checks), and at TF32, where cuBLASLt does
        # not say whether BGRADA sums dz before or after rounding it: the bias gradient stays
        # an exact float32 sum at every precision, as PyTorch's does.
        fused = x.shape[0] > 1 and self.precision == "float32"
        if not (fused and self._lt_product(x, dz, grad_weight, True, bgrad, grad_bias)):
            self._sum_rows(dz, grad_bias)
            self._product(x, dz, grad_weight, True, False)
        return dz

    def _lt_product(
        self, a: Any, b: Any, out: Any, transpose_a: bool, epilogue: int, vector: Any
    ) -> bool:
        """``op(a)·b`` into ``out`` through cuBLASLt with ``epilogue`` on ``vector``, where
        it takes the operands and this precision; False, nothing done, where not."""
        compute_type = _LT_COMPUTE.get(self.precision)
        if not (compute_type and cublaslt.fits(a, b, vector, out)):
            return False
        with self._device:
            lt = self._lt()
            return lt is not None and lt.product(
                self.xp, a, b, out, transpose_a, False, epilogue, vector, compute_type
            )

    def _lt(self) -> cublaslt.Lt | None:
        """The calling thread's cuBLASLt on this GPU (``None`` where it cannot serve)."""
        if not hasattr(self._thread, "lt"):
            try:
                self._thread.lt = cublaslt.Lt.make(self.xp)
            except MemoryError:  # no room for its workspace now: the kernels serve, asked again
                return None
        return self._thread.lt

    def _matmul_reduced(
        self, a: Any, b: Any, out: Any, transpose_a: bool, transpose_b: bool
    ) -> Any:
        """TF32 or bf16 tensor-core products; the default emulation where neither fits."""
        if self.precision == "bf16" and a.size and b.size:
            a16, b16 = self._to_bf16(a, "a"), self._to_bf16(b, "b")
            return self.gemm(a16, b16, out, transpose_a, transpose_b, cublas.CUDA_R_16BF)
        if self.precision == "tf32" and cublas.fits(a, b, out):
            tf32 = cublas.CUBLAS_COMPUTE_32F_FAST_TF32
            return self.gemm(a, b, out, transpose_a, transpose_b, compute_type=tf32)
        if self.precision == "tf32" and self._linalg is not None:
            with self._float32_compute_type(self._linalg.COMPUTE_TYPE_TF32):
                return super()._matmul(a, b, out, transpose_a, transpose_b)
        return super()._matmul_reduced(a, b, out, transpose_a, transpose_b)

    @contextlib.contextmanager
    def _float32_compute_type(self, compute_type: Any) -> Iterator[None]:
        """Switch CuPy's float32 matmul compute type for one product: it is process-wide
        in CuPy, and another backend in this process may want exact float32."""
        linalg = self._linalg
        before = linalg.get_compute_type(np.float32)
        linalg.set_compute_type(np.float32, compute_type)
        try:
            yield
        finally:
            linalg.set_compute_type(np.float32, before)

    def _bf16_buffers(self) -> dict[str, Any]:
        """The calling thread's grow-only bfloat16 copies of matmul operands, by role."""
        buffers = getattr(self._thread, "bf16", None)
        if buffers is None:
            buffers = self._thread.bf16 = {}
        return buffers

    def _to_bf16(self, x: Any, role: str) -> Any:
        """``x`` as bfloat16 bits (uint16, C-contiguous) in a buffer reused across steps."""
        buffers = self._bf16_buffers()
        buffer = buffers.get(role)
        if buffer is None or buffer.size < x.size:
            with self._device:
                buffer = buffers[role] = self.xp.empty(x.size, np.uint16)
        bits = buffer[: x.size].reshape(x.shape)
        self._kernels["to_bf16"](x, bits)
        return bits

    def _sum_rows(self, x: Any, out: Any) -> Any:
        """Column sums as a product with a row of ones: cuBLAS beats a generic reduction."""
        key = (x.shape[0], x.dtype.str)
        ones = self._ones.get(key)
        if ones is None:
            with self._device:
                ones = self._ones[key] = self.xp.ones(x.shape[0], dtype=x.dtype)
        row = None if out is None else out.reshape(1, -1)  # a view of out
        if cublas.fits(ones[None], x, row):
            product = self.gemm(ones[None], x, row)
            return product.reshape(-1) if out is None else out
        return self.xp.matmul(ones, x, out=out)

    # ------------------------------------------------------------------ fused kernels
    def _activation(self, name: str, x: Any, out: Any) -> Any:
        if name == "identity":
            return super()._activation(name, x, out)
        kernel = self._kernels["act_" + name]
        return kernel(x) if out is None else kernel(x, out)

    def _backprop_activation(self, name: str, dy: Any, y: Any, out: Any) -> Any:
        if name == "identity":
            return super()._backprop_activation(name, dy, y, out)
        kernel = self._kernels["backprop_" + name]
        return kernel(dy, y) if out is None else kernel(dy, y, out)

    def _bias_activation(self, x: Any, bias: Any, name: str, out: Any) -> Any:
        kernel = self._kernels["bias_act_" + name]
        return kernel(x, bias) if out is None else kernel(x, bias, out)

    def _gather_rows(self, source: Any, rows: Any, out: Any, scale: float, start: Any) -> Any:
        """Row indices and ``start`` are not checked on the device (that would wait for the
        GPU): ``MLP`` only gathers rows it made itself."""
        start = self._zero_index if start is None else start
        return self._kernels["gather_rows"](
            source, rows, start, np.int64(source.shape[1]), out.dtype.type(scale), out
        )

    def _gather_batch(
        self, inputs: Any, targets: Any, rows: Any, x: Any, y: Any, scale: float, start: Any
    ) -> None:
        """One launch for both, over the inputs' elements, where the targets are no wider."""
        if targets.shape[1] > inputs.shape[1]:
            return super()._gather_batch(inputs, targets, rows, x, y, scale, start)
        start = self._zero_index if start is None else start
        columns = (np.int64(inputs.shape[1]), np.int64(targets.shape[1]))
        self._kernels["gather_batch"](
            inputs, targets, rows, start, *columns, x.dtype.type(scale), x, y
        )

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
        """Label values are not checked on the device: ``MLP`` checks them once, at upload."""
        if self._loss_kernel(LOSSES[name], outputs, targets, grad, totals, weights, weight_sum):
            return grad
        return super()._loss(name, outputs, targets, grad, totals, weights, weight_sum)

    def _loss_kernel(
        self,
        kernel: str,
        outputs: Any,
        targets: Any,
        grad: Any,
        totals: Any,
        weights: Any,
        weight_sum: Any,
    ) -> bool:
        """Run the loss kernel ``kernel`` (a value of ``LOSSES``) where its operands are what
        it reads through bare pointers (unit strides; float or double outputs; int32 labels or
        targets like the outputs; float64 totals); ``False`` where not, for the general body."""
        ctype = _RAW_KERNEL_TYPES.get(outputs.dtype.name)
        target_type = np.int32 if kernel != "squared_error" else outputs.dtype
        operands = [outputs, targets, grad, totals] + ([] if weights is None else [weights])
        if (
            ctype is None
            or targets.dtype != target_type
            or grad.dtype != outputs.dtype
            or totals.dtype != np.float64
            or not all(a.flags.c_contiguous for a in operands)
        ):
            return False
        rows, width = outputs.shape
        weighted = weights is not None
        if not weighted:  # never read: any array of the outputs' type will do
            weights = weight_sum = outputs
        blocks = (rows + kernels.THREADS - 1) // kernels.THREADS
        arguments = (outputs, targets, grad, totals, weights, weight_sum, np.int32(weighted))
        self._kernels[f"{kernel}_{ctype}"](
            (blocks,),
            (kernels.THREADS,),
            (*arguments, np.int32(rows), np.int32(width), outputs.dtype.type(1.0 / rows)),
        )
        return True

    def _uniform(self, generator: Any, out: Any) -> Any:
        # size must be given: without it CuPy's Generator.random draws ONE sample (a 0-d
        # array) and broadcasts it into ``out``, unlike NumPy, which fills ``out`` elementwise.
        generator.random(size=out.shape, dtype=out.dtype, out=out)
        return out

    def _sgd_update(
        self,
        param: Any,
        grad: Any,
        velocity: Any,
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
    ) -> None:
        t = param.dtype.type  # scalars typed like the buffers: float32 math stays float32
        if momentum:
            self._kernels["sgd_momentum"](
                grad, t(lr), t(momentum), t(weight_decay), np.int32(nesterov), param, velocity
            )
        else:
            self._kernels["sgd"](grad, t(lr), t(weight_decay), param)

    def _adam_update(
        self,
        param: Any,
        grad: Any,
        m: Any,
        v: Any,
        count: Any,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        decoupled: bool,
    ) -> None:
        on_device = hasattr(count, "shape")  # read there, by one thread, not here
        step_size, inv_sqrt_bc2, l2, decay = adam_scalars(
            1 if on_device else count, lr, beta1, beta2, weight_decay, decoupled
        )
        t = param.dtype.type
        constants = (t(beta1), t(1.0 - beta1), t(beta2), t(1.0 - beta2), t(eps), t(l2), t(decay))
        if not on_device:
            self._kernels["adam"](grad, t(step_size), t(inv_sqrt_bc2), *constants, param, m, v)
            return
        d = np.float64
        ctype = _RAW_KERNEL_TYPES.get(param.dtype.name)
        buffers = (grad, param, m, v)
        if ctype and all(a.dtype == param.dtype and a.flags.c_contiguous for a in buffers):
            # one launch: bare pointers, so contiguous buffers of one type (the optimizer's)
            needed = (param.size + kernels.ADAM_THREADS - 1) // kernels.ADAM_THREADS
            self._kernels[f"adam_contiguous_{ctype}"](
                (max(1, min(needed, self._adam_blocks)),),
                (kernels.ADAM_THREADS,),
                (*buffers, count, np.int64(param.size), d(lr), d(beta1), d(beta2), *constants),
            )
            return
        corrections = self.scratch("adam_corrections", (2,), param.dtype)
        self._kernels["adam_corrections"](
            count, d(lr), d(beta1), d(beta2), corrections[0:1], corrections[1:2]
        )
        self._kernels["adam_counted"](grad, corrections, *constants, param, m, v)
