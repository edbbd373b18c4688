"""One benchmark row in a fresh process: ``python -m bench.worker SPEC.json RESULT.json``.

A fresh process per row keeps peak RSS per row honest (no other row's imports, data or
thread pools in it) and keeps PyTorch's OpenMP threads away from NumPy's BLAS threads.
The result is a JSON object with ``status``: ``ok``, ``missing`` (a peer not installed),
``unavailable`` (no such device) or ``error`` (with ``reason``).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

from backends import parse_device

from . import torch_peers
from .extras import PEER_MODULES, missing_reason
from .memory import peak_rss_bytes, reset_peak_rss
from .runner import write_result
from .timing import Schedule
from .workloads import WORKLOADS, training_data

TRAINERS = {
    "mlp": ("bench.ours", "train_ours"),
    "textbook": ("bench.textbook", "train_textbook"),
    "torch": ("bench.peers", "train_torch"),
    "sklearn": ("bench.peers", "train_sklearn"),
    **{impl: ("bench.torch_peers", fn) for impl, fn in torch_peers.TRAINERS.items()},
}


def _device_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """CuPy's pool size after a CUDA row of ours (the pool keeps what it ever held)."""
    if spec["device"] == "cpu" or spec["impl"] not in ("mlp", "limit", "textbook"):
        return {}
    import cupy

    with cupy.cuda.Device(parse_device(spec["device"])[1]):  # the pool counts per device
        held = cupy.get_default_memory_pool().total_bytes()
    return {
        "device_memory_bytes": int(held),
        "device_memory_kind": "CuPy pool total_bytes",
    }


def schedule(spec: dict[str, Any], epochs: int) -> Schedule:
    return Schedule(warmup=spec["warmup"], epochs=epochs, max_extra=spec["max_extra"])


def probe(device: str) -> dict[str, Any]:
    """Whether ``device`` works here, and what it is."""
    from backends import get_backend

    backend = get_backend(device)
    out: dict[str, Any] = {"device": backend.device}
    if backend.device != "cpu":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(backend.index)
        name = props["name"]
        out["device_name"] = name.decode() if isinstance(name, bytes) else str(name)
        out["device_total_memory_bytes"] = int(props["totalGlobalMem"])
        out["cupy"] = cupy.__version__
        out["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    return out


def precision_option(spec: dict[str, Any]) -> dict[str, str]:
    """The row's matmul precision for its trainer where it is not float32: rows planned at
    float32 alone (textbook, scikit-learn) take no such argument."""
    precision = spec.get("precision", "float32")
    return {} if precision == "float32" else {"precision": precision}


def time_to_accuracy(spec: dict[str, Any], workload: Any) -> dict[str, Any]:
    """``tta-mlp`` (ours) or ``tta-<PyTorch row>`` (its eager loop or a variant's step)."""
    from . import accuracy

    peer = spec["impl"].removeprefix("tta-")
    task = (workload, spec["device"], spec["target"], spec["max_epochs"])
    if peer == "mlp":
        return accuracy.time_to_accuracy_ours(*task)
    return accuracy.time_to_accuracy_torch(*task, impl=peer)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the task that ``spec`` names and return its measurements."""
    impl, device = spec["impl"], spec.get("device", "cpu")
    if impl == "probe":
        return probe(device)
    workload = WORKLOADS[spec["workload"]]
    if impl == "limit":
        from .limit import measure_limit

        repeats = schedule(spec, spec["repeats"])
        return measure_limit(workload, device, spec["samples"], repeats, **precision_option(spec))
    if impl.startswith("tta-"):
        return time_to_accuracy(spec, workload)
    module_name, function = TRAINERS[impl]
    module = __import__(module_name, fromlist=[function])
    X, y, source = training_data(spec["real"], spec["samples"])
    reset = reset_peak_rss()  # the dataset's decompression and conversion are not training
    train = getattr(module, function)
    out = train(workload, device, X, y, schedule(spec, spec["epochs"]), **precision_option(spec))
    out["data"] = source
    out["rss_reset_after_data"] = reset
    return out


def classify(exc: BaseException, spec: dict[str, Any]) -> dict[str, Any]:
    """A failed row as a result: which kind of failure, and one line saying why."""
    from backends import BackendUnavailable

    reason = f"{type(exc).__name__}: {exc}".strip()
    peer = spec["impl"].removeprefix("tta-")
    module = PEER_MODULES.get(peer)
    if isinstance(exc, ImportError) and module and (exc.name or "").split(".")[0] == module:
        return {"status": "missing", "reason": missing_reason(peer)}
    if isinstance(exc, BackendUnavailable) or (
        isinstance(exc, ImportError) and (exc.name or "").startswith("cupy")
    ):
        return {"status": "unavailable", "reason": reason}
    if isinstance(exc, RuntimeError) and "sees no CUDA device" in str(exc):
        return {"status": "unavailable", "reason": reason}
    return {"status": "error", "reason": reason, "traceback": traceback.format_exc()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec_path, result_path = argv
    spec = json.loads(Path(spec_path).read_text())
    if spec["impl"] == "dist":  # one of a world's processes: rank 0 alone writes the result
        from .distributed import worker_main

        return worker_main(spec, Path(result_path))
    try:
        result = {"status": "ok", **run(spec)}
        result.update(_device_memory(spec) if "device_memory_bytes" not in result else {})
    except Exception as exc:
        result = classify(exc, spec)
    result["peak_rss_bytes"], result["rss_source"] = peak_rss_bytes()
    write_result(result, Path(result_path))
    return 0 if result["status"] != "error" else 1


if __name__ == "__main__":
    sys.exit(main())
