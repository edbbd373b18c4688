"""The matmul-only limit: exactly the matrix products of one epoch, nothing else.

Per batch and per layer ``i`` (input ``a_i``, weight ``W_i``, output gradient ``dz_i``):
forward ``a_i·W_i``, backward ``dW_i = a_iᵀ·dz_i`` and, for every layer but the first,
``dx_i = dz_i·W_iᵀ``. All operands and outputs are preallocated once; the products go
through the backend's own ``matmul`` (BLAS on the CPU, cuBLAS on a GPU), with transposes
passed exactly as the library's layers pass them. Operands never feed back
into each other, so values stay bounded (no overflow or denormals to slow BLAS down).
The step's products are recorded (a CUDA graph on a GPU, the op bodies' calls on the
CPU), as ``MLP.fit`` records its training step, so that both are measured without the
host's cost per op. At a reduced
``precision`` (``tf32``, ``bf16``) the products go through a backend of that precision, as
ours do: TF32 tensor cores, or bfloat16 copies of the operands (the conversion included, as
in our layers), on a GPU; on the CPU, the rounding emulated. On the CPU it runs on the BLAS
threads ``fit`` picks for the same largest product (``backends/threads.py``).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .timing import Schedule, run_epochs, timed
from .workloads import Workload, batch_sizes


def epoch_flops(workload: Workload, samples: int) -> int:
    """Floating-point operations of the limit's products for ``samples`` rows."""
    pairs = list(itertools.pairwise(workload.sizes))
    per_row = sum(2 * 2 * m * n for m, n in pairs) + sum(2 * m * n for m, n in pairs[1:])
    return per_row * samples


def _operands(backend: Any, workload: Workload, rows: int, rng: np.random.Generator) -> dict:
    pairs = list(itertools.pairwise(workload.sizes))

    def put(shape: tuple[int, ...], scale: float) -> Any:
        host = (rng.standard_normal(shape) * scale).astype(np.float32)
        return backend.asarray(host)

    return {
        "a": [put((rows, m), 1.0) for m, _ in pairs],
        "dz": [put((rows, n), 0.01) for _, n in pairs],
        "W": [put((m, n), 1.0 / np.sqrt(m)) for m, n in pairs],
        "y": [backend.empty((rows, n), np.float32) for _, n in pairs],
        "dW": [backend.empty((m, n), np.float32) for m, n in pairs],
        "dx": [backend.empty((rows, m), np.float32) for m, _ in pairs],
    }


def measure_limit(
    workload: Workload,
    device: str,
    samples: int,
    schedule: Schedule,
    precision: str = "float32",
) -> dict[str, Any]:
    """Time the GEMMs of one epoch as ``schedule`` says (repetitions play the epochs), at
    the matmul ``precision`` of the rows it is the limit of."""
    from backends import get_backend, threads

    backend = get_backend(device, precision=precision)
    rng = np.random.default_rng(0)
    largest = threads.largest_product(min(workload.batch_size, samples), workload.sizes)
    with backend.activated(), backend.threads_for(largest, np.float32):
        plan = [
            (_operands(backend, workload, rows, rng), count)
            for rows, count in batch_sizes(workload, samples)
        ]
        layers = len(workload.sizes) - 1
        matmul = backend.matmul

        def products(ops: dict) -> None:
            a, dz, W, y, dW, dx = (ops[k] for k in ("a", "dz", "W", "y", "dW", "dx"))
            for i in range(layers):
                matmul(a[i], W[i], out=y[i])
            for i in range(layers - 1, -1, -1):
                matmul(a[i], dz[i], out=dW[i], transpose_a=True)
                if i > 0:
                    matmul(dz[i], W[i], out=dx[i], transpose_b=True)

        # The backend records steps (a CUDA graph; on the CPU, the bodies' calls), so does
        # the limit: it is then the products' time, not the host's cost of calling each op.
        steps, recorded = [], []
        for ops, count in plan:
            products(ops)  # once op by op first: cuBLAS settles its choices outside a recording
            recording = backend.capture(lambda ops=ops: products(ops), keep=ops)
            recorded.append(recording is not None)
            steps.append((recording or (lambda ops=ops: products(ops)), count))

        def one_epoch() -> None:
            for step, count in steps:
                for _ in range(count):
                    step()

        out = run_epochs(lambda _: timed(one_epoch, backend.synchronize), schedule)
        out["recorded"] = all(recorded)
    out["flops"] = epoch_flops(workload, samples)
    out["gflops"] = out["flops"] / out["median_seconds"] / 1e9
    return out
