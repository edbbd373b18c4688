"""``python -m bench.ops``: the time of one call of each op of a ``std`` training step.

A small MLP step on a GPU is bound by the host's cost per launch, not by the GPU, so the
question behind a faster step is which calls cost most. Each op runs ``--calls`` times
back to back on preallocated arrays, then the device is synchronized once: the time per
call is what one more such call adds to a step. PyTorch's nearest equivalents run the same
way where PyTorch is installed, as the reference for what a call may cost.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .peers import torch_device, torch_synchronizer

PROG = "python -m bench.ops"
#: The std workload's first layer, at its batch size: the shapes of one step's largest ops.
BATCH, FEATURES, HIDDEN, CLASSES = 128, 784, 512, 10
PARAMETERS = 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10
BIG_PARAMETERS = 784 * 2048 + 2048 + 2048 * 2048 + 2048 + 2048 * 10 + 10


def per_call_microseconds(call: Callable[[], Any], sync: Callable[[], None], calls: int) -> float:
    for _ in range(max(3, calls // 10)):  # warm-up: compilation, caches, clocks
        call()
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    sync()
    return (time.perf_counter() - start) / calls * 1e6


def our_ops(be: Any) -> tuple[dict[str, Callable[[], Any]], Callable[[], None]]:
    """The backend's ops with std's shapes, each a no-argument call (to be made with the
    backend's device current: ``be.activated()``)."""
    rng = np.random.default_rng(0)

    def put(shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
        return be.asarray(rng.standard_normal(shape).astype(dtype))

    x, w, z = put((BATCH, FEATURES)), put((FEATURES, HIDDEN)), put((BATCH, HIDDEN))
    bias, y, dw = put((HIDDEN,)), be.empty((BATCH, HIDDEN)), be.empty((FEATURES, HIDDEN))
    dz = be.empty((BATCH, HIDDEN))
    logits, grad = put((BATCH, CLASSES)), be.empty((BATCH, CLASSES))
    labels = be.asarray(rng.integers(0, CLASSES, BATCH).astype(np.int32))
    totals = be.zeros((2,), np.float64)
    images = be.asarray(rng.integers(0, 256, (60_000, FEATURES)).astype(np.uint8))
    rows = be.asarray(rng.permutation(60_000)[:BATCH].astype(np.int64))
    every_label = be.asarray(rng.integers(0, CLASSES, (60_000, 1)).astype(np.int32))
    batch, batch_labels = be.empty((BATCH, FEATURES)), be.empty((BATCH, 1), np.int32)
    colsum = be.empty((HIDDEN,))
    ops: dict[str, Callable[[], Any]] = {
        "matmul x·W (128×784·784×512)": lambda: be.matmul(x, w, out=y),
        "matmul dW = xᵀ·dz": lambda: be.matmul(x, z, out=dw, transpose_a=True),
        "bias + ReLU (128×512)": lambda: be.bias_activation(z, bias, "relu", out=y),
        "linear: x·W + b, ReLU (CUDA: one cuBLASLt product)": lambda: be.linear(
            x, w, bias, "relu", out=y
        ),
        "ReLU backward": lambda: be.backprop_activation("relu", z, y, out=dz),
        "bias gradient (column sums)": lambda: be.sum_rows(z, out=colsum),
        "softmax cross-entropy (128×10)": lambda: be.accumulate_loss(
            "softmax_cross_entropy", logits, labels, grad, totals
        ),
        "gather a batch (uint8 → float32)": lambda: be.gather_rows(
            images, rows, out=be.scratch("batch", (BATCH, FEATURES), np.float32), scale=1 / 255
        ),
        "gather a batch and its labels (CUDA: one launch)": lambda: be.gather_batch(
            images, every_label, rows, batch, batch_labels, 1 / 255
        ),
        **adam_ops(be, put, PARAMETERS),
    }
    if hasattr(be, "gemm"):  # CUDA: CuPy's own route, against cuBLAS called directly above
        ops["cupy.matmul x·W (CuPy's cuBLAS binding)"] = lambda: be.xp.matmul(x, w, out=y)
        ops.update(adam_ops(be, put, BIG_PARAMETERS))  # memory, not the launch, sets its time
        ops.update(launch_costs(be))
    return ops, be.synchronize


def adam_ops(
    be: Any, put: Callable[[tuple[int, ...]], Any], size: int
) -> dict[str, Callable[[], Any]]:
    """Adam over ``size`` parameters both ways: the count from the host (CUDA: CuPy's
    elementwise kernel) and the count on the device (CUDA: the one-launch kernel)."""
    params, grads, m, v = put((size,)), put((size,)), be.zeros((size,)), be.zeros((size,))
    count = be.asarray(np.array([1], np.int64))
    return {
        f"Adam over {size:,} parameters": lambda: be.adam_update(
            params, grads, m, v, count=1, lr=1e-9
        ),
        f"Adam over {size:,}, its count on the device": lambda: be.adam_update(
            params, grads, m, v, count=count, lr=1e-9
        ),
    }


def launch_costs(be: Any) -> dict[str, Callable[[], Any]]:
    """Kernels that do (almost) nothing: the host's cost of one launch through each CuPy
    route, the floor under every fused op above (a small step is launch-bound)."""
    cupy = be.xp
    copy = cupy.ElementwiseKernel("T x", "T y", "y = x", "mlp_bench_copy")
    noop = cupy.RawKernel('extern "C" __global__ void mlp_bench_noop() {}', "mlp_bench_noop")
    one, one_out = be.zeros((1,)), be.empty((1,))
    return {
        "launch: ElementwiseKernel, 1 element": lambda: copy(one, one_out),
        "launch: RawKernel, no arguments": lambda: noop((1,), (1,), ()),
    }


def layer_products(be: Any) -> dict[str, Callable[[], Any]]:
    """A layer's forward and its weight and bias gradients, std's first layer and big's
    second: each as separate kernels and as the op that may fold the bias work into the
    product (``linear``, ``backprop_linear``; on CUDA, cuBLASLt's epilogues), to be timed
    replayed from a CUDA graph, where the GPU's time is what counts. Each returns its result."""
    rng = np.random.default_rng(1)
    ops: dict[str, Callable[[], Any]] = {}
    for rows, inner, cols in ((BATCH, FEATURES, HIDDEN), (512, 2048, 2048)):
        x, dz = (
            be.asarray(rng.standard_normal(shape).astype(np.float32))
            for shape in ((rows, inner), (rows, cols))
        )
        # weight and bias, and their gradients, as a model holds them: views into one flat
        # buffer, the bias on 16 bytes as in any model of layer sizes in fours (std's, big's)
        params = be.asarray(rng.standard_normal(inner * cols + cols).astype(np.float32))
        grads = be.empty((inner * cols + cols,))
        w, bias = params[: inner * cols].reshape(inner, cols), params[inner * cols :]
        grad_weight, grad_bias = grads[: inner * cols].reshape(inner, cols), grads[inner * cols :]
        y = be.empty((rows, cols))
        size = f"{rows}×{inner}·{inner}×{cols}"

        def forward(x: Any = x, w: Any = w, bias: Any = bias, y: Any = y) -> Any:
            be.matmul(x, w, out=y)
            return be.bias_activation(y, bias, "relu", out=y)

        def backward(
            x: Any = x, y: Any = y, dz: Any = dz, gw: Any = grad_weight, gb: Any = grad_bias
        ) -> Any:
            be.backprop_bias_activation("relu", dz, y, gb, out=dz)
            return be.matmul(x, dz, out=gw, transpose_a=True), gb

        def fused_backward(
            x: Any = x, y: Any = y, dz: Any = dz, gw: Any = grad_weight, gb: Any = grad_bias
        ) -> Any:
            be.backprop_linear("relu", dz, y, x, gw, gb, out=dz)
            return gw, gb

        ops[f"forward {size}: GEMM, then bias + ReLU"] = forward
        ops[f"forward {size}: linear (one product)"] = functools.partial(
            be.linear, x, w, bias, "relu", out=y
        )
        ops[f"gradients {size}: ReLU', GEMM, row of ones"] = backward
        ops[f"gradients {size}: backprop_linear (ReLU', one product)"] = fused_backward
    return ops


def lt_plans(be: Any) -> str:
    """Which of the CUDA backend's cuBLASLt products found an algorithm, by epilogue: where
    one did not, its "one product" row above ran the separate kernels."""
    from backends.cuda import cublaslt

    lt = be._lt()
    if lt is None:
        return "cuBLASLt plans: none (cuBLASLt not found, or MLP_NO_CUBLASLT=1)"
    names = {
        value: name
        for name, value in vars(cublaslt).items()
        if name.startswith("CUBLASLT_EPILOGUE_")
    }
    counts: dict[str, list[int]] = {}
    for (_, epilogue, *_), plan in lt.plans.items():
        count = counts.setdefault(names[epilogue].removeprefix("CUBLASLT_EPILOGUE_"), [0, 0])
        count[0] += bool(plan and plan.usable)
        count[1] += 1
    usable = ", ".join(f"{name} {ok} of {total}" for name, (ok, total) in sorted(counts.items()))
    return f"cuBLASLt plans with an algorithm: {usable}"


#: Replays of a recorded run of calls, timed together.
REPLAYS = 10


def replayed_microseconds(be: Any, call: Callable[[], Any], calls: int) -> float | None:
    """The device's time per call: ``calls`` calls recorded as one step (a CUDA graph),
    replayed; ``None`` where they cannot be recorded."""
    call()  # outside the recording: whatever is made once per shape
    recording = be.capture(lambda: [call() for _ in range(calls)])
    if recording is None:
        return None
    recording()
    be.synchronize()
    start = time.perf_counter()
    for _ in range(REPLAYS):
        recording()
    be.synchronize()
    return (time.perf_counter() - start) / (REPLAYS * calls) * 1e6


def torch_ops(device: str) -> tuple[dict[str, Callable[[], Any]], Callable[[], None]] | None:
    """PyTorch's nearest equivalents on the same device, or None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    try:
        dev = torch_device(device)
    except RuntimeError:  # this PyTorch has no CUDA
        return None
    g = torch.Generator(device="cpu").manual_seed(0)

    def put(*shape: int) -> Any:
        return torch.randn(*shape, generator=g).to(dev)

    x, w, z, bias = put(BATCH, FEATURES), put(FEATURES, HIDDEN), put(BATCH, HIDDEN), put(HIDDEN)
    y, dw = torch.empty(BATCH, HIDDEN, device=dev), torch.empty(FEATURES, HIDDEN, device=dev)
    one = torch.zeros(1, device=dev)
    params = [put(PARAMETERS).requires_grad_()]
    params[0].grad = put(PARAMETERS)
    adam = torch.optim.Adam(params, lr=1e-9)
    ops = {
        "torch.mm x·W": lambda: torch.mm(x, w, out=y),
        "torch.mm dW = xᵀ·dz": lambda: torch.mm(x.t(), z, out=dw),
        "torch.addmm (bias + x·W)": lambda: torch.addmm(bias, x, w, out=y),
        "torch.relu": lambda: torch.relu(z),
        "torch launch: add_ on 1 element": lambda: one.add_(1.0),
        "torch Adam.step (default: foreach)": adam.step,
    }
    return ops, torch_synchronizer(dev)


def main(argv: list[str] | None = None) -> int:
    """Time each op; a bad option is one line and exit status 2, a failure one line and 1."""
    from mlp import checks
    from mlp.cli.common import OneLineParser, checked, device_spec, report_errors

    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--device", type=device_spec, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--calls",
        type=checked(checks.positive_int, "calls"),
        default=2000,
        help="calls per op (timed)",
    )
    args = p.parse_args(argv)
    return report_errors(PROG, lambda: time_ops(args.device, args.calls))


def time_ops(device: str, calls: int) -> None:
    """Print the time per call of our ops, then of PyTorch's, on ``device``."""
    from backends import get_backend

    be = get_backend(device)
    print(f"time per call on {device}, {calls} calls back to back, one sync at the end")
    with be.activated():  # cuda:1 is not the default GPU; PyTorch follows its tensors
        for found in (our_ops(be), torch_ops(device)):
            if found is None:
                print(f"  (PyTorch is not available on {device})")
                continue
            ops, sync = found
            for name, call in ops.items():
                us = per_call_microseconds(call, sync, calls)
                print(f"  {us:9.1f} µs  {name}", flush=True)
        if hasattr(be, "gemm"):  # CUDA: what a recorded step spends on the GPU
            print(f"replayed from a CUDA graph of {calls // 10} calls, time per call")
            for name, call in layer_products(be).items():
                us = replayed_microseconds(be, call, max(1, calls // 10))
                shown = "  (not recorded)" if us is None else f"{us:9.1f} µs"
                print(f"  {shown}  {name}", flush=True)
            print(lt_plans(be))


if __name__ == "__main__":
    sys.exit(main())
