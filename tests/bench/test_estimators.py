"""``python -m bench.estimators``: one small regression run, both estimators, its files."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from bench import estimators


def test_a_small_comparison_writes_its_table_and_json(tmp_path, capsys):
    argv = ["--tasks", "regression", "--rows", "600", "--epochs", "2", "--hidden", "8",
            "--out", str(tmp_path)]  # fmt: skip
    assert estimators.main(argv) == 0
    rows = json.loads((tmp_path / "estimators.json").read_text())["rows"]
    assert [r["estimator"] for r in rows] == ["scikit-learn", "mlp (cpu)"]
    assert all(r["epochs"] == 2 and r["fit_seconds"] > 0 and r["metric"] == "R²" for r in rows)
    table = (tmp_path / "estimators.md").read_text()
    assert table.count("| regression |") == 2 and table in capsys.readouterr().out + "\n"
