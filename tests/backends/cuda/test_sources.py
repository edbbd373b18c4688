"""The CUDA kernels' source compiles with nvcc: a check that needs no GPU.

CuPy compiles kernels only on a GPU, so on a CPU machine a typo in a kernel would wait
for the next GPU run. Here each elementwise kernel is wrapped the way CuPy wraps it
(inputs by value, outputs by reference, ``raw`` arguments as pointers, ``i`` the index)
and compiled for float and double, together with the loss kernels and the one-launch Adam."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from backends.cuda import cublas
from backends.cuda.kernels import ADAM_SOURCE, ELEMENTWISE, LOSS_SOURCES
from tests.backends.cuda.cuda_types import C_TYPES

NVCC = shutil.which("nvcc")


pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc (CUDA toolkit) not installed")


def _param(decl: str, output: bool) -> tuple[str, str]:
    """One CuPy parameter → (kernel argument, per-element binding)."""
    words = decl.split()
    raw = words[0] == "raw"
    ctype, name = words[-2], words[-1]
    ctype = C_TYPES.get(ctype, ctype)
    if raw:
        return f"{'' if output else 'const '}{ctype}* {name}", ""
    if output:
        return f"{ctype}* {name}_ptr", f"{ctype}& {name} = {name}_ptr[i];"
    return f"const {ctype} {name}", ""


def elementwise_source(name: str, ctype: str, spec: tuple[str, str, str] | None = None) -> str:
    inputs, outputs, operation = spec or ELEMENTWISE[name]
    args, binds = [], []
    for decl in inputs.split(","):
        args.append(_param(decl.strip(), output=False)[0])
    for decl in outputs.split(","):
        arg, bind = _param(decl.strip(), output=True)
        args.append(arg)
        binds.append(bind)
    return (
        f"typedef {ctype} T; typedef unsigned char S; typedef long long I;"
        " typedef int U; typedef int V;\n"
        f'extern "C" __global__ void mlp_{name}({", ".join(args)}, long long n) {{\n'
        "  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;"
        " i += (long long)gridDim.x * blockDim.x) {\n"
        f"    {' '.join(binds)}\n    {operation}\n  }}\n}}\n"
    )


def compile_cuda(tmp_path, name: str, source: str) -> None:
    src = tmp_path / f"{name}.cu"
    src.write_text(source)
    result = subprocess.run(
        [NVCC, "-arch=sm_90", "-c", "-o", str(tmp_path / f"{name}.o"), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{name} does not compile:\n{source}\n{result.stderr}"


@pytest.mark.parametrize("ctype", ["float", "double"])
def test_elementwise_kernels_compile(tmp_path, ctype):
    source = "\n".join(elementwise_source(name, ctype) for name in ELEMENTWISE)
    compile_cuda(tmp_path, f"elementwise_{ctype}", source)


@pytest.mark.parametrize("ctype", ["float", "double"])
@pytest.mark.parametrize("name", sorted(LOSS_SOURCES))
def test_loss_kernels_compile(tmp_path, name, ctype):
    compile_cuda(tmp_path, f"{name}_{ctype}", LOSS_SOURCES[name].format(T=ctype))


@pytest.mark.parametrize("ctype", ["float", "double"])
def test_adam_kernel_compiles(tmp_path, ctype):
    compile_cuda(tmp_path, f"adam_{ctype}", ADAM_SOURCE.format(T=ctype))


def test_every_activation_has_a_forward_and_backward_kernel():
    from backends import ACTIVATIONS

    for act in ACTIVATIONS:
        assert {f"act_{act}", f"bias_act_{act}", f"backprop_{act}"} <= set(ELEMENTWISE)


def test_wrapper_catches_a_broken_kernel(tmp_path):
    """The check itself can fail: a kernel with an undefined name does not compile."""
    inputs, outputs, operation = ELEMENTWISE["sgd"]
    broken = elementwise_source("sgd", "float", (inputs, outputs, operation + " p += oops;"))
    with pytest.raises(AssertionError, match="does not compile"):
        compile_cuda(tmp_path, "broken", broken)


def test_cuda_enum_values_match_the_toolkit(tmp_path):
    """The data-type codes handed to cuBLAS's GemmEx are the toolkit's own."""
    checks = "\n".join(
        f'static_assert({name} == {getattr(cublas, name)}, "{name}");'
        for name in ("CUDA_R_32F", "CUDA_R_16BF")
    )
    compile_cuda(tmp_path, "enums", f"#include <library_types.h>\n{checks}\n")
