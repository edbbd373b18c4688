"""``python -m bench.estimators``: one small regression run, both estimators, its files."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from bench import estimators

SMALL = ["--tasks", "regression", "--rows", "600", "--epochs", "2", "--hidden", "8"]


def test_a_small_comparison_writes_its_table_and_json(tmp_path, capsys):
    assert estimators.main([*SMALL, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "estimators.json").read_text())["rows"]
    assert [r["estimator"] for r in rows] == ["scikit-learn", "mlp (cpu)"]
    assert all(r["epochs"] == 2 and r["fit_seconds"] > 0 and r["metric"] == "R²" for r in rows)
    table = (tmp_path / "estimators.md").read_text()
    out = capsys.readouterr().out
    assert table.count("| regression |") == 2 and table in out + "\n"
    assert f"results: {tmp_path}" in out


def test_without_out_a_new_folder_of_the_results_folder(tmp_path, monkeypatch, capsys):
    """As ``python -m bench``: outside the source tree, and a rerun never replaces a run."""
    monkeypatch.setenv("MLP_BENCH_DIR", str(tmp_path))
    assert estimators.main(SMALL) == 0
    assert estimators.main(SMALL) == 0
    first, second = sorted(tmp_path.iterdir(), key=lambda p: len(p.name))
    assert first.name.startswith("estimators-") and first.name.endswith("-cpu")
    assert second.name == first.name + "-2"
    for folder in (first, second):
        assert sorted(p.name for p in folder.iterdir()) == ["estimators.json", "estimators.md"]
    assert f"results: {second}" in capsys.readouterr().out


def test_a_missing_scikit_learn_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(estimators, "installed", lambda peer: False)
    with pytest.raises(SystemExit) as exc:
        estimators.main(SMALL)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1, err
    assert "scikit-learn is not installed (pip install -e '.[bench-sklearn]'" in err
