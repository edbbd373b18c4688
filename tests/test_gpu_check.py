"""``scripts/gpu-check.sh`` as a shell program, run here with a stand-in interpreter: each
stage called as planned, the cuBLASLt fallback taken where the first GPU fit fails, the
summary written, and no more files than the GPU machine sends back. What the stages measure
needs the GPU; this only keeps the script from failing for a shell mistake on its one run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("timeout") is None, reason="no timeout(1) here")

#: Each stage's stand-in: its command's output, and the exit status of a GPU fit that runs
#: with cuBLASLt where the test says it fails ($FAIL_CUBLASLT).
STAND_IN = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$1 $2" in
    "-m pytest") echo "235 passed" ;;
    "-m mlp")
        case "$*" in *"--device cuda"*)
            [ -n "$FAIL_CUBLASLT" ] && [ -z "$MLP_NO_CUBLASLT" ] && exit 1 ;;
        esac
        echo "device: stand-in"; echo "epoch 1: loss 0.5"; echo "test accuracy: 0.8770" ;;
    "-m bench.ops") echo "cuBLASLt plans: 4 of 4 served" ;;
    "-m bench")
        echo "target big on cuda: 1.20 vs fastest PyTorch (≥ 1): met (fastest: torch-graph, of t)"
        echo "fastest PyTorch to 0.89 on cuda, of 2 run: stand-in" ;;
    "-c "*) case "$2" in *find_dataset*) exit 1 ;; esac; echo "stand-in" ;;
esac
"""


def run_check(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path, list[str]]:
    python, launcher = tmp_path / "python", tmp_path / "bin" / "mpiexec"
    python.write_text(STAND_IN)
    launcher.parent.mkdir()
    launcher.write_text('#!/bin/sh\nshift 2\nexec "$@"\n')  # mpiexec -n 1 COMMAND…
    for script in (python, launcher):
        script.chmod(0o755)
    out, calls = tmp_path / "out", tmp_path / "calls.log"
    environment = {
        **os.environ,
        "PATH": f"{launcher.parent}:{os.environ['PATH']}",
        "PYTHON": str(python),
        "OUT": str(out),
        "CALLS": str(calls),
        "GPU_CHECK_DATA": str(tmp_path / "no-data"),
        **env,
    }
    environment.pop("MLP_NO_CUBLASLT", None)
    done = subprocess.run(
        ["sh", str(ROOT / "scripts" / "gpu-check.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, out, calls.read_text().splitlines()


def test_every_stage_runs_and_the_summary_comes_back(tmp_path):
    done, out, calls = run_check(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    summary = (out / "summary.txt").read_text()
    assert "gpu-check: PASSED" in summary
    assert "target big on cuda: 1.20 vs fastest PyTorch" in summary
    assert "fastest PyTorch to 0.89 on cuda" in summary
    assert "cuBLASLt plans: 4 of 4 served" in summary
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and "train.log" in files and "bench.log" in files
    bench = next(c for c in calls if c.startswith("-m bench --devices cuda") and "bf16" in c)
    assert "--order peer" in bench and "--peers torch-graph," in bench
    assert sum(c.startswith("-m mlp ") for c in calls) == 6  # cuBLASLt served: no second try
    assert any("--distributed" in c for c in calls)  # through the mpiexec on PATH


def test_a_gpu_fit_that_fails_with_cublaslt_reruns_the_rest_without_it(tmp_path):
    done, out, calls = run_check(tmp_path, FAIL_CUBLASLT="1")
    summary = (out / "summary.txt").read_text()
    assert done.returncode == 1 and "gpu-check: FAILED" in summary  # the failure still counts
    assert "cuBLASLt: the fit failed with it and passed without" in summary
    assert "train-cuda-no-cublaslt" in summary
    later = [c for c in calls if c.startswith("-m mlp ") and "--device cuda" in c]
    assert len(later) == 6  # the failed fit, its rerun, and every later one (without it)
