"""The README's set-up commands: what ``make`` would install for each device (dry runs)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


@pytest.mark.parametrize(
    ("variables", "extras"),
    [
        ([], "fast,test,dev"),
        (["DEVICE=cuda"], "fast,test,dev,cuda12"),
        (["DEVICE=cuda:1", "CUDA=13"], "fast,test,dev,cuda13"),
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
