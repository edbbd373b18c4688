"""The README's scikit-learn example runs as written (on the GPU where there is one)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_scikit_learn_example_runs(capsys):
    pytest.importorskip("sklearn")
    (block,) = [b for b in python_blocks() if "GridSearchCV" in b]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning in the front door is a bug too
        exec(compile(block, str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert "mlpclassifier__hidden_layer_sizes" in printed and "setosa" in printed
