"""The README's set-up commands: what ``make`` would install for each device, and for each
benchmark run (dry runs)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


@pytest.mark.parametrize(
    ("variables", "extras"),
    [
        ([], "fast,test,dev,dist"),
        (["DEVICE=cuda"], "fast,test,dev,dist,cuda12"),
        (["DEVICE=cuda:1", "CUDA=13"], "fast,test,dev,dist,cuda13"),
    ],
)
def test_make_train_installs_the_extras_for_the_device(tmp_path, variables, extras):
    """``make train DEVICE=cuda`` must pull in CuPy (it once asked for an extra 'devcuda12')."""
    venv = tmp_path / "venv"  # a fresh venv: make plans the whole set-up
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "train", f"VENV={venv}", *variables],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"pip install --quiet -e '.[{extras}]'" in result.stdout


def make_bench_extras(tmp_path: Path, args: str | None) -> list[str]:
    """The extras ``make bench`` would install into a fresh venv, for these ``ARGS``."""
    command = ["make", "-n", "-C", str(ROOT), "bench", f"VENV={tmp_path / 'venv'}"]
    command += [f"PYTHON={sys.executable}", *([f"ARGS={args}"] if args is not None else [])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"-m bench {args or ''}".rstrip() in result.stdout  # the run gets ARGS as given
    (extras,) = re.findall(r"pip install --quiet -e '\.\[([^\]]*)\]'", result.stdout)
    return extras.split(",")


def requirements(extras: list[str]) -> set[str]:
    """The distributions those extras of pyproject.toml bring, by name."""
    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*declared["dependencies"]]
    for extra in extras:
        wanted += declared["optional-dependencies"][extra]
    return {re.match(r"[A-Za-z0-9._-]+", r).group().lower() for r in wanted}


@pytest.mark.parametrize(
    ("args", "peers"),
    [
        (None, {"torch", "scikit-learn"}),  # what `python -m bench` runs by default
        ("--workloads std --epochs 5", {"torch", "scikit-learn"}),
        ("--peers none", set()),
        ("--workloads std --peers none --epochs 5", set()),
        ("--peers=torch", {"torch"}),
        ("--peers sklearn", {"scikit-learn"}),
    ],
)
def test_make_bench_installs_only_the_peers_it_runs(tmp_path, args, peers):
    """Each run installs the peers its --peers names, and no other (``--peers none``: neither
    PyTorch nor scikit-learn)."""
    extras = make_bench_extras(tmp_path, args)
    assert "bench" in extras and "test" not in extras  # `test` would bring both peers back
    assert requirements(extras) & {"torch", "scikit-learn"} == peers


def test_make_bench_keeps_the_torch_pin():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert extras["optional-dependencies"]["bench-torch"] == ["torch==2.13.0"]


def test_make_bench_on_a_gpu_brings_cupy(tmp_path):
    command = ["make", "-n", "-C", str(ROOT), "bench", f"VENV={tmp_path / 'venv'}"]
    command += [f"PYTHON={sys.executable}", "DEVICE=cuda", "CUDA=13", "ARGS=--peers none"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install --quiet -e '.[fast,bench,cuda13]'" in result.stdout
