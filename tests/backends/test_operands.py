"""Each public op's operand checks: arrays of another device or library, shapes that do not
fit (a fused kernel would read past them), and on the host, row indices and labels."""

from __future__ import annotations

import numpy as np
import pytest

from backends import NumpyBackend


# ---------------------------------------------------------------------- wrong-device arrays
def _ops_with_foreign(backend, foreign, own):
    """Calls that each hand ``foreign`` to an op along with arrays of the backend (``own``)."""
    return [
        lambda: backend.matmul(foreign, own),
        lambda: backend.matmul(own, foreign),
        lambda: backend.bias_add(foreign, own[0]),
        lambda: backend.multiply(own, foreign),
        lambda: backend.sum_rows(foreign),
        lambda: backend.activation("relu", foreign),
        lambda: backend.activation("tanh", foreign),
        lambda: backend.backprop_activation("sigmoid", foreign, own),
        lambda: backend.bias_activation(foreign, own[0], "relu"),
        lambda: backend.linear(own, foreign, own[0], "relu"),
        lambda: backend.backprop_linear("relu", own, own, foreign, own.copy(), own[0]),
        lambda: backend.softmax(foreign),
        lambda: backend.sgd_update(own.reshape(-1), foreign, None, 0.1),
        lambda: backend.gather_batch(own, foreign, own[0].astype(np.int64), own, own.copy()),
        lambda: backend.adam_update(
            own.reshape(-1), foreign, own.reshape(-1).copy(), own.reshape(-1).copy(), 1, 0.1
        ),
    ]


class FakeDeviceArray:
    """An array from some other library (a torch tensor, say): not a NumPy array."""

    shape = (3, 3)
    dtype = np.dtype(np.float32)
    ndim = 2
    size = 9


# ---------------------------------------------------------------------- operands that do not fit
def _mismatched_calls(be):
    """Calls whose operands do not fit: fused kernels would read or write past an array."""
    a = be.asarray(np.ones((4, 3), np.float32))
    flat = be.asarray(np.ones(12, np.float32))
    short = be.asarray(np.ones(5, np.float32))
    rows = be.asarray(np.array([0, 1], np.int64))
    labels = be.asarray(np.zeros(4, np.int32))
    totals = be.zeros((2,), np.float64)
    return {
        "bias of another width": lambda: be.bias_activation(
            a, be.asarray(np.ones(5, np.float32)), "relu", out=a
        ),
        "bias of width 1": lambda: be.bias_activation(
            a, be.asarray(np.ones(1, np.float32)), "relu", out=a
        ),
        "linear, bias of another width": lambda: be.linear(
            a, be.asarray(np.ones((3, 4), np.float32)), short, "relu"
        ),
        "linear, weight of another height": lambda: be.linear(a, a, a[0], "relu"),
        "linear into an out of another shape": lambda: be.linear(
            a, be.asarray(np.ones((3, 4), np.float32)), short[:4], "relu", out=a
        ),
        "backprop_linear, x of other rows": lambda: be.backprop_linear(
            "relu", a, a, a[:2], be.empty((3, 3), np.float32), short[:3], out=a
        ),
        "backprop_linear, weight gradient of another shape": lambda: be.backprop_linear(
            "relu", a, a, a, be.empty((3, 4), np.float32), short[:3], out=a
        ),
        "backprop_linear, bias gradient short": lambda: be.backprop_linear(
            "relu", a, a, a, be.empty((3, 3), np.float32), short[:2], out=a
        ),
        "backprop_linear, no bias gradient": lambda: be.backprop_linear(
            "relu", a, a, a, be.empty((3, 3), np.float32), None, out=a
        ),
        "relu backward, y smaller": lambda: be.backprop_activation(
            "relu", a, be.asarray(np.ones((2, 3), np.float32)), out=a
        ),
        "bias gradient of another width": lambda: be.backprop_bias_activation(
            "relu", a, a, short, out=a
        ),
        "gather into a smaller out": lambda: be.gather_rows(
            a, be.asarray(np.arange(4)), be.empty((2, 3), np.float32)
        ),
        "gather into another width": lambda: be.gather_rows(a, rows, be.empty((2, 5), np.float32)),
        "gather a batch, targets into another width": lambda: be.gather_batch(
            a, a, rows, be.empty((2, 3), np.float32), be.empty((2, 2), np.float32)
        ),
        "a label column per row short": lambda: be.accumulate_loss(
            "softmax_cross_entropy", a, labels[:3], a, totals
        ),
        "sgd, gradient short": lambda: be.sgd_update(flat, short, None, 0.1),
        "momentum, velocity short": lambda: be.sgd_update(flat, flat, short, 0.1, momentum=0.9),
        "adam, v short": lambda: be.adam_update(flat, flat, flat, short, 1, 0.1),
    }


# ---------------------------------------------------------------------- writing where it reads
def _overlapping_calls(be):
    """Calls that write an array (other than an elementwise op's ``out``) into memory that
    another operand holds: the kernels would read what they had already written."""
    a = be.asarray(np.arange(15, dtype=np.float32).reshape(5, 3))
    rows = be.asarray(np.array([3, 2, 1, 0], np.int64))
    flat = [be.asarray(np.ones(12, np.float32)) for _ in range(4)]
    dy, y = be.asarray(np.ones((4, 3), np.float32)), be.asarray(np.ones((4, 3), np.float32))
    return {
        "gather into the source": lambda: be.gather_rows(a[:4], rows, a[:4]),
        "gather into rows the source holds": lambda: be.gather_rows(a, rows, a[1:]),
        "gather a batch into the inputs": lambda: be.gather_batch(
            a[:4], be.asarray(np.zeros((4, 1), np.int32)), rows, a[:4], be.empty((4, 1), np.int32)
        ),
        "sgd, velocity in the gradient": lambda: be.sgd_update(
            flat[0], flat[1], flat[1], 0.1, momentum=0.9
        ),
        "sgd, the parameter as its gradient": lambda: be.sgd_update(flat[0], flat[0], None, 0.1),
        "adam, m in v": lambda: be.adam_update(flat[0], flat[1], flat[2], flat[2], 1, 0.1),
        "a bias gradient in y": lambda: be.backprop_bias_activation(
            "relu", dy, y, y[0], out=be.empty((4, 3), np.float32)
        ),
        "a weight gradient in x": lambda: be.backprop_linear(
            "relu", dy, y, a[:4], a[:3], be.empty(3, np.float32), out=dy
        ),
        # dz written over x before xᵀ·dz reads it: a wrong weight gradient, on the CPU too
        "dz in x": lambda: be.backprop_linear(
            "relu", dy, y, dy, be.empty((3, 3), np.float32), be.empty(3, np.float32), out=dy
        ),
        # NumPy's matmul copies first; cuBLAS writes tiles while others still read
        "a product into its operand": lambda: be.matmul(a[:3], a[:3], out=a[:3]),
        "column sums into a row": lambda: be.sum_rows(a, out=a[0]),
        "a layer's output in its input": lambda: be.linear(
            a[:3],
            be.asarray(np.ones((3, 3), np.float32)),
            be.empty(3, np.float32),
            "relu",
            out=a[:3],
        ),
    }


@pytest.mark.parametrize("case", list(_overlapping_calls(NumpyBackend())))
def test_writing_into_memory_an_operand_holds_is_refused(backend, case):
    """Refused on every backend alike: the Numba kernels and a GPU's would read what they
    had written, where NumPy's bodies (most of them) would not."""
    with pytest.raises(ValueError, match=r"shares memory with .*: give .* memory of its own"):
        _overlapping_calls(backend)[case]()


@pytest.mark.cuda
def test_cuda_backend_rejects_numpy_arrays(cuda_backend):
    own = cuda_backend.asarray(np.ones((3, 3), np.float32))
    host_array = np.ones((3, 3), np.float32)
    for call in _ops_with_foreign(cuda_backend, host_array, own):
        with pytest.raises(TypeError, match=r"backend\.asarray"):
            call()
    labels = np.zeros(3, np.int32)
    with pytest.raises(TypeError, match=r"backend\.asarray"):
        cuda_backend.accumulate_loss(
            "softmax_cross_entropy", own, labels, own, cuda_backend.zeros((2,), np.float64)
        )
    with pytest.raises(TypeError, match=r"backend\.asarray"):
        cuda_backend.gather_rows(
            host_array, cuda_backend.asarray(np.arange(2)), cuda_backend.empty((2, 3), np.float32)
        )


def test_numpy_backend_rejects_foreign_arrays():
    backend = NumpyBackend()
    own = np.ones((3, 3), np.float32)
    fake = FakeDeviceArray()
    for call in [*_ops_with_foreign(backend, fake, own), lambda: backend.to_numpy(fake)]:
        with pytest.raises(TypeError, match=r"backend\.asarray") as info:
            call()
        assert "FakeDeviceArray" in str(info.value)


@pytest.mark.parametrize("case", list(_mismatched_calls(NumpyBackend())))
def test_operands_that_do_not_fit_are_refused(backend, case):
    with pytest.raises(ValueError, match=r"has shape|do not line up|pass both"):
        _mismatched_calls(backend)[case]()


@pytest.mark.parametrize("kind", ["cpu", "cpu-nonumba"])
def test_cpu_checks_row_indices_and_labels(make_backend, kind):
    """On the host the values are checked too (free inside the Numba loops): no read out of
    bounds, no -1 wrapping around to the last row or class. (On a GPU that would need a
    sync; MLP checks its labels once, at upload.)"""
    be = make_backend(kind)
    source = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = np.empty((2, 3), np.float32)
    for bad_rows in ([0, 4], [-1, 0]):
        with pytest.raises(ValueError, match="row"):
            be.gather_rows(source, np.array(bad_rows, np.int64), out)
        with pytest.raises(ValueError, match="row"):  # integer batches (labels) too
            be.gather_rows(source.astype(np.int32), np.array(bad_rows), out.astype(np.int32))
    logits = np.zeros((3, 4), np.float32)
    for bad_labels in ([0, 1, 4], [0, -1, 2]):
        with pytest.raises(ValueError, match="label"):
            be.accumulate_loss(
                "softmax_cross_entropy",
                logits,
                np.array(bad_labels, np.int32),
                logits.copy(),
                np.zeros(2),
            )
