"""The default op bodies, written against ``self.xp``: NumPy on the CPU, CuPy on a GPU.

A backend is mostly "set ``xp``": these bodies run as they are on either array module, one
array-library call per pass over memory, all through ``out=`` and reusable scratch buffers.
A backend overrides the ones it can fuse (the NumPy backend with Numba loops, the CUDA
backend with kernels). Operands reach a body already checked by ``Backend``'s public op.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .base import Backend
from .operands import PRECISIONS

#: Elements per block of the blocked optimizer update (see ``_blocks``).
OPTIMIZER_BLOCK = 1 << 15


class XpBackend(Backend):
    """``Backend`` with every body on ``self.xp``."""

    #: Block size of the optimizer update; ``None`` updates the whole buffer at once.
    optimizer_block: int | None = None

    def _matmul(self, a: Any, b: Any, out: Any, transpose_a: bool, transpose_b: bool) -> Any:
        return self.xp.matmul(a.T if transpose_a else a, b.T if transpose_b else b, out=out)

    def _matmul_reduced(
        self, a: Any, b: Any, out: Any, transpose_a: bool, transpose_b: bool
    ) -> Any:
        """A float32 product with operands rounded to the precision's mantissa bits.

        This body emulates what tensor cores do (round the inputs, accumulate in float32), so
        a CPU run reproduces a GPU's reduced-precision numerics; the CUDA backend overrides it
        with the real thing.
        """
        bits = PRECISIONS[self.precision]
        a = self._round_mantissa(a, bits, self.scratch("matmul_a", a.shape, a.dtype))
        b = self._round_mantissa(b, bits, self.scratch("matmul_b", b.shape, b.dtype))
        return self._matmul(a, b, out, transpose_a, transpose_b)

    def _round_mantissa(self, x: Any, bits: int, out: Any) -> Any:
        xp = self.xp
        drop = 23 - bits
        if drop == 0:
            xp.copyto(out, x)
            return out
        if xp.may_share_memory(x, out):  # the passes below read x again after writing out
            copy = self.scratch("round_x", x.shape, x.dtype)
            xp.copyto(copy, x)
            x = copy
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

    def _bias_add(self, x: Any, bias: Any, out: Any) -> Any:
        return self.xp.add(x, bias, out=out)

    def _sum_rows(self, x: Any, out: Any) -> Any:
        return self.xp.sum(x, axis=0, out=out)

    def _add(self, a: Any, b: Any, out: Any) -> Any:
        return self.xp.add(a, b, out=out)

    def _multiply(self, a: Any, b: Any, out: Any) -> Any:
        return self.xp.multiply(a, b, out=out)

    def _softmax(self, x: Any, out: Any) -> Any:
        xp = self.xp
        out = xp.subtract(x, xp.max(x, axis=1, keepdims=True), out=out)
        xp.exp(out, out=out)
        return xp.divide(out, xp.sum(out, axis=1, keepdims=True), out=out)

    def _argmax(self, x: Any) -> Any:
        return self.xp.argmax(x, axis=1)

    def _all_finite(self, x: Any) -> bool:
        """Chunked, so checking a training set never makes a mask as large as the set."""
        flat = x.reshape(-1)
        step = 1 << 20
        return all(
            bool(self.xp.isfinite(flat[i : i + step]).all()) for i in range(0, flat.size, step)
        )

    def _dropout_mask(self, generator: Any, p: float, out: Any) -> Any:
        self._uniform(generator, out)
        self.xp.greater_equal(out, p, out=out)
        return self.xp.multiply(out, 1.0 / (1.0 - p), out=out)

    def _activation(self, name: str, x: Any, out: Any) -> Any:
        return getattr(self, "_" + name)(x, out)

    def _identity(self, x: Any, out: Any) -> Any:
        if out is None or out is x:
            return x
        out[...] = x
        return out

    def _relu(self, x: Any, out: Any) -> Any:
        return self.xp.maximum(x, 0, out=out)

    def _sigmoid(self, x: Any, out: Any) -> Any:
        """``1 / (1 + exp(-x))`` computed as ``(1 + tanh(x / 2)) / 2``: no overflow anywhere."""
        xp = self.xp
        out = xp.multiply(x, 0.5, out=out)
        xp.tanh(out, out=out)
        xp.multiply(out, 0.5, out=out)
        return xp.add(out, 0.5, out=out)

    def _tanh(self, x: Any, out: Any) -> Any:
        return self.xp.tanh(x, out=out)

    def _backprop_activation(self, name: str, dy: Any, y: Any, out: Any) -> Any:
        return getattr(self, "_backprop_" + name)(dy, y, out)

    def _backprop_identity(self, dy: Any, y: Any, out: Any) -> Any:
        return self._identity(dy, out)

    def _backprop_relu(self, dy: Any, y: Any, out: Any) -> Any:
        """``dy * (y > 0)``: the ReLU output is all the backward needs."""
        mask = self.scratch("relu_mask", y.shape, bool)
        self.xp.greater(y, 0, out=mask)
        return self.xp.multiply(dy, mask, out=out)

    def _backprop_sigmoid(self, dy: Any, y: Any, out: Any) -> Any:
        """``dy * y * (1 - y)``."""
        xp = self.xp
        tmp = self.scratch("act_tmp", y.shape, y.dtype)
        xp.subtract(1, y, out=tmp)
        xp.multiply(tmp, y, out=tmp)
        return xp.multiply(dy, tmp, out=out)

    def _backprop_tanh(self, dy: Any, y: Any, out: Any) -> Any:
        """``dy * (1 - y**2)``."""
        xp = self.xp
        tmp = self.scratch("act_tmp", y.shape, y.dtype)
        xp.multiply(y, y, out=tmp)
        xp.subtract(1, tmp, out=tmp)
        return xp.multiply(dy, tmp, out=out)

    def _bias_activation(self, x: Any, bias: Any, name: str, out: Any) -> Any:
        out = self._bias_add(x, bias, out)
        return self._activation(name, out, out)

    def _linear(self, x: Any, weight: Any, bias: Any, name: str, out: Any) -> Any:
        y = self._product(x, weight, out, False, False)
        return self._bias_activation(y, bias, name, y)

    def _backprop_bias_activation(
        self, name: str, dy: Any, y: Any, grad_bias: Any, out: Any
    ) -> Any:
        dz = self._backprop_activation(name, dy, y, out)
        self._sum_rows(dz, grad_bias)
        return dz

    def _backprop_linear(
        self, name: str, dy: Any, y: Any, x: Any, grad_weight: Any, grad_bias: Any, out: Any
    ) -> Any:
        dz = self._backprop_bias_activation(name, dy, y, grad_bias, out)
        self._product(x, dz, grad_weight, True, False)
        return dz

    def _gather_rows(self, source: Any, rows: Any, out: Any, scale: float, start: Any) -> Any:
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

    def _uniform(self, generator: Any, out: Any) -> Any:
        """Fill ``out`` with uniform [0, 1) samples, in place."""
        generator.random(out=out, dtype=out.dtype)
        return out

    def _softmax_cross_entropy(
        self, logits: Any, labels: Any, grad: Any, totals: Any, weights: Any, weight_sum: Any
    ) -> Any:
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
        totals[1] += self._hit_total(hits, weights)

        xp.max(logits, axis=1, keepdims=True, out=row_max)
        xp.subtract(logits, row_max, out=grad)  # shifted logits: z - max
        xp.multiply(xp.arange(rows), classes, out=flat_index)
        xp.add(flat_index, labels, out=flat_index)
        xp.take(grad.reshape(-1), flat_index, out=picked)  # z_y - max
        xp.exp(grad, out=grad)
        xp.sum(grad, axis=1, keepdims=True, out=row_sum)
        # loss_i = log(sum_j exp(z_j - max)) - (z_y - max)
        if weights is None:
            totals[0] += xp.sum(xp.log(row_sum)) - xp.sum(picked)
        else:
            row_loss = self.scratch("ce_loss", (rows,), logits.dtype)
            xp.log(row_sum[:, 0], out=row_loss)
            row_loss -= picked
            totals[0] += xp.dot(row_loss, weights)
        xp.divide(grad, row_sum, out=grad)  # softmax
        grad[xp.arange(rows), labels] -= 1  # in place in any memory order
        return self._scale_rows(grad, weights, weight_sum)

    def _hit_total(self, hits: Any, weights: Any) -> Any:
        """The rows predicted right, or their summed weights."""
        if weights is None:
            return self.xp.count_nonzero(hits)
        weighted = self.scratch("loss_hits", weights.shape, weights.dtype)
        self.xp.multiply(weights, hits, out=weighted)
        return self.xp.sum(weighted)

    def _scale_rows(self, grad: Any, weights: Any, weight_sum: Any) -> Any:
        """``grad`` from summed to mean: each row by 1/rows, or by its weight over the sum."""
        if weights is None:
            return self.xp.multiply(grad, 1.0 / grad.shape[0], out=grad)
        scale = self.scratch("loss_scale", (grad.shape[0], 1), grad.dtype)
        total = self.scratch("loss_total", (1,), grad.dtype)
        # a batch of zero weights has no gradient (0 / tiny), not 0/0
        self.xp.maximum(weight_sum, self.xp.finfo(grad.dtype).tiny, out=total)
        self.xp.divide(weights[:, None], total, out=scale)
        return self.xp.multiply(grad, scale, out=grad)

    def _sigmoid_cross_entropy(
        self, logits: Any, labels: Any, grad: Any, totals: Any, weights: Any, weight_sum: Any
    ) -> Any:
        """Binary cross-entropy of one logit ``z`` per row and a label ``y`` in {0, 1}:
        ``max(z, 0) - z*y + log(1 + exp(-|z|))`` (no overflow), gradient ``sigmoid(z) - y``."""
        xp = self.xp
        rows = logits.shape[0]
        z = logits[:, 0]
        y = self.scratch("bce_y", (rows,), logits.dtype)
        row_loss = self.scratch("bce_loss", (rows,), logits.dtype)
        part = self.scratch("bce_part", (rows,), logits.dtype)
        hits = self.scratch("bce_hits", (rows,), bool)
        ones = self.scratch("bce_ones", (rows,), bool)
        y[...] = labels
        xp.greater(z, 0, out=hits)
        xp.equal(y, 1, out=ones)
        xp.equal(hits, ones, out=hits)
        totals[1] += self._hit_total(hits, weights)
        xp.abs(z, out=row_loss)
        xp.negative(row_loss, out=row_loss)
        xp.exp(row_loss, out=row_loss)
        xp.log1p(row_loss, out=row_loss)
        xp.maximum(z, 0, out=part)
        row_loss += part
        xp.multiply(z, y, out=part)
        row_loss -= part
        totals[0] += xp.sum(row_loss) if weights is None else xp.dot(row_loss, weights)
        self._sigmoid(logits, grad)
        grad[:, 0] -= y
        return self._scale_rows(grad, weights, weight_sum)

    def _squared_error(
        self, outputs: Any, targets: Any, grad: Any, totals: Any, weights: Any, weight_sum: Any
    ) -> Any:
        """Half the squared error summed over a row's outputs, gradient ``outputs - targets``."""
        xp = self.xp
        xp.subtract(outputs, targets, out=grad)
        row_loss = self.scratch("se_loss", (grad.shape[0],), grad.dtype)
        squares = self.scratch("se_squares", grad.shape, grad.dtype)
        xp.multiply(grad, grad, out=squares)
        xp.sum(squares, axis=1, out=row_loss)
        half = 0.5 * (xp.sum(row_loss) if weights is None else xp.dot(row_loss, weights))
        totals[0] += half
        return self._scale_rows(grad, weights, weight_sum)

    def _blocks(self, buffer: Any) -> Iterator[Any]:
        """Indices that cover ``buffer``: a flat one in small blocks, which keep each pass in
        cache; any other whole (an N-D array that is not contiguous has no flat view)."""
        if buffer.ndim != 1:
            yield ...
            return
        size = buffer.size
        step = self.optimizer_block or size
        for start in range(0, size, step):
            yield slice(start, min(start + step, size))

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
        xp = self.xp
        param, grad, velocity = flat_views(param, grad, velocity)
        for block in self._blocks(param):
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
        """Block by block, so that each block's several passes stay in cache."""
        xp = self.xp
        step_size, inv_sqrt_bc2, l2, decay = adam_scalars(
            host_int(count), lr, beta1, beta2, weight_decay, decoupled
        )
        param, grad, m, v = flat_views(param, grad, m, v)
        for block in self._blocks(param):
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


def flat_views(*arrays: Any) -> tuple:
    """The optimizer's buffers (``None`` passes) as 1-D views of their elements, which the
    updates run over whatever the parameters' shape, where every one has such a view (is
    1-D or C-contiguous); else as they are."""
    given = [a for a in arrays if a is not None]
    if all(a.ndim == 1 for a in given) or not all(a.flags.c_contiguous for a in given):
        return arrays  # flat already (the model's buffers, each replay), or no flat view
    return tuple(None if a is None else a.reshape(-1) for a in arrays)


def host_int(value: Any) -> int:
    """A count or position given as an int or as a one-element array, read on the host (a
    GPU backend reads such arrays on the device instead: here it would wait for the GPU)."""
    return int(value[0]) if hasattr(value, "shape") else int(value)


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
    count: int, lr: float, beta1: float, beta2: float, weight_decay: float, decoupled: bool
) -> tuple[float, float, float, float]:
    """Per-update constants of Adam/AdamW: ``(step_size, inv_sqrt_bc2, l2, decay)``.

    The update is ``g += l2*p; p *= decay; p -= step_size * m / (sqrt(v)*inv_sqrt_bc2 + eps)``,
    PyTorch's arithmetic; Adam has ``decay = 1``, AdamW ``l2 = 0``.
    """
    if count < 1:  # the bias corrections divide by 1 - beta**count
        raise ValueError(f"Adam's update count starts at 1, got {count}")
    step_size = lr / (1.0 - beta1**count)
    inv_sqrt_bc2 = 1.0 / float(np.sqrt(1.0 - beta2**count))
    if decoupled:
        return step_size, inv_sqrt_bc2, 0.0, 1.0 - lr * weight_decay
    return step_size, inv_sqrt_bc2, weight_decay, 1.0
