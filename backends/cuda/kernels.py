"""The fused CUDA kernels: their sources, kept as data, and their CuPy builds.

Sources are plain strings so that the tests can compile them with nvcc and run their
arithmetic with the host's C++ compiler (``tests/backends/cuda``): a typo or a wrong
formula fails on a machine without a GPU. ``build`` turns them into CuPy kernels once per
process; CuPy compiles each on its first launch and caches it on disk.
"""

from __future__ import annotations

import functools
from typing import Any

# Each activation as CUDA code: forward from its input ``x``, backward from its output ``y``.
_FORWARD = {
    "identity": "x",
    "relu": "x <= (T)0 ? (T)0 : x",  # a NaN stays NaN (CUDA's max would drop it)
    "sigmoid": "(T)1 / ((T)1 + exp(-x))",
    "tanh": "tanh(x)",
}
_BACKWARD = {
    "identity": "dy",
    "relu": "y > (T)0 ? dy : (T)0",
    "sigmoid": "dy * y * ((T)1 - y)",
    "tanh": "dy * ((T)1 - y * y)",
}

# Each loss's row: writes the row's gradient, times ``scale``, into ``g`` (which may alias
# the outputs), and gives its loss and whether it is right. A function of its own, so that
# the tests can build and run its arithmetic on the host
# (tests/backends/cuda/test_kernels_on_host.py).
SOFTMAX_XENT_ROW = r"""
__device__ void mlp_softmax_xent_row(
    const {T}* z, {T}* g, const int label, const int classes, const {T} scale,
    double* loss, double* hit)
{{
    // g = (softmax(z) - onehot(label)) * scale; whether the first largest logit is the label.
    const {T} z_label = z[label];
    {T} z_max = z[0];
    int arg = 0;
    for (int j = 1; j < classes; ++j) {{
        if (z[j] > z_max) {{ z_max = z[j]; arg = j; }}
    }}
    {T} total = 0;
    for (int j = 0; j < classes; ++j) {{
        const {T} e = exp(z[j] - z_max);
        g[j] = e;
        total += e;
    }}
    const {T} inv = ({T})1 / total;
    for (int j = 0; j < classes; ++j) {{
        g[j] = (g[j] * inv - (j == label ? ({T})1 : ({T})0)) * scale;
    }}
    *loss = log((double)total) - (double)(z_label - z_max);
    *hit = (arg == label) ? 1.0 : 0.0;
}}
"""

SIGMOID_XENT_ROW = r"""
__device__ void mlp_sigmoid_xent_row(
    const {T}* z, {T}* g, const int label, const int width, const {T} scale,
    double* loss, double* hit)
{{
    // One logit x, a label y in {{0, 1}}: max(x, 0) - x*y + log(1 + exp(-|x|)), no overflow;
    // g = (sigmoid(x) - y) * scale, the sigmoid as (1 + tanh(x/2)) / 2.
    const double x = (double)z[0];
    const double y = label == 1 ? 1.0 : 0.0;
    const double p = 0.5 * tanh(0.5 * x) + 0.5;
    *loss = max(x, 0.0) - x * y + log1p(exp(-fabs(x)));
    *hit = ((x > 0.0) == (label == 1)) ? 1.0 : 0.0;
    g[0] = ({T})((p - y) * (double)scale);
}}
"""

SQUARED_ERROR_ROW = r"""
__device__ void mlp_squared_error_row(
    const {T}* o, {T}* g, const {T}* t, const int width, const {T} scale,
    double* loss, double* hit)
{{
    // Half the squared error summed over the row; g = (o - t) * scale.
    double total = 0.0;
    for (int j = 0; j < width; ++j) {{
        const {T} d = o[j] - t[j];
        total += (double)(d * d);
        g[j] = d * scale;
    }}
    *loss = 0.5 * total;
    *hit = 0.0;
}}
"""

# A loss over a batch, one thread per row (outputs are few); grad may alias the outputs.
# ``weighted``: each row's gradient is scaled by its weight over ``weight_sum[0]`` (the sum the
# step computed on the device), and its loss and hit weighted; else by ``scale`` (1/rows).
LOSS_KERNEL = r"""
extern "C" __global__ void mlp_{loss}_{T}(
    const {T}* outputs, const {Y}* targets, {T}* grad, double* totals,
    const {T}* weights, const {T}* weight_sum, const int weighted,
    const int rows, const int width, const {T} scale)
{{
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    double loss = 0.0, hit = 0.0;
    if (r < rows) {{
        const long long at = (long long)r * width;
        const {T} s = weighted ? weights[r] / (weight_sum[0] > 0 ? weight_sum[0] : ({T})1) : scale;
        mlp_{loss}_row(outputs + at, grad + at, {target}, width, s, &loss, &hit);
        if (weighted) {{
            loss *= (double)weights[r];
            hit *= (double)weights[r];
        }}
    }}
    // Sum over the warp, then one atomic per warp: cheap, and no host round trip.
    for (int offset = 16; offset > 0; offset >>= 1) {{
        loss += __shfl_down_sync(0xffffffff, loss, offset);
        hit += __shfl_down_sync(0xffffffff, hit, offset);
    }}
    if ((threadIdx.x & 31) == 0) {{
        atomicAdd(&totals[0], loss);
        atomicAdd(&totals[1], hit);
    }}
}}
"""

#: Each loss kernel's source, to format with ``T`` (float or double): its row function, then
#: the batch around it, the targets labels (``int``) or values (``T``).
LOSS_SOURCES = {
    name: row
    + LOSS_KERNEL.replace("{loss}", name).replace("{Y}", targets).replace("{target}", target)
    for name, row, targets, target in (
        ("softmax_xent", SOFTMAX_XENT_ROW, "int", "targets[r]"),
        ("sigmoid_xent", SIGMOID_XENT_ROW, "int", "targets[r]"),
        ("squared_error", SQUARED_ERROR_ROW, "{T}", "targets + at"),
    )
}

THREADS = 128  # threads per block of the loss kernels: a multiple of the warp size

# Adam with the update count on the device, over contiguous buffers, in one launch: each
# block's first thread works out the bias corrections (``adam_corrections``' arithmetic) into
# shared memory, and the block strides over the elements with ``adam``'s update. The grid
# is as many blocks as the multiprocessors hold at once (``CupyBackend``), so the corrections
# cost about a thousand threads a step where per element they would cost millions.
ADAM_KERNEL = r"""
extern "C" __global__ void mlp_adam_contiguous_{T}(
    const {T}* grads, {T}* params, {T}* firsts, {T}* seconds, const long long* count,
    const long long size, const double lr, const double beta1_double, const double beta2_double,
    const {T} beta1, const {T} one_minus_beta1, const {T} beta2, const {T} one_minus_beta2,
    const {T} eps, const {T} l2, const {T} decay)
{{
    typedef {T} T;
    __shared__ T corrections[2];
    if (threadIdx.x == 0) {{
        const double beta1 = beta1_double, beta2 = beta2_double;
        T& step_size = corrections[0];
        T& inv_sqrt_bc2 = corrections[1];
        @CORRECTIONS@
    }}
    __syncthreads();
    const T step_size = corrections[0], inv_sqrt_bc2 = corrections[1];
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size; i += stride) {{
        const T g = grads[i];
        T& p = params[i];
        T& m = firsts[i];
        T& v = seconds[i];
        @UPDATE@
    }}
}}
"""
ADAM_THREADS = 256  # threads per block of the Adam kernel


def _elementwise_specs() -> dict[str, tuple[str, str, str]]:
    """Every elementwise kernel as CuPy's (inputs, outputs, operation) strings, by name."""
    specs: dict[str, tuple[str, str, str]] = {}
    for name, expr in _FORWARD.items():
        specs["act_" + name] = ("T x", "T y", f"y = {expr};")
        specs["bias_act_" + name] = ("T z, T b", "T y", f"const T x = z + b; y = {expr};")
    for name, expr in _BACKWARD.items():
        specs["backprop_" + name] = ("T dy, T y", "T dx", f"dx = {expr};")
    # Row r of the batch is rows[start[0] + r]: a recorded step reads its place on the device.
    specs["gather_rows"] = (
        "raw S source, raw I rows, raw int64 start, int64 cols, T scale",
        "T out",
        "const long long r = i / cols;"
        " out = (T)source[(long long)rows[start[0] + r] * cols + (i - r * cols)] * scale;",
    )
    # A training batch in one pass: the inputs' row, and within its first ``target_cols``
    # columns the targets' row beside it (``gather_rows`` of each, one launch for both).
    specs["gather_batch"] = (
        "raw S source, raw U targets, raw I rows, raw int64 start, int64 cols,"
        " int64 target_cols, T scale",
        "T out, raw V target_out",
        "const long long r = i / cols; const long long c = i - r * cols;"
        " const long long row = rows[start[0] + r];"
        " out = (T)source[row * cols + c] * scale;"
        " if (c < target_cols)"
        " target_out[r * target_cols + c] = (V)targets[row * target_cols + c];",
    )
    # float32 -> bfloat16 bits, rounded to nearest even; NaN stays a (quiet) NaN.
    specs["to_bf16"] = (
        "float32 x",
        "uint16 y",
        "const unsigned int u = __float_as_uint(x);"
        " y = (unsigned short)((u & 0x7fffffffu) > 0x7f800000u"
        " ? (u >> 16) | 0x40u : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);",
    )
    # 1 - beta comes from the host, worked out in double: (T)1 - beta in float32 is 1.3e-5
    # off for beta2 = 0.999, a bias in v that the CPU and PyTorch do not have.
    adam_update = (
        "const T grad = g + l2 * p;"
        " m = beta1 * m + one_minus_beta1 * grad;"
        " v = beta2 * v + one_minus_beta2 * grad * grad;"
        " p = p * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps);"
    )
    adam_constants = "T beta1, T one_minus_beta1, T beta2, T one_minus_beta2, T eps, T l2, T decay"
    specs["adam"] = (
        f"T g, T step_size, T inv_sqrt_bc2, {adam_constants}",
        "T p, T m, T v",
        adam_update,
    )
    # With the update count on the device (a recorded step advances it), one thread works out
    # the bias corrections from it, in double as ``adam_scalars`` does on the host, and the
    # update reads them: two pow() per element cost big's 5.8M-parameter step 50 µs.
    specs["adam_corrections"] = (
        "raw int64 count, float64 lr, float64 beta1, float64 beta2",
        "T step_size, T inv_sqrt_bc2",
        "const double t = (double)count[0];"
        " step_size = (T)(lr / (1.0 - pow(beta1, t)));"
        " inv_sqrt_bc2 = (T)(1.0 / sqrt(1.0 - pow(beta2, t)));",
    )
    specs["adam_counted"] = (
        f"T g, raw T corrections, {adam_constants}",
        "T p, T m, T v",
        f"const T step_size = corrections[0]; const T inv_sqrt_bc2 = corrections[1]; {adam_update}",
    )
    specs["sgd"] = ("T g, T lr, T weight_decay", "T p", "p -= lr * (g + weight_decay * p);")
    specs["sgd_momentum"] = (
        "T g, T lr, T momentum, T weight_decay, int32 nesterov",
        "T p, T velocity",
        "T d = g + weight_decay * p;"
        " velocity = momentum * velocity + d;"
        " d = nesterov ? d + momentum * velocity : velocity;"
        " p -= lr * d;",
    )
    return specs


def _adam_source() -> str:
    """``ADAM_KERNEL`` with the corrections and the update written once, in ``ELEMENTWISE``."""
    corrections = ELEMENTWISE["adam_corrections"][2]
    update = ELEMENTWISE["adam"][2]
    return ADAM_KERNEL.replace("@CORRECTIONS@", corrections).replace("@UPDATE@", update)


#: Elementwise kernels as source strings: built into CuPy kernels by ``build`` and
#: compiled with nvcc by the tests, so a typo shows up even on a machine without a GPU.
ELEMENTWISE = _elementwise_specs()
#: The one-launch Adam kernel's source, to format with ``T`` (float or double).
ADAM_SOURCE = _adam_source()


@functools.cache
def build(cupy: Any) -> dict[str, Any]:
    """Every fused kernel, by name, as a CuPy kernel (built once per process)."""
    kernels: dict[str, Any] = {
        name: cupy.ElementwiseKernel(inputs, outputs, operation, f"mlp_{name}")
        for name, (inputs, outputs, operation) in ELEMENTWISE.items()
    }
    for name, source in LOSS_SOURCES.items():
        for ctype in ("float", "double"):
            kernels[f"{name}_{ctype}"] = cupy.RawKernel(
                source.format(T=ctype), f"mlp_{name}_{ctype}"
            )
    for ctype in ("float", "double"):
        kernels[f"adam_contiguous_{ctype}"] = cupy.RawKernel(
            ADAM_SOURCE.format(T=ctype), f"mlp_adam_contiguous_{ctype}"
        )
    return kernels
