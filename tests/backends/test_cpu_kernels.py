"""The Numba kernels' on-disk cache: a second process loads every kernel, compiling none."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

# Calls each kernel once on small arrays, as the NumPy backend does (the losses weighted and
# not), then prints how many of its signatures came from the cache and how many were compiled.
SCRIPT = r"""
import json
import numpy as np
from backends import cpu_kernels

k = cpu_kernels.load()
f = np.float32
one = f(1.0)
tiny = np.finfo(f).tiny
p, g, m, v = (np.ones(8, f) for _ in range(4))
k.adam(p, g, m, v, *(one,) * 9, tiny)
k.sgd(p, g, one, one)
k.sgd_momentum(p, g, m, one, one, one, one, one, tiny)
x, y, b = np.ones((4, 3), f), np.ones((4, 3), f), np.ones(3, f)
k.bias_relu_(x, b)
k.relu_backward_(x.ravel(), y.ravel())
k.relu_backward_bias_(x, y, b)
totals, weights, weight_sum = np.zeros(2), np.ones(4, f), np.ones(1, f)
labels = np.zeros(4, np.int32)
for kernel, outputs, targets in (
    (k.softmax_xent, np.ones((4, 3), f), labels),
    (k.sigmoid_xent, np.ones((4, 1), f), labels),
    (k.squared_error, np.ones((4, 2), f), np.ones((4, 2), f)),
):
    grad = np.empty_like(outputs)
    kernel(outputs, targets, grad, totals, f(0.25), None, None)
    kernel(outputs, targets, grad, totals, f(0.25), weights, weight_sum)
k.gather_rows(np.ones((5, 3), f), np.arange(4), x, one)
print(json.dumps({
    name: [sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values())]
    for name, kernel in vars(k).items()
}))
"""


def _counts(cache: str) -> dict[str, list[int]]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    env.pop("MLP_NO_NUMBA", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_second_process_compiles_no_kernel(tmp_path):
    first = _counts(str(tmp_path))
    assert all(misses > 0 for _, misses in first.values())  # an empty cache: all compiled
    second = _counts(str(tmp_path))
    compiled = {name for name, (_, misses) in second.items() if misses}
    assert not compiled, f"compiled again despite the cache: {sorted(compiled)}"
    assert all(hits > 0 for hits, _ in second.values())
