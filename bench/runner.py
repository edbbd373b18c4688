"""Run a task in a fresh Python process and collect its result and resource usage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlp.files import atomic_write

from .memory import rusage_maxrss_bytes

#: The repository root: workers import ``bench``, ``mlp`` and ``backends`` from here.
ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """This environment, with the repository root first on ``PYTHONPATH``."""
    env = dict(os.environ)
    paths = [str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def kill(proc: subprocess.Popen) -> None:
    """Kill ``proc``, with its process group when it leads one: an MPI launcher's ranks are
    its children, and a launcher killed alone may leave them waiting in a collective."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
            return
    except (ProcessLookupError, PermissionError):
        pass
    proc.kill()


def wait_with_rusage(proc: subprocess.Popen, timeout: float) -> tuple[int, int | None, bool]:
    """``(exit status, peak RSS in bytes, timed out)`` of ``proc``, killed past ``timeout``."""
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, rusage_maxrss_bytes(usage.ru_maxrss), timed_out
            if time.monotonic() > deadline and not timed_out:
                kill(proc)
                timed_out = True
            time.sleep(0.02)
    except BaseException:  # interrupted or terminated: never leave a row running behind us
        kill(proc)
        proc.wait()
        raise


def run_command(command: Sequence[str], timeout: float, **popen: Any) -> dict[str, Any]:
    """Run ``command``; returns its exit status, wall seconds, peak RSS and output tail."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(command), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env(), **popen
        )
        code, rss, timed_out = wait_with_rusage(proc, timeout)
        seconds = time.perf_counter() - start
        out.seek(0)
        tail = out.read()[-4000:].decode(errors="replace")
    return {
        "returncode": code,
        "wall_seconds": seconds,
        "child_peak_rss_bytes": rss,
        "timed_out": timed_out,
        "output_tail": tail,
    }


def write_result(result: dict[str, Any], path: Path) -> None:
    """Write a worker's result whole or not at all: a row killed at its deadline mid-write
    must read as timed out, not as a file that stops the whole run."""
    atomic_write(path, lambda f: f.write(json.dumps(result).encode()))


def read_result(path: Path) -> dict[str, Any]:
    """A worker's result; one that cannot be read is that row's error, not the run's."""
    try:
        result = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        return {"status": "error", "reason": f"worker's result unreadable: {exc}"}
    if not isinstance(result, dict):
        return {"status": "error", "reason": "worker's result is not a JSON object"}
    return result


def run_task(spec: dict[str, Any], timeout: float, launcher: Sequence[str] = ()) -> dict[str, Any]:
    """Run one row (see ``bench.worker``) in a fresh process; always returns a result.

    ``launcher`` (``mpiexec -n 2``) starts the worker as a world of processes instead, in a
    session of its own so that a timeout ends all of them (rank 0 writes the result)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        command = [sys.executable, "-m", "bench.worker", str(spec_path), str(result_path)]
        popen = {"start_new_session": True} if launcher else {}
        done = run_command([*launcher, *command], timeout, **popen)
        if result_path.exists():
            result = read_result(result_path)
        elif done["timed_out"]:
            result = {"status": "error", "reason": f"timed out after {timeout:.0f} s"}
        else:
            last = done["output_tail"].strip().splitlines()[-1:] or ["no output"]
            result = {
                "status": "error",
                "reason": f"worker exited with status {done['returncode']}: {last[0]}",
                "output_tail": done["output_tail"],
            }
    result["process_peak_rss_bytes"] = done["child_peak_rss_bytes"]  # all of it, loading too
    if result.get("peak_rss_bytes") is None:
        result["peak_rss_bytes"] = done["child_peak_rss_bytes"]
        result["rss_source"] = "wait4"
    result["process_seconds"] = done["wall_seconds"]
    return result
