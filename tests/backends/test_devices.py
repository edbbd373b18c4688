"""Device specs and backends: parsing, what each device spec gives or why it cannot, a missing
CuPy naming its extra, and the line that names the hardware."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import backends
from backends import BackendUnavailable, NumpyBackend, get_backend, parse_device


# ---------------------------------------------------------------------- device specs
@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("cpu", ("cpu", 0)),
        ("numpy", ("cpu", 0)),
        ("CPU", ("cpu", 0)),
        (" cpu ", ("cpu", 0)),
        ("cuda", ("cuda", 0)),
        ("cuda:0", ("cuda", 0)),
        ("cuda:1", ("cuda", 1)),
        ("cupy", ("cuda", 0)),
        ("cupy:2", ("cuda", 2)),
        ("gpu", ("cuda", 0)),
        ("CUDA:3", ("cuda", 3)),
    ],
)
def test_parse_device(spec, parsed):
    assert parse_device(spec) == parsed


@pytest.mark.parametrize(
    "spec",
    [
        "tpu",
        "",
        "cuda:x",
        "cuda:-1",
        "cuda:1.5",
        "cuda:1:2",
        "cpu:0",
        "numpy:1",
        "cu da",
        "metal",
        "cuda1",
    ],
)
def test_bad_device_specs_raise_value_error(spec):
    with pytest.raises(ValueError, match="unknown device"):
        parse_device(spec)
    with pytest.raises(ValueError, match="unknown device"):
        get_backend(spec)


def test_get_backend_cpu():
    for spec in ("cpu", "numpy", "CPU"):
        be = get_backend(spec)
        assert isinstance(be, NumpyBackend)
        assert be.device == "cpu" and be.xp is np
    be = get_backend("cpu")
    assert get_backend(be) is be
    assert get_backend().device == "cpu"


@pytest.mark.parametrize("spec", ["cuda", "cuda:1", "cupy"])
def test_get_backend_cuda_gives_a_backend_or_says_why(spec):
    """A valid CUDA spec either works or raises BackendUnavailable: never a ValueError."""
    try:
        be = get_backend(spec)
    except BackendUnavailable as exc:
        assert str(exc)
        assert isinstance(exc, RuntimeError)
    else:
        assert be.device == ("cuda:1" if spec == "cuda:1" else "cuda:0")


def test_missing_cupy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError
    for spec in ("cuda", "cuda:1", "cupy"):
        with pytest.raises(BackendUnavailable) as info:
            get_backend(spec)
        message = str(info.value)
        assert "cuda12" in message and "cuda13" in message
        assert "CuPy" in message
    assert issubclass(backends.BackendUnavailable, RuntimeError)


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_describe_names_the_hardware_and_precision(make_backend, backend_kind, precision):
    """The line a run prints: device, what computes (library, GPU), reduced precision."""
    backend = make_backend(backend_kind, precision)
    text = backend.describe()
    assert text.startswith(f"{backend.device} (") and text.endswith(")")
    assert text.endswith(", bf16 matmuls)") == (precision == "bf16")
    if backend_kind == "cuda":
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(backend.index)["name"]
        name = name.decode() if isinstance(name, bytes) else name
        assert f"({name}, " in text and f" GiB, CuPy {cupy.__version__}" in text
    else:
        kernels = "no Numba kernels" if backend.kernels is None else "Numba kernels"
        assert text.startswith(f"cpu (NumPy {np.__version__}, {kernels}")
