"""What many test modules share: the repository's root, and running a command as a user would
(in-process through its ``main``, or as a process), reading its one error line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from backends import Backend, BackendUnavailable, get_backend

ROOT = Path(__file__).resolve().parents[1]


def run(main: Callable[[list[str]], int], argv: Sequence[Any], capsys: Any) -> tuple[int, str, str]:
    """Run a console script's ``main`` in-process: (exit status, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, prog: str = "mlp-train") -> str:
    """The text of stderr's one ``prog: error:`` line (and nothing else, no traceback)."""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"{prog}: error: ")
    return err[len(f"{prog}: error: ") : -1]


def repo_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment, with ``env`` on top, for a process that imports the repository's
    code as the tests do."""
    return {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}


def run_module(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m argv…`` from the repository root, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        env=repo_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line(done: subprocess.CompletedProcess, prog: str, status: int) -> str:
    """The exit status, and stderr as one ``prog: error:`` line; returns that line."""
    assert done.returncode == status, done.stderr + done.stdout
    assert done.stderr.startswith(f"{prog}: error: "), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def train_on(data: Any, *extra: Any) -> list[Any]:
    """``mlp-train``'s options for a quick run (16 hidden units, one epoch) on a folder."""
    return ["--data-dir", data, "--no-download", "--hidden", "16", "--epochs", "1", *extra]


def require_gpu() -> bool:
    """``MLP_REQUIRE_GPU=1``: a CUDA test that cannot run fails instead of skipping."""
    return os.environ.get("MLP_REQUIRE_GPU", "") not in ("", "0")


def backend_or_skip(spec: str) -> Backend:
    """The backend for ``spec``; a missing GPU skips (or fails under MLP_REQUIRE_GPU=1)."""
    try:
        return get_backend(spec)
    except BackendUnavailable as exc:
        if require_gpu():
            pytest.fail(f"MLP_REQUIRE_GPU=1 but {spec} is unavailable: {exc}")
        pytest.skip(f"{spec} unavailable: {exc}")


def peak_allocation(call: Callable[[], Any], error: type[BaseException] | None = None) -> int:
    """The most memory Python and NumPy allocated while ``call`` ran (to raise ``error``,
    where given): a bomb test, a small file that declares large sizes costing little."""
    import tracemalloc

    tracemalloc.start()
    try:
        if error is None:
            call()
        else:
            with pytest.raises(error):
                call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def require_dist() -> bool:
    """``MLP_REQUIRE_DIST=1`` (CI sets it): a distributed test that cannot run fails."""
    return os.environ.get("MLP_REQUIRE_DIST", "") not in ("", "0")


def mpiexec_or_skip() -> str:
    """The MPI launcher beside this Python (the ``dist`` extra's MPICH) or on ``PATH``,
    with mpi4py importable; else a skip (a failure under MLP_REQUIRE_DIST=1)."""
    from bench.distributed import launcher as find_launcher

    launcher = find_launcher()
    problem = None if launcher else "no mpiexec here"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        problem = "mpi4py is not installed (the 'dist' extra)"
    if problem:
        if require_dist():
            pytest.fail(f"MLP_REQUIRE_DIST=1 but {problem}")
        pytest.skip(problem)
    return launcher


def mpiexec(
    launcher: str, *programs: Sequence[Any], timeout: float = 120
) -> subprocess.CompletedProcess:
    """``mpiexec -n 1 PROGRAM_0 : -n 1 PROGRAM_1 …``: one process per program (rank i runs
    ``programs[i]``), from the repository root; the launcher is killed after ``timeout``
    (and ends its processes)."""
    argv = [launcher]
    for i, program in enumerate(programs):
        argv += ([":"] if i else []) + ["-n", "1", *(str(a) for a in program)]
    return subprocess.run(
        argv, cwd=ROOT, env=repo_env(), capture_output=True, text=True, timeout=timeout
    )
