"""``python -m bench.extras``: the extras ``make bench`` installs for a run's options, which
must be the peers ``python -m bench`` itself would run with them, and nothing else."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import cli, extras
from tests.helpers import ROOT


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--peers", "none"],
        ["--peers=none"],
        ["--peers", ""],
        ["--peers", "torch"],
        ["--peers=sklearn,torch"],
        ["--peer", "sklearn"],
        ["--pe", "torch"],
        ["--workloads", "std", "--peers", "torch", "--epochs", "5"],
        ["--peers", "torch", "--peers", "none"],
        ["--no-textbook", "--out", "bench/results"],
    ],
)
def test_the_peers_are_those_the_bench_runs(argv):
    """Parsed by hand (no argparse of the whole CLI, which needs NumPy), so checked against it."""
    assert extras.run_peers(argv) == cli.build_parser().parse_args(argv).peers


def test_a_peers_option_the_bench_refuses_installs_no_peer(capsys):
    assert extras.run_peers(["--peers", "jax"]) is None
    assert extras.main(["--peers", "jax"]) == 0
    assert capsys.readouterr().out == "bench\n"  # the bench then says what is wrong


@pytest.mark.parametrize(
    ("argv", "printed"),
    [
        ([], "bench,bench-torch,bench-sklearn"),
        (["--peers", "none"], "bench"),
        (["--peers", "sklearn,torch"], "bench,bench-torch,bench-sklearn"),  # one stamp per set
        (["--peers", "sklearn"], "bench,bench-sklearn"),
    ],
)
def test_main_prints_the_extras(argv, printed, capsys):
    assert extras.main(argv) == 0
    assert capsys.readouterr().out == printed + "\n"


def test_it_runs_on_the_standard_library_alone():
    """``make`` runs it on the system Python, before the venv (and NumPy) is there."""
    code = (
        "import sys, bench.extras as e; e.main(['--peers', 'torch']);"
        "assert not {'numpy', 'mlp', 'backends'} & set(sys.modules), sorted(sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "bench,bench-torch\n"


def test_a_missing_peer_names_its_extra():
    assert extras.missing_reason("sklearn") == (
        "scikit-learn is not installed (pip install -e '.[bench-sklearn]', or make bench)"
    )
