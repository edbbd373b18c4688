"""What the numbers were measured on: CPU, BLAS and its threads, GPU, versions, commit, date."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .runner import ROOT

#: Distributions whose versions are recorded (those not installed are left out).
PACKAGES = (
    "numpy",
    "torch",
    "scikit-learn",
    "matplotlib",
    "threadpoolctl",
    "psutil",
    "cupy",
    "cupy-cuda12x",
    "cupy-cuda13x",
)
#: Environment variables that change how BLAS or OpenMP run.
THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
)
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _run(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_info() -> dict[str, Any]:
    """CPU model, cores and the vector extensions that matter for BLAS."""
    info: dict[str, Any] = {
        "model": platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": cpu_cores(),
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    fields = dict(re.findall(r"^(model name|flags)\s*:\s*(.*)$", text, re.M))
    if "model name" in fields:
        info["model"] = fields["model name"].strip()
    if "flags" in fields:
        flags = set(fields["flags"].split())
        info["flags"] = [f for f in CPU_FLAGS if f in flags]
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_bytes"] = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return info


def blas_info() -> dict[str, Any]:
    """NumPy's BLAS (name, version, build) and the threads it runs with here."""
    import numpy as np

    info: dict[str, Any] = {}
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        info.update(
            name=blas.get("name"),
            version=blas.get("version"),
            configuration=blas.get("openblas configuration"),
        )
    except Exception:  # older NumPy: no mode="dicts"
        pass
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            info.update(
                threads=pools[0].get("num_threads"),
                internal_api=pools[0].get("internal_api"),
                runtime_version=pools[0].get("version"),
                architecture=pools[0].get("architecture"),
            )
    except ImportError:
        threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        info["threads"] = int(threads) if threads and threads.isdigit() else None
        info["threads_note"] = "threadpoolctl not installed: from the environment, else unknown"
    return info


def gpu_info() -> list[dict[str, str]]:
    """GPUs that ``nvidia-smi`` lists (name, memory, driver); empty without one."""
    out = _run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    )
    gpus = []
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


def versions() -> dict[str, str]:
    """Installed versions of the libraries involved (mlp from its source tree)."""
    import mlp

    out = {"python": platform.python_version(), "mlp": mlp.__version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> dict[str, Any]:
    """The commit measured, and whether tracked files differed from it.

    ``MLP_COMMIT`` names it instead for a copy of the tree whose git metadata is older than
    its files (as on a lent GPU machine): there git's answer would be the wrong commit.
    """
    given = os.environ.get("MLP_COMMIT", "").strip()
    if given:
        return {"commit": given, "dirty": None, "from": "MLP_COMMIT"}  # dirty: unknown
    commit = _run(["git", "rev-parse", "HEAD"])
    if commit is None:
        return {}
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return {"commit": commit, "dirty": bool(dirty)}


def machine_info() -> dict[str, Any]:
    """Everything above, plus the platform, date and thread-related environment variables."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "blas": blas_info(),
        "gpus": gpu_info(),
        "versions": versions(),
        "git": git_commit(),
        "environment": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
    }


def slug(text: str) -> str:
    """``"Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"`` → ``"intel-xeon-gold-6338"``."""
    text = re.sub(r"\((r|tm|c)\)|\bcpu\b|@.*$|\bprocessor\b", " ", text.lower())
    return "-".join(re.findall(r"[a-z0-9]+", text))[:48] or "unknown"
