"""What each backend op requires of its arguments, checked once, in the public op.

Fused kernels index raw memory: a wrong shape would read or write past an array (or
broadcast a wrong-sized bias silently). So every public op of ``Backend`` checks its
operands with these before it calls the body a backend overrides; the bodies, and the
kernels under them, only compute. Every check here is O(1): values (row indices, labels)
are checked where they enter the library, or by the CPU kernels as they read them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Activations every backend implements, each with a backward that needs only the output.
ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")

#: Matmul precisions, each as the mantissa bits a float32 operand keeps: ``float32`` exact,
#: ``tf32`` (TF32 tensor cores) and ``bf16`` (bfloat16 operands); products accumulate in
#: float32 in every case, and float64 matmuls are never reduced.
PRECISIONS = {"float32": 23, "tf32": 10, "bf16": 7}


def check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")
    return name


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}: choose one of {', '.join(PRECISIONS)}")
    return name


def check_shape(op: str, name: str, array: Any, shape: tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``array`` (when given) has ``shape``."""
    if array is not None and tuple(array.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} has shape {tuple(array.shape)}, expected {tuple(shape)}")


def check_same_shape(op: str, **arrays: Any) -> None:
    """Raise ``ValueError`` unless every given array (``None`` is skipped) has the first's shape."""
    given = [(name, a) for name, a in arrays.items() if a is not None]
    first_name, first = given[0]
    for name, array in given[1:]:
        if tuple(array.shape) != tuple(first.shape):
            raise ValueError(
                f"{op}: {name} has shape {tuple(array.shape)}, but {first_name} has "
                f"{tuple(first.shape)}"
            )


def check_matmul(a: Any, b: Any, out: Any, transpose_a: bool, transpose_b: bool) -> None:
    """Two matrices whose inner sizes agree, and an ``out`` of the product's shape."""
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul: needs two matrices, got {a.ndim}-D and {b.ndim}-D")
    rows, inner = a.shape[::-1] if transpose_a else a.shape
    inner_b, cols = b.shape[::-1] if transpose_b else b.shape
    if inner != inner_b:
        raise ValueError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not line up "
            f"(transposed: {transpose_a}, {transpose_b})"
        )
    check_shape("matmul", "out", out, (rows, cols))


def check_bias(op: str, x: Any, bias: Any, out: Any) -> None:
    """A bias per column of the 2-D ``x``, and an ``out`` shaped like ``x``."""
    if x.ndim != 2:
        raise ValueError(f"{op}: x must be 2-D, got {x.ndim}-D")
    check_shape(op, "bias", bias, (x.shape[1],))
    check_shape(op, "out", out, x.shape)


def check_gather(source: Any, rows: Any, out: Any, scale: float, start: Any) -> None:
    """``gather_rows``' operands: a 2-D source, a 1-D row list, an ``out`` to match (an
    integer ``out`` only for a source it holds every value of, unscaled: anything else would
    be cut or wrapped around silently, 900 into uint8 as 132).

    With ``start`` (a one-element index) ``out`` takes the rows from there on, so the row
    list only has to be long enough (its reading position is checked where the backend can
    read ``start`` without waiting for a GPU).
    """
    if source.ndim != 2 or rows.ndim != 1:
        raise ValueError(
            f"gather_rows: needs a 2-D source and 1-D rows, got {source.ndim}-D and {rows.ndim}-D"
        )
    if rows.dtype.kind not in "iu":  # a GPU's kernel would cut 2.7 to row 2
        raise ValueError(f"gather_rows: rows must be integers, got {rows.dtype}")
    if out.dtype.kind in "iu" and not (np.can_cast(source.dtype, out.dtype) and scale == 1.0):
        raise ValueError(
            f"gather_rows: an {out.dtype} out takes integers unscaled that it holds every "
            f"value of, got {source.dtype} times {scale}: gather into a float out, or an "
            "integer one as wide"
        )
    if start is None:
        check_shape("gather_rows", "out", out, (rows.shape[0], source.shape[1]))
        return
    check_shape("gather_rows", "start", start, (1,))
    if start.dtype != np.int64:
        raise ValueError(f"gather_rows: start must be int64, got {start.dtype}")
    if out.ndim != 2 or out.shape[1] != source.shape[1] or out.shape[0] > rows.shape[0]:
        raise ValueError(
            f"gather_rows: out has shape {tuple(out.shape)}, expected at most "
            f"{rows.shape[0]} rows of {source.shape[1]}"
        )


#: Losses every backend fuses with their gradient: for integer class labels, over two or more
#: outputs (softmax) or one (sigmoid, binary); for float targets, half the squared error.
#: Each name's value names its fused kernel, on the CPU (Numba) and on the GPU (CUDA).
LOSSES = {
    "softmax_cross_entropy": "softmax_xent",
    "sigmoid_cross_entropy": "sigmoid_xent",
    "squared_error": "squared_error",
}


def check_loss(
    name: str, outputs: Any, targets: Any, grad: Any, totals: Any, weights: Any, weight_sum: Any
) -> str:
    """A loss's operands: 2-D outputs of one or more rows, targets to match (a label per row,
    or a row of values), two totals; where ``weights`` are given, one per row and their
    ``weight_sum``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
    if outputs.ndim != 2:
        raise ValueError(f"{name}: outputs must be 2-D, got {outputs.ndim}-D")
    rows, width = outputs.shape
    if rows == 0:  # the gradient is that of the batch's mean loss
        raise ValueError(f"{name}: outputs have no rows: a mean loss needs one or more")
    if name == "squared_error":
        check_shape(name, "targets", targets, outputs.shape)
        if targets.dtype != outputs.dtype:
            raise ValueError(f"{name}: targets are {targets.dtype}, outputs {outputs.dtype}")
    else:
        check_shape(name, "labels", targets, (rows,))
        if targets.dtype.kind not in "iu":
            raise ValueError(f"{name}: labels must be integers, got {targets.dtype}")
        if name == "sigmoid_cross_entropy" and width != 1:
            raise ValueError(f"{name}: needs one output per row, got {width}")
    check_shape(name, "grad", grad, outputs.shape)
    check_shape(name, "totals", totals, (2,))
    if weights is not None or weight_sum is not None:
        check_shape(name, "weights", weights, (rows,))
        check_shape(name, "weight_sum", weight_sum, (1,))
        if weights is None or weights.dtype != outputs.dtype or weight_sum.dtype != outputs.dtype:
            raise ValueError(f"{name}: weights and weight_sum must be {outputs.dtype}, together")
    return name


def check_count(count: Any) -> None:
    """Adam's update count: an int, or a one-element int64 array (read where it lives: a
    GPU reads it on the device, without waiting; its value is checked where it is read)."""
    if hasattr(count, "shape"):
        check_shape("adam_update", "count", count, (1,))
        if count.dtype != np.int64:
            raise ValueError(f"adam_update: count must be int64, got {count.dtype}")
    elif isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise ValueError(f"adam_update: count must be an integer, got {count!r}")
